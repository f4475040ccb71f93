"""Helpers of the fault tests: a `kefu serve` process that can be killed, the stored log, checks."""

from __future__ import annotations

import os
import signal
import subprocess
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.faults.peers import Peer
from tests.web.conftest import KefuProcess


@dataclass
class KillableKefu(KefuProcess):
    """`kefu serve` as a subprocess; `kill()` is `kill -9`. An empty `dsn` means the embedded PostgreSQL."""

    extra_env: dict[str, str] | None = None

    def env(self) -> dict[str, str]:
        env = super().env()
        if not self.dsn:
            env.pop("KEFU_DATABASE_URL", None)
        env.update(self.extra_env or {})
        return env

    def freeze(self) -> None:
        """SIGSTOP: the process answers nothing from now on (until it is killed)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()  # SIGKILL: no signal handler, no shutdown, no COMMIT of what is held
        self.process.wait(timeout=10)
        self.process = None


def embedded_pgdata(data_dir: Path) -> Path:
    return data_dir / "postgres"


def embedded_dsn(data_dir: Path) -> str:
    """The DSN of the embedded PostgreSQL that `kefu serve` started in `data_dir` (read from its pid file)."""
    from pgserver.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(embedded_pgdata(data_dir))
    assert info is not None, "the embedded PostgreSQL is not running"
    return info.get_uri()


def stop_embedded_postgres(data_dir: Path) -> None:
    """Stop the embedded server a killed kefu left running (pgserver still counts the dead pid as a user)."""
    from pgserver._commands import pg_ctl

    pgdata = embedded_pgdata(data_dir)
    if (pgdata / "postmaster.pid").exists():
        user = "pgserver" if os.geteuid() == 0 else None
        try:
            pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user)
        except subprocess.CalledProcessError:
            pass  # already stopped


STORED_EVENTS = """
    SELECT e.conversation_id::text AS conversation_id, e.seq, e.client_id, e.kind, e.body->>'text' AS text
    FROM conversation_events e JOIN accounts a ON a.id = e.account_id
    WHERE a.slug = $1 ORDER BY e.conversation_id, e.seq
"""


def by_conversation(rows: list[Any]) -> dict[str, list[Any]]:
    grouped: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        grouped[row["conversation_id"]].append(row)
    return grouped


def assert_exactly_once(rows: list[Any], peers: list[Peer]) -> None:
    """Every message a peer sent was acked, is stored exactly once under the acked seq, and
    every conversation's seqs are gapless."""
    stored = by_conversation(rows)
    for conversation_id, events in stored.items():
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), f"seq gap in {conversation_id}"
    by_client_id: dict[str, list[Any]] = defaultdict(list)
    by_text: dict[str, int] = defaultdict(int)
    for row in rows:
        if row["client_id"] is not None:
            by_client_id[row["client_id"]].append(row)
        if row["kind"] == "message":
            by_text[row["text"]] += 1
    for peer in peers:
        assert not peer.pending, f"{peer.name}: frames never acked: {list(peer.pending)[:3]}"
        assert not peer.fatal_errors(), f"{peer.name}: {peer.fatal_errors()[:3]}"
        for client_id, text in peer.texts.items():
            ack = peer.acks.get(client_id)
            assert ack is not None, f"{peer.name}: {text!r} was never acknowledged"
            found = by_client_id[client_id]
            assert len(found) == 1, f"{text!r} stored {len(found)} times"
            assert (found[0]["conversation_id"], found[0]["seq"], found[0]["text"]) == (
                ack.conversation_id,
                ack.seq,
                text,
            )
            assert by_text[text] == 1, f"{text!r} stored {by_text[text]} times"


def assert_delivered_once_in_order(rows: list[Any], peers: list[Peer]) -> None:
    """Each peer received every stored event of its conversations exactly once, in seq order,
    over all its connections (live, replayed on resume, or both)."""
    stored = by_conversation(rows)
    for peer in peers:
        for conversation_id in peer.conversations:
            received = [event.seq for event in peer.received[conversation_id]]
            expected = [event["seq"] for event in stored[conversation_id]]
            assert received == expected, (
                f"{peer.name} in {conversation_id}: received {len(received)} events for {len(expected)} stored; "
                f"duplicates {sorted({s for s in received if received.count(s) > 1})[:5]}, "
                f"missing {sorted(set(expected) - set(received))[:5]}"
            )


async def talk(peer: Peer, count: int, pause: float = 0.005) -> None:
    """`count` rounds of one message to each of the peer's conversations."""
    import trio

    for n in range(count):
        for conversation in peer.conversations:
            await peer.say(conversation, f"{peer.name}:{conversation[:8]}:{n}")
        await trio.sleep(pause)


async def conversations_in_progress(
    center: Any, nursery: Any, agents: int, customers: int
) -> tuple[list[Peer], list[Peer]]:
    """`agents` online agents and `customers` customers on a `live_center`, each customer in an
    assigned conversation; every peer runs in `nursery`. Returns (agents, customers)."""
    import trio

    agent_peers = []
    for n in range(agents):
        agent = await center.add_agent(f"Agent {n}", capacity=customers)
        url = f"{center.ws_base}/ws/agent?token={agent.token}"
        agent_peers.append(Peer(f"a{n}", "agent", lambda url=url: url, user_id=agent.id))
    customer_peers = []
    for n in range(customers):
        visitor = await center.add_visitor()
        url = f"{center.ws_base}/ws/customer?token={visitor.token}"
        customer_peers.append(Peer(f"c{n}", "customer", lambda url=url: url))
    for peer in agent_peers + customer_peers:
        nursery.start_soon(peer.run)
    with trio.fail_after(30):
        for agent in agent_peers:
            while not agent.statuses or agent.statuses[-1].status != "online":
                await agent.changed()
        for customer in customer_peers:
            await customer.start_conversation()
        expected = sorted(c.conversations[0] for c in customer_peers)
        while sorted(c for a in agent_peers for c in a.received if a.kinds(c, "assigned")) != expected:
            await trio.sleep(0.01)
    for agent in agent_peers:
        agent.conversations = sorted(c for c in agent.received if agent.kinds(c, "assigned"))
    return agent_peers, customer_peers


async def all_delivered(peers: list[Peer], rows: list[Any], timeout: float = 30) -> None:
    """Wait until every peer has received up to the last stored seq of each of its conversations."""
    import trio

    last = {r["conversation_id"]: r["seq"] for r in rows}
    with trio.fail_after(timeout):
        for peer in peers:
            for conversation in peer.conversations:
                while peer.last_seq(conversation) < last[conversation]:
                    await peer.changed()
