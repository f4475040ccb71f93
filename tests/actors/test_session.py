"""Unit tests of `CustomerSession` (actors/session.py) on trio's mock clock.

The session runs for real, with a real `Store` actor committing into `FakeStorage` and the
real timer service; the dispatcher is a mailbox the test reads, and every connection is a
`FakeOutbox` the test reads like a client. Nothing sleeps: the tests wait for every task to
block (`wait_all_tasks_blocked`) or let the mock clock jump to the next deadline.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import pytest
import trio
import trio.testing

from kefu.actors import messages as m
from kefu.actors.center import SESSION_MAILBOX_CAPACITY, CenterSettings, ContactCenter
from kefu.actors.ports import AgentProfile, ConversationRow, SessionHandle
from kefu.actors.runtime import Mailbox
from kefu.actors.session import CLOSED_IDLE_SECONDS, CustomerSession
from kefu.actors.store import STORE_MAILBOX_CAPACITY, Store
from kefu.actors.supervisor import DynamicSupervisor
from kefu.actors.timers import Timers
from kefu.protocol.agent import AddNote, Transfer
from kefu.protocol.common import Resume, SendMessage
from kefu.protocol.conversation import State
from kefu.protocol.customer import CloseConversation
from kefu.protocol.errors import LocalProtocolError
from kefu.protocol.permissions import AGENT, SUPERVISOR, Permission, permissions_of
from tests.actors.fakes import CLOSE_SLOW_CONSUMER, FakeOutbox, FakeStorage, stored_event

ACCOUNT = UUID(int=1)
QUEUE = UUID(int=2)
WRAP_UP_SECONDS = 30.0


@dataclass
class Harness:
    storage: FakeStorage
    center: ContactCenter
    dispatcher: Mailbox[Any]
    nursery: trio.Nursery
    row: ConversationRow
    handle: SessionHandle
    session: CustomerSession | None = None
    stopped: trio.Event = field(default_factory=trio.Event)
    """Set when the session's `run` returned (it stopped by itself)."""
    incarnation: trio.CancelScope = field(default_factory=trio.CancelScope)

    @property
    def conversation_id(self) -> UUID:
        return self.row.conversation_id

    @property
    def running(self) -> CustomerSession:
        assert self.session is not None
        return self.session

    def state(self) -> State:
        """Where the running session's conversation stands now."""
        return self.running.history.state.state

    async def start(self) -> CustomerSession:
        """Start a session of the conversation (rebuilt from what the storage holds)."""
        session = self.session = CustomerSession(self.handle, self.center)
        self.stopped = trio.Event()
        self.incarnation = trio.CancelScope()

        async def run(task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
            with self.incarnation:
                await session.run(trio.Event(), task_status=task_status)
                self.stopped.set()

        await self.nursery.start(run)
        return session

    async def kill(self) -> None:
        """End the running incarnation at once, as a crash does (its mailbox and subscribers stay)."""
        self.incarnation.cancel()
        await trio.testing.wait_all_tasks_blocked()

    def customer(self, capacity: int = 256) -> FakeOutbox:
        return FakeOutbox("customer", self.row.customer_id, capacity=capacity)

    async def tell(self, message: m.SessionMessage) -> None:
        await self.handle.ref.tell(message)
        await trio.testing.wait_all_tasks_blocked()

    async def begin(self, connection: FakeOutbox, client_id: str = "start-1") -> None:
        await self.tell(m.Begin(connection, client_id))

    async def say(self, connection: FakeOutbox, client_id: str, text: str) -> None:
        frame = SendMessage(client_id=client_id, conversation_id=str(self.conversation_id), kind="text", text=text)
        await self.tell(m.CustomerInput(connection, frame))

    def routed(self) -> list[Any]:
        """What the session told the dispatcher since the last call."""
        told = []
        while True:
            try:
                told.append(self.dispatcher.receive_nowait())
            except trio.WouldBlock:
                return told

    def agent(self, name: str = "Ada", role: str = AGENT) -> tuple[AgentProfile, FakeOutbox]:
        """A signed-in user with one open tab. (No Agent actor runs: the tab reads the
        conversation with `resume`, as a workbench does after its `conversations` list.)"""
        profile = AgentProfile(ACCOUNT, uuid4(), name, role, 2, frozenset(), {})
        self.storage.add_agent(profile)
        return profile, FakeOutbox("agent", profile.agent_id)

    def agent_input(self, profile: AgentProfile, tab: FakeOutbox, frame: m.AgentConversationFrame) -> m.AgentInput:
        permissions = permissions_of(profile.role)
        return m.AgentInput(tab, profile.agent_id, profile.display_name, profile.role, permissions, frame)


@asynccontextmanager
async def harness(*, resume_page_size: int = 500) -> AsyncIterator[Harness]:
    storage = FakeStorage()
    store_mailbox: Mailbox[Any] = Mailbox("store", STORE_MAILBOX_CAPACITY)
    store = Store(store_mailbox, storage)
    timers = Timers()
    settings = CenterSettings(wrap_up_seconds=WRAP_UP_SECONDS, resume_page_size=resume_page_size)
    sessions: DynamicSupervisor[Any] = DynamicSupervisor("sessions")
    center = ContactCenter(
        store=store_mailbox.ref,
        storage=storage,
        timers=timers,
        sessions=sessions,
        agents=DynamicSupervisor("agents"),
        settings=settings,
    )
    dispatcher: Mailbox[Any] = Mailbox("dispatcher", 1000)
    center.dispatcher = dispatcher.ref
    center.session_factory = lambda handle: CustomerSession(handle, center)
    row = storage.add_conversation(ACCOUNT, queue_id=QUEUE)
    mailbox: Mailbox[m.SessionMessage] = Mailbox(f"session:{row.conversation_id}", SESSION_MAILBOX_CAPACITY)
    handle = SessionHandle(ACCOUNT, row.conversation_id, mailbox)
    center.sessions[row.conversation_id] = handle
    async with trio.open_nursery() as nursery:
        await nursery.start(store.run, trio.Event())
        await nursery.start(timers.run, trio.Event())
        await nursery.start(sessions.run, trio.Event())
        yield Harness(storage, center, dispatcher, nursery, row, handle)
        nursery.cancel_scope.cancel()


def _ack(frame: dict[str, Any]) -> tuple[str, int] | None:
    """(client_id, seq) of an `ack` frame; None for any other frame."""
    return (frame["client_id"], frame["seq"]) if frame["type"] == "ack" else None


def _kinds(harness: Harness) -> list[str]:
    return [event.kind for event in harness.storage.events(harness.conversation_id)]


async def _assigned(h: Harness) -> tuple[AgentProfile, FakeOutbox, FakeOutbox]:
    """A started conversation held by an agent whose tab reads it live: (agent, its tab, customer)."""
    customer = h.customer()
    await h.start()
    await h.begin(customer)
    profile, tab = h.agent()
    await h.tell(m.Assign(profile.agent_id, profile.display_name))
    assert h.state() is State.ASSIGNED
    await h.tell(h.agent_input(profile, tab, Resume(str(h.conversation_id), 0)))
    assert tab.frames()[-1]["type"] == "resumed"
    h.routed()
    return profile, tab, customer


# -- durable before acknowledged, in order ------------------------------------------------------


async def test_a_message_is_acked_only_after_its_commit_then_reaches_subscribers_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness() as h:
        customer = h.customer()
        await h.start()
        await h.begin(customer)
        second_tab = h.customer()
        await h.tell(m.CustomerInput(second_tab, Resume(str(h.conversation_id), 0)))
        customer.read()
        second_tab.read()

        h.storage.hold_commits()
        for n in range(1, 6):
            await h.say(customer, f"c-{n}", f"message {n}")
        assert h.storage.commits_waiting == 1, "the first append waits for its COMMIT"
        assert customer.read() == [] and second_tab.read() == [], "nothing before the COMMIT"
        assert _kinds(h) == ["queued"]

        h.storage.release_commits()
        await trio.testing.wait_all_tasks_blocked()
        assert _kinds(h) == ["queued"] + ["message"] * 5
        frames = customer.read()
        acks = [frame for frame in frames if frame["type"] == "ack"]
        assert [(a["client_id"], a["seq"]) for a in acks] == [(f"c-{n}", n + 1) for n in range(1, 6)]
        # each ack comes after the event it acknowledges reached the subscribers
        assert [frame["type"] for frame in frames] == ["event", "ack"] * 5
        seen = second_tab.read()
        assert [frame["seq"] for frame in seen] == [2, 3, 4, 5, 6]
        assert [frame["text"] for frame in seen] == [f"message {n}" for n in range(1, 6)]


async def test_storage_unavailable_is_answered_retryable_and_nothing_is_acked(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness() as h:
        customer = h.customer()
        await h.start()
        await h.begin(customer)
        customer.read()
        h.storage.unavailable = True
        await h.say(customer, "c-1", "hello")
        (error,) = customer.read()
        assert (error["type"], error["code"], error["ref"], error["retryable"]) == ("error", "unavailable", "c-1", True)
        h.storage.unavailable = False
        await h.say(customer, "c-1", "hello")
        assert [frame["type"] for frame in customer.read()] == ["event", "ack"]
        assert _kinds(h) == ["queued", "message"]


# -- exactly once: client ids ---------------------------------------------------------------------


async def test_a_retried_client_id_gets_the_original_ack_and_stores_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness() as h:
        customer = h.customer()
        await h.start()
        await h.begin(customer)
        await h.say(customer, "c-1", "hello")
        await h.say(customer, "c-2", "again")
        customer.read()
        await h.say(customer, "c-1", "hello")
        assert [_ack(frame) for frame in customer.read()] == [("c-1", 2)]
        assert _kinds(h) == ["queued", "message", "message"]
        # the start, too: a retried `conversation.start` is acked with the seq of the stored start
        await h.begin(customer, "start-1")
        assert customer.frames("ack")[-1]["seq"] == 1


async def test_a_client_id_reused_for_another_message_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    async with harness() as h:
        customer = h.customer()
        await h.start()
        await h.begin(customer)
        await h.say(customer, "c-1", "hello")
        customer.read()
        await h.say(customer, "c-1", "something else")
        (error,) = customer.read()
        assert (error["code"], error["ref"]) == ("client_id_reused", "c-1")
        assert _kinds(h) == ["queued", "message"]


async def test_client_ids_survive_a_rebuild_from_the_log(autojump_clock: trio.testing.MockClock) -> None:
    async with harness() as h:
        customer = h.customer()
        await h.start()
        await h.begin(customer)
        await h.say(customer, "c-1", "hello")
        await h.kill()
        rebuilt = await h.start()
        customer.read()
        await h.say(customer, "c-1", "hello")
        assert [_ack(frame) for frame in customer.read()] == [("c-1", 2)]
        assert rebuilt.history.last_seq == 2 and rebuilt.history.state.state is State.QUEUED


async def test_a_crashed_session_is_rebuilt_from_the_log_and_keeps_its_subscribers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness() as h:
        # under its supervisor this time, as on a node
        del h.center.sessions[h.conversation_id]
        h.handle = await h.center.ensure_session(ACCOUNT, h.conversation_id)
        customer = h.customer()
        await h.begin(customer)
        await h.say(customer, "c-1", "hello")
        await h.tell(m.InjectCrash())
        assert (h.handle.mailbox.crashes, h.handle.mailbox.starts) == (1, 2), "crashed once, restarted"
        customer.read()
        # the restarted incarnation knows the log (client ids, seq) and the socket is still attached
        await h.say(customer, "c-1", "hello")
        await h.say(customer, "c-2", "still there?")
        frames = customer.read()
        assert [_ack(frame) for frame in frames if frame["type"] == "ack"] == [("c-1", 2), ("c-2", 3)]
        assert [frame["seq"] for frame in frames if frame["type"] == "event"] == [3]
        assert _kinds(h) == ["queued", "message", "message"]


# -- resume -----------------------------------------------------------------------------------------


async def test_resume_replays_from_the_store_in_order_then_joins_the_live_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness(resume_page_size=3) as h:
        customer = h.customer()
        await h.start()
        await h.begin(customer)
        for n in range(1, 9):
            await h.say(customer, f"c-{n}", f"message {n}")  # seqs 2..9
        back = h.customer(capacity=64)
        await h.tell(m.CustomerInput(back, Resume(str(h.conversation_id), 4)))
        # pages of three, the next ones through the timer service: let the clock run
        await trio.sleep(1)
        frames = back.read()
        assert [frame["seq"] for frame in frames if frame["type"] == "event"] == [5, 6, 7, 8, 9]
        assert (frames[-1]["type"], frames[-1]["from_seq"], frames[-1]["to_seq"]) == ("resumed", 5, 9)
        await h.say(customer, "c-9", "live")
        assert [frame["seq"] for frame in back.read()] == [10], "live after the replay, once"


async def test_a_replay_waits_for_room_in_the_connections_buffer(autojump_clock: trio.testing.MockClock) -> None:
    async with harness() as h:
        customer = h.customer()
        await h.start()
        await h.begin(customer)
        for n in range(1, 31):
            await h.say(customer, f"c-{n}", f"message {n}")
        small = h.customer(capacity=20)
        await h.tell(m.CustomerInput(small, Resume(str(h.conversation_id), 0)))
        seqs: list[int] = []
        for _ in range(20):
            await trio.sleep(0.1)
            seqs += [frame["seq"] for frame in small.read() if frame["type"] == "event"]
        assert not small.closed, "a replay never overfills the buffer"
        assert seqs == list(range(1, 32))


# -- the state machine drives the fold --------------------------------------------------------------


IMPOSSIBLE_HISTORIES = {
    "wrapped up while waiting": [("queued", {"queue_id": str(QUEUE)}), ("wrapped_up", {"reason": "timeout"})],
    "assigned after the close": [
        ("queued", {"queue_id": str(QUEUE)}),
        ("closed", {"reason": "customer_left"}),
        ("assigned", {"agent_id": str(UUID(int=9))}),
    ],
    "an agent closes what it does not hold": [
        ("queued", {"queue_id": str(QUEUE)}),
        ("closed", {"reason": "agent_closed"}),
    ],
    "transferred while waiting": [
        ("queued", {"queue_id": str(QUEUE)}),
        ("transferred", {"to_agent_id": str(UUID(int=9))}),
    ],
}


@pytest.mark.parametrize("history", IMPOSSIBLE_HISTORIES.values(), ids=IMPOSSIBLE_HISTORIES.keys())
async def test_an_impossible_history_raises_local_protocol_error_on_rebuild(
    autojump_clock: trio.testing.MockClock, history: list[tuple[str, dict[str, Any]]]
) -> None:
    async with harness() as h:
        for seq, (kind, body) in enumerate(history, start=1):
            h.storage.insert(h.conversation_id, stored_event(seq, kind, body=body))
        with pytest.raises(LocalProtocolError):
            await h.start()


async def test_a_whole_life_rebuilds_to_the_same_state(autojump_clock: trio.testing.MockClock) -> None:
    first, second = str(UUID(int=7)), str(UUID(int=8))
    history = [
        ("queued", {"queue_id": str(QUEUE)}),
        ("assigned", {"agent_id": first}),
        ("transferred", {"from_agent_id": first, "to_agent_id": second}),
        ("note", {"text": "transfer declined", "transfer_outcome": "declined"}),
        ("transferred", {"from_agent_id": first, "to_department_id": str(UUID(int=3))}),
        ("queued", {"queue_id": str(UUID(int=4))}),
        ("assigned", {"agent_id": second}),
        ("closed", {"reason": "customer_left"}),
    ]
    async with harness() as h:
        for seq, (kind, body) in enumerate(history, start=1):
            h.storage.insert(h.conversation_id, stored_event(seq, kind, body=body))
        session = await h.start()
        assert session.history.state.state is State.WRAP_UP
        assert session.history.agent_id == UUID(second) and session.history.assignees == {UUID(first), UUID(second)}
        assert session.history.queue_id == UUID(int=4) and session.history.closed_seq == 8
        # and the row, an index of the log, was written again
        assert h.storage.recorded_states[-1].status == "wrap_up"


async def test_an_event_the_table_refuses_is_never_stored(autojump_clock: trio.testing.MockClock) -> None:
    async with harness() as h:
        customer = h.customer()
        session = await h.start()
        await h.begin(customer)
        with pytest.raises(LocalProtocolError):
            await session._append("wrapped_up", {"reason": "timeout"}, sender_role="system", sender_id=None)
        assert _kinds(h) == ["queued"] and session.history.state.state is State.QUEUED


# -- timers: idle stop and wrap-up ------------------------------------------------------------------


async def test_a_closed_conversations_session_stops_when_idle(autojump_clock: trio.testing.MockClock) -> None:
    async with harness() as h:
        customer = h.customer()
        await h.start()
        await h.begin(customer)
        close = CloseConversation(client_id="bye", conversation_id=str(h.conversation_id))
        await h.tell(m.CustomerInput(customer, close))
        assert h.state() is State.CLOSED
        assert [type(told) for told in h.routed()] == [m.Enqueue, m.Withdraw]
        closed_at = trio.current_time()
        await trio.sleep(CLOSED_IDLE_SECONDS - 1)
        assert not h.stopped.is_set(), "late resumes are still answered"
        await h.stopped.wait()
        assert trio.current_time() - closed_at == pytest.approx(CLOSED_IDLE_SECONDS)
        assert h.conversation_id not in h.center.sessions


async def test_wrap_up_ends_by_itself_after_its_time(autojump_clock: trio.testing.MockClock) -> None:
    async with harness() as h:
        profile, _tab, customer = await _assigned(h)
        close = CloseConversation(client_id="bye", conversation_id=str(h.conversation_id))
        await h.tell(m.CustomerInput(customer, close))
        assert h.state() is State.WRAP_UP
        await trio.sleep(WRAP_UP_SECONDS - 1)
        assert h.state() is State.WRAP_UP
        await trio.sleep(2)
        assert h.state() is State.CLOSED
        wrapped = h.storage.events(h.conversation_id)[-1]
        assert (wrapped.kind, wrapped.body, wrapped.sender_id) == (
            "wrapped_up",
            {"reason": "timeout"},
            str(profile.agent_id),
        )
        assert m.Released(ACCOUNT, profile.agent_id, h.conversation_id) in h.routed()


async def test_the_agent_ends_wrap_up_with_a_code(autojump_clock: trio.testing.MockClock) -> None:
    async with harness() as h:
        profile, tab, customer = await _assigned(h)
        await h.tell(
            m.CustomerInput(customer, CloseConversation(client_id="bye", conversation_id=str(h.conversation_id)))
        )
        tab.read()
        done = CloseConversation(client_id="done", conversation_id=str(h.conversation_id), wrap_up_code="sale")
        await h.tell(h.agent_input(profile, tab, done))
        assert h.state() is State.CLOSED
        assert _kinds(h)[-2:] == ["closed", "wrapped_up"]
        assert tab.frames("ack")[-1]["client_id"] == "done"
        assert customer.frames("event")[-1]["kind"] == "closed", "wrap-up is internal"
        # no timer ends it a second time
        await trio.sleep(WRAP_UP_SECONDS * 2)
        assert _kinds(h).count("wrapped_up") == 1


# -- transfers ------------------------------------------------------------------------------------------


async def test_a_transfer_to_a_department_queues_it_again_and_detaches_the_agent(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness() as h:
        profile, tab, customer = await _assigned(h)
        department, sales = UUID(int=30), UUID(int=31)
        h.storage.department_queues[(ACCOUNT, department)] = sales
        transfer = Transfer(client_id="t-1", conversation_id=str(h.conversation_id), to_department_id=str(department))
        await h.tell(h.agent_input(profile, tab, transfer))
        assert tab.frames("ack")[-1]["client_id"] == "t-1"
        assert _kinds(h)[-2:] == ["transferred", "queued"]
        assert h.state() is State.QUEUED and h.running.history.queue_id == sales
        routed = h.routed()
        assert m.Released(ACCOUNT, profile.agent_id, h.conversation_id) in routed
        (enqueue,) = [told for told in routed if isinstance(told, m.Enqueue)]
        assert enqueue.queue_id == sales
        # the agent who let it go hears no more of it; the customer does
        seen = len(tab.sent)
        await h.say(customer, "c-1", "hello?")
        assert len(tab.sent) == seen and tab not in h.handle.subscribers
        assert customer.frames("event")[-1]["text"] == "hello?"


async def test_a_lapsed_transfer_to_an_agent_leaves_the_conversation_with_its_holder(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with harness() as h:
        profile, tab, customer = await _assigned(h)
        colleague, colleague_tab = h.agent("Bo")
        transfer = Transfer(
            client_id="t-1", conversation_id=str(h.conversation_id), to_agent_id=str(colleague.agent_id)
        )
        await h.tell(h.agent_input(profile, tab, transfer))
        assert h.state() is State.TRANSFERRING
        (asked,) = h.routed()
        assert isinstance(asked, m.TransferToAgent) and asked.to_agent_id == colleague.agent_id
        # the agent it is offered to may read it meanwhile
        await h.tell(h.agent_input(colleague, colleague_tab, Resume(str(h.conversation_id), 0)))
        assert colleague_tab.frames()[-1]["type"] == "resumed"
        await h.tell(m.TransferLapsed(colleague.agent_id, "declined"))
        assert h.state() is State.ASSIGNED and h.running.history.agent_id == profile.agent_id
        note = h.storage.events(h.conversation_id)[-1]
        assert (note.kind, note.body["transfer_outcome"]) == ("note", "declined")
        assert all(frame["kind"] != "note" for frame in customer.frames("event")), "the outcome is internal"


# -- permissions ---------------------------------------------------------------------------------------


async def test_reading_another_agents_conversation_takes_read_all(autojump_clock: trio.testing.MockClock) -> None:
    async with harness() as h:
        await _assigned(h)
        resume = Resume(str(h.conversation_id), 0)
        stranger, stranger_tab = h.agent("Bo", role=AGENT)
        await h.tell(h.agent_input(stranger, stranger_tab, resume))
        (error,) = stranger_tab.read()
        assert error["code"] == "forbidden"
        assert [(d.action, d.actor_id) for d in h.storage.denials] == [("resume", stranger.agent_id)]

        supervisor, supervisor_tab = h.agent("Cy", role=SUPERVISOR)
        assert Permission.CONVERSATIONS_READ_ALL in permissions_of(SUPERVISOR)
        await h.tell(h.agent_input(supervisor, supervisor_tab, resume))
        assert supervisor_tab.frames()[-1]["type"] == "resumed"
        assert len(h.storage.denials) == 1


async def test_only_the_holder_writes(autojump_clock: trio.testing.MockClock) -> None:
    async with harness() as h:
        profile, tab, customer = await _assigned(h)
        note = AddNote(client_id="n-1", conversation_id=str(h.conversation_id), text="VIP")
        await h.tell(h.agent_input(profile, tab, note))
        assert tab.frames("ack")[-1]["client_id"] == "n-1"
        assert all(frame["kind"] != "note" for frame in customer.frames("event")), "notes are internal"
        other, other_tab = h.agent("Bo")
        await h.tell(h.agent_input(other, other_tab, note))
        assert other_tab.frames("error")[-1]["code"] == "forbidden"


# -- bounded delivery ------------------------------------------------------------------------------------


async def test_a_slow_subscriber_is_cut_off_and_nobody_else_notices(autojump_clock: trio.testing.MockClock) -> None:
    async with harness() as h:
        profile, tab, customer = await _assigned(h)
        slow = h.customer(capacity=20)
        await h.tell(m.CustomerInput(slow, Resume(str(h.conversation_id), 2)))
        assert slow.frames()[-1]["type"] == "resumed" and slow.buffered == 1
        for n in range(1, 31):
            await h.say(customer, f"c-{n}", f"message {n}")
            customer.read()
            tab.read()
            # the event its full buffer refused cut it off, and the session let go of it at once
            assert slow.closed == (n >= 20) and (slow in h.handle.subscribers) == (n < 20), n
        assert slow.close_code == CLOSE_SLOW_CONSUMER
        assert len(slow.frames("event")) == 19, "its buffer filled, then it was cut off"
        # the customer's other tab and the agent got everything, each once, in order
        assert customer.seqs()[-30:] == tab.seqs()[-30:] == list(range(3, 33))
        assert len(customer.frames("ack")) == 31
        assert profile.agent_id == h.running.history.agent_id
