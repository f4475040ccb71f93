"""Live conversations end to end: real websockets against a running node and PostgreSQL."""

from __future__ import annotations

import math
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import trio
from trio_websocket import ConnectionClosed

from kefu.protocol import decode_server_frame
from kefu.protocol.agent import AcceptOffer, AddNote, SetStatus
from kefu.protocol.common import Resume, SendMessage, SetTyping
from kefu.protocol.customer import CloseConversation, StartConversation
from kefu.server.database import DatabaseUnavailable
from tests.server.live import WAIT_SECONDS, Client, connect, live_center, routing_settled


async def _online_agent(stack: AsyncExitStack, nursery: trio.Nursery, center, agent) -> Client:  # type: ignore[no-untyped-def]
    client = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={agent.token}"))
    agent.clients.append(client)
    await client.wait_for("welcome")
    await client.send(SetStatus("online"))
    await client.wait_for("status", status="online")
    return client


async def test_a_customer_and_an_agent_talk(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery:
        anna = await center.add_agent("Anna")
        visitor = await center.add_visitor("Li Wei")
        async with (
            connect(nursery, f"{center.ws_base}/ws/agent?token={anna.token}") as agent,
            connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}") as customer,
        ):
            await agent.wait_for("welcome")
            await agent.send(SetStatus("online"))
            await agent.wait_for("status", status="online")
            await customer.wait_for("welcome")

            start_id = customer.client_id()
            await customer.send(StartConversation(start_id, topic="Invoice"))
            (ack,) = await customer.wait_for("ack", client_id=start_id)
            conversation = ack.conversation_id
            assert ack.seq == 1
            await customer.wait_for("resumed", conversation_id=conversation)

            message_id = customer.client_id()
            await customer.send(SendMessage(message_id, conversation, "text", text="Hello, 你好"))
            await customer.wait_for("ack", client_id=message_id)

            (offer,) = await agent.wait_for("offer")
            assert offer.conversation_id == conversation
            assert offer.customer.topic == "Invoice"
            await agent.send(AcceptOffer(offer.offer_id))
            await agent.wait_for("resumed", conversation_id=conversation)
            kinds = [event.kind for event in agent.events(conversation)]
            assert kinds == ["queued", "message", "assigned"]
            (assigned,) = await customer.wait_for("event", kind="assigned")
            assert assigned.sender.display_name == "Anna"

            await customer.send(SetTyping(conversation, True))
            await agent.wait_for("typing", role="customer", active=True)

            reply_id = agent.client_id()
            await agent.send(SendMessage(reply_id, conversation, "text", text="How can I help?"))
            (reply_ack,) = await agent.wait_for("ack", client_id=reply_id)
            (reply,) = await customer.wait_for("event", client_id=reply_id)
            assert reply.seq == reply_ack.seq and reply.text == "How can I help?"

            note_id = agent.client_id()
            await agent.send(AddNote(note_id, conversation, "VIP"))
            await agent.wait_for("ack", client_id=note_id)

            # a retry of the same client id gets the original ack and is stored once
            await customer.send(SendMessage(message_id, conversation, "text", text="Hello, 你好"))
            acks = await customer.wait_for("ack", 2, client_id=message_id)
            assert acks[0].seq == acks[1].seq
            close_id = agent.client_id()
            await agent.send(CloseConversation(close_id, conversation, wrap_up_code="solved"))
            await agent.wait_for("event", kind="wrapped_up")
            await customer.wait_for("event", kind="closed")
            await agent.wait_for("status", active_conversations=0)

            # the customer never saw the note or the wrap-up; every seq it saw is in order
            customer_kinds = [event.kind for event in customer.events(conversation)]
            assert "note" not in customer_kinds and "wrapped_up" not in customer_kinds
            seqs = [event.seq for event in customer.events(conversation)]
            assert seqs == sorted(set(seqs))

        rows = await center.fetch(
            "SELECT seq, kind FROM conversation_events WHERE conversation_id = $1 ORDER BY seq", UUID(conversation)
        )
        assert [row["seq"] for row in rows] == list(range(1, len(rows) + 1))
        assert [row["kind"] for row in rows] == [
            "queued",
            "message",
            "assigned",
            "message",
            "note",
            "closed",
            "wrapped_up",
        ]
        nursery.cancel_scope.cancel()


async def test_reconnect_and_resume_deliver_every_missed_event_once(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery:
        anna = await center.add_agent("Anna")
        visitor = await center.add_visitor()
        url = f"{center.ws_base}/ws/customer?token={visitor.token}"
        async with connect(nursery, f"{center.ws_base}/ws/agent?token={anna.token}") as agent:
            await agent.wait_for("welcome")
            await agent.send(SetStatus("online"))
            async with connect(nursery, url) as customer:
                start_id = customer.client_id()
                await customer.send(StartConversation(start_id))
                (ack,) = await customer.wait_for("ack")
                conversation = ack.conversation_id
                (offer,) = await agent.wait_for("offer")
                await agent.send(AcceptOffer(offer.offer_id))
                await customer.wait_for("event", kind="assigned")
                last_seen = max(event.seq for event in customer.events(conversation))
            # the customer is away while the agent writes
            for number in range(5):
                message_id = agent.client_id()
                await agent.send(SendMessage(message_id, conversation, "text", text=f"message {number}"))
                await agent.wait_for("ack", client_id=message_id)
            async with connect(nursery, url) as customer:
                (listing,) = await customer.wait_for("conversations")
                assert [c.conversation_id for c in listing.conversations] == [conversation]
                await customer.send(Resume(conversation, last_seen))
                (resumed,) = await customer.wait_for("resumed")
                replayed = customer.events(conversation)
                assert [event.text for event in replayed] == [f"message {n}" for n in range(5)]
                assert [event.seq for event in replayed] == list(range(last_seen + 1, resumed.to_seq + 1))
                # live events follow the replay
                message_id = agent.client_id()
                await agent.send(SendMessage(message_id, conversation, "text", text="still there?"))
                (live,) = await customer.wait_for("event", text="still there?")
                assert live.seq == resumed.to_seq + 1
        nursery.cancel_scope.cancel()


async def test_bad_frames_get_errors_and_change_nothing(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery:
        visitor = await center.add_visitor()
        other = await center.add_visitor()
        async with (
            connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}") as customer,
            connect(nursery, f"{center.ws_base}/ws/customer?token={other.token}") as intruder,
        ):
            await customer.send(StartConversation("s-1"))
            (ack,) = await customer.wait_for("ack")
            # No agent is online: the customer is told so (stored before it is sent). Waiting for it
            # here means the rows read below are complete.
            await customer.wait_for("event", kind="system")
            await customer.send_raw("{not json")
            (error,) = await customer.wait_for("error", code="malformed_json")
            await customer.wait_closed()
            await intruder.send(SendMessage("x-1", ack.conversation_id, "text", text="hi"))
            (error,) = await intruder.wait_for("error", ref="x-1")
            assert error.code == "forbidden"
            await intruder.send(SendMessage("x-2", "00000000-0000-0000-0000-000000000000", "text", text="hi"))
            (error,) = await intruder.wait_for("error", ref="x-2")
            assert error.code == "not_found"
        async with connect(nursery, f"{center.ws_base}/ws/agent?token=nonsense") as agent:
            assert await agent.wait_closed() == 1008
        rows = await center.fetch(
            "SELECT kind FROM conversation_events WHERE conversation_id = $1 ORDER BY seq", UUID(ack.conversation_id)
        )
        # no agent is online, so the customer was told so; the intruder stored nothing
        assert [row["kind"] for row in rows] == ["queued", "system"]
        denials = await center.fetch(
            "SELECT actor_role, actor_id, action, target_id FROM audit_log WHERE actor_id = $1 ORDER BY id",
            other.customer_id,
        )
        assert [(row["actor_role"], row["action"], row["target_id"]) for row in denials] == [
            ("customer", "denied:message.send", ack.conversation_id),
            ("customer", "denied:message.send", "00000000-0000-0000-0000-000000000000"),
        ]
        nursery.cancel_scope.cancel()


async def _accept_everything(agent: Client, capacity: int, peak: list[int]) -> None:
    """Play an agent who accepts each offer, recording the most conversations it held."""
    seen = 0
    while True:
        offers = await agent.wait_for("offer", seen + 1, timeout=60)
        offer = offers[seen]
        seen += 1
        await agent.send(AcceptOffer(offer.offer_id))
        statuses = agent.of("status")
        peak[0] = max([peak[0], *(status.active_conversations for status in statuses)])
        assert peak[0] <= capacity


async def test_least_load_spreads_evenly_and_no_agent_exceeds_capacity(database_dsn: str, tmp_path: Path) -> None:
    capacity, agents_count = 3, 4
    async with (
        live_center(database_dsn, tmp_path) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        agents = [await center.add_agent(f"Agent {n}", capacity=capacity) for n in range(agents_count)]
        visitors = [await center.add_visitor() for _ in range(capacity * agents_count + 2)]
        clients: list[Client] = []
        peaks: list[list[int]] = []
        for agent in agents:
            clients.append(await _online_agent(stack, nursery, center, agent))
            peaks.append([0])
        slots = capacity * agents_count
        assigned: list[Client] = []
        all_slots_taken = trio.Event()
        async with trio.open_nursery() as agent_tasks:
            for client, peak in zip(clients, peaks, strict=True):
                agent_tasks.start_soon(_accept_everything, client, capacity, peak)

            async def customer(visitor) -> None:  # type: ignore[no-untyped-def]
                async with connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}") as ws:
                    await ws.send(StartConversation(ws.client_id()))
                    await ws.wait_for("ack")
                    # the two customers more than the slots wait here until the test ends
                    await ws.wait_for("event", kind="assigned", timeout=math.inf)
                    assigned.append(ws)
                    if len(assigned) == slots:
                        all_slots_taken.set()
                    await trio.sleep_forever()

            async with trio.open_nursery() as customers:
                for visitor in visitors:
                    customers.start_soon(customer, visitor)
                with trio.fail_after(WAIT_SECONDS * 2):
                    await all_slots_taken.wait()
                # every accept is handled and nothing more was offered: all agents are full
                await routing_settled(center, *clients)
                assert [len(client.of("offer")) for client in clients] == [capacity] * agents_count
                customers.cancel_scope.cancel()
            agent_tasks.cancel_scope.cancel()
        rows = await center.fetch(
            "SELECT body->>'agent_id' AS agent, count(*) AS n FROM conversation_events"
            " WHERE kind = 'assigned' AND account_id = (SELECT id FROM accounts WHERE slug = $1) GROUP BY 1",
            center.slug,
        )
        per_agent = {row["agent"]: row["n"] for row in rows}
        assert sorted(per_agent) == sorted(agent.id for agent in agents)
        assert all(count == capacity for count in per_agent.values()), per_agent
        assert all(peak[0] <= capacity for peak in peaks)
        nursery.cancel_scope.cancel()


async def test_a_crashed_session_is_rebuilt_from_the_store_and_loses_nothing(database_dsn: str, tmp_path: Path) -> None:
    from kefu.actors.messages import InjectCrash

    async with (
        live_center(database_dsn, tmp_path) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        anna = await center.add_agent("Anna")
        visitor = await center.add_visitor()
        agent = await _online_agent(stack, nursery, center, anna)
        async with connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}") as customer:
            await customer.send(StartConversation(customer.client_id()))
            (ack,) = await customer.wait_for("ack")
            conversation = ack.conversation_id
            (offer,) = await agent.wait_for("offer")
            await agent.send(AcceptOffer(offer.offer_id))
            await customer.wait_for("event", kind="assigned")
            session = center.node.center.session(UUID(conversation))
            assert session is not None
            for round_number in range(3):
                session.ref.tell_nowait(InjectCrash())
                text = f"after crash {round_number}"
                message_id = customer.client_id()
                await customer.send(SendMessage(message_id, conversation, "text", text=text))
                (message_ack,) = await customer.wait_for("ack", client_id=message_id)
                (seen,) = await agent.wait_for("event", text=text)
                assert seen.seq == message_ack.seq
            assert session.mailbox.crashes == 3
            seqs = [event.seq for event in agent.events(conversation)]
            assert seqs == list(range(1, len(seqs) + 1))
        nursery.cancel_scope.cancel()


PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


async def test_attachments_and_history(database_dsn: str, tmp_path: Path) -> None:
    async with (
        live_center(database_dsn, tmp_path) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        anna = await center.add_agent("Anna")
        visitor, stranger = await center.add_visitor("Li Wei"), await center.add_visitor()
        agent = await _online_agent(stack, nursery, center, anna)
        customer = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}")
        )
        await customer.send(StartConversation(customer.client_id()))
        (ack,) = await customer.wait_for("ack")
        conversation = ack.conversation_id
        (offer,) = await agent.wait_for("offer")
        await agent.send(AcceptOffer(offer.offer_id))
        await customer.wait_for("event", kind="assigned")

        upload = await center.http.post(
            "/api/v1/attachments?filename=part.png",
            content=PNG,
            headers={"Authorization": f"Bearer {visitor.token}", "Content-Type": "image/png"},
        )
        assert upload.status_code == 201, upload.text
        attachment = upload.json()["id"]
        # the wrong kind, and someone else's upload, are refused
        await customer.send(SendMessage("bad-kind", conversation, "video", attachment_id=attachment))
        (error,) = await customer.wait_for("error", ref="bad-kind")
        assert error.code == "invalid_field"
        await customer.send(SendMessage("img-1", conversation, "image", attachment_id=attachment, text="broken"))
        await customer.wait_for("ack", client_id="img-1")
        (image,) = await agent.wait_for("event", message_kind="image")
        assert image.attachment_id == attachment and image.text == "broken"
        download = await center.http.get(f"/api/v1/attachments/{attachment}", headers=center.auth(anna.token))
        assert download.status_code == 200 and download.content == PNG
        assert (
            await center.http.get(f"/api/v1/attachments/{attachment}", headers=center.auth(stranger.token))
        ).status_code == 404

        agent_upload = await center.http.post(
            "/api/v1/attachments?filename=fix.png",
            content=PNG,
            headers={"Authorization": f"Bearer {anna.token}", "Content-Type": "image/png"},
        )
        sent = agent_upload.json()["id"]
        await agent.send(SendMessage("img-2", conversation, "image", attachment_id=sent))
        await customer.wait_for("event", attachment_id=sent)
        # the customer may fetch what the agent sent in its conversation
        response = await center.http.get(f"/api/v1/attachments/{sent}", headers=center.auth(visitor.token))
        assert response.status_code == 200

        # history for the agent: the customer's conversations and the events of one
        response = await center.http.get(
            f"/api/v1/customers/{visitor.customer_id}/conversations", headers=center.auth(anna.token)
        )
        assert response.status_code == 200
        (listed,) = response.json()["conversations"]
        assert listed["id"] == conversation and listed["status"] == "assigned" and listed["agent_name"] == "Anna"
        response = await center.http.get(
            f"/api/v1/conversations/{conversation}/events?after=1&limit=2", headers=center.auth(anna.token)
        )
        events = response.json()["events"]
        assert [event["seq"] for event in events] == [2, 3]
        other_account = await center.http.get(
            "/api/v1/conversations/00000000-0000-0000-0000-000000000000/events", headers=center.auth(anna.token)
        )
        assert other_account.status_code == 404
        nursery.cancel_scope.cancel()


async def test_a_restart_recovers_waiting_and_assigned_conversations(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery:
        anna = await center.add_agent("Anna", capacity=1)
        waiting_visitor, talking_visitor = await center.add_visitor(), await center.add_visitor()
        async with (
            connect(nursery, f"{center.ws_base}/ws/agent?token={anna.token}") as agent,
            connect(nursery, f"{center.ws_base}/ws/customer?token={talking_visitor.token}") as talking,
            connect(nursery, f"{center.ws_base}/ws/customer?token={waiting_visitor.token}") as waiting,
        ):
            await agent.send(SetStatus("online"))
            await talking.send(StartConversation("t-1"))
            (ack,) = await talking.wait_for("ack")
            held = ack.conversation_id
            (offer,) = await agent.wait_for("offer")
            await agent.send(AcceptOffer(offer.offer_id))
            await talking.wait_for("event", kind="assigned")
            await waiting.send(StartConversation("w-1"))  # Anna is full: this one waits
            (ack,) = await waiting.wait_for("ack")
            queued = ack.conversation_id
        await center.restart()
        async with (
            connect(nursery, f"{center.ws_base}/ws/agent?token={anna.token}") as agent,
            connect(nursery, f"{center.ws_base}/ws/customer?token={waiting_visitor.token}") as waiting,
        ):
            (listing,) = await agent.wait_for("conversations")
            assert [c.conversation_id for c in listing.conversations] == [held]
            (status,) = await agent.wait_for("status")
            assert status.active_conversations == 1
            (listing,) = await waiting.wait_for("conversations")
            assert [(c.conversation_id, c.state) for c in listing.conversations] == [(queued, "queued")]
            await agent.send(SetStatus("online"))
            close_id = agent.client_id()
            await agent.send(CloseConversation(close_id, held, wrap_up_code="done"))
            await agent.wait_for("ack", client_id=close_id)
            # the slot frees up and the conversation that waited through the restart is offered
            (offer,) = await agent.wait_for("offer", conversation_id=queued)
            await agent.send(AcceptOffer(offer.offer_id))
            await waiting.send(Resume(queued, 0))
            await waiting.wait_for("event", kind="assigned", conversation_id=queued)
        nursery.cancel_scope.cancel()


async def test_browser_origins_are_checked_on_the_handshake(database_dsn: str, tmp_path: Path) -> None:
    from trio_websocket import open_websocket_url

    async with (
        live_center(database_dsn, tmp_path, widget_origins="https://shop.example") as center,
        trio.open_nursery() as nursery,
    ):
        anna = await center.add_agent("Anna")
        visitor = await center.add_visitor()
        own = center.ws_base.replace("ws://", "http://")

        async def first_frame(path: str, token: str, origin: str | None) -> object:
            headers = [("Origin", origin)] if origin else []
            # Room for everything the server sends on opening (it may arrive in one write):
            # trio-websocket's reader cannot take the close handshake while its queue is full.
            url = f"{center.ws_base}{path}?token={token}"
            async with open_websocket_url(url, extra_headers=headers, message_queue_size=64) as ws:
                try:
                    return decode_server_frame(await ws.get_message()).TYPE
                except ConnectionClosed as closed:
                    return closed.reason.code
                finally:
                    await trio.aclose_forcefully(ws._stream)  # see tests.server.live.connect

        # the workbench only from kefu's own pages (or from clients that send no Origin)
        assert await first_frame("/ws/agent", anna.token, own) == "welcome"
        assert await first_frame("/ws/agent", anna.token, None) == "welcome"
        assert await first_frame("/ws/agent", anna.token, "https://evil.example") == 1008
        # the widget from the configured shop, kefu's own demo page, and nowhere else
        assert await first_frame("/ws/customer", visitor.token, "https://shop.example") == "welcome"
        assert await first_frame("/ws/customer", visitor.token, own) == "welcome"
        assert await first_frame("/ws/customer", visitor.token, "https://evil.example") == 1008
        nursery.cancel_scope.cancel()


async def test_storage_failing_during_the_handshake_closes_with_1013(
    database_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the token checked out, the customer's open conversations are read and the agent's
    actor starts (it reads the agent's profile); storage failing there is 1013, try again later."""
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        visitor = await center.add_visitor()
        anna = await center.add_agent("Anna")

        async def unavailable(*_args: Any) -> Any:
            raise DatabaseUnavailable("the database went away")

        monkeypatch.setattr(center.node.conversations, "open_conversations_of_customer", unavailable)
        monkeypatch.setattr(center.node.conversations, "agent_profile", unavailable)
        customer = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}")
        )
        assert await customer.wait_closed() == 1013
        agent = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={anna.token}"))
        assert await agent.wait_closed() == 1013
        assert not customer.of("welcome") and not agent.of("welcome")
        # storage is back: both open normally
        monkeypatch.undo()
        customer = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}")
        )
        await customer.wait_for("welcome")
        agent = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={anna.token}"))
        await agent.wait_for("welcome")
        nursery.cancel_scope.cancel()
