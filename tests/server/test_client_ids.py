"""A `client_id` is unique per sender, not per conversation (docs/protocol.md, "Sequence numbers
and exactly-once"): a customer and an agent that both count `c-1`, `c-2`, ... in one
conversation each get every message stored once and acknowledged with its own seq, live and
after the session actor was rebuilt from the store; and the store's duplicate check is per
sender too.
"""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

from kefu.actors.messages import InjectCrash
from kefu.actors.store import EventRecord, append
from kefu.protocol.agent import AcceptOffer, AddNote, SetStatus
from kefu.protocol.common import SendMessage
from kefu.protocol.customer import StartConversation
from tests.conftest import new_account, new_conversation, open_database
from tests.server.live import Client, connect, live_center
from tests.server.test_store import running_store, stored_seqs


async def _send(client: Client, frame: Any) -> int:
    """Send a storable frame and wait for its ack (one more ack of that client id than before)."""
    before = len(client.of("ack", client_id=frame.client_id))
    await client.send(frame)
    acks = await client.wait_for("ack", before + 1, client_id=frame.client_id)
    seq: int = acks[before].seq
    return seq


async def test_a_customer_and_an_agent_counting_the_same_ids_lose_nothing(database_dsn: str, tmp_path: Path) -> None:
    async with (
        live_center(database_dsn, tmp_path) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        anna = await center.add_agent("Anna")
        visitor = await center.add_visitor()
        agent = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={anna.token}"))
        await agent.wait_for("welcome")
        await agent.send(SetStatus("online"))
        await agent.wait_for("status", status="online")
        customer = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}")
        )
        await customer.wait_for("welcome")

        # Both sides count from c-1; the customer's c-1 starts the conversation (the `queued` event).
        start_seq = await _send(customer, StartConversation("c-1"))
        conversation = customer.of("ack", client_id="c-1")[0].conversation_id
        sent: dict[int, tuple[str, str]] = {start_seq: ("system", "c-1")}
        sent[await _send(customer, SendMessage("c-2", conversation, "text", text="customer c-2"))] = ("customer", "c-2")
        (offer,) = await agent.wait_for("offer")
        await agent.send(AcceptOffer(offer.offer_id))
        await customer.wait_for("event", kind="assigned")
        await agent.wait_for("resumed", conversation_id=conversation)

        sent[await _send(agent, SendMessage("c-1", conversation, "text", text="agent c-1"))] = ("agent", "c-1")
        sent[await _send(agent, SendMessage("c-2", conversation, "text", text="agent c-2"))] = ("agent", "c-2")
        sent[await _send(customer, SendMessage("c-3", conversation, "text", text="customer c-3"))] = ("customer", "c-3")
        sent[await _send(agent, AddNote("c-3", conversation, "agent c-3"))] = ("agent", "c-3")

        # The session actor crashes and is rebuilt from the store: its recovered client ids are per sender too.
        session = center.node.center.session(uuid.UUID(conversation))
        assert session is not None
        session.ref.tell_nowait(InjectCrash())
        sent[await _send(agent, SendMessage("c-4", conversation, "text", text="agent c-4"))] = ("agent", "c-4")
        assert session.mailbox.crashes == 1
        sent[await _send(customer, SendMessage("c-4", conversation, "text", text="customer c-4"))] = ("customer", "c-4")
        session.ref.tell_nowait(InjectCrash())
        sent[await _send(customer, SendMessage("c-5", conversation, "text", text="customer c-5"))] = ("customer", "c-5")
        assert session.mailbox.crashes == 2
        sent[await _send(agent, SendMessage("c-5", conversation, "text", text="agent c-5"))] = ("agent", "c-5")

        # Every frame got its own seq.
        assert len(sent) == 10

        # A retry (same sender, same client id) still gets that sender's original ack and stores nothing.
        session.ref.tell_nowait(InjectCrash())
        by_sender = {value: seq for seq, value in sent.items()}
        for client, role in ((customer, "customer"), (agent, "agent")):
            for number in (2, 4, 5):
                client_id = f"c-{number}"
                text = f"{role} {client_id}"
                seq = await _send(client, SendMessage(client_id, conversation, "text", text=text))
                assert seq == by_sender[(role, client_id)]
        assert session.mailbox.crashes == 3

        rows = await center.fetch(
            "SELECT seq, sender_role, client_id, body->>'text' AS text FROM conversation_events"
            " WHERE conversation_id = $1 ORDER BY seq",
            uuid.UUID(conversation),
        )
        assert [row["seq"] for row in rows] == list(range(1, len(rows) + 1))
        stored = {row["seq"]: (row["sender_role"], row["client_id"]) for row in rows if row["client_id"]}
        assert stored == sent
        texts = [row["text"] for row in rows if row["sender_role"] in ("customer", "agent") and row["client_id"]]
        assert sorted(texts) == sorted(f"{role} {cid}" for role, cid in sent.values() if role != "system")
        nursery.cancel_scope.cancel()


def _record(
    account: uuid.UUID, conversation: uuid.UUID, seq: int, client_id: str, sender_role: str, sender_id: str | None
) -> EventRecord:
    return EventRecord(
        account_id=account,
        conversation_id=conversation,
        seq=seq,
        client_id=client_id,
        kind="message",
        sender_role=sender_role,
        sender_id=sender_id,
        body={"text": f"{sender_role} {sender_id} {client_id}"},
    )


async def test_the_store_finds_duplicates_per_sender(database_dsn: str) -> None:
    async with open_database(database_dsn) as database:
        account = await new_account(database)
        conversation = await new_conversation(database, account)
        senders = [("system", None), ("customer", "cust-1"), ("agent", "agent-1"), ("agent", "agent-2")]
        async with running_store(database) as (_store, mailbox):
            firsts = [
                await append(mailbox.ref, _record(account, conversation, seq, "c-1", role, sender_id))
                for seq, (role, sender_id) in enumerate(senders, start=1)
            ]
            assert [a.duplicate for a in firsts] == [False] * 4
            assert [a.seq for a in firsts] == [1, 2, 3, 4]
            # each sender retries (a stale owner even gives a new seq): each gets its own original ack
            for seq, ((role, sender_id), first) in enumerate(zip(senders, firsts, strict=True), start=5):
                again = await append(mailbox.ref, _record(account, conversation, seq, "c-1", role, sender_id))
                assert (again.duplicate, again.seq, again.created_at) == (True, first.seq, first.created_at)
        assert await stored_seqs(database, conversation) == [1, 2, 3, 4]


async def test_a_client_id_reused_for_another_message_is_refused_distinctly(database_dsn: str, tmp_path: Path) -> None:
    async with (
        live_center(database_dsn, tmp_path) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        anna = await center.add_agent("Anna")
        visitor = await center.add_visitor()
        agent = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={anna.token}"))
        await agent.wait_for("welcome")
        await agent.send(SetStatus("online"))
        customer = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}")
        )
        await _send(customer, StartConversation("c-1"))
        conversation = customer.of("ack", client_id="c-1")[0].conversation_id
        first = await _send(customer, SendMessage("c-2", conversation, "text", text="the first"))
        (offer,) = await agent.wait_for("offer")
        await agent.send(AcceptOffer(offer.offer_id))
        await agent.wait_for("resumed", conversation_id=conversation)
        note = await _send(agent, AddNote("a-1", conversation, "a note"))
        session = center.node.center.session(uuid.UUID(conversation))
        assert session is not None

        reused: list[tuple[Client, Any]] = [
            (customer, SendMessage("c-2", conversation, "text", text="another text")),
            (agent, AddNote("a-1", conversation, "another note")),
            (agent, SendMessage("a-1", conversation, "text", text="a message under the note's id")),
        ]
        for crashed in (False, True):
            if crashed:  # the same from the state rebuilt from the store
                session.ref.tell_nowait(InjectCrash())
            for client, frame in reused:
                refusals = len(client.of("error", code="client_id_reused"))
                await client.send(frame)
                (*_, error) = await client.wait_for("error", refusals + 1, code="client_id_reused")
                assert error.ref == frame.client_id and error.retryable is False
            # exact retries still get the original acks
            assert await _send(customer, SendMessage("c-2", conversation, "text", text="the first")) == first
            assert await _send(agent, AddNote("a-1", conversation, "a note")) == note
        assert session.mailbox.crashes == 1

        # A customer's message under its start's client id is its own: the start was the system's `queued` event.
        own = await _send(
            customer, SendMessage("c-1", conversation, "text", text="the start's id, but c-1 was the system's")
        )
        assert own > note
        rows = await center.fetch(
            "SELECT seq, body->>'text' AS text FROM conversation_events WHERE conversation_id = $1 ORDER BY seq",
            uuid.UUID(conversation),
        )
        texts = [row["text"] for row in rows if row["text"]]
        assert texts == ["the first", "a note", "the start's id, but c-1 was the system's"]
        nursery.cancel_scope.cancel()
