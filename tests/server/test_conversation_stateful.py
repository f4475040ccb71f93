"""A stateful property test against live CustomerSession actors: hypothesis drives one
conversation per run through a real node (customer and two agents on websockets, PostgreSQL),
in random order of messages, notes, offers, closes and wrap-ups, and checks each answer against
a model of the conversation, then the stored event log.

What it proves: a frame is acknowledged exactly when the model says it is legal and refused with
``illegal_state`` or ``forbidden`` otherwise (no message after the close, only the holder writes
as the agent); the stored events are numbered 1..n without a gap; every acknowledged message is
stored once and no message is stored after the conversation closed.

The state machine runs in a worker thread (hypothesis is synchronous) and reaches the trio run
with ``trio.from_thread.run``. Bounded: 12 runs of at most 12 steps, each wait at most 10 s.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule

from kefu.protocol.agent import AcceptOffer, AddNote, SetStatus
from kefu.protocol.common import SendMessage
from kefu.protocol.customer import CloseConversation, StartConversation
from tests.server.live import Center, Client, connect, live_center, poll

WAITING, ASSIGNED, WRAP_UP, CLOSED = "waiting", "assigned", "wrap_up", "closed"


def run(fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
    return trio.from_thread.run(fn, *args)


async def answer(client: Client, client_id: str) -> Any:
    """The ack or the error that answers the frame sent with ``client_id``."""

    def answers() -> list[Any]:
        acks = client.of("ack", client_id=client_id)
        return acks or client.of("error", ref=client_id)

    await client.wait_until(lambda: bool(answers()), f"the answer to {client_id}")
    return answers()[0]


class LiveConversation(RuleBasedStateMachine):
    center: Center
    nursery: trio.Nursery
    stack: AsyncExitStack
    agents: dict[str, Client]
    conversations: list[tuple[str, set[str]]]

    def __init__(self) -> None:
        super().__init__()
        visitor = run(self.center.add_visitor)
        url = f"{self.center.ws_base}/ws/customer?token={visitor.token}"
        self.customer: Client = run(self.stack.enter_async_context, connect(self.nursery, url))
        start = StartConversation(self.customer.client_id())
        run(self.customer.send, start)
        ack = run(answer, self.customer, start.client_id)
        assert ack.TYPE == "ack"
        self.conversation: str = ack.conversation_id
        self.state = WAITING
        self.holder: str | None = None
        self.acked_messages: set[str] = set()
        self.conversations.append((self.conversation, self.acked_messages))

    def _send(self, client: Client, frame: Any, legal: bool) -> None:
        run(client.send, frame)
        reply = run(answer, client, frame.client_id)
        if legal:
            assert reply.TYPE == "ack", (self.state, frame, reply)
        else:
            assert reply.TYPE == "error" and reply.code in ("illegal_state", "forbidden"), (self.state, frame, reply)
            assert not reply.retryable

    # -- the customer ------------------------------------------------------------------------

    @rule()
    def customer_writes(self) -> None:
        frame = SendMessage(self.customer.client_id(), self.conversation, "text", text="hello")
        legal = self.state in (WAITING, ASSIGNED)
        self._send(self.customer, frame, legal)
        if legal:
            self.acked_messages.add(frame.client_id)

    @precondition(lambda self: self.state != CLOSED)
    @rule()
    def customer_leaves(self) -> None:
        self._send(self.customer, CloseConversation(self.customer.client_id(), self.conversation), True)
        self.state = {WAITING: CLOSED, ASSIGNED: WRAP_UP}.get(self.state, self.state)

    # -- agents ------------------------------------------------------------------------------

    @precondition(lambda self: self.state == WAITING)
    @rule()
    def an_agent_accepts_the_offer(self) -> None:
        conversation = self.conversation

        async def offered() -> str:
            def offered_to() -> list[str]:
                return [name for name, agent in self.agents.items() if agent.of("offer", conversation_id=conversation)]

            await poll(offered_to, f"an offer of {conversation}")
            name = offered_to()[0]
            client = self.agents[name]
            await client.send(AcceptOffer(client.of("offer", conversation_id=conversation)[-1].offer_id))
            return name

        self.holder = run(offered)
        run(lambda: self.customer.wait_for("event", conversation_id=self.conversation, kind="assigned"))
        self.state = ASSIGNED

    @rule(holder=st.booleans(), note=st.booleans())
    def an_agent_writes(self, holder: bool, note: bool) -> None:
        names = sorted(self.agents)
        if self.holder is None:
            name = names[0]
        else:
            name = self.holder if holder else next(n for n in names if n != self.holder)
        client = self.agents[name]
        if note:
            frame: Any = AddNote(client.client_id(), self.conversation, "a note")
            legal = name == self.holder and self.state in (ASSIGNED, WRAP_UP)
        else:
            frame = SendMessage(client.client_id(), self.conversation, "text", text="answer")
            legal = name == self.holder and self.state == ASSIGNED
        self._send(client, frame, legal)
        if legal and not note:
            self.acked_messages.add(frame.client_id)

    @precondition(lambda self: self.state in (ASSIGNED, WRAP_UP))
    @rule(code=st.booleans())
    def the_holder_closes(self, code: bool) -> None:
        assert self.holder is not None
        client = self.agents[self.holder]
        frame = CloseConversation(client.client_id(), self.conversation, wrap_up_code="solved" if code else None)
        self._send(client, frame, True)
        if code:
            self.state = CLOSED
        elif self.state == ASSIGNED:
            self.state = WRAP_UP

    def teardown(self) -> None:
        """Finish the conversation, so the agents are free for the next run."""
        if self.state == WAITING:
            self.customer_leaves()
        if self.state in (ASSIGNED, WRAP_UP):
            self.the_holder_closes(True)


async def test_live_conversations_follow_the_state_machine(database_dsn: str, tmp_path: Path) -> None:
    async with (
        live_center(database_dsn, tmp_path, wrap_up_seconds=600, max_frames_per_second=10_000) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        agents: dict[str, Client] = {}
        for name in ("anna", "bo"):
            agent = await center.add_agent(name.title(), capacity=50)
            client = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={agent.token}"))
            await client.send(SetStatus("online"))
            await client.wait_for("status", status="online")
            agents[name] = client
        conversations: list[tuple[str, set[str]]] = []
        LiveConversation.center, LiveConversation.nursery, LiveConversation.stack = center, nursery, stack
        LiveConversation.agents, LiveConversation.conversations = agents, conversations
        case = LiveConversation.TestCase
        case.settings = settings(max_examples=12, stateful_step_count=12, deadline=None, database=None)
        await trio.to_thread.run_sync(lambda: case("runTest").runTest())

        assert conversations
        for conversation, acked in conversations:
            rows = await center.fetch(
                "SELECT seq, kind, client_id FROM conversation_events WHERE conversation_id = $1 ORDER BY seq",
                uuid.UUID(conversation),
            )
            assert [row["seq"] for row in rows] == list(range(1, len(rows) + 1)), "gapless from 1"
            messages = [row["client_id"] for row in rows if row["kind"] == "message"]
            assert sorted(messages) == sorted(acked), "every acknowledged message once, nothing else"
            kinds = [row["kind"] for row in rows]
            assert kinds[-1] in ("closed", "wrapped_up")
            assert "message" not in kinds[kinds.index("closed") :], "no message after the close"
        nursery.cancel_scope.cancel()
