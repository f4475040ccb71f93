"""An agent's status across reconnects (docs/protocol.md, `status.set`): a short reconnect grace
keeps the status, but an agent with no tab connected gets no offers and shows `offline`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any
from uuid import UUID

import trio

from kefu.actors import messages as m
from kefu.actors.aggregator import Snapshot
from kefu.actors.center import RECONNECT_GRACE_SECONDS
from kefu.protocol.agent import SetStatus
from kefu.protocol.customer import StartConversation
from tests.server.live import Center, Client, connect, live_center


async def _until(condition: Callable[[], bool], timeout: float = 30) -> None:
    with trio.fail_after(timeout):
        while not condition():
            await trio.sleep(0.01)


async def _stats(center: Center, account_id: UUID) -> Any:
    node = center.node
    await node.dispatcher_mailbox.ref.ask(lambda reply: m.RouteProbe(reply), timeout=10)
    return await node.aggregator_mailbox.ref.ask(lambda reply: Snapshot(account_id, reply), timeout=10)


async def test_a_reload_keeps_the_status_but_no_tab_means_no_offers_and_offline_after_the_grace(
    database_dsn: str, tmp_path: Path
) -> None:
    assert RECONNECT_GRACE_SECONDS == 30.0
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery:
        node = center.node
        dispatcher = node.dispatcher
        assert dispatcher is not None
        agent_row = await center.add_agent("Fay")
        agent_id = UUID(agent_row.id)
        url = f"{center.ws_base}/ws/agent?token={agent_row.token}"
        async with connect(nursery, url) as first:
            await first.wait_for("welcome")
            await first.send(SetStatus("online"))
            await first.wait_for("status", status="online")
            await _until(lambda: agent_id in dispatcher.agents and dispatcher.agents[agent_id].available)
        account_id = dispatcher.agents[agent_id].profile.account_id

        # the only tab closed: no offers, and supervisors see the agent offline, not available
        await _until(lambda: not dispatcher.agents[agent_id].available)
        handle = node.center.agent(agent_id)
        assert handle is not None and handle.kept.status == "online", "kept for the reconnect grace"
        with trio.fail_after(30):
            while True:
                stats = await _stats(center, account_id)
                if [(a.agent_id, a.status) for a in stats.agents] == [(agent_row.id, "offline")]:
                    break
                await trio.sleep(0.01)
        assert [q.agents_available for q in stats.queues] == [0]
        visitor = await center.add_visitor()
        async with AsyncExitStack() as stack:
            customer = await stack.enter_async_context(
                connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}")
            )
            await customer.send(StartConversation(customer.client_id()))
            (ack,) = await customer.wait_for("ack")
            waiting = UUID(ack.conversation_id)
            await _until(lambda: waiting in dispatcher.waiting)
            await node.dispatcher_mailbox.ref.ask(lambda reply: m.RouteProbe(reply), timeout=10)
            assert waiting in dispatcher.waiting and not dispatcher.offers

            # a reload within the grace: online at once, and the waiting customer is offered
            second: Client = await stack.enter_async_context(connect(nursery, url))
            status = (await second.wait_for("status"))[0]
            assert status.status == "online"
            await second.wait_for("offer", conversation_id=str(waiting))
            stats = await _stats(center, account_id)
            assert [(a.agent_id, a.status) for a in stats.agents] == [(agent_row.id, "online")]

            # the grace passes with no tab back: offline, and the next connection starts offline
            node.center.settings = dataclasses.replace(node.center.settings, reconnect_grace_seconds=0.2)
            await second.ws.aclose()
            await _until(lambda: node.center.agent(agent_id) is None or handle.kept.status == "offline")
            assert handle.kept.status == "offline"
            third = await stack.enter_async_context(connect(nursery, url))
            status = (await third.wait_for("status"))[0]
            assert status.status == "offline"
        nursery.cancel_scope.cancel()
