"""One timer service per node: "tell this actor that message in N seconds".

Theory of operation
-------------------
Offers expire, wrap-up ends, queued conversations overflow: many actors need to be woken
later, and a trio task (or cancel scope) per pending timer would cost more than the work it
times. `Timers` keeps one heap of deadlines and one task that sleeps until the earliest,
then delivers due messages with `tell_nowait`. Cancelling a timer marks it; the heap drops
marked entries when they come up, and is rebuilt when most of it is cancelled.

Rules
-----
1. A message is delivered at or after its deadline, never before; timers due at the same
   moment fire in the order they were scheduled.
2. Delivery never blocks the timer task: a full mailbox gets the message on the next
   attempt, 50 ms later, and a stopped actor's message is dropped (the actor's state is
   rebuilt from the store when it comes back, and the next timer comes with it).
3. `cancel()` after the timer fired does nothing.
4. The deadlines live in the `Timers` object, not in its task: when the task crashes and
   its supervisor starts it again, every deadline registered before the crash is still
   there, and the ones that came due meanwhile fire at once.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from typing import Any

import trio

from kefu.actors.runtime import ActorRef, MailboxFull

log = logging.getLogger("kefu.timers")

RETRY_FULL_MAILBOX_SECONDS = 0.05


class Timer:
    __slots__ = ("_owner", "cancelled", "deadline", "message", "target")

    def __init__(self, owner: Timers, deadline: float, target: ActorRef[Any], message: Any) -> None:
        self._owner: Timers | None = owner
        self.deadline = deadline
        self.target = target
        self.message = message
        self.cancelled = False

    def cancel(self) -> None:
        if not self.cancelled and self._owner is not None:
            self.cancelled = True
            self._owner._cancelled += 1


class Timers:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._cancelled = 0
        self._wakeup = trio.Event()
        self._crash_requested = False
        self.fired = 0

    def __len__(self) -> int:
        return len(self._heap)

    def call_later(self, delay: float, target: ActorRef[Any], message: Any) -> Timer:
        """Deliver `message` to `target` after `delay` seconds."""
        return self.call_at(trio.current_time() + max(0.0, delay), target, message)

    def call_at(self, deadline: float, target: ActorRef[Any], message: Any) -> Timer:
        timer = Timer(self, deadline, target, message)
        if not self._heap or deadline < self._heap[0][0]:
            self._wakeup.set()
        heapq.heappush(self._heap, (deadline, next(self._order), timer))
        return timer

    def inject_crash(self) -> None:
        """Fault injection for tests: the service's task raises once, as a bug would."""
        self._crash_requested = True
        self._wakeup.set()

    def _compact(self) -> None:
        self._heap = [entry for entry in self._heap if not entry[2].cancelled]
        heapq.heapify(self._heap)
        self._cancelled = 0

    async def run(self, stop_requested: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started(self)
        async with trio.open_nursery() as nursery:

            async def stop_when_asked() -> None:
                await stop_requested.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(stop_when_asked)
            await self._loop()

    async def _loop(self) -> None:
        while True:
            if self._crash_requested:
                self._crash_requested = False
                raise RuntimeError("injected crash")
            self._wakeup = trio.Event()
            now = trio.current_time()
            heap = self._heap
            while heap and (heap[0][2].cancelled or heap[0][0] <= now):
                _, _, timer = heapq.heappop(heap)
                if timer.cancelled:
                    self._cancelled -= 1
                    continue
                timer._owner = None  # fired: a late cancel() changes nothing
                try:
                    timer.target.tell_nowait(timer.message)
                    self.fired += 1
                except MailboxFull:
                    timer._owner = self
                    timer.deadline = now + RETRY_FULL_MAILBOX_SECONDS
                    heapq.heappush(heap, (timer.deadline, next(self._order), timer))
                    break
                except Exception:
                    log.exception("timer delivery failed", extra={"target": timer.target.name})
            if len(heap) > 1024 and self._cancelled > len(heap) // 2:
                self._compact()
                heap = self._heap
            if heap:
                with trio.move_on_at(heap[0][0]):
                    await self._wakeup.wait()
            else:
                await self._wakeup.wait()
