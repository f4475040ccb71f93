"""More of live conversations as users meet them: wrap-up, sign-out, slow consumers, live stats, many at once."""

from __future__ import annotations

import math
import random
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import Any
from uuid import UUID

import trio

from kefu.actors.messages import InjectCrash
from kefu.protocol.agent import AcceptOffer, SetStatus
from kefu.protocol.common import Ping, Resume, SendMessage
from kefu.protocol.customer import CloseConversation, StartConversation
from tests.server.live import WAIT_SECONDS, Agent, Center, Client, connect, live_center


async def _online(stack: AsyncExitStack, nursery: trio.Nursery, center: Center, agent: Agent) -> Client:
    client = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={agent.token}"))
    await client.wait_for("welcome")
    await client.send(SetStatus("online"))
    await client.wait_for("status", status="online")
    return client


async def _assigned(
    stack: AsyncExitStack, nursery: trio.Nursery, center: Center, agent: Client
) -> tuple[Client, str, str]:
    visitor = await center.add_visitor()
    customer = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}"))
    await customer.send(StartConversation(customer.client_id()))
    (ack,) = await customer.wait_for("ack")
    (offer,) = await agent.wait_for("offer", conversation_id=ack.conversation_id)
    await agent.send(AcceptOffer(offer.offer_id))
    await customer.wait_for("event", kind="assigned")
    return customer, ack.conversation_id, visitor.token


async def test_wrap_up_keeps_the_slot_until_it_ends(database_dsn: str, tmp_path: Path) -> None:
    async with (
        live_center(database_dsn, tmp_path, wrap_up_seconds=1.5) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        anna = await center.add_agent("Anna", capacity=1)
        agent = await _online(stack, nursery, center, anna)
        customer, conversation, _ = await _assigned(stack, nursery, center, agent)
        await customer.send(CloseConversation(customer.client_id(), conversation))
        (status,) = await agent.wait_for("status", status="wrap_up")
        assert status.active_conversations == 1 and status.wrap_up_seconds is not None
        # a new customer waits while Anna wraps up
        second = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={(await center.add_visitor()).token}")
        )
        await second.send(StartConversation(second.client_id()))
        (ack,) = await second.wait_for("ack")
        # the wrap-up time runs out: the conversation closes by itself and the offer comes
        (wrapped,) = await agent.wait_for("event", kind="wrapped_up", conversation_id=conversation)
        assert wrapped.reason == "timeout"
        (offer,) = await agent.wait_for("offer", conversation_id=ack.conversation_id)
        # not before: the session sends the end of the wrap-up before it frees the slot, so an
        # offer made during the wrap-up would have arrived first
        assert agent.position(wrapped) < agent.position(offer)
        nursery.cancel_scope.cancel()


async def test_wrap_up_leaves_the_other_slots_open(database_dsn: str, tmp_path: Path) -> None:
    """A chat agent wrapping up one conversation keeps taking chats on its free slots, and an
    offer made before the wrap-up began still stands (it is not withdrawn and re-queued)."""
    async with (
        live_center(database_dsn, tmp_path, wrap_up_seconds=30) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        anna = await center.add_agent("Anna", capacity=3)
        agent = await _online(stack, nursery, center, anna)
        customer, conversation, _ = await _assigned(stack, nursery, center, agent)
        # a second customer is offered to Anna; she has not accepted yet
        second = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={(await center.add_visitor()).token}")
        )
        await second.send(StartConversation(second.client_id()))
        (second_ack,) = await second.wait_for("ack")
        (pending,) = await agent.wait_for("offer", conversation_id=second_ack.conversation_id)
        # the first conversation ends: Anna is in wrap-up on it
        await customer.send(CloseConversation(customer.client_id(), conversation))
        (status,) = await agent.wait_for("status", status="wrap_up")
        assert status.active_conversations == 1
        # the pending offer still stands: accepting it assigns the conversation
        await agent.send(AcceptOffer(pending.offer_id))
        await second.wait_for("event", kind="assigned")
        assert not agent.of("offer.revoked", offer_id=pending.offer_id)
        assert not agent.of("error", code="offer_gone")
        # and a third customer is offered the last free slot during the wrap-up
        third = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={(await center.add_visitor()).token}")
        )
        await third.send(StartConversation(third.client_id()))
        (third_ack,) = await third.wait_for("ack")
        await agent.wait_for("offer", conversation_id=third_ack.conversation_id)
        nursery.cancel_scope.cancel()


async def test_signing_out_one_session_closes_only_its_sockets_also_after_a_crash(
    database_dsn: str, tmp_path: Path
) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        anna = await center.add_agent("Anna")
        laptop = await _online(stack, nursery, center, anna)
        # a second sign-in (her phone) with a token of its own
        phone = await center.add_agent_session(anna)
        on_phone = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={phone}"))
        await on_phone.wait_for("status", status="online")
        # the Agent actor crashes and is restarted on its handle
        handle = center.node.center.agent(UUID(anna.id))
        assert handle is not None
        handle.ref.tell_nowait(InjectCrash())
        await on_phone.send(Ping("after-crash"))
        await on_phone.wait_for("pong")
        # signing out on the phone closes the phone's socket and not the laptop's
        response = await center.http.post("/api/v1/auth/sign-out", headers=center.auth(phone))
        assert response.status_code == 204
        assert await on_phone.wait_closed() == 1008
        await laptop.send(Ping("still-here"))
        await laptop.wait_for("pong")
        assert laptop.closed_code is None
        nursery.cancel_scope.cancel()


async def test_signing_out_closes_the_agents_sockets(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        anna = await center.add_agent("Anna")
        first = await _online(stack, nursery, center, anna)
        second = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={anna.token}"))
        await second.wait_for("status", status="online")  # a second tab sees the status
        response = await center.http.post("/api/v1/auth/sign-out", headers=center.auth(anna.token))
        assert response.status_code == 204
        assert await first.wait_closed() == 1008
        assert await second.wait_closed() == 1008
        # and the token no longer opens a socket
        refused = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={anna.token}"))
        assert await refused.wait_closed() == 1008
        nursery.cancel_scope.cancel()


async def test_a_slow_consumer_is_cut_off_and_resumes_without_loss(database_dsn: str, tmp_path: Path) -> None:
    async with (
        # the agent writes far faster than a person; the rate limit is not what this tests
        live_center(database_dsn, tmp_path, send_buffer_frames=32, max_frames_per_second=10_000) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        anna = await center.add_agent("Anna")
        agent = await _online(stack, nursery, center, anna)
        customer, conversation, token = await _assigned(stack, nursery, center, agent)
        seen = max(event.seq for event in customer.events(conversation))
        # the customer's client stops reading; the agent keeps writing
        customer.paused = True
        # large frames, so the socket buffers between server and client fill up quickly
        texts = [f"line {n} " + "x" * 7000 for n in range(400)]
        for text in texts:
            message_id = agent.client_id()
            await agent.send(SendMessage(message_id, conversation, "text", text=text))
        # 2.8 MB through the store: a guard against a hang, not a speed check (slow CI machines)
        await agent.wait_for("ack", len(texts), timeout=120)
        # reading again, the stalled client finds what was buffered, then the close
        customer.paused = False
        assert await customer.wait_closed(timeout=60) == 4001
        assert len(customer.events(conversation)) < len(texts) + seen
        # the agent's connection and conversation were never held up
        assert agent.closed_code is None
        # a reconnect resumes from the last seq seen and gets every line once, in order
        fresh = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/customer?token={token}"))
        await fresh.send(Resume(conversation, seen))
        await fresh.wait_for("resumed", conversation_id=conversation, timeout=60)
        assert [event.text for event in fresh.events(conversation)] == texts
        nursery.cancel_scope.cancel()


async def test_supervisors_get_live_statistics_every_second(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        anna = await center.add_agent("Anna", capacity=2)
        boss = await center.add_agent("Boss", role="supervisor")
        supervisor = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={boss.token}"))
        agent = await _online(stack, nursery, center, anna)
        await _assigned(stack, nursery, center, agent)

        def anna_load() -> int | None:
            for frame in reversed(supervisor.of("stats")):
                for row in frame.agents:
                    if row.agent_id == anna.id:
                        return row.load
            return None

        await supervisor.wait_until(lambda: anna_load() == 1, "statistics with Anna's load of 1")
        latest = supervisor.of("stats")[-1]
        (queue,) = latest.queues
        assert queue.answered == 1 and queue.offered == 1 and queue.waiting == 0
        assert queue.average_speed_of_answer_seconds is not None
        # a plain agent receives no statistics (those of this second would be here by now)
        await agent.round_trip()
        assert not agent.of("stats")
        nursery.cancel_scope.cancel()


async def _echoing_agent(client: Client) -> None:
    """Accept every offer; answer every customer message with an echo."""
    accepted = answered = 0

    def incoming() -> list[Any]:
        return [e for e in client.of("event", kind="message") if e.sender.role == "customer"]

    def work_waiting() -> bool:
        return len(client.of("offer")) > accepted or len(incoming()) > answered

    while True:
        await client.wait_until(work_waiting, "an offer or a customer's message", timeout=math.inf)
        offers = client.of("offer")[accepted:]
        messages = incoming()[answered:]
        accepted, answered = accepted + len(offers), answered + len(messages)
        for offer in offers:
            await client.send(AcceptOffer(offer.offer_id))
        for event in messages:
            await client.send(SendMessage(client.client_id(), event.conversation_id, "text", text=f"re: {event.text}"))


async def test_many_customers_and_agents_talk_at_once(database_dsn: str, tmp_path: Path) -> None:
    customers_count, agents_count, messages_each = 24, 4, 8
    async with (
        live_center(database_dsn, tmp_path, max_frames_per_second=10_000) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        agents = [await center.add_agent(f"Agent {n}", capacity=6) for n in range(agents_count)]
        clients = [await _online(stack, nursery, center, agent) for agent in agents]
        visitors = [await center.add_visitor() for _ in range(customers_count)]
        customers: dict[str, tuple[Client, str]] = {}

        async def customer_loop(number: int) -> None:
            rng = random.Random(number)
            url = f"{center.ws_base}/ws/customer?token={visitors[number].token}"
            async with connect(nursery, url) as client:
                await client.send(StartConversation(client.client_id()))
                (ack,) = await client.wait_for("ack")
                conversation = ack.conversation_id
                customers[conversation] = (client, conversation)
                await client.wait_for("event", kind="assigned", timeout=60)
                for n in range(messages_each):
                    await trio.sleep(rng.random() * 0.05)
                    await client.send(SendMessage(client.client_id(), conversation, "text", text=f"{number}-{n}"))

                def all_replied() -> bool:
                    replies = [e for e in client.events(conversation) if (e.text or "").startswith("re: ")]
                    return len(replies) >= messages_each

                await client.wait_until(all_replied, f"the {messages_each} replies to customer {number}", timeout=60)

        async with trio.open_nursery() as agent_tasks:
            for client in clients:
                agent_tasks.start_soon(_echoing_agent, client)
            async with trio.open_nursery() as customer_tasks:
                for number in range(customers_count):
                    customer_tasks.start_soon(customer_loop, number)
            agent_tasks.cancel_scope.cancel()

        for client, conversation in customers.values():
            events = client.events(conversation)
            seqs = [event.seq for event in events]
            assert seqs == sorted(set(seqs)), "every event once, in order"
            mine = [e.text for e in events if e.sender.role == "customer" and e.kind == "message"]
            replies = [e.text for e in events if e.sender.role == "agent" and e.kind == "message"]
            assert mine == [f"{mine[0].split('-')[0]}-{n}" for n in range(messages_each)]
            assert sorted(replies) == sorted(f"re: {text}" for text in mine)
        rows = await center.fetch(
            "SELECT conversation_id, array_agg(seq ORDER BY seq) AS seqs FROM conversation_events"
            " WHERE account_id = (SELECT id FROM accounts WHERE slug = $1) GROUP BY 1",
            center.slug,
        )
        assert len(rows) == customers_count
        for row in rows:
            assert row["seqs"] == list(range(1, len(row["seqs"]) + 1))
        nursery.cancel_scope.cancel()


async def test_a_flooding_connection_is_rate_limited_and_others_are_not(database_dsn: str, tmp_path: Path) -> None:
    async with (
        live_center(database_dsn, tmp_path, max_frames_per_second=5) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        anna = await center.add_agent("Anna")
        agent = await _online(stack, nursery, center, anna)
        customer, conversation, _ = await _assigned(stack, nursery, center, agent)
        calm, calm_conversation, _ = await _assigned(stack, nursery, center, agent)
        for number in range(40):  # far over 5/s with a burst of 10
            await customer.send(SendMessage(f"f-{number}", conversation, "text", text=f"flood {number}"))
        refused = (await customer.wait_for("error", code="rate_limited"))[0]
        assert refused.retryable and refused.ref is not None
        # the well-behaved customer on the same server is not affected
        await calm.send(SendMessage("calm-1", calm_conversation, "text", text="hello"))
        await calm.wait_for("ack", client_id="calm-1")
        assert not calm.of("error")
        # every frame of the flood is answered: acked (stored) or refused, never both
        flood = {f"f-{number}": f"flood {number}" for number in range(40)}

        def answered() -> tuple[set[str], set[str]]:
            acked = {a.client_id for a in customer.of("ack") if a.client_id in flood}
            return acked, {e.ref for e in customer.of("error", code="rate_limited")}

        await customer.wait_until(lambda: len(set.union(*answered())) == 40, "an answer to each of the 40 frames")
        acked, refused = answered()
        assert not acked & refused and len(customer.of("error", code="rate_limited")) == len(refused)
        # what was let through reached the agent once each, in order; a refused frame changed nothing
        let_through = sorted((flood[client_id] for client_id in acked), key=lambda text: int(text.split()[1]))
        await agent.wait_until(
            lambda: len([e for e in agent.events(conversation) if e.kind == "message"]) >= len(acked),
            f"the {len(acked)} messages let through at the agent",
        )
        await agent.round_trip()  # and nothing more after them
        assert [e.text for e in agent.events(conversation) if e.kind == "message"] == let_through
        stored = await center.fetch(
            "SELECT body->>'text' AS text FROM conversation_events WHERE conversation_id = $1 AND kind = 'message'"
            " ORDER BY seq",
            UUID(conversation),
        )
        assert [row["text"] for row in stored] == let_through
        nursery.cancel_scope.cancel()


async def test_a_connection_that_ignores_rate_limiting_is_closed_and_others_are_not(
    database_dsn: str, tmp_path: Path
) -> None:
    async with (
        live_center(database_dsn, tmp_path, max_frames_per_second=5) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        anna = await center.add_agent("Anna")
        agent = await _online(stack, nursery, center, anna)
        customer, conversation, _ = await _assigned(stack, nursery, center, agent)
        calm, calm_conversation, _ = await _assigned(stack, nursery, center, agent)
        started = trio.current_time()
        for number in range(300):  # and goes on after being told to slow down
            try:
                await customer.send(SendMessage(f"f-{number}", conversation, "text", text=f"flood {number}"))
            except Exception:  # the server closed the socket under our feet
                break
        assert await customer.wait_closed() == 4004
        flooded_for = trio.current_time() - started
        (flooding,) = customer.of("error", code="flooding")
        assert not flooding.retryable
        # 100 refusals, plus those forgiven while the flood went on (twice the rate per second,
        # however slow this machine is), were sent before the close: not one per frame of the flood
        refusals = len(customer.of("error", code="rate_limited"))
        assert 100 <= refusals <= 100 + 2 * 5 * flooded_for + 1
        assert refusals < 300 - 10
        await calm.send(SendMessage("calm-1", calm_conversation, "text", text="hello"))
        await calm.wait_for("ack", client_id="calm-1")
        assert not calm.of("error")
        nursery.cancel_scope.cancel()


def _welcomed_or_closed(client: Client) -> bool:
    return bool(client.of("welcome")) or client.closed_code is not None


async def test_connections_per_address_are_capped(database_dsn: str, tmp_path: Path) -> None:
    async with (
        live_center(database_dsn, tmp_path, max_connections_per_address=2) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        visitor = await center.add_visitor()
        url = f"{center.ws_base}/ws/customer?token={visitor.token}"
        first = await stack.enter_async_context(connect(nursery, url))
        second = await stack.enter_async_context(connect(nursery, url))
        await first.wait_for("welcome")
        await second.wait_for("welcome")
        third = await stack.enter_async_context(connect(nursery, url))
        assert await third.wait_closed() == 1013
        await first.ws.aclose()  # one leaves: there is room again
        await first.wait_closed()
        # once the server has noticed the close (no frame tells when: try until it has)
        deadline = trio.current_time() + WAIT_SECONDS
        while True:
            fourth = await stack.enter_async_context(connect(nursery, url))
            await fourth.wait_until(partial(_welcomed_or_closed, fourth), "welcome or a close")
            if fourth.of("welcome"):
                break
            assert fourth.closed_code == 1013
            assert trio.current_time() < deadline, f"still no room {WAIT_SECONDS} s after a connection closed"
            await trio.sleep(0.05)
        # and the limit still holds: a connection more than two is refused
        assert await (await stack.enter_async_context(connect(nursery, url))).wait_closed() == 1013
        nursery.cancel_scope.cancel()
