"""`kill -9` of `kefu serve` under load, in a bounded number of rounds.

A real `kefu serve` process with its embedded PostgreSQL; customers and agents talk over
real websockets, each keeping a few messages in flight. Mid-stream the process is killed
with SIGKILL (no signal handler runs, nothing is flushed) and started again; the embedded
PostgreSQL keeps running and the new process joins it. The clients reconnect, resume and
send again what was not acknowledged, with the same client_id.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import trio

from tests.conftest import open_database
from tests.faults.common import (
    STORED_EVENTS,
    KillableKefu,
    all_delivered,
    assert_delivered_once_in_order,
    assert_exactly_once,
    embedded_dsn,
    stop_embedded_postgres,
    talk,
)
from tests.faults.peers import Peer
from tests.web.conftest import ADMIN_PASSWORD, AGENT_PASSWORD, sign_in

ROUNDS = 3
CUSTOMERS = 6
AGENTS = 2
CUSTOMER_MESSAGES = 40
AGENT_MESSAGES = 12
"""Per conversation the agent holds."""


async def _peers(server: KillableKefu, slug: str, admin: str) -> tuple[list[Peer], list[Peer]]:
    """AGENTS agents (each may hold every conversation) and CUSTOMERS visitors, not yet connected."""
    ws = server.url.replace("http://", "ws://")
    agents: list[Peer] = []
    customers: list[Peer] = []
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        for n in range(AGENTS):
            email = f"agent{n}@{slug}.example"
            body = {"email": email, "display_name": f"Agent {n}", "password": AGENT_PASSWORD}
            body["max_concurrent_conversations"] = CUSTOMERS
            response = await http.post("/api/v1/agents", json=body, headers={"Authorization": f"Bearer {admin}"})
            assert response.status_code == 201, response.text
            token = await trio.to_thread.run_sync(sign_in, server, slug, email, AGENT_PASSWORD)
            agents.append(Peer(f"a{n}", "agent", lambda token=token: f"{ws}/ws/agent?token={token}"))
        for n in range(CUSTOMERS):
            response = await http.post("/api/v1/webchat/visitors", json={"account": slug})
            assert response.status_code == 201, response.text
            token = response.json()["token"]
            customers.append(Peer(f"c{n}", "customer", lambda token=token: f"{ws}/ws/customer?token={token}"))
    return agents, customers


async def _assigned(agents: list[Peer], customers: list[Peer]) -> None:
    """The agents online, each customer in a conversation that an agent holds."""
    with trio.fail_after(30):
        for agent in agents:
            while not agent.statuses or agent.statuses[-1].status != "online":
                await agent.changed()
        for customer in customers:
            conversation = await customer.start_conversation()
            while not customer.kinds(conversation, "assigned"):
                await customer.changed()
        # each agent has the replay of what it holds, up to its assignment
        expected = sorted(c.conversations[0] for c in customers)
        while sorted(c for a in agents for c in a.received if a.kinds(c, "assigned")) != expected:
            await trio.sleep(0.01)
    for agent in agents:
        agent.conversations = sorted(c for c in agent.received if agent.kinds(c, "assigned"))


def _acked(peers: list[Peer]) -> int:
    return sum(1 for p in peers for c in p.texts if c in p.acks)


class KillRounds:
    """What each kill found in flight, what the clients re-sent after it, and how long a restart took."""

    def __init__(self) -> None:
        self.resent: list[int] = []
        self.in_flight: list[int] = []
        self.ready_seconds: list[float] = []

    async def run(self, server: KillableKefu, peers: list[Peer], total: int) -> None:
        for round_number in range(1, ROUNDS + 1):
            while _acked(peers) < total * round_number // (ROUNDS + 1):
                await trio.sleep(0.01)
            resent_before = sum(p.resent for p in peers)
            # frozen, the process acks nothing more: what the clients send now is
            # surely in flight when it dies (without the freeze, by chance, nothing might be)
            await trio.to_thread.run_sync(server.freeze)
            while not any(p.pending for p in peers):
                await trio.sleep(0.01)
            in_flight = sum(len(p.pending) for p in peers)
            await trio.to_thread.run_sync(server.kill)
            started = time.monotonic()
            await trio.to_thread.run_sync(server.start)
            self.ready_seconds.append(time.monotonic() - started)
            # every client is back on the new process and re-sent what was in flight
            while any(p.connections < round_number + 1 or p._live is None for p in peers):
                await trio.sleep(0.01)
            self.resent.append(sum(p.resent for p in peers) - resent_before)
            self.in_flight.append(in_flight)


async def test_kill_9_under_load_keeps_every_acknowledged_message_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "kefu"
    data_dir.mkdir()
    server = KillableKefu("", data_dir, extra_env={"KEFU_MAX_FRAMES_PER_SECOND": "10000"})
    await trio.to_thread.run_sync(server.start)
    try:
        slug, admin_email = await trio.to_thread.run_sync(server.create_account)
        admin = await trio.to_thread.run_sync(sign_in, server, slug, admin_email, ADMIN_PASSWORD)
        agents, customers = await _peers(server, slug, admin)
        peers = agents + customers
        total = CUSTOMERS * CUSTOMER_MESSAGES + CUSTOMERS * AGENT_MESSAGES
        kills = KillRounds()
        async with trio.open_nursery() as nursery:
            for peer in peers:
                nursery.start_soon(peer.run)
            await _assigned(agents, customers)
            with trio.fail_after(150):
                async with trio.open_nursery() as talkers:
                    for customer in customers:
                        talkers.start_soon(talk, customer, CUSTOMER_MESSAGES)
                    for agent in agents:
                        talkers.start_soon(talk, agent, AGENT_MESSAGES)
                    await kills.run(server, peers, total)
                for peer in peers:
                    await peer.drained(timeout=60)
            # what was stored reaches every peer, once, in order
            async with open_database(embedded_dsn(data_dir)) as database:
                rows = await database.fetch(STORED_EVENTS, slug)
            await all_delivered(peers, rows)
            nursery.cancel_scope.cancel()

        assert all(p.connections >= ROUNDS + 1 for p in peers), [p.connections for p in peers]
        assert len(kills.ready_seconds) == ROUNDS
        assert_exactly_once(rows, peers)
        assert_delivered_once_in_order(rows, peers)
        # the resend path was exercised: frames in flight at each kill were sent again
        assert all(resent >= in_flight > 0 for resent, in_flight in zip(kills.resent, kills.in_flight, strict=True))
        print(
            f"kill -9 rounds={ROUNDS} messages={total} acked={_acked(peers)} in_flight_at_kill={kills.in_flight} "
            f"resent_after_kill={kills.resent} "
            f"duplicate_acks={sum(p.duplicate_acks for p in peers)} "
            f"restart_to_ready_s={[round(s, 2) for s in kills.ready_seconds]}"
        )
    finally:
        await trio.to_thread.run_sync(server.stop)
        await trio.to_thread.run_sync(stop_embedded_postgres, data_dir)
