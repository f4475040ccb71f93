"""Tests for `kefu.actors.supervisor`: strategies, restart types, intensity, nesting."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from kefu.actors.runtime import Actor, Mailbox, Registry, Reply
from kefu.actors.supervisor import (
    ChildSpec,
    ChildStartError,
    DynamicSupervisor,
    Restart,
    Strategy,
    Supervisor,
    SupervisorEscalation,
    actor_child,
)

from ._workers import Boom, Workers

pytestmark = pytest.mark.trio


async def running(nursery: trio.Nursery, supervisor: Supervisor | DynamicSupervisor[Any]) -> trio.Event:
    """Start `supervisor` in `nursery`; returns the event that asks it to stop."""
    stop = trio.Event()
    await nursery.start(supervisor.run, stop)
    return stop


def descendants(task: trio.lowlevel.Task) -> set[trio.lowlevel.Task]:
    found: set[trio.lowlevel.Task] = set()
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            found.add(child)
            found |= descendants(child)
    return found


# -- strategies ----------------------------------------------------------------------------


async def test_one_for_one_restarts_only_the_crashed_child() -> None:
    workers = Workers()
    supervisor = Supervisor("sup", [workers.spec(c) for c in "abc"], strategy=Strategy.ONE_FOR_ONE)
    async with trio.open_nursery() as nursery:
        stop = await running(nursery, supervisor)
        assert workers.take_log() == ["start a", "start b", "start c"]
        await workers.crash("b")
        assert workers.take_log() == ["crash b", "start b"]
        assert supervisor.statistics().restarts == 1
        assert supervisor.statistics().child_crashes == 1
        assert supervisor.statistics().children == 3
        stop.set()
    assert workers.take_log() == ["stop c", "stop b", "stop a"]
    assert workers.starts == {"a": 1, "b": 2, "c": 1}


async def test_one_for_all_stops_the_others_in_reverse_then_starts_all_in_order() -> None:
    workers = Workers()
    supervisor = Supervisor("sup", [workers.spec(c) for c in "abcd"], strategy=Strategy.ONE_FOR_ALL)
    async with trio.open_nursery() as nursery:
        stop = await running(nursery, supervisor)
        workers.take_log()
        await workers.crash("b")
        assert workers.take_log() == [
            "crash b",
            "stop d",
            "stop c",
            "stop a",
            "start a",
            "start b",
            "start c",
            "start d",
        ]
        assert supervisor.statistics().restarts == 1
        stop.set()
    assert workers.take_log() == ["stop d", "stop c", "stop b", "stop a"]
    assert workers.starts == {"a": 2, "b": 2, "c": 2, "d": 2}


async def test_rest_for_one_restarts_the_crashed_child_and_those_after_it() -> None:
    workers = Workers()
    supervisor = Supervisor("sup", [workers.spec(c) for c in "abcd"], strategy=Strategy.REST_FOR_ONE)
    async with trio.open_nursery() as nursery:
        stop = await running(nursery, supervisor)
        workers.take_log()
        await workers.crash("b")
        assert workers.take_log() == ["crash b", "stop d", "stop c", "start b", "start c", "start d"]
        await workers.crash("d")  # the last one: nothing after it
        assert workers.take_log() == ["crash d", "start d"]
        stop.set()
    assert workers.take_log() == ["stop d", "stop c", "stop b", "stop a"]
    assert workers.starts == {"a": 1, "b": 2, "c": 2, "d": 3}


async def test_one_for_all_does_not_restart_a_temporary_sibling() -> None:
    workers = Workers()
    specs = [workers.spec("a"), workers.spec("t", restart=Restart.TEMPORARY), workers.spec("c")]
    supervisor = Supervisor("sup", specs, strategy=Strategy.ONE_FOR_ALL)
    async with trio.open_nursery() as nursery:
        stop = await running(nursery, supervisor)
        workers.take_log()
        await workers.crash("c")
        assert workers.take_log() == ["crash c", "stop t", "stop a", "start a", "start c"]
        stop.set()
    assert workers.take_log() == ["stop c", "stop a"]


# -- restart types -------------------------------------------------------------------------


async def test_permanent_child_is_restarted_even_after_a_normal_return() -> None:
    workers = Workers()
    supervisor = Supervisor("sup", [workers.spec("p", restart=Restart.PERMANENT)])
    async with trio.open_nursery() as nursery:
        stop = await running(nursery, supervisor)
        await workers.finish("p")
        await workers.crash("p")
        stop.set()
    assert workers.take_log() == ["start p", "return p", "start p", "crash p", "start p", "stop p"]
    assert supervisor.statistics().restarts == 2


async def test_transient_child_is_restarted_only_after_a_crash() -> None:
    workers = Workers()
    supervisor = Supervisor("sup", [workers.spec("t", restart=Restart.TRANSIENT), workers.spec("x")])
    async with trio.open_nursery() as nursery:
        stop = await running(nursery, supervisor)
        await workers.crash("t")
        assert workers.starts["t"] == 2
        await workers.finish("t")
        assert supervisor.statistics().children == 1
        stop.set()
    assert workers.take_log() == ["start t", "start x", "crash t", "start t", "return t", "stop x"]
    assert workers.starts == {"t": 2, "x": 1}
    assert supervisor.statistics().restarts == 1


async def test_temporary_child_is_never_restarted() -> None:
    workers = Workers()
    specs = [workers.spec("c", restart=Restart.TEMPORARY), workers.spec("r", restart=Restart.TEMPORARY)]
    supervisor = Supervisor("sup", specs)
    async with trio.open_nursery() as nursery:
        stop = await running(nursery, supervisor)
        await workers.crash("c")
        await workers.finish("r")
        assert supervisor.statistics().children == 0
        stop.set()
    assert workers.take_log() == ["start c", "start r", "crash c", "return r"]
    assert supervisor.statistics().restarts == 0


# -- intensity -----------------------------------------------------------------------------


def crashing_every(seconds: float, log: list[float]) -> ChildSpec:
    """A child that starts, then crashes `seconds` later, every incarnation."""

    async def start(stop_requested: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        log.append(trio.current_time())
        task_status.started()
        await trio.sleep(seconds)
        raise Boom("again")

    return ChildSpec("crasher", start)


async def test_more_restarts_than_intensity_within_period_escalates(autojump_clock: trio.testing.MockClock) -> None:
    workers = Workers()
    starts: list[float] = []
    supervisor = Supervisor(
        "sup", [workers.spec("a"), crashing_every(1, starts), workers.spec("c")], intensity=3, period=5
    )
    t0 = trio.current_time()
    with pytest.raises(SupervisorEscalation) as raised:
        await supervisor.run(trio.Event())
    # bare, not in an ExceptionGroup
    assert type(raised.value) is SupervisorEscalation
    assert (raised.value.supervisor, raised.value.child) == ("sup", "crasher")
    assert isinstance(raised.value.cause, Boom)
    # three restarts were allowed; the fourth crash (at t0 + 4) was one too many
    assert [t - t0 for t in starts] == [0, 1, 2, 3]
    assert trio.current_time() - t0 == 4
    assert supervisor.statistics().restarts == 3
    # all children were stopped, in reverse order, before the escalation came out
    assert workers.take_log() == ["start a", "start c", "stop c", "stop a"]


async def test_as_many_crashes_spread_wider_than_period_do_not_escalate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    starts: list[float] = []
    supervisor = Supervisor("sup", [crashing_every(2, starts)], intensity=3, period=5)
    async with trio.open_nursery() as nursery:
        stop = await running(nursery, supervisor)
        t0 = trio.current_time()
        await trio.sleep(21)
        stop.set()
    # crashes at t0 + 2, 4, ..., 20: never more than 3 restarts in any 5 seconds
    assert [t - t0 for t in starts] == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20]
    assert supervisor.statistics().restarts == 10
    assert supervisor.statistics().child_crashes == 10


async def test_intensity_zero_escalates_at_the_first_crash() -> None:
    workers = Workers()
    supervisor = Supervisor("sup", [workers.spec("a"), workers.spec("b")], intensity=0)
    result: list[BaseException] = []

    async def supervise(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await supervisor.run(trio.Event(), task_status=task_status)
        except SupervisorEscalation as error:
            result.append(error)

    async with trio.open_nursery() as nursery:
        await nursery.start(supervise)
        await workers.crash("a")
    assert [type(error) for error in result] == [SupervisorEscalation]
    assert workers.take_log() == ["start a", "start b", "crash a", "stop b"]


# -- nesting -------------------------------------------------------------------------------


async def test_escalating_child_supervisor_is_restarted_by_its_parent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    workers = Workers()
    inner = Supervisor("inner", [workers.spec("x"), workers.spec("y")], intensity=1, period=5)
    parent = Supervisor("parent", [workers.spec("w"), inner.spec()], intensity=3, period=5)
    async with trio.open_nursery() as nursery:
        stop = await running(nursery, parent)
        assert workers.take_log() == ["start w", "start x", "start y"]
        await workers.crash("x")  # one restart: inner copes
        assert workers.take_log() == ["crash x", "start x"]
        await workers.crash("x")  # a second within 5 s: inner gives up, parent restarts it
        assert workers.take_log() == ["crash x", "stop y", "start x", "start y"]
        assert parent.statistics().restarts == 1
        assert parent.statistics().child_crashes == 1
        # the new incarnation of inner has its own restart history: one crash is fine
        await workers.crash("y")
        assert workers.take_log() == ["crash y", "start y"]
        assert parent.statistics().restarts == 1
        assert inner.statistics().children == 2
        stop.set()
    assert workers.take_log() == ["stop y", "stop x", "stop w"]
    assert workers.starts == {"w": 1, "x": 3, "y": 3}


async def test_escalation_that_reaches_the_top_propagates(autojump_clock: trio.testing.MockClock) -> None:
    workers = Workers()
    starts: list[float] = []
    inner = Supervisor("inner", [workers.spec("x"), crashing_every(1, starts)], intensity=0, period=5)
    top = Supervisor("top", [workers.spec("w"), inner.spec()], intensity=2, period=10)
    with pytest.raises(SupervisorEscalation) as raised:
        await top.run(trio.Event())
    assert type(raised.value) is SupervisorEscalation
    assert (raised.value.supervisor, raised.value.child) == ("top", "inner")
    cause = raised.value.cause
    assert isinstance(cause, SupervisorEscalation)
    assert (cause.supervisor, cause.child) == ("inner", "crasher")
    # inner ran three times (two restarts allowed), each time x started and stopped
    assert len(starts) == 3
    assert workers.take_log() == ["start w"] + ["start x", "stop x"] * 3 + ["stop w"]


# -- start and stop order ------------------------------------------------------------------


async def test_children_start_in_order_each_after_the_previous_is_ready(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[str, float]] = []

    def slow_starter(child_id: str, delay: float) -> ChildSpec:
        async def start(stop_requested: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            log.append((f"begin {child_id}", trio.current_time()))
            await trio.sleep(delay)
            log.append((f"ready {child_id}", trio.current_time()))
            task_status.started(child_id.upper())
            await stop_requested.wait()
            log.append((f"stop {child_id}", trio.current_time()))

        return ChildSpec(child_id, start)

    supervisor = Supervisor("sup", [slow_starter("a", 2), slow_starter("b", 3), slow_starter("c", 0)])
    async with trio.open_nursery() as nursery:
        t0 = trio.current_time()
        started = await nursery.start(supervisor.run, stop := trio.Event())
        assert started is supervisor
        assert trio.current_time() - t0 == 5
        assert [supervisor.child_value(c) for c in "abc"] == ["A", "B", "C"]
        stop.set()
    assert [(entry, at - t0) for entry, at in log] == [
        ("begin a", 0),
        ("ready a", 2),
        ("begin b", 2),
        ("ready b", 5),
        ("begin c", 5),
        ("ready c", 5),
        ("stop c", 5),
        ("stop b", 5),
        ("stop a", 5),
    ]


async def test_stop_waits_for_each_child_before_stopping_the_previous(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[str, float]] = []

    def slow_stopper(child_id: str, delay: float) -> ChildSpec:
        async def start(stop_requested: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            await stop_requested.wait()
            log.append((f"stopping {child_id}", trio.current_time()))
            await trio.sleep(delay)

        return ChildSpec(child_id, start, shutdown=10)

    supervisor = Supervisor("sup", [slow_stopper("a", 1), slow_stopper("b", 2), slow_stopper("c", 3)])
    async with trio.open_nursery() as nursery:
        stop = await running(nursery, supervisor)
        t0 = trio.current_time()
        stop.set()
    assert trio.current_time() - t0 == 6
    assert [(entry, at - t0) for entry, at in log] == [("stopping c", 0), ("stopping b", 3), ("stopping a", 5)]


async def test_a_child_that_ignores_stop_is_cancelled_after_its_shutdown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    workers = Workers()
    log: list[tuple[str, float]] = []

    async def stubborn(stop_requested: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            log.append(("cancelled", trio.current_time()))

    supervisor = Supervisor("sup", [workers.spec("a"), ChildSpec("stubborn", stubborn, shutdown=7), workers.spec("c")])
    async with trio.open_nursery() as nursery:
        stop = await running(nursery, supervisor)
        t0 = trio.current_time()
        stop.set()
    assert trio.current_time() - t0 == 7
    assert [(entry, at - t0) for entry, at in log] == [("cancelled", 7)]
    assert workers.take_log() == ["start a", "start c", "stop c", "stop a"]


async def test_a_child_failing_before_started_fails_the_supervisor_start() -> None:
    workers = Workers()

    async def broken(stop_requested: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        raise Boom("no database")

    supervisor = Supervisor("sup", [workers.spec("a"), ChildSpec("broken", broken), workers.spec("c")])
    with pytest.raises(ChildStartError) as raised:
        await supervisor.run(trio.Event())
    assert type(raised.value) is ChildStartError
    assert isinstance(raised.value.__cause__, Boom)
    assert workers.take_log() == ["start a", "stop a"]


async def test_a_child_returning_before_started_fails_the_supervisor_start() -> None:
    async def quitter(stop_requested: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        return

    supervisor = Supervisor("sup", [ChildSpec("quitter", quitter)])
    with pytest.raises(ChildStartError):
        await supervisor.run(trio.Event())


async def test_a_crashing_child_leaves_no_orphan_task() -> None:
    log: list[str] = []
    children: list[trio.lowlevel.Task] = []
    grandchildren: list[trio.lowlevel.Task] = []
    crash = trio.Event()

    async def parent_of_one(stop_requested: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        async def grandchild() -> None:
            grandchildren.append(trio.lowlevel.current_task())
            try:
                await trio.sleep_forever()
            finally:
                log.append("grandchild finally")

        children.append(trio.lowlevel.current_task())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(grandchild)
            task_status.started()
            await crash.wait()
            raise Boom("child")

    supervisor = Supervisor("sup", [ChildSpec("spawner", parent_of_one, restart=Restart.TEMPORARY)])
    me = trio.lowlevel.current_task()
    async with trio.open_nursery() as nursery:
        stop = await running(nursery, supervisor)
        await trio.testing.wait_all_tasks_blocked()
        before = descendants(me)
        assert {children[0], grandchildren[0]} <= before
        crash.set()
        await trio.testing.wait_all_tasks_blocked()
        after = descendants(me)
        assert log == ["grandchild finally"]
        assert children[0] not in after
        assert grandchildren[0] not in after
        # the child's task and the grandchild are gone; nothing else is left over
        assert len(before) - len(after) == 2
        assert supervisor.statistics().children == 0
        stop.set()


# -- DynamicSupervisor ---------------------------------------------------------------------


async def test_dynamic_start_child_returns_the_started_value() -> None:
    workers = Workers()
    dynamic: DynamicSupervisor[Any] = DynamicSupervisor("sessions")
    async with trio.open_nursery() as nursery:
        stop = await running(nursery, dynamic)
        assert await dynamic.start_child(workers.spec("c1")) == "value c1"
        assert await dynamic.start_child(workers.spec("c2")) == "value c2"
        assert dynamic.child_ids() == ["c1", "c2"]
        assert "c1" in dynamic
        with pytest.raises(KeyError):
            await dynamic.start_child(workers.spec("c1"))
        assert dynamic.statistics().children == 2
        stop.set()
    assert workers.starts == {"c1": 1, "c2": 1}


async def test_dynamic_transient_child_restarts_after_crash_and_is_removed_after_return() -> None:
    workers = Workers()
    dynamic: DynamicSupervisor[Any] = DynamicSupervisor("sessions")
    async with trio.open_nursery() as nursery:
        stop = await running(nursery, dynamic)
        await dynamic.start_child(workers.spec("c1", restart=Restart.TRANSIENT))
        await dynamic.start_child(workers.spec("c2", restart=Restart.TRANSIENT))
        await workers.crash("c1")
        assert dynamic.child_ids() == ["c1", "c2"]
        await workers.finish("c1")
        assert dynamic.child_ids() == ["c2"]
        assert dynamic.statistics().restarts == 1
        stop.set()
    assert workers.take_log() == ["start c1", "start c2", "crash c1", "start c1", "return c1", "stop c2"]


async def test_dynamic_stop_child_stops_it_for_good() -> None:
    workers = Workers()
    dynamic: DynamicSupervisor[Any] = DynamicSupervisor("sessions")
    async with trio.open_nursery() as nursery:
        stop = await running(nursery, dynamic)
        await dynamic.start_child(workers.spec("c1"))
        await dynamic.start_child(workers.spec("c2"))
        await dynamic.stop_child("c1")
        await trio.testing.wait_all_tasks_blocked()
        assert dynamic.child_ids() == ["c2"]
        await dynamic.stop_child("c1")  # already gone: nothing happens
        stop.set()
    assert workers.take_log() == ["start c1", "start c2", "stop c1", "stop c2"]
    assert workers.starts == {"c1": 1, "c2": 1}
    assert dynamic.statistics().restarts == 0


async def test_dynamic_child_failing_to_start_is_not_kept() -> None:
    async def broken(stop_requested: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        raise Boom("no")

    dynamic: DynamicSupervisor[Any] = DynamicSupervisor("sessions")
    async with trio.open_nursery() as nursery:
        stop = await running(nursery, dynamic)
        with pytest.raises(ChildStartError):
            await dynamic.start_child(ChildSpec("broken", broken))
        assert dynamic.child_ids() == []
        stop.set()


async def test_dynamic_intensity_escalates_after_stopping_all(autojump_clock: trio.testing.MockClock) -> None:
    workers = Workers()
    dynamic: DynamicSupervisor[Any] = DynamicSupervisor("sessions", intensity=2, period=5)
    result: list[BaseException] = []

    async def supervise(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await dynamic.run(trio.Event(), task_status=task_status)
        except SupervisorEscalation as error:
            result.append(error)

    async with trio.open_nursery() as nursery:
        await nursery.start(supervise)
        await dynamic.start_child(workers.spec("c1"))
        await dynamic.start_child(workers.spec("c2"))
        await workers.crash("c1")
        await workers.crash("c1")
        assert result == []
        await workers.crash("c1")
    assert [type(error) for error in result] == [SupervisorEscalation]
    assert result[0].child == "c1"  # type: ignore[attr-defined]
    assert workers.take_log() == [
        "start c1",
        "start c2",
        "crash c1",
        "start c1",
        "crash c1",
        "start c1",
        "crash c1",
        "stop c2",
    ]


async def test_escalating_dynamic_supervisor_is_restarted_with_a_fresh_history(
    autojump_clock: trio.testing.MockClock,
) -> None:
    workers = Workers()
    dynamic: DynamicSupervisor[Any] = DynamicSupervisor("sessions", intensity=1, period=5)
    parent = Supervisor("parent", [workers.spec("w"), dynamic.spec()], intensity=3, period=5)
    async with trio.open_nursery() as nursery:
        stop = await running(nursery, parent)
        await dynamic.start_child(workers.spec("c1"))
        await dynamic.start_child(workers.spec("c2"))
        await workers.crash("c1")
        await workers.crash("c1")  # second restart within 5 s: escalates to the parent
        assert parent.statistics().restarts == 1
        assert dynamic.child_ids() == []  # dynamic children are not brought back
        await dynamic.start_child(workers.spec("c3"))
        await workers.crash("c3")  # one crash in the new incarnation: restarted, no escalation
        assert dynamic.child_ids() == ["c3"]
        assert parent.statistics().restarts == 1
        stop.set()
    assert workers.take_log() == [
        "start w",
        "start c1",
        "start c2",
        "crash c1",
        "start c1",
        "crash c1",
        "stop c2",
        "start c3",
        "crash c3",
        "start c3",
        "stop c3",
        "stop w",
    ]


async def test_a_restarted_dynamic_supervisor_runs_on_restart_to_bring_back_its_children(
    autojump_clock: trio.testing.MockClock,
) -> None:
    workers = Workers()
    restarted: list[list[str]] = []

    async def on_restart() -> None:
        # the owner of the children starts again those it still needs, on the new incarnation
        restarted.append(dynamic.child_ids())
        await dynamic.start_child(workers.spec("c2"))

    dynamic: DynamicSupervisor[Any] = DynamicSupervisor("sessions", intensity=1, period=5, on_restart=on_restart)
    parent = Supervisor("parent", [dynamic.spec()], intensity=3, period=5)
    async with trio.open_nursery() as nursery:
        stop = await running(nursery, parent)
        assert restarted == []  # not on the first start
        await dynamic.start_child(workers.spec("c1"))
        await dynamic.start_child(workers.spec("c2"))
        await workers.crash("c1")
        await workers.crash("c1")  # escalates; the parent restarts the dynamic supervisor
        await trio.testing.wait_all_tasks_blocked()  # the parent has restarted it
        assert parent.statistics().restarts == 1
        assert restarted == [[]]
        assert dynamic.child_ids() == ["c2"]
        stop.set()
    assert workers.take_log()[-3:] == ["stop c2", "start c2", "stop c2"]


async def test_dynamic_shutdown_stops_all_children_concurrently(autojump_clock: trio.testing.MockClock) -> None:
    asked: list[tuple[str, float]] = []
    cancelled: list[tuple[str, float]] = []

    def stubborn(child_id: str) -> ChildSpec:
        async def start(stop_requested: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
            task_status.started()
            await stop_requested.wait()
            asked.append((child_id, trio.current_time()))
            try:
                await trio.sleep_forever()
            finally:
                cancelled.append((child_id, trio.current_time()))

        return ChildSpec(child_id, start, shutdown=4)

    dynamic: DynamicSupervisor[Any] = DynamicSupervisor("sessions")
    async with trio.open_nursery() as nursery:
        stop = await running(nursery, dynamic)
        for child_id in ("c1", "c2", "c3"):
            await dynamic.start_child(stubborn(child_id))
        t0 = trio.current_time()
        stop.set()
    # one shutdown period for all, not one each
    assert trio.current_time() - t0 == 4
    assert sorted((c, t - t0) for c, t in asked) == [("c1", 0), ("c2", 0), ("c3", 0)]
    assert sorted((c, t - t0) for c, t in cancelled) == [("c1", 4), ("c2", 4), ("c3", 4)]
    assert dynamic.child_ids() == []


# -- actor_child ---------------------------------------------------------------------------


class Counter(Actor[Any]):
    """Counts `"add"` messages; `"crash"` raises; `("get", reply)` answers the count."""

    incarnations = 0

    def __init__(self, mailbox: Mailbox[Any]) -> None:
        super().__init__(mailbox)
        Counter.incarnations += 1
        self.count = 0

    async def handle(self, message: Any) -> None:
        if message == "add":
            self.count += 1
        elif message == "crash":
            raise Boom("counter")
        else:
            message.reply.set(self.count)


class Get:
    def __init__(self, reply: Reply[int]) -> None:
        self.reply = reply


async def test_actor_child_restarts_on_crash_with_the_same_mailbox() -> None:
    Counter.incarnations = 0
    registry = Registry()
    mailbox: Mailbox[Any] = Mailbox("counter", capacity=16)
    workers = Workers()
    supervisor = Supervisor(
        "sup", [workers.spec("before"), actor_child(Counter, mailbox, registry=registry), workers.spec("after")]
    )
    async with trio.open_nursery() as nursery:
        stop = await running(nursery, supervisor)
        ref = supervisor.child_value("counter")
        assert ref is mailbox.ref
        assert registry.lookup("counter") is ref
        for message in ("add", "add", "crash", "add", "crash", "add", "add"):
            ref.tell_nowait(message)
        assert await ref.ask(Get, timeout=1) == 2  # state is per incarnation
        assert Counter.incarnations == 3
        assert registry.lookup("counter") is ref
        assert supervisor.child_value("counter") is ref
        stats = ref.statistics()
        assert (stats.crashes, stats.restarts, stats.messages_handled) == (2, 2, 8)
        assert supervisor.statistics().restarts == 2
        stop.set()
    # one for one: the neighbours were untouched
    assert workers.take_log() == ["start before", "start after", "stop after", "stop before"]
