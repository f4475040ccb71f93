"""One timer service per node: "tell this actor that message in N seconds".

Offers expire, wrap-up ends, a reconnect grace passes, closed sessions go idle: many actors
need to be woken later. `Timers` is the node's `kefu.actors.deadlines.DeadlineHeap` (the one
kind of deadline heap, whose rules hold here: nothing fires early, same-moment timers fire in
order, a full mailbox is retried, a cancel after firing does nothing) run as a supervised
child: `run` is its child-spec start. The deadlines live in the object, not in its task, so
when the task crashes and its supervisor starts it again every timer registered before the
crash is still there, and those that came due meanwhile fire at once.
"""

from __future__ import annotations

from typing import Any

import trio

from kefu.actors.deadlines import RETRY_FULL_MAILBOX_SECONDS, DeadlineHeap, Timer

__all__ = ["RETRY_FULL_MAILBOX_SECONDS", "Timer", "Timers"]


class Timers(DeadlineHeap):
    async def run(self, stop_requested: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Deliver timers until `stop_requested` is set (a supervisor's child start)."""
        task_status.started(self)
        async with trio.open_nursery() as nursery:

            async def stop_when_asked() -> None:
                await stop_requested.wait()
                nursery.cancel_scope.cancel()

            nursery.start_soon(stop_when_asked)
            await self.run_forever()
