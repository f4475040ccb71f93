"""Supervisors with Erlang/OTP semantics, built on trio nurseries.

Rules
-----
1. A child is described by a `ChildSpec`: `id`, `start`, `restart`, `shutdown`, `kind`.
   `start(stop_requested, task_status=...)` is an async function that calls
   `task_status.started(value)` once it is ready, then runs until it returns, raises, or
   sees `stop_requested` set and winds down.
2. Children start in spec order; each is started (its `task_status.started` called)
   before the next one begins. They stop in reverse order.
3. Stopping a child: set its `stop_requested`, wait up to `shutdown` seconds for it to
   return, then cancel it. `shutdown=None` waits without limit (for nested supervisors,
   which stop their own children first).
4. Restart types: a `PERMANENT` child is restarted whenever it ends; a `TRANSIENT`
   child only when it ends with an exception; a `TEMPORARY` child never.
5. Strategies, when a child must be restarted: `ONE_FOR_ONE` restarts only that child;
   `ONE_FOR_ALL` stops all others (reverse order) and starts all again (in order);
   `REST_FOR_ONE` stops the children started after it (reverse order) and starts it and
   them again (in order). A `DynamicSupervisor` holds children of one kind added at run
   time, restarted one for one.
6. Intensity: more than `intensity` restarts within `period` seconds, and the
   supervisor stops all its children and raises `SupervisorEscalation`, which its own
   parent sees as this child crashing.
7. No task outlives its supervisor: every child runs in the supervisor's nursery inside
   its own cancel scope, so a crash or a stop never leaves an orphan behind.

Theory of operation: each child runs in a wrapper task that records how it ended and
sends that to the supervisor's bounded exit channel. The supervisor's loop is the only
code that starts, stops or restarts children, so decisions are taken one at a time.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import trio

from kefu.actors.runtime import Actor, ActorRef, Flag, Mailbox, Registry, StopRequest

log = logging.getLogger("kefu.supervisor")

M = TypeVar("M")

EXIT_CHANNEL_CAPACITY = 256
"""Child exit notices a supervisor buffers; a child's wrapper waits for room beyond that."""


class ChildStart(Protocol):
    def __call__(self, stop_requested: trio.Event, *, task_status: Any = ...) -> Awaitable[None]: ...


class Restart(enum.Enum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class Strategy(enum.Enum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class ChildKind(enum.Enum):
    WORKER = "worker"
    SUPERVISOR = "supervisor"


@dataclass(frozen=True, slots=True)
class ChildSpec:
    id: str
    start: Callable[..., Awaitable[None]]
    restart: Restart = Restart.PERMANENT
    shutdown: float | None = 5.0
    kind: ChildKind = ChildKind.WORKER


class SupervisorEscalation(RuntimeError):
    """A supervisor exceeded its restart intensity and gave up."""

    def __init__(self, supervisor: str, child: str, cause: BaseException | None) -> None:
        super().__init__(f"supervisor {supervisor!r} gave up after child {child!r} failed: {cause!r}")
        self.supervisor = supervisor
        self.child = child
        self.cause = cause


class ChildStartError(RuntimeError):
    """A child raised before it reported itself started."""


@dataclass(frozen=True, slots=True)
class SupervisorStatistics:
    name: str
    """The supervisor's id."""
    children: int
    """Children running now."""
    restarts: int
    """Child restarts since the supervisor started."""
    child_crashes: int
    """Child incarnations that ended with an exception."""


@dataclass(eq=False, slots=True)
class _Child:
    spec: ChildSpec
    stop_requested: StopRequest = field(default_factory=StopRequest)
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    done: Flag = field(default_factory=Flag)
    terminating: bool = False
    value: Any = None


@dataclass(frozen=True, slots=True)
class _Exit:
    child: _Child
    error: BaseException | None


class _ChildStatus:
    """The `task_status` a child reports itself started with (one small object a child)."""

    __slots__ = ("child", "reported", "task_status")

    def __init__(self, child: _Child, task_status: Any) -> None:
        self.child = child
        self.task_status = task_status
        self.reported = False

    def started(self, value: Any = None) -> None:
        # trio's task status is let go once used: it holds the nursery the child was started
        # from, which a long-lived child would otherwise keep alive.
        task_status, self.task_status = self.task_status, None
        if task_status is None:
            raise RuntimeError("called 'started' twice on the same task status")
        self.reported = True
        self.child.value = value
        task_status.started(value)


class _SupervisorBase:
    def __init__(self, name: str, *, intensity: int, period: float) -> None:
        self.name = name
        self.intensity = intensity
        self.period = period
        self._restart_times: deque[float] = deque()
        self._restarts = 0
        self._crashes = 0
        self._nursery: trio.Nursery | None = None
        self._exits_send, self._exits_receive = trio.open_memory_channel[_Exit](EXIT_CHANNEL_CAPACITY)

    def _is_current(self, child: _Child) -> bool:
        raise NotImplementedError

    async def _next_exit(self, stop_requested: trio.Event) -> _Exit | None:
        """The next exit of a current child, or None once a stop is requested."""
        while True:
            exit: _Exit | None = None
            async with trio.open_nursery() as waiter:

                async def wait_stop() -> None:
                    await stop_requested.wait()
                    waiter.cancel_scope.cancel()

                async def wait_exit() -> None:
                    nonlocal exit
                    exit = await self._exits_receive.receive()
                    waiter.cancel_scope.cancel()

                waiter.start_soon(wait_stop)
                waiter.start_soon(wait_exit)
            if exit is None:
                return None
            if self._is_current(exit.child):
                return exit
            # a notice from a child that was already replaced or removed: ignore it

    # -- one child --------------------------------------------------------------------

    async def _child_task(self, child: _Child, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        status = _ChildStatus(child, task_status)
        del task_status  # held by `status` until used
        error: BaseException | None = None
        try:
            with child.scope:
                await child.spec.start(child.stop_requested, task_status=status)
        except Exception as exc:
            if not status.reported:
                raise ChildStartError(f"child {child.spec.id!r} failed to start: {exc!r}") from exc
            error = exc
        finally:
            child.done.set()
        if not status.reported:
            raise ChildStartError(f"child {child.spec.id!r} returned without reporting itself started")
        if child.terminating:
            return
        if error is not None:
            self._crashes += 1
            log.warning("child crashed", extra={"supervisor": self.name, "child": child.spec.id, "error": repr(error)})
        await self._exits_send.send(_Exit(child, error))

    async def _start_child(self, child: _Child) -> None:
        assert self._nursery is not None
        await self._nursery.start(self._child_task, child)

    async def _stop_child(self, child: _Child) -> None:
        child.terminating = True
        child.stop_requested.set()
        if child.spec.shutdown is None:
            await child.done.wait()
            return
        with trio.move_on_after(child.spec.shutdown):
            await child.done.wait()
        if not child.done.is_set():
            log.warning(
                "child did not stop in time; cancelling", extra={"supervisor": self.name, "child": child.spec.id}
            )
            child.scope.cancel()
            await child.done.wait()

    def _should_restart(self, exit: _Exit) -> bool:
        restart = exit.child.spec.restart
        if restart is Restart.PERMANENT:
            return True
        if restart is Restart.TRANSIENT:
            return exit.error is not None
        return False

    def _note_restart(self, exit: _Exit) -> None:
        """Count one restart; raise `SupervisorEscalation` past the intensity."""
        now = trio.current_time()
        self._restart_times.append(now)
        while self._restart_times and self._restart_times[0] <= now - self.period:
            self._restart_times.popleft()
        if len(self._restart_times) > self.intensity:
            raise SupervisorEscalation(self.name, exit.child.spec.id, exit.error)
        self._restarts += 1


class Supervisor(_SupervisorBase):
    """A fixed, ordered list of children under one strategy."""

    def __init__(
        self,
        name: str,
        children: Sequence[ChildSpec],
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        intensity: int = 3,
        period: float = 5.0,
    ) -> None:
        super().__init__(name, intensity=intensity, period=period)
        ids = [spec.id for spec in children]
        if len(set(ids)) != len(ids):
            raise ValueError(f"child ids must be unique in {name!r}: {ids}")
        self.specs = list(children)
        self.strategy = strategy
        self._running: list[_Child | None] = [None] * len(self.specs)

    def spec(self) -> ChildSpec:
        """This supervisor as a child of another (waits for its children on shutdown)."""
        return ChildSpec(self.name, self.run, Restart.PERMANENT, shutdown=None, kind=ChildKind.SUPERVISOR)

    def child_value(self, child_id: str) -> Any:
        """What the running child with `child_id` passed to `task_status.started`."""
        for child in self._running:
            if child is not None and child.spec.id == child_id:
                return child.value
        raise KeyError(child_id)

    def statistics(self) -> SupervisorStatistics:
        return SupervisorStatistics(
            name=self.name,
            children=sum(1 for c in self._running if c is not None and not c.done.is_set()),
            restarts=self._restarts,
            child_crashes=self._crashes,
        )

    async def run(self, stop_requested: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        failure: SupervisorEscalation | ChildStartError | None = None
        # Each run is a fresh incarnation (a parent restarts us by calling run again):
        # all children start anew and the restart history starts empty, as in OTP.
        self._running = [None] * len(self.specs)
        self._restart_times.clear()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                await self._start_from(0)
                task_status.started(self)
                await self._supervise(stop_requested)
            except (SupervisorEscalation, ChildStartError) as error:
                failure = error
            finally:
                with trio.CancelScope(shield=True):
                    await self._stop_from(0)
                nursery.cancel_scope.cancel()
        if failure is not None:
            # raised outside the nursery so the parent sees it bare, not in an ExceptionGroup
            raise failure

    async def _start_from(self, index: int) -> None:
        for i in range(index, len(self.specs)):
            if self.specs[i].restart is Restart.TEMPORARY and self._running[i] is not None:
                continue  # a temporary child is started once, at the supervisor's start
            child = _Child(self.specs[i])
            self._running[i] = child
            await self._start_child(child)

    async def _stop_from(self, index: int) -> None:
        for i in reversed(range(index, len(self.specs))):
            child = self._running[i]
            if child is not None and not child.done.is_set():
                await self._stop_child(child)

    async def _supervise(self, stop_requested: trio.Event) -> None:
        while True:
            exit = await self._next_exit(stop_requested)
            if exit is None:
                return
            index = self._running.index(exit.child)
            if not self._should_restart(exit):
                continue
            while True:
                self._note_restart(exit)
                log.info(
                    "restarting",
                    extra={"supervisor": self.name, "child": exit.child.spec.id, "strategy": self.strategy.value},
                )
                try:
                    if self.strategy is Strategy.ONE_FOR_ONE:
                        await self._restart_one(index)
                    elif self.strategy is Strategy.ONE_FOR_ALL:
                        await self._stop_from(0)
                        await self._start_from_restarting(0)
                    else:
                        await self._stop_from(index + 1)
                        await self._start_from_restarting(index)
                    break
                except ChildStartError as error:
                    # a failed restart counts against the intensity like a crash
                    exit = _Exit(exit.child, error)

    async def _restart_one(self, index: int) -> None:
        child = _Child(self.specs[index])
        self._running[index] = child
        await self._start_child(child)

    async def _start_from_restarting(self, index: int) -> None:
        for i in range(index, len(self.specs)):
            current = self._running[i]
            if self.specs[i].restart is Restart.TEMPORARY and current is not None:
                continue
            await self._restart_one(i)

    def _is_current(self, child: _Child) -> bool:
        return child in self._running


class DynamicSupervisor(_SupervisorBase, Generic[M]):
    """Children of one kind, added at run time and restarted one for one.

    Used for one actor per conversation or per signed-in agent. On shutdown all children
    are asked to stop at once and waited for together.
    """

    def __init__(
        self,
        name: str,
        *,
        intensity: int = 10,
        period: float = 5.0,
        on_restart: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(name, intensity=intensity, period=period)
        self._children: dict[str, _Child] = {}
        self._ready = trio.Event()
        self._incarnations = 0
        self.on_restart = on_restart
        """Run (as a task of the supervisor) when a parent restarted it: its children are gone,
        and this is where their owner starts again those it still needs."""

    def spec(self) -> ChildSpec:
        return ChildSpec(self.name, self.run, Restart.PERMANENT, shutdown=None, kind=ChildKind.SUPERVISOR)

    def statistics(self) -> SupervisorStatistics:
        return SupervisorStatistics(
            name=self.name, children=len(self._children), restarts=self._restarts, child_crashes=self._crashes
        )

    def __contains__(self, child_id: str) -> bool:
        return child_id in self._children

    def child_ids(self) -> list[str]:
        return list(self._children)

    async def start_child(self, spec: ChildSpec) -> Any:
        """Start a child now; returns what it passed to `task_status.started`."""
        await self._ready.wait()
        if spec.id in self._children:
            raise KeyError(f"{self.name!r} already has a child {spec.id!r}")
        child = _Child(spec)
        self._children[spec.id] = child
        try:
            await self._start_child(child)
        except BaseException:
            self._children.pop(spec.id, None)
            raise
        return child.value

    async def stop_child(self, child_id: str) -> None:
        """Stop a child for good (it is not restarted)."""
        child = self._children.pop(child_id, None)
        if child is not None:
            await self._stop_child(child)

    async def run(self, stop_requested: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        failure: SupervisorEscalation | None = None
        self._restart_times.clear()  # a fresh incarnation, as in `Supervisor.run`
        self._incarnations += 1
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._ready.set()
            task_status.started(self)
            if self._incarnations > 1 and self.on_restart is not None:
                nursery.start_soon(self.on_restart)
            try:
                while True:
                    exit = await self._next_exit(stop_requested)
                    if exit is None:
                        return
                    child_id = exit.child.spec.id
                    if not self._should_restart(exit):
                        self._children.pop(child_id, None)
                        continue
                    self._note_restart(exit)
                    replacement = _Child(exit.child.spec)
                    self._children[child_id] = replacement
                    try:
                        await self._start_child(replacement)
                    except ChildStartError as error:
                        self._children.pop(child_id, None)
                        log.warning(
                            "restart failed", extra={"supervisor": self.name, "child": child_id, "error": repr(error)}
                        )
            except SupervisorEscalation as error:
                failure = error
            finally:
                with trio.CancelScope(shield=True):
                    children = list(self._children.values())
                    self._children.clear()
                    async with trio.open_nursery() as stopper:
                        for child in children:
                            stopper.start_soon(self._stop_child, child)
                # until the next incarnation, `start_child` waits instead of using this nursery
                self._ready = trio.Event()
                nursery.cancel_scope.cancel()
        if failure is not None:
            raise failure

    def _is_current(self, child: _Child) -> bool:
        return self._children.get(child.spec.id) is child


def actor_child(
    factory: Callable[[Mailbox[M]], Actor[M]],
    mailbox: Mailbox[M],
    *,
    restart: Restart = Restart.PERMANENT,
    shutdown: float | None = 5.0,
    registry: Registry | None = None,
) -> ChildSpec:
    """A child spec that runs a fresh actor from `factory` on the same `mailbox` at each start."""
    return ChildSpec(mailbox.name, _ActorStart(factory, mailbox, registry), restart, shutdown, ChildKind.WORKER)


class _ActorStart(Generic[M]):
    """The `start` of `actor_child`: one small object a child rather than a closure and its cells."""

    __slots__ = ("factory", "mailbox", "registry")

    def __init__(self, factory: Callable[[Mailbox[M]], Actor[M]], mailbox: Mailbox[M], registry: Registry | None):
        self.factory = factory
        self.mailbox = mailbox
        self.registry = registry

    async def __call__(self, stop_requested: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        mailbox = self.mailbox
        mailbox.starts += 1
        actor = self.factory(mailbox)
        if self.registry is not None:
            self.registry.register(mailbox.ref)
        try:
            await actor.run(stop_requested, task_status=task_status)
        except Exception:
            mailbox.crashes += 1
            raise


def actor_ref(value: Any) -> ActorRef[Any]:
    """Narrow a child's started value to an ActorRef (for typed callers)."""
    if not isinstance(value, ActorRef):
        raise TypeError(f"expected an ActorRef, got {value!r}")
    return value
