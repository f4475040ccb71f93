"""Helpers of the fault tests: a `kefu serve` process that can be killed, the stored log, checks."""

from __future__ import annotations

import os
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
