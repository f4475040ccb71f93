"""Tests for `kefu.actors.runtime`: mailboxes, references, ask/reply, the actor loop."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing

from kefu.actors.runtime import (
    Actor,
    ActorCrashed,
    ActorRef,
    ActorStatistics,
    ActorStopped,
    AskTimeout,
    Mailbox,
    MailboxFull,
    Registry,
    Reply,
)
from kefu.actors.supervisor import Restart, Supervisor, actor_child

pytestmark = pytest.mark.trio


# -- a small actor to drive ----------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    text: str


@dataclass(frozen=True)
class Double:
    value: int
    reply: Reply[int]


@dataclass(frozen=True)
class Fail:
    reply: Reply[int] | None = None


@dataclass(frozen=True)
class Slow:
    seconds: float
    reply: Reply[str] | None = None


@dataclass
class Journal:
    """What every incarnation of a `Clerk` saw, shared across its restarts."""

    entries: list[tuple[int, str]] = field(default_factory=list)
    incarnations: int = 0


class Clerk(Actor[Any]):
    def __init__(self, mailbox: Mailbox[Any], journal: Journal) -> None:
        super().__init__(mailbox)
        journal.incarnations += 1
        self.incarnation = journal.incarnations
        self.journal = journal

    async def started(self) -> None:
        self.journal.entries.append((self.incarnation, "started"))

    async def stopping(self) -> None:
        self.journal.entries.append((self.incarnation, "stopping"))

    async def handle(self, message: Any) -> None:
        if isinstance(message, Note):
            self.journal.entries.append((self.incarnation, message.text))
        elif isinstance(message, Double):
            message.reply.set(message.value * 2)
        elif isinstance(message, Fail):
            self.journal.entries.append((self.incarnation, "fail"))
            raise ValueError("handler failed")
        elif isinstance(message, Slow):
            await trio.sleep(message.seconds)
            self.journal.entries.append((self.incarnation, f"slept {message.seconds}"))
            if message.reply is not None:
                message.reply.set("done")


async def run_clerk(
    actor: Actor[Any], stop: trio.Event, errors: list[BaseException], task_status: Any = trio.TASK_STATUS_IGNORED
) -> None:
    """Run one incarnation bare (no supervisor), keeping the exception it ends with."""
    try:
        await actor.run(stop, task_status=task_status)
    except Exception as error:
        errors.append(error)


# -- Mailbox and ActorRef: capacity and back-pressure --------------------------------------


async def test_mailbox_must_be_bounded() -> None:
    with pytest.raises(ValueError):
        Mailbox("unbounded", math.inf)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Mailbox("empty", 0)
    assert Mailbox("one", 1).capacity == 1


async def test_tell_nowait_refuses_when_full_and_counts_refusals() -> None:
    mailbox: Mailbox[str] = Mailbox("desk", capacity=2)
    ref = mailbox.ref
    ref.tell_nowait("a")
    ref.tell_nowait("b")
    with pytest.raises(MailboxFull) as refused:
        ref.tell_nowait("c")
    assert isinstance(refused.value, trio.WouldBlock)
    with pytest.raises(MailboxFull):
        ref.tell_nowait("d")
    stats = ref.statistics()
    assert (stats.mailbox_size, stats.mailbox_peak, stats.messages_refused) == (2, 2, 2)
    # the refused messages were not enqueued: only a and b come out
    assert [mailbox.receive_nowait(), mailbox.receive_nowait()] == ["a", "b"]
    with pytest.raises(trio.WouldBlock):
        mailbox.receive_nowait()
    assert ref.statistics().mailbox_size == 0


async def test_tell_waits_for_room() -> None:
    mailbox: Mailbox[str] = Mailbox("desk", capacity=1)
    ref = mailbox.ref
    await ref.tell("a")
    delivered = trio.Event()

    async def sender() -> None:
        await ref.tell("b")
        delivered.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender)
        await trio.testing.wait_all_tasks_blocked()
        assert not delivered.is_set()
        # a waiting sender's message is not in the mailbox yet: the bound holds
        stats = ref.statistics()
        assert (stats.mailbox_size, stats.mailbox_peak) == (1, 1)
        assert mailbox.receive_nowait() == "a"
        await trio.testing.wait_all_tasks_blocked()
        assert delivered.is_set()
    assert mailbox.receive_nowait() == "b"
    stats = ref.statistics()
    assert (stats.mailbox_size, stats.mailbox_peak, stats.messages_refused) == (0, 1, 0)


async def test_tell_is_cancel_safe(autojump_clock: trio.testing.MockClock) -> None:
    mailbox: Mailbox[str] = Mailbox("desk", capacity=1)
    ref = mailbox.ref
    ref.tell_nowait("a")
    with trio.move_on_after(1) as waited:
        await ref.tell("b")  # blocks: the mailbox is full
    assert waited.cancelled_caught
    # a tell cancelled before it ran enqueues nothing either, even with room
    assert mailbox.receive_nowait() == "a"
    with trio.CancelScope() as scope:
        scope.cancel()
        await ref.tell("c")
    assert scope.cancelled_caught
    with pytest.raises(trio.WouldBlock):
        mailbox.receive_nowait()
    assert ref.statistics().mailbox_size == 0


async def test_tell_to_a_closed_mailbox_raises_actor_stopped() -> None:
    mailbox: Mailbox[str] = Mailbox("gone", capacity=1)
    mailbox.close()
    with pytest.raises(ActorStopped):
        mailbox.ref.tell_nowait("a")
    with pytest.raises(ActorStopped):
        await mailbox.ref.tell("a")
    assert mailbox.statistics().mailbox_size == 0


async def test_waiting_senders_go_in_in_arrival_order_and_close_refuses_the_rest() -> None:
    mailbox: Mailbox[str] = Mailbox("desk", capacity=1)
    ref = mailbox.ref
    ref.tell_nowait("a")
    stopped: list[str] = []

    async def sender(message: str) -> None:
        try:
            await ref.tell(message)
        except ActorStopped:
            stopped.append(message)

    async with trio.open_nursery() as nursery:
        for message in ("b", "c", "d"):
            nursery.start_soon(sender, message)
            await trio.testing.wait_all_tasks_blocked()
        assert ref.statistics().mailbox_size == 1
        assert mailbox.receive_nowait() == "a"
        assert mailbox.receive_nowait() == "b"
        assert ref.statistics().mailbox_size == 1  # c went in as b came out; d still waits
        mailbox.close()
    assert stopped == ["d"]
    assert mailbox.receive_nowait() == "c"  # what went in before the close is still there
    with pytest.raises(trio.EndOfChannel):
        mailbox.receive_nowait()
    stats = ref.statistics()
    assert (stats.mailbox_size, stats.mailbox_peak) == (0, 1)


async def test_a_message_sent_to_a_waiting_actor_is_handed_over_once() -> None:
    mailbox: Mailbox[str] = Mailbox("desk", capacity=1)
    received: list[str] = []

    async def receiver() -> None:
        received.append(await mailbox.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        mailbox.ref.tell_nowait("a")
        mailbox.ref.tell_nowait("b")  # the box is empty again: a went straight to the receiver
    assert received == ["a"]
    assert mailbox.receive_nowait() == "b"
    assert mailbox.statistics().mailbox_size == 0


# -- ask -----------------------------------------------------------------------------------


async def test_ask_returns_the_reply(autojump_clock: trio.testing.MockClock) -> None:
    mailbox: Mailbox[Any] = Mailbox("desk", capacity=4)
    journal = Journal()
    stop, errors = trio.Event(), []
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(run_clerk, Clerk(mailbox, journal), stop, errors)
        assert ref is mailbox.ref
        t0 = trio.current_time()
        assert await ref.ask(lambda reply: Double(21, reply), timeout=1) == 42
        assert await ref.ask(lambda reply: Slow(3, reply), timeout=5) == "done"
        assert trio.current_time() - t0 == 3
        stop.set()
    assert errors == []
    assert journal.entries == [(1, "started"), (1, "slept 3"), (1, "stopping")]


async def test_ask_times_out_at_its_deadline(autojump_clock: trio.testing.MockClock) -> None:
    mailbox: Mailbox[Any] = Mailbox("desk", capacity=4)
    journal = Journal()
    stop, errors = trio.Event(), []
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(run_clerk, Clerk(mailbox, journal), stop, errors)
        t0 = trio.current_time()
        with pytest.raises(AskTimeout):
            await ref.ask(lambda reply: Slow(10, reply), timeout=2.5)
        assert trio.current_time() - t0 == 2.5
        stop.set()
    assert errors == []


async def test_ask_time_waiting_for_room_counts(autojump_clock: trio.testing.MockClock) -> None:
    mailbox: Mailbox[Any] = Mailbox("desk", capacity=1)
    mailbox.ref.tell_nowait(Note("first"))  # nobody handles it: the mailbox stays full
    t0 = trio.current_time()
    with pytest.raises(AskTimeout):
        await mailbox.ref.ask(lambda reply: Double(1, reply), timeout=4)
    assert trio.current_time() - t0 == 4
    assert mailbox.receive_nowait() == Note("first")
    with pytest.raises(trio.WouldBlock):
        mailbox.receive_nowait()  # the ask's message never got in


async def test_ask_whose_handler_raises_gets_actor_crashed_at_once(autojump_clock: trio.testing.MockClock) -> None:
    mailbox: Mailbox[Any] = Mailbox("desk", capacity=4)
    journal = Journal()
    stop, errors = trio.Event(), []
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(run_clerk, Clerk(mailbox, journal), stop, errors)
        t0 = trio.current_time()
        with pytest.raises(ActorCrashed):
            await ref.ask(lambda reply: Fail(reply), timeout=30)
        assert trio.current_time() == t0  # answered promptly, not at the deadline
    assert [type(error) for error in errors] == [ValueError]
    # a crash is not a graceful stop: `stopping` did not run
    assert journal.entries == [(1, "started"), (1, "fail")]
    stats = ref.statistics()
    assert (stats.messages_handled, stats.mailbox_size) == (1, 0)


async def test_reply_is_one_shot() -> None:
    reply: Reply[int] = Reply()
    assert not reply.done
    reply.set(1)
    reply.set(2)
    reply.fail(ValueError())
    assert reply.done
    assert await reply.wait() == 1
    failed: Reply[int] = Reply()
    failed.fail(KeyError("x"))
    failed.set(3)
    with pytest.raises(KeyError):
        await failed.wait()


# -- the actor loop ------------------------------------------------------------------------


async def test_graceful_stop_finishes_the_current_message_then_calls_stopping(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mailbox: Mailbox[Any] = Mailbox("desk", capacity=4)
    journal = Journal()
    stop, errors = trio.Event(), []
    async with trio.open_nursery() as nursery:
        await nursery.start(run_clerk, Clerk(mailbox, journal), stop, errors)
        mailbox.ref.tell_nowait(Slow(2))
        mailbox.ref.tell_nowait(Note("left for the next incarnation"))
        await trio.sleep(1)
        stop.set()
    assert errors == []
    assert journal.entries == [(1, "started"), (1, "slept 2"), (1, "stopping")]
    stats = mailbox.statistics()
    assert (stats.messages_handled, stats.mailbox_size) == (1, 1)


async def test_a_cancelled_actor_loses_no_queued_message() -> None:
    """Only a message being handled is consumed; a cancel between messages takes none."""
    mailbox: Mailbox[Any] = Mailbox("desk", capacity=4)
    journal = Journal()
    scope = trio.CancelScope()

    class Canceller(Clerk):
        async def handle(self, message: Any) -> None:
            await super().handle(message)
            if message == Note("cancel me"):
                scope.cancel()  # no checkpoint before the handler returns

    for text in ("cancel me", "second", "third"):
        mailbox.ref.tell_nowait(Note(text))
    with scope:
        await Canceller(mailbox, journal).run(trio.Event())
    assert scope.cancelled_caught
    assert journal.entries == [(1, "started"), (1, "cancel me")]
    assert mailbox.statistics().mailbox_size == 2
    assert [mailbox.receive_nowait(), mailbox.receive_nowait()] == [Note("second"), Note("third")]


async def test_statistics_are_exact(autojump_clock: trio.testing.MockClock) -> None:
    mailbox: Mailbox[Any] = Mailbox("desk", capacity=3)
    ref = mailbox.ref
    assert ref.statistics() == ActorStatistics("desk", 0, 3, 0, 0, 0, 0, 0)
    ref.tell_nowait(Note("1"))
    ref.tell_nowait(Note("2"))
    ref.tell_nowait(Note("3"))
    with pytest.raises(MailboxFull):
        ref.tell_nowait(Note("4"))
    assert ref.statistics() == ActorStatistics("desk", 3, 3, 3, 0, 1, 0, 0)
    journal = Journal()
    stop, errors = trio.Event(), []
    async with trio.open_nursery() as nursery:
        await nursery.start(run_clerk, Clerk(mailbox, journal), stop, errors)
        await trio.testing.wait_all_tasks_blocked()
        assert ref.statistics() == ActorStatistics("desk", 0, 3, 3, 3, 1, 0, 0)
        await ref.tell(Note("5"))
        await trio.testing.wait_all_tasks_blocked()
        assert ref.statistics() == ActorStatistics("desk", 0, 3, 3, 4, 1, 0, 0)
        stop.set()
    assert [entry for _, entry in journal.entries] == ["started", "1", "2", "3", "5", "stopping"]


# -- across restarts -----------------------------------------------------------------------


async def test_mailbox_survives_a_restart(autojump_clock: trio.testing.MockClock) -> None:
    mailbox: Mailbox[Any] = Mailbox("desk", capacity=8)
    ref = mailbox.ref
    journal = Journal()
    # queued before the actor starts: the second message crashes the first incarnation
    for message in (Note("a"), Fail(), Note("b"), Note("c")):
        ref.tell_nowait(message)
    supervisor = Supervisor("sup", [actor_child(lambda mb: Clerk(mb, journal), mailbox)])
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run, stop)
        first_ref = supervisor.child_value("desk")
        assert first_ref is ref
        await trio.testing.wait_all_tasks_blocked()
        assert supervisor.child_value("desk") is ref
        assert await ref.ask(lambda reply: Double(5, reply), timeout=1) == 10
        stop.set()
    assert journal.entries == [
        (1, "started"),
        (1, "a"),
        (1, "fail"),
        (2, "started"),
        (2, "b"),
        (2, "c"),
        (2, "stopping"),
    ]
    assert ref.statistics() == ActorStatistics("desk", 0, 8, 4, 5, 0, 1, 1)


async def test_ask_to_a_crashing_supervised_actor_then_asks_the_next_incarnation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mailbox: Mailbox[Any] = Mailbox("desk", capacity=8)
    journal = Journal()
    supervisor = Supervisor(
        "sup", [actor_child(lambda mb: Clerk(mb, journal), mailbox, restart=Restart.TRANSIENT)], intensity=5
    )
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run, stop)
        for _ in range(3):
            t0 = trio.current_time()
            with pytest.raises(ActorCrashed):
                await mailbox.ref.ask(lambda reply: Fail(reply), timeout=10)
            assert trio.current_time() == t0
            assert await mailbox.ref.ask(lambda reply: Double(2, reply), timeout=10) == 4
        stop.set()
    stats = mailbox.statistics()
    assert (stats.crashes, stats.restarts, stats.messages_handled) == (3, 3, 6)
    assert journal.incarnations == 4


# -- Registry ------------------------------------------------------------------------------


async def test_registry_register_lookup_and_duplicates() -> None:
    registry = Registry()
    desk: Mailbox[Any] = Mailbox("desk", capacity=1)
    queue: Mailbox[Any] = Mailbox("queue", capacity=1)
    registry.register(queue.ref)
    registry.register(desk.ref)
    registry.register(desk.ref)  # the same ref again (a restart) is fine
    assert registry.lookup("desk") is desk.ref
    assert registry.whereis("queue") is queue.ref
    assert registry.whereis("nobody") is None
    with pytest.raises(KeyError):
        registry.lookup("nobody")
    impostor: Mailbox[Any] = Mailbox("desk", capacity=1)
    with pytest.raises(KeyError):
        registry.register(impostor.ref)
    assert registry.lookup("desk") is desk.ref
    assert registry.names() == ["desk", "queue"]
    assert [stats.name for stats in registry.statistics()] == ["desk", "queue"]
    registry.unregister("desk")
    registry.unregister("desk")  # idempotent
    registry.register(impostor.ref)
    assert registry.lookup("desk") is impostor.ref
    assert isinstance(registry.lookup("desk"), ActorRef)
