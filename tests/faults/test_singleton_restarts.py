"""Crashes injected into the node's singletons: the dispatcher, the aggregator, the store, the timers.

Each raises once, as a bug would, while an agent is online and conversations wait or are
under offer. Its supervisor starts it again, and the new incarnation rebuilds what it needs
from the actors it serves (OTP's ``init``): no agent touches its status, no customer
reconnects, and routing goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import trio

from kefu.actors import messages as m
from kefu.actors.aggregator import Aggregator, Snapshot
from kefu.actors.runtime import ActorRef
from kefu.protocol.agent import AcceptOffer, DeclineOffer, SetStatus
from kefu.protocol.common import SendMessage
from kefu.protocol.customer import CloseConversation, StartConversation
from kefu.server.node import Node
from tests.server.live import Agent, Center, Client, connect, live_center


async def _online(stack: AsyncExitStack, nursery: trio.Nursery, center: Center, agent: Agent) -> Client:
    client = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={agent.token}"))
    await client.wait_for("welcome")
    await client.send(SetStatus("online"))
    await client.wait_for("status", status="online")
    return client


async def _customer(stack: AsyncExitStack, nursery: trio.Nursery, center: Center) -> tuple[Client, str]:
    visitor = await center.add_visitor()
    client = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}"))
    await client.send(StartConversation(client.client_id()))
    (ack,) = await client.wait_for("ack")
    return client, ack.conversation_id


async def _routed(node: Node) -> None:
    """Every message the dispatcher holds now has been handled (by whichever incarnation runs)."""
    await node.dispatcher_mailbox.ref.ask(lambda reply: m.RouteProbe(reply), timeout=10)


async def _until(condition: Callable[[], bool], timeout: float = 30) -> None:
    """Wait for a condition of the node's state to hold (checked between its steps)."""
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)


async def _restarted(ref: ActorRef[Any], crash: Callable[[], Any], starts: Callable[[], int]) -> None:
    before = starts()
    crash()
    await _until(lambda: starts() > before)


async def test_a_restarted_dispatcher_withdraws_its_offers_and_routes_again(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        node = center.node
        agent_row = await center.add_agent("Ada", capacity=3)
        agent = await _online(stack, nursery, center, agent_row)
        # one conversation held, one under offer
        _, held = await _customer(stack, nursery, center)
        (offer,) = await agent.wait_for("offer", conversation_id=held)
        await agent.send(AcceptOffer(offer.offer_id))
        await agent.wait_for("event", kind="assigned", conversation_id=held)
        _, offered = await _customer(stack, nursery, center)
        (stranded,) = await agent.wait_for("offer", conversation_id=offered)

        mailbox = node.dispatcher_mailbox
        await _restarted(mailbox.ref, lambda: mailbox.ref.tell_nowait(m.InjectCrash()), lambda: mailbox.starts)
        assert mailbox.crashes == 1

        # the dead incarnation's offer is withdrawn and made again, without the agent doing anything
        await agent.wait_for("offer.revoked", offer_id=stranded.offer_id, reason="cancelled")
        offers = await agent.wait_for("offer", 2, conversation_id=offered)
        assert offers[1].offer_id != stranded.offer_id
        # a new customer is offered to the agent (it did not toggle its status)
        _, newcomer = await _customer(stack, nursery, center)
        (newcomer_offer,) = await agent.wait_for("offer", conversation_id=newcomer)

        # capacity 3 = the held one + two offers: the next customer waits, nothing counted twice
        _, waiting = await _customer(stack, nursery, center)
        dispatcher = node.dispatcher
        assert dispatcher is not None
        await _until(lambda: UUID(waiting) in dispatcher.waiting)
        await _routed(node)
        router = dispatcher.routers[dispatcher.agents[UUID(agent_row.id)].profile.account_id]
        assert router.load(UUID(agent_row.id)) == 3
        assert UUID(waiting) in dispatcher.waiting
        # a declined offer gives its slot back (and, nobody else being online, is made again)
        await agent.send(DeclineOffer(newcomer_offer.offer_id))
        await agent.wait_for("offer", 2, conversation_id=newcomer)
        await _routed(node)
        assert router.load(UUID(agent_row.id)) == 3
        # the held conversation ends: its slot, counted once, goes to the customer waiting
        await agent.send(CloseConversation(agent.client_id(), held, wrap_up_code="done"))
        await agent.wait_for("offer", conversation_id=waiting)
        await _routed(node)
        assert router.load(UUID(agent_row.id)) == 3
        nursery.cancel_scope.cancel()


async def test_a_restarted_dispatcher_offers_what_waited_before_its_crash(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        node = center.node
        agent_row = await center.add_agent("Bo", capacity=1)
        agent = await _online(stack, nursery, center, agent_row)
        _, first = await _customer(stack, nursery, center)
        (offer,) = await agent.wait_for("offer", conversation_id=first)
        await agent.send(AcceptOffer(offer.offer_id))
        await agent.wait_for("event", kind="assigned", conversation_id=first)
        # capacity 1 is taken: these two queue
        customers = [await _customer(stack, nursery, center) for _ in range(2)]
        dispatcher = node.dispatcher
        assert dispatcher is not None
        await _until(lambda: all(UUID(c) in dispatcher.waiting for _, c in customers))

        mailbox = node.dispatcher_mailbox
        await _restarted(mailbox.ref, lambda: mailbox.ref.tell_nowait(m.InjectCrash()), lambda: mailbox.starts)
        fresh = node.dispatcher
        assert fresh is not None and fresh is not dispatcher
        # the sessions enqueued again, and the agent's held conversation is counted
        await _until(lambda: all(UUID(c) in fresh.waiting for _, c in customers))
        await _routed(node)
        router = fresh.routers[fresh.agents[UUID(agent_row.id)].profile.account_id]
        assert router.load(UUID(agent_row.id)) == 1
        # the agent finishes its conversation: the first waiting one is offered, then the next
        await agent.send(CloseConversation(agent.client_id(), first, wrap_up_code="done"))
        (offer,) = await agent.wait_for("offer", conversation_id=customers[0][1])
        await agent.send(AcceptOffer(offer.offer_id))
        await agent.wait_for("event", kind="assigned", conversation_id=customers[0][1])
        await agent.send(CloseConversation(agent.client_id(), customers[0][1], wrap_up_code="done"))
        await agent.wait_for("offer", conversation_id=customers[1][1])
        assert agent.of("status")[-1].status == "online"
        nursery.cancel_scope.cancel()


async def test_a_restarted_aggregator_knows_the_online_agents_and_queues(
    database_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Aggregator.handle
    armed = [True]

    async def crash_once(self: Aggregator, message: Any) -> None:
        if armed and isinstance(message, m.InjectCrash):
            armed.clear()
            raise RuntimeError("injected crash")
        await original(self, message)

    monkeypatch.setattr(Aggregator, "handle", crash_once)
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        node = center.node
        agent_row = await center.add_agent("Cy", capacity=1)
        agent = await _online(stack, nursery, center, agent_row)
        _, held = await _customer(stack, nursery, center)
        (offer,) = await agent.wait_for("offer", conversation_id=held)
        await agent.send(AcceptOffer(offer.offer_id))
        await agent.wait_for("event", kind="assigned", conversation_id=held)
        _, waiting = await _customer(stack, nursery, center)
        dispatcher = node.dispatcher
        assert dispatcher is not None
        await _until(lambda: UUID(waiting) in dispatcher.waiting)

        mailbox = node.aggregator_mailbox
        await _restarted(mailbox.ref, lambda: mailbox.ref.tell_nowait(m.InjectCrash()), lambda: mailbox.starts)
        await _routed(node)
        account_id = dispatcher.agents[UUID(agent_row.id)].profile.account_id

        def agents_seen(stats: Any) -> list[tuple[str, str, int]]:
            return [(a.agent_id, a.status, a.load) for a in stats.agents]

        async def snapshot() -> Any:
            return await mailbox.ref.ask(lambda reply: Snapshot(account_id, reply), timeout=10)

        with trio.fail_after(30):
            while agents_seen(stats := await snapshot()) != [(agent_row.id, "online", 1)]:
                await trio.sleep(0.01)
        assert [q.waiting for q in stats.queues] == [1]
        # routing never depended on it: the customer waiting is offered once the agent is free
        assert node.dispatcher is dispatcher
        nursery.cancel_scope.cancel()


async def test_a_crashed_store_answers_its_callers_and_routing_goes_on(
    database_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        node = center.node
        agent_row = await center.add_agent("Di", capacity=2)
        agent = await _online(stack, nursery, center, agent_row)
        customer, conversation = await _customer(stack, nursery, center)
        (offer,) = await agent.wait_for("offer", conversation_id=conversation)
        await agent.send(AcceptOffer(offer.offer_id))
        await agent.wait_for("event", kind="assigned", conversation_id=conversation)

        store = node.store
        assert store is not None
        append_batch = store.event_log.append_batch
        armed = [True]

        async def crash_once(*args: Any, **kwargs: Any) -> Any:
            if armed:
                armed.clear()
                raise RuntimeError("injected crash")
            return await append_batch(*args, **kwargs)

        monkeypatch.setattr(store.event_log, "append_batch", crash_once)
        starts = node.store_mailbox.starts
        client_id = customer.client_id()
        await customer.send(SendMessage(client_id, conversation, "text", "hello"))
        # the caller waiting on the crashed store is answered: its session retries (or the
        # customer hears a retryable error and sends again), and the message is stored once
        await _until(lambda: node.store_mailbox.starts > starts)
        with trio.fail_after(15):
            while not customer.of("ack", client_id=client_id):
                if customer.of("error", ref=client_id):
                    (error,) = customer.of("error", ref=client_id)
                    assert (error.code, error.retryable) == ("unavailable", True)
                    await customer.send(SendMessage(client_id, conversation, "text", "hello"))
                    await customer.wait_for("ack", client_id=client_id)
                    break
                await customer._changed.wait()
        rows = await center.fetch(
            "SELECT seq FROM conversation_events WHERE conversation_id = $1 AND client_id = $2",
            UUID(conversation),
            client_id,
        )
        assert len(rows) == 1
        # and routing goes on: a new customer is offered to the agent
        _, newcomer = await _customer(stack, nursery, center)
        await agent.wait_for("offer", conversation_id=newcomer)
        nursery.cancel_scope.cancel()


async def test_deadlines_registered_before_a_timers_crash_still_fire(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        node = center.node
        response = await center.http.post(
            "/api/v1/queues",
            json={"name": "fast", "offer_timeout_seconds": 2, "is_default": True},
            headers=center.auth(center.admin_token),
        )
        assert response.status_code == 201, response.text
        agent_row = await center.add_agent("Ed", capacity=1)
        agent = await _online(stack, nursery, center, agent_row)
        _, conversation = await _customer(stack, nursery, center)
        (offer,) = await agent.wait_for("offer", conversation_id=conversation)
        # the offer's expiry is registered; the timer service crashes and is restarted
        timers_spec_restarts = node.root.statistics().restarts
        node.timers.inject_crash()
        await _until(lambda: node.root.statistics().restarts > timers_spec_restarts)
        # the deadline registered before the crash still fires: the offer expires and is made again
        await agent.wait_for("offer.revoked", offer_id=offer.offer_id, reason="expired", timeout=15)
        await agent.wait_for("offer", 2, conversation_id=conversation, timeout=15)
        nursery.cancel_scope.cancel()
