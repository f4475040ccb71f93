"""What docs/protocol.md says of ordering, joining and wrap-up, held against a live node
(issue 11, point 15): a client written from the page alone must find it true."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

from kefu.protocol.agent import AcceptOffer, AddNote, SetStatus
from kefu.protocol.common import Resume, SendMessage
from kefu.protocol.customer import CloseConversation, StartConversation
from tests.server.live import Center, Client, connect, live_center


def _position(client: Client, frame_type: str, **match: Any) -> int:
    (index,) = [
        number
        for number, frame in enumerate(client.frames)
        if frame.TYPE == frame_type and all(getattr(frame, key, None) == value for key, value in match.items())
    ]
    return index


async def _agent(stack: AsyncExitStack, nursery: trio.Nursery, center: Center, token: str) -> Client:
    client = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={token}"))
    await client.wait_for("status")
    return client


async def test_the_event_of_a_frame_comes_before_its_ack_on_a_joined_connection(
    database_dsn: str, tmp_path: Path
) -> None:
    async with (
        live_center(database_dsn, tmp_path, wrap_up_seconds=3600) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        anna = await center.add_agent("Anna")
        agent = await _agent(stack, nursery, center, anna.token)
        await agent.send(SetStatus("online"))
        await agent.wait_for("status", status="online")
        visitor = await center.add_visitor()
        customer = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}")
        )
        start = customer.client_id()
        await customer.send(StartConversation(start))
        (ack,) = await customer.wait_for("ack", client_id=start)
        conversation = ack.conversation_id
        await customer.wait_for("resumed", conversation_id=conversation)
        # conversation.start: the ack first, then the conversation so far (its `queued` event)
        assert _position(customer, "ack", client_id=start) < _position(customer, "event", client_id=start)
        (offer,) = await agent.wait_for("offer", conversation_id=conversation)
        await agent.send(AcceptOffer(offer.offer_id))
        await customer.wait_for("event", kind="assigned")
        await agent.wait_for("resumed", conversation_id=conversation)
        # offer.accept is answered with the conversation replayed, ending with `assigned`
        assert [event.kind for event in agent.events(conversation)] == ["queued", "assigned"]
        assert _position(agent, "event", kind="assigned") < _position(agent, "resumed")

        said = customer.client_id()
        await customer.send(SendMessage(said, conversation, "text", text="hello"))
        await customer.wait_for("ack", client_id=said)
        assert _position(customer, "event", client_id=said) < _position(customer, "ack", client_id=said)
        answered = agent.client_id()
        await agent.send(SendMessage(answered, conversation, "text", text="hi"))
        await agent.wait_for("ack", client_id=answered)
        assert _position(agent, "event", client_id=answered) < _position(agent, "ack", client_id=answered)
        noted = agent.client_id()
        await agent.send(AddNote(noted, conversation, "a note"))
        await agent.wait_for("ack", client_id=noted)
        assert _position(agent, "event", client_id=noted) < _position(agent, "ack", client_id=noted)
        closed = agent.client_id()
        await agent.send(CloseConversation(closed, conversation))
        await agent.wait_for("ack", client_id=closed)
        assert _position(agent, "event", client_id=closed, kind="closed") < _position(agent, "ack", client_id=closed)
        # a retry is answered with the original ack and no second event
        await customer.send(SendMessage(said, conversation, "text", text="hello"))
        await customer.wait_for("ack", 2, client_id=said)
        assert len(customer.of("event", client_id=said)) == 1
        nursery.cancel_scope.cancel()


async def test_a_new_connection_gets_nothing_of_a_conversation_until_it_resumes(
    database_dsn: str, tmp_path: Path
) -> None:
    async with (
        live_center(database_dsn, tmp_path, wrap_up_seconds=3600) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        anna = await center.add_agent("Anna")
        agent = await _agent(stack, nursery, center, anna.token)
        await agent.send(SetStatus("online"))
        await agent.wait_for("status", status="online")
        visitor = await center.add_visitor()
        url = f"{center.ws_base}/ws/customer?token={visitor.token}"
        first = await stack.enter_async_context(connect(nursery, url))
        start = first.client_id()
        await first.send(StartConversation(start))
        (ack,) = await first.wait_for("ack", client_id=start)
        conversation = ack.conversation_id
        (offer,) = await agent.wait_for("offer", conversation_id=conversation)
        await agent.send(AcceptOffer(offer.offer_id))
        await agent.wait_for("resumed", conversation_id=conversation)

        # a second tab of the customer: listed in `conversations`, but not joined
        second = await stack.enter_async_context(connect(nursery, url))
        (listing,) = await second.wait_for("conversations")
        assert [summary.conversation_id for summary in listing.conversations] == [conversation]
        own = second.client_id()
        await second.send(SendMessage(own, conversation, "text", text="from the second tab"))
        await second.wait_for("ack", client_id=own)
        reply = agent.client_id()
        await agent.send(SendMessage(reply, conversation, "text", text="seen"))
        await first.wait_for("event", client_id=reply)  # the joined tab has it
        await agent.wait_for("ack", client_id=reply)
        assert second.of("event") == []  # neither its own message nor the reply
        # after `resume` it has everything, and live events from then on
        await second.send(Resume(conversation, 0))
        (resumed,) = await second.wait_for("resumed", conversation_id=conversation)
        assert [event.seq for event in second.events(conversation)] == list(range(1, resumed.to_seq + 1))
        later = agent.client_id()
        await agent.send(SendMessage(later, conversation, "text", text="live"))
        await second.wait_for("event", client_id=later)
        nursery.cancel_scope.cancel()


async def test_a_close_during_wrap_up(database_dsn: str, tmp_path: Path) -> None:
    """A close without a wrap-up code stores nothing and is acked with the `closed` event's
    seq; the agent's socket closing leaves the wrap-up as it is; a reconnected agent finds it in
    `conversations` and finishes it."""
    async with (
        live_center(database_dsn, tmp_path, wrap_up_seconds=3600) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        anna = await center.add_agent("Anna", capacity=1)
        visitor = await center.add_visitor()
        customer = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}")
        )
        async with trio.open_nursery() as tab_nursery:
            async with connect(tab_nursery, f"{center.ws_base}/ws/agent?token={anna.token}") as tab:
                await tab.wait_for("status")
                await tab.send(SetStatus("online"))
                await tab.wait_for("status", status="online")
                start = customer.client_id()
                await customer.send(StartConversation(start))
                (ack,) = await customer.wait_for("ack", client_id=start)
                conversation = ack.conversation_id
                (offer,) = await tab.wait_for("offer", conversation_id=conversation)
                await tab.send(AcceptOffer(offer.offer_id))
                await tab.wait_for("resumed", conversation_id=conversation)
                closing = tab.client_id()
                await tab.send(CloseConversation(closing, conversation))
                (closed_ack,) = await tab.wait_for("ack", client_id=closing)
                await tab.wait_for("status", status="wrap_up")
                again = tab.client_id()
                await tab.send(CloseConversation(again, conversation))
                (again_ack,) = await tab.wait_for("ack", client_id=again)
                assert again_ack.seq == closed_ack.seq  # nothing stored
                leaving = customer.client_id()
                await customer.send(CloseConversation(leaving, conversation))
                (leaving_ack,) = await customer.wait_for("ack", client_id=leaving)
                assert leaving_ack.seq == closed_ack.seq
            tab_nursery.cancel_scope.cancel()
        # the tab is gone (its close frame sent); the wrap-up stands
        agent = await _agent(stack, nursery, center, anna.token)
        (listing,) = agent.of("conversations")
        (summary,) = listing.conversations
        assert (summary.conversation_id, summary.state, summary.last_seq) == (conversation, "wrap_up", closed_ack.seq)
        await agent.send(Resume(conversation, summary.last_seq))
        await agent.wait_for("resumed", conversation_id=conversation)
        done = agent.client_id()
        await agent.send(CloseConversation(done, conversation, wrap_up_code="solved"))
        (done_ack,) = await agent.wait_for("ack", client_id=done)
        assert done_ack.seq == closed_ack.seq + 1
        (wrapped,) = agent.of("event", kind="wrapped_up")
        assert wrapped.wrap_up_code == "solved" and wrapped.seq == done_ack.seq
        rows = await center.fetch(
            "SELECT kind FROM conversation_events WHERE conversation_id = $1 ORDER BY seq", uuid.UUID(conversation)
        )
        assert [row["kind"] for row in rows][-2:] == ["closed", "wrapped_up"]
        nursery.cancel_scope.cancel()
