"""Deadlines: one heap for everything that must happen at a time.

Theory of operation
-------------------
Two kinds of things come due in kefu. An `ask` whose caller waits on its `Reply` must fail
with `AskTimeout` if no answer came by its deadline; and actors want a message later ("tell
me `OfferTimeout` in 20 s": offers expire, wrap-up ends, a reconnect grace passes). A trio
cancel scope (or task) per pending deadline would cost more than the work it times:
entering and leaving a cancel scope costs about as much as the rest of an `ask` together
(measured: a third of the store's time under load). So a `DeadlineHeap` keeps one heap of
``(deadline, order, due, asker)`` entries and one task that sleeps until the earliest, then
settles every entry that came due: a `Reply` still unanswered is failed, a `Timer` not
cancelled delivers its message with `tell_nowait`.

There are two heaps of this one kind in a process: the run's ask keeper (`ask_deadlines`,
a trio system task, started on the first ask) and the node's timer service
(`kefu.actors.timers.Timers`, a supervised child that can be crashed and restarted).

Rules
-----
1. Nothing fires before its deadline; entries due at the same moment fire in the order they
   were registered.
2. Settling never blocks the task: a timer whose target's mailbox is full is tried again
   `RETRY_FULL_MAILBOX_SECONDS` later; a stopped actor's message is dropped (the actor is
   rebuilt from the store when it comes back, and its next timer comes with it).
3. An answered reply or a cancelled timer is skipped when it comes up; `cancel()` after the
   timer fired does nothing. Such dead entries stay in the heap until they come up or
   until they outnumber the live ones (checked every `COMPACT_AT` registrations once the
   heap holds more than that), so its size stays proportional to what is pending.
4. The deadlines live in the heap object, not in its task: when the task crashes and is
   started again, every deadline registered before is still there, and those that came
   due meanwhile fire at once.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from typing import TYPE_CHECKING, Any, TypeAlias

import trio

if TYPE_CHECKING:
    from kefu.actors.runtime import ActorRef, Reply

log = logging.getLogger("kefu.deadlines")

COMPACT_AT = 1024
"""Heap entries below which dead ones (answered, cancelled) are never swept out early; also
how many registrations pass between two checks of whether to sweep."""
RETRY_FULL_MAILBOX_SECONDS = 0.05
"""How long a timer whose target's mailbox was full waits before it is delivered again."""

_RUN_DEADLINES: trio.lowlevel.RunVar[DeadlineHeap] = trio.lowlevel.RunVar("kefu_ask_deadlines")


class Timer:
    """A message to deliver to an actor at `deadline`; `cancel()` it if it is no longer wanted."""

    __slots__ = ("deadline", "done", "message", "target")

    def __init__(self, deadline: float, target: ActorRef[Any], message: Any) -> None:
        self.deadline = deadline
        self.target = target
        self.message = message
        self.done = False
        """Delivered or cancelled: the heap skips it when it comes up."""

    def cancel(self) -> None:
        self.done = True


_Entry: TypeAlias = tuple[float, int, "Timer | Reply[Any]", str | None]
"""(deadline, registration order, what comes due, the asked actor's name for a reply or None)."""


class DeadlineHeap:
    def __init__(self) -> None:
        self._heap: list[_Entry] = []
        self._order = itertools.count()
        self._registered = 0
        self._sleep: trio.CancelScope | None = None
        self._crash_requested = False
        self.fired = 0
        """Timer messages delivered since the heap was made."""

    def __len__(self) -> int:
        """Entries in the heap, dead ones not swept out yet included."""
        return len(self._heap)

    # -- registering ----------------------------------------------------------------------

    def register(self, deadline: float, reply: Reply[Any], actor: str) -> None:
        """Fail `reply` with `AskTimeout` at `deadline` unless it was answered by then."""
        self._push((deadline, next(self._order), reply, actor))

    def call_later(self, delay: float, target: ActorRef[Any], message: Any) -> Timer:
        """Deliver `message` to `target` after `delay` seconds."""
        return self.call_at(trio.current_time() + max(0.0, delay), target, message)

    def call_at(self, deadline: float, target: ActorRef[Any], message: Any) -> Timer:
        """Deliver `message` to `target` at `deadline` (at once if it has passed)."""
        timer = Timer(deadline, target, message)
        self._push((deadline, next(self._order), timer, None))
        return timer

    def _push(self, entry: _Entry) -> None:
        heap = self._heap
        heapq.heappush(heap, entry)
        sleep = self._sleep
        if sleep is not None and entry[0] < sleep.deadline:
            sleep.deadline = entry[0]
        self._registered += 1
        if len(heap) > COMPACT_AT and self._registered % COMPACT_AT == 0:
            self._compact()

    def _compact(self) -> None:
        live = [entry for entry in self._heap if not entry[2].done]
        if len(live) * 2 < len(self._heap):
            heapq.heapify(live)
            self._heap = live

    def inject_crash(self) -> None:
        """Fault injection for tests: the heap's task raises once, as a bug would."""
        self._crash_requested = True
        if self._sleep is not None:
            self._sleep.deadline = -math.inf

    # -- settling -------------------------------------------------------------------------

    async def run_forever(self) -> None:
        """Sleep until the earliest deadline, settle what came due, and again; never returns."""
        while True:
            if self._crash_requested:
                self._crash_requested = False
                raise RuntimeError("injected crash")
            heap = self._heap
            with trio.CancelScope(deadline=heap[0][0] if heap else math.inf) as sleep:
                self._sleep = sleep
                await trio.sleep_forever()
            self._sleep = None
            self._settle(trio.current_time())

    def _settle(self, now: float) -> None:
        heap = self._heap
        while heap and heap[0][0] <= now:
            _deadline, _order, due, actor = heapq.heappop(heap)
            if due.done:
                continue
            if actor is not None:
                due.fail(_ask_timeout(actor))  # type: ignore[union-attr]
            else:
                self._deliver(due, now)  # type: ignore[arg-type]

    def _deliver(self, timer: Timer, now: float) -> None:
        from kefu.actors.runtime import MailboxFull

        try:
            timer.target.tell_nowait(timer.message)
        except MailboxFull:
            timer.deadline = now + RETRY_FULL_MAILBOX_SECONDS
            heapq.heappush(self._heap, (timer.deadline, next(self._order), timer, None))
            return
        except Exception:
            timer.done = True
            log.exception("timer delivery failed", extra={"target": timer.target.name})
            return
        timer.done = True
        self.fired += 1


def _ask_timeout(actor: str) -> BaseException:
    from kefu.actors.runtime import AskTimeout

    return AskTimeout(f"{actor} did not answer in time")


def ask_deadlines() -> DeadlineHeap:
    """This trio run's keeper of ask deadlines, started on first use."""
    try:
        return _RUN_DEADLINES.get()
    except LookupError:
        keeper = DeadlineHeap()
        _RUN_DEADLINES.set(keeper)
        trio.lowlevel.spawn_system_task(keeper.run_forever, name="kefu ask deadlines")
        return keeper
