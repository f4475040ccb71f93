"""Deadlines for `ask` without a cancel scope per call.

Entering and leaving a trio cancel scope costs about as much as the rest of an `ask`
together (measured: a third of the store's time under load). An `ask` whose message went
into the mailbox at once instead parks on its `Reply` and registers its deadline here:
one system task per trio run sleeps until the earliest registered deadline and fails
every reply still unanswered by then with `AskTimeout`. The heap keeps answered entries
until they come up or until they outnumber the pending ones, when it is compacted, so its
size stays proportional to the asks in flight.
"""

from __future__ import annotations

import heapq
import itertools
import math
from typing import TYPE_CHECKING, Any

import trio

if TYPE_CHECKING:
    from kefu.actors.runtime import Reply

_RUN_DEADLINES: trio.lowlevel.RunVar[AskDeadlines] = trio.lowlevel.RunVar("kefu_ask_deadlines")

COMPACT_AT = 1024
"""Heap entries below which answered ones are never swept out early."""


class AskDeadlines:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Reply[Any], str]] = []
        self._order = itertools.count()
        self._sleep: trio.CancelScope | None = None

    def register(self, deadline: float, reply: Reply[Any], actor: str) -> None:
        heap = self._heap
        heapq.heappush(heap, (deadline, next(self._order), reply, actor))
        if self._sleep is not None and deadline < self._sleep.deadline:
            self._sleep.deadline = deadline
        if len(heap) > COMPACT_AT and len(heap) & 1023 == 0:
            live = [entry for entry in heap if not entry[2].done]
            if len(live) * 2 < len(heap):
                heapq.heapify(live)
                self._heap = live

    async def run(self) -> None:
        from kefu.actors.runtime import AskTimeout

        while True:
            heap = self._heap
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as sleep:
                self._sleep = sleep
                await trio.sleep_forever()
            self._sleep = None
            now = trio.current_time()
            heap = self._heap
            while heap and heap[0][0] <= now:
                _deadline, _order, reply, actor = heapq.heappop(heap)
                if not reply.done:
                    reply.fail(AskTimeout(f"{actor} did not answer in time"))


def ask_deadlines() -> AskDeadlines:
    """This trio run's deadline keeper, started on first use."""
    try:
        return _RUN_DEADLINES.get()
    except LookupError:
        keeper = AskDeadlines()
        _RUN_DEADLINES.set(keeper)
        trio.lowlevel.spawn_system_task(keeper.run, name="kefu ask deadlines")
        return keeper
