"""Scriptable supervisor children for the tests: each logs how it starts and ends.

A worker incarnation logs ``start <id>`` once it is ready, then waits for either its
``stop_requested`` (logs ``stop <id>``) or a command from the test: ``crash`` (logs
``crash <id>`` and raises `Boom`) or ``return`` (logs ``return <id>`` and returns).
"""

from __future__ import annotations

from collections import Counter
from functools import partial
from typing import Any

import trio
import trio.testing

from kefu.actors.supervisor import ChildSpec, Restart


class Boom(Exception):
    """The failure a test injects into a child."""


class Workers:
    def __init__(self) -> None:
        self.log: list[str] = []
        self.starts: Counter[str] = Counter()
        self._commands: dict[str, trio.MemorySendChannel[str]] = {}

    def spec(self, child_id: str, *, restart: Restart = Restart.PERMANENT, shutdown: float | None = 5.0) -> ChildSpec:
        return ChildSpec(child_id, partial(self._run, child_id), restart=restart, shutdown=shutdown)

    async def _run(
        self, child_id: str, stop_requested: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.starts[child_id] += 1
        send, receive = trio.open_memory_channel[str](1)
        self._commands[child_id] = send
        self.log.append(f"start {child_id}")
        task_status.started(f"value {child_id}")
        command = "stop"
        async with trio.open_nursery() as nursery:

            async def on_stop() -> None:
                await stop_requested.wait()
                nursery.cancel_scope.cancel()

            async def on_command() -> None:
                nonlocal command
                command = await receive.receive()
                nursery.cancel_scope.cancel()

            nursery.start_soon(on_stop)
            nursery.start_soon(on_command)
        self.log.append(f"{command} {child_id}")
        if command == "crash":
            raise Boom(child_id)

    async def crash(self, child_id: str) -> None:
        """Make the current incarnation of `child_id` raise, and let the supervisor settle."""
        self._commands[child_id].send_nowait("crash")
        await trio.testing.wait_all_tasks_blocked()

    async def finish(self, child_id: str) -> None:
        """Make the current incarnation of `child_id` return normally, and let things settle."""
        self._commands[child_id].send_nowait("return")
        await trio.testing.wait_all_tasks_blocked()

    def take_log(self) -> list[str]:
        log, self.log = self.log, []
        return log
