"""PostgreSQL stopped abruptly under load: kefu stays up, says so, refuses clearly, and recovers by itself.

A PostgreSQL owned by this test (pgserver in a temporary folder) is stopped with
`pg_ctl stop -m immediate` (no checkpoint: what a crash or power cut does) while customers
and an agent talk through a running kefu node, then started again. The clients behave as
docs/protocol.md asks: a frame answered with a retryable error, or not answered before the
connection ended, is sent again with the same client_id.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from tests.conftest import open_database
from tests.faults.common import (
    STORED_EVENTS,
    all_delivered,
    assert_delivered_once_in_order,
    assert_exactly_once,
    talk,
)
from tests.faults.peers import Peer
from tests.server.live import connect, live_center
from tests.server.test_hard_stop import crash_postgres, start_postgres

CUSTOMERS = 4
CUSTOMER_MESSAGES = 30
AGENT_MESSAGES = 10
OUTAGE_SECONDS = 2.0


async def _readiness(http: httpx.AsyncClient) -> tuple[int, dict[str, bool]]:
    response = await http.get("/readyz")
    return response.status_code, response.json()["checks"]


async def _close_code_of_new_socket(url: str) -> int:
    """Open a websocket and return the close code the server ends it with."""
    with trio.fail_after(10):
        async with open_websocket_url(url) as ws:
            try:
                while True:
                    await ws.get_message()
            except ConnectionClosed as closed:
                return closed.reason.code if closed.reason is not None else 1006
            finally:
                await trio.aclose_forcefully(ws._stream)


class Outage:
    """What the peers heard while PostgreSQL was down, and how long it took to come back."""

    unavailable: list[Any]
    acked_while_down: int
    postgres_restart: float
    ready_after: float

    async def run(self, center: Any, postgres: Any, peers: list[Peer], customer: Peer, agent: Peer) -> None:
        await trio.to_thread.run_sync(crash_postgres, postgres)
        errors_before = {p.name: len(p.retryable_errors()) for p in peers}
        # kefu stays up and says it is not ready, naming the database
        assert (await center.http.get("/healthz")).status_code == 200
        with trio.fail_after(30):
            while (status := await _readiness(center.http))[0] != 503:
                await trio.sleep(0.05)
        assert status[1]["database"] is False
        # every sender with a frame in flight hears a retryable `unavailable`, not silence
        with trio.fail_after(30):
            for peer in peers:
                while len(peer.retryable_errors()) == errors_before[peer.name]:
                    await peer.changed()
        self.unavailable = [e for p in peers for e in p.retryable_errors()]
        assert {e.code for e in self.unavailable} == {"unavailable"}
        assert all(e.ref in p.texts for p in peers for e in p.retryable_errors())
        # a new connection is told to come back later (1013), for customers and agents alike
        assert await _close_code_of_new_socket(customer.url()) == 1013
        assert await _close_code_of_new_socket(agent.url()) == 1013
        await trio.sleep(OUTAGE_SECONDS)
        self.acked_while_down = _acked(peers)

        restarting = time.monotonic()
        await trio.to_thread.run_sync(postgres.ensure_postgres_running)
        back = time.monotonic()
        self.postgres_restart = back - restarting
        with trio.fail_after(20):
            while (status := await _readiness(center.http))[0] != 200:
                await trio.sleep(0.05)
        self.ready_after = time.monotonic() - back
        assert all(status[1].values())


def _acked(peers: list[Peer]) -> int:
    return sum(1 for p in peers for c in p.texts if c in p.acks)


async def test_postgres_stopped_under_load_is_survived_without_loss(tmp_path: Path) -> None:
    postgres = start_postgres(tmp_path / "pg")
    try:
        dsn = str(postgres.get_uri())
        async with open_database(dsn) as database:
            await database.migrate()
        async with (
            live_center(dsn, tmp_path, max_frames_per_second=10_000) as center,
            trio.open_nursery() as nursery,
        ):
            anna = await center.add_agent("Anna", capacity=CUSTOMERS)
            agent = Peer("a0", "agent", lambda: f"{center.ws_base}/ws/agent?token={anna.token}")
            visitors = [await center.add_visitor() for _ in range(CUSTOMERS)]
            customers = [
                Peer(f"c{n}", "customer", lambda token=v.token: f"{center.ws_base}/ws/customer?token={token}")
                for n, v in enumerate(visitors)
            ]
            peers = [agent, *customers]
            for peer in peers:
                nursery.start_soon(peer.run)
            with trio.fail_after(30):
                while not agent.statuses or agent.statuses[-1].status != "online":
                    await agent.changed()
                for customer in customers:
                    conversation = await customer.start_conversation()
                    while not agent.kinds(conversation, "assigned"):
                        await trio.sleep(0.01)
            agent.conversations = sorted(c.conversations[0] for c in customers)
            total = CUSTOMERS * (CUSTOMER_MESSAGES + AGENT_MESSAGES)
            outage = Outage()

            with trio.fail_after(90):
                async with trio.open_nursery() as talkers:
                    for customer in customers:
                        talkers.start_soon(talk, customer, CUSTOMER_MESSAGES, 0.01)
                    talkers.start_soon(talk, agent, AGENT_MESSAGES, 0.01)
                    while _acked(peers) < total // 3:
                        await trio.sleep(0.01)
                    await outage.run(center, postgres, peers, customers[0], agent)
                for peer in peers:
                    await peer.drained(timeout=30)

            async with open_database(dsn) as database:
                rows = await database.fetch(STORED_EVENTS, center.slug)
            await all_delivered(peers, rows)
            # and new connections are served again
            async with connect(nursery, customers[0].url()) as fresh:
                await fresh.wait_for("conversations")
            nursery.cancel_scope.cancel()

        # the open connections rode through the outage; nothing acked is lost or doubled
        assert all(p.connections == 1 for p in peers), [p.close_codes for p in peers]
        assert_exactly_once(rows, peers)
        assert_delivered_once_in_order(rows, peers)
        print(
            f"database outage: messages={total} acked_before_restart={outage.acked_while_down} "
            f"unavailable_errors={len(outage.unavailable)} retried={sum(p.retried for p in peers)} "
            f"duplicate_acks={sum(p.duplicate_acks for p in peers)} "
            f"postgres_restart_s={outage.postgres_restart:.2f} ready_after_db_back_s={outage.ready_after:.2f}"
        )
    finally:
        postgres.cleanup()
