"""Routing end to end: offers that time out, missed-offer breaks, overflow, transfers, auto-accept."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

from kefu.protocol.agent import AcceptOffer, DeclineOffer, SetStatus, Transfer
from kefu.protocol.common import SendMessage
from kefu.protocol.customer import CloseConversation, StartConversation
from tests.server.live import Agent, Center, Client, connect, live_center, poll, routing_settled

CLOCK_SLACK = 0.01
"""The server measures a wait on the wall clock, the test on the monotonic one."""


async def _queue(center: Center, **fields: Any) -> str:
    body = {"name": f"queue {fields.get('name', '')}".strip(), **fields}
    response = await center.http.post("/api/v1/queues", json=body, headers=center.auth(center.admin_token))
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def _department(center: Center, name: str) -> str:
    response = await center.http.post(
        "/api/v1/departments", json={"name": name}, headers=center.auth(center.admin_token)
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def _online(stack: AsyncExitStack, nursery: trio.Nursery, center: Center, agent: Agent) -> Client:
    client = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={agent.token}"))
    await client.wait_for("welcome")
    await client.send(SetStatus("online"))
    await client.wait_for("status", status="online")
    return client


async def _customer(stack: AsyncExitStack, nursery: trio.Nursery, center: Center, **start: Any) -> tuple[Client, str]:
    visitor = await center.add_visitor()
    client = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}"))
    await client.send(StartConversation(client.client_id(), **start))
    (ack,) = await client.wait_for("ack")
    return client, ack.conversation_id


async def test_an_unanswered_offer_moves_on_and_missed_offers_mean_a_break(database_dsn: str, tmp_path: Path) -> None:
    async with (
        live_center(database_dsn, tmp_path, max_missed_offers=2) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        await _queue(center, name="fast", offer_timeout_seconds=1, is_default=True)
        sleepy_agent = await center.add_agent("Sleepy")
        sleepy = await _online(stack, nursery, center, sleepy_agent)
        _, first = await _customer(stack, nursery, center)
        (offer,) = await sleepy.wait_for("offer", conversation_id=first)
        await sleepy.wait_for("offer.revoked", offer_id=offer.offer_id, reason="expired")
        # alone in the queue, the sleepy agent is offered it again (nobody else is eligible)
        await sleepy.wait_for("offer", 2, conversation_id=first)
        # a second expiry in a row: on break, and the offers stop
        (on_break,) = await sleepy.wait_for("status", status="break", reason="missed_offers")
        await routing_settled(center, sleepy)  # the dispatcher knows, and still has the conversation
        assert not sleepy.after(on_break, "offer")

        # an attentive agent comes online and gets the conversation
        awake_agent = await center.add_agent("Awake")
        awake = await _online(stack, nursery, center, awake_agent)
        (offer,) = await awake.wait_for("offer", conversation_id=first)
        await awake.send(AcceptOffer(offer.offer_id))
        await awake.wait_for("event", kind="assigned", conversation_id=first)
        # accepting a revoked offer is refused
        await sleepy.send(AcceptOffer(sleepy.of("offer")[0].offer_id))
        await sleepy.wait_for("error", code="offer_gone")
        # (the refusal comes from the dispatcher, behind any offer it made her: there was none)
        assert not sleepy.after(on_break, "offer")
        nursery.cancel_scope.cancel()


async def test_a_declined_offer_goes_to_the_next_agent(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        first_agent, second_agent = await center.add_agent("First"), await center.add_agent("Second")
        agents = [
            await _online(stack, nursery, center, first_agent),
            await _online(stack, nursery, center, second_agent),
        ]
        _, conversation = await _customer(stack, nursery, center)
        await poll(lambda: any(agent.of("offer") for agent in agents), "an offer to one of the agents")
        offered, other = agents if agents[0].of("offer") else agents[::-1]
        await offered.send(DeclineOffer(offered.of("offer")[0].offer_id))
        (offer,) = await other.wait_for("offer", conversation_id=conversation)
        await other.send(AcceptOffer(offer.offer_id))
        await other.wait_for("event", kind="assigned")
        nursery.cancel_scope.cancel()


async def test_a_conversation_waiting_too_long_overflows(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        sales = await _department(center, "Sales")
        support = await _department(center, "Support")
        support_queue = await _queue(center, name="support", department_id=support)
        await _queue(
            center, name="sales", department_id=sales, overflow_after_seconds=1, overflow_queue_id=support_queue
        )
        helper = await center.add_agent("Helper", departments=[support])
        agent = await _online(stack, nursery, center, helper)
        customer, conversation = await _customer(stack, nursery, center, department=sales)
        # nobody in sales: after a second it moves to support, whose agent gets it
        await customer.wait_for("event", kind="queued", queue_id=support_queue)
        (offer,) = await agent.wait_for("offer", conversation_id=conversation)
        assert offer.queue_id == support_queue
        nursery.cancel_scope.cancel()


async def test_transfers_to_an_agent_and_to_a_department(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        returns = await _department(center, "Returns")
        await _queue(center, name="general", is_default=True, auto_accept=True)
        await _queue(center, name="returns", department_id=returns, auto_accept=True)
        anna_agent = await center.add_agent("Anna")
        bo_agent = await center.add_agent("Bo")
        anna = await _online(stack, nursery, center, anna_agent)
        customer, conversation = await _customer(stack, nursery, center)
        await anna.wait_for("event", kind="assigned", conversation_id=conversation)  # auto-accepted
        bo = await _online(stack, nursery, center, bo_agent)

        await anna.send(Transfer(anna.client_id(), conversation, to_agent_id=bo_agent.id, note="wants a refund"))
        (offer,) = await bo.wait_for("offer", conversation_id=conversation)
        await bo.send(AcceptOffer(offer.offer_id))
        await bo.wait_for("event", kind="assigned", agent_id=bo_agent.id)
        transferred = bo.of("event", kind="transferred")
        assert transferred and transferred[0].text == "wants a refund"
        (to_customer,) = await customer.wait_for("event", kind="transferred")
        assert to_customer.text is None  # the note is for the agents
        await anna.wait_for("status", active_conversations=0)
        # Anna no longer holds it: her messages are refused
        await anna.send(SendMessage("late-1", conversation, "text", text="still me"))
        (error,) = await anna.wait_for("error", ref="late-1")
        assert error.code == "forbidden"

        returns_agent = await center.add_agent("Rita", departments=[returns])
        rita = await _online(stack, nursery, center, returns_agent)
        await bo.send(Transfer(bo.client_id(), conversation, to_department_id=returns))
        await rita.wait_for("event", kind="assigned", agent_id=returns_agent.id)
        await bo.wait_for("status", active_conversations=0)
        nursery.cancel_scope.cancel()


async def test_priority_serves_the_important_customer_first_and_positions_are_told(
    database_dsn: str, tmp_path: Path
) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        await _queue(center, name="vip", strategy="priority", is_default=True)
        first, first_id = await _customer(stack, nursery, center)
        second, second_id = await _customer(stack, nursery, center)
        # nobody online yet: both wait, and each is told its place
        await first.wait_for("queue.position", position=1)
        await second.wait_for("queue.position", position=2)
        important = await center.add_visitor("VIP")
        response = await center.http.patch(
            f"/api/v1/customers/{important.customer_id}", json={"level": 5}, headers=center.auth(center.admin_token)
        )
        assert response.status_code == 200, response.text
        vip = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/customer?token={important.token}"))
        await vip.send(StartConversation(vip.client_id()))
        (ack,) = await vip.wait_for("ack")
        await vip.wait_for("queue.position", position=1)  # ahead of the two who came first
        await second.wait_for("queue.position", position=3)

        solo = await center.add_agent("Solo", capacity=1)
        agent = await _online(stack, nursery, center, solo)
        (offer,) = await agent.wait_for("offer")
        assert offer.conversation_id == ack.conversation_id
        assert offer.customer.level == 5 and offer.customer.display_name == "VIP"
        await agent.send(AcceptOffer(offer.offer_id))
        await vip.wait_for("event", kind="assigned")
        await first.wait_for("queue.position", position=1)
        assert first_id != second_id
        nursery.cancel_scope.cancel()


async def test_skills_queue_widens_to_lower_levels_as_the_wait_grows(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        response = await center.http.post(
            "/api/v1/skills", json={"name": "French"}, headers=center.auth(center.admin_token)
        )
        french = response.json()["id"]
        await _queue(
            center,
            name="french",
            strategy="skills",
            skill_id=french,
            min_skill_level=4,
            widen_after_seconds=1,
            is_default=True,
        )
        beginner = await center.add_agent("Beginner", skills=[{"id": french, "level": 2}])
        agent = await _online(stack, nursery, center, beginner)
        asked = trio.current_time()
        _, conversation = await _customer(stack, nursery, center)
        # level 2 is two levels short of 4: not eligible at first, then after the wait widened
        # twice (2 s after the customer asked, at the earliest) it is
        (offer,) = await agent.wait_for("offer", conversation_id=conversation)
        assert agent.arrival(offer) - asked >= 2 - CLOCK_SLACK
        nursery.cancel_scope.cancel()


async def _assign_to(center: Center, stack: AsyncExitStack, nursery: trio.Nursery, agents: dict[str, Client]) -> str:
    """Start one conversation (auto-accepted) and say which agent took it."""
    _, conversation = await _customer(stack, nursery, center)

    def taken_by() -> list[str]:
        return [name for name, a in agents.items() if a.of("event", kind="assigned", conversation_id=conversation)]

    await poll(taken_by, f"an agent assigned {conversation}")
    (name,) = taken_by()
    return name


async def test_round_robin_takes_turns_whatever_the_load(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        await _queue(center, name="turns", strategy="round_robin", auto_accept=True, is_default=True)
        agents = {"A": await _online(stack, nursery, center, await center.add_agent("A"))}
        assert [await _assign_to(center, stack, nursery, agents) for _ in range(2)] == ["A", "A"]
        agents["B"] = await _online(stack, nursery, center, await center.add_agent("B"))
        # least load would give both to B (0 against 2); the ring alternates
        assert [await _assign_to(center, stack, nursery, agents) for _ in range(2)] == ["B", "A"]
        nursery.cancel_scope.cancel()


async def test_longest_idle_goes_to_the_agent_whose_last_conversation_is_oldest(
    database_dsn: str, tmp_path: Path
) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        await _queue(center, name="idle", strategy="longest_idle", auto_accept=True, is_default=True)
        agents = {"A": await _online(stack, nursery, center, await center.add_agent("A"))}
        assert await _assign_to(center, stack, nursery, agents) == "A"
        agents["B"] = await _online(stack, nursery, center, await center.add_agent("B"))
        assert await _assign_to(center, stack, nursery, agents) == "B"
        # B finishes its conversation: fewer conversations than A, but assigned more recently
        (assigned,) = agents["B"].of("event", kind="assigned")
        close_id = agents["B"].client_id()
        await agents["B"].send(CloseConversation(close_id, assigned.conversation_id, wrap_up_code="done"))
        await agents["B"].wait_for("event", kind="wrapped_up")
        assert await _assign_to(center, stack, nursery, agents) == "A"
        nursery.cancel_scope.cancel()
