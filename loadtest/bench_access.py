"""What department scoping costs a REST read: the access check against the account check it replaced.

    python -m kefu.loadtest.bench_access --events 1000 --calls 2000 --rounds 3

On a fresh embedded PostgreSQL: one account, two departments, an agent of the first, and a
conversation of the second with `--events` events whose participants are other agents, so
the check must look at every event before it says no (the worst case). Each round times
`--calls` sequential calls of each query, interleaved; the median round is reported.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import trio
import trio_asyncio

from kefu.loadtest.bench_store import _migrate, _start_database, machine
from kefu.server.conversations import PostgresConversations
from kefu.server.database import Database


async def _setup(database: Database, events: int) -> tuple[uuid.UUID, uuid.UUID, uuid.UUID, uuid.UUID]:
    account = await database.fetchval("INSERT INTO accounts (slug, name) VALUES ('bench', 'Bench') RETURNING id")
    mine = await database.fetchval("INSERT INTO departments (account_id, name) VALUES ($1, 'A') RETURNING id", account)
    other = await database.fetchval("INSERT INTO departments (account_id, name) VALUES ($1, 'B') RETURNING id", account)
    agent = await database.fetchval(
        "INSERT INTO users (account_id, email, display_name, role, password_hash)"
        " VALUES ($1, 'a@bench.example', 'A', 'agent', 'x') RETURNING id",
        account,
    )
    await database.execute(
        "INSERT INTO user_departments (account_id, user_id, department_id) VALUES ($1, $2, $3)", account, agent, mine
    )
    customer = await database.fetchval("INSERT INTO customers (account_id) VALUES ($1) RETURNING id", account)
    conversation = await database.fetchval(
        "INSERT INTO conversations (account_id, channel, customer_id, department_id)"
        " VALUES ($1, 'webchat', $2, $3) RETURNING id",
        account,
        customer,
        other,
    )
    now = dt.datetime.now(dt.UTC)
    someone = str(uuid.uuid4())

    async def fill(conn: Any) -> None:
        await conn.copy_records_to_table(
            "conversation_events",
            records=[
                (account, conversation, seq, "message", "agent", someone, {"text": "你好"}, now)
                for seq in range(1, events + 1)
            ],
            columns=["account_id", "conversation_id", "seq", "kind", "sender_role", "sender_id", "body", "created_at"],
        )

    await database.run(fill)
    await database.execute("ANALYZE")
    return account, agent, customer, conversation


async def _time(calls: int, call: Any) -> dict[str, float]:
    latencies = []
    for _ in range(calls):
        started = time.perf_counter()
        await call()
        latencies.append(time.perf_counter() - started)
    latencies.sort()
    return {
        "median_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "calls_per_second": calls / sum(latencies),
    }


async def _run(dsn: str, events: int, calls: int, rounds: int) -> dict[str, list[dict[str, float]]]:
    async with trio_asyncio.open_loop():
        database = await Database.open(dsn, pool_size=2)
        try:
            storage = PostgresConversations(database)
            account, agent, customer, conversation = await _setup(database, events)
            assert await storage.conversation_access(account, agent, False, conversation) == "forbidden"
            runs: dict[str, Any] = {
                "account check (before)": lambda: storage.conversation_account(conversation),
                "conversation access (agent, refused)": lambda: storage.conversation_access(
                    account, agent, False, conversation
                ),
                "customer access (agent, refused)": lambda: storage.customer_access(account, agent, False, customer),
                "conversation access (supervisor)": lambda: storage.conversation_access(
                    account, agent, True, conversation
                ),
            }
            results: dict[str, list[dict[str, float]]] = {name: [] for name in runs}
            for _ in range(rounds):
                for name, call in runs.items():
                    results[name].append(await _time(calls, call))
            return results
        finally:
            await database.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1000, help="events in the refused conversation")
    parser.add_argument("--calls", type=int, default=2000, help="sequential calls of each query per round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the median round is reported")
    args = parser.parse_args(argv)
    if not 1 <= args.events <= 1_000_000 or not 1 <= args.calls <= 100_000 or not 1 <= args.rounds <= 20:
        parser.error("need 1 <= events <= 1,000,000, 1 <= calls <= 100,000 and 1 <= rounds <= 20")
    with tempfile.TemporaryDirectory(prefix="kefu-bench-") as tmp:
        dsn, server = _start_database(Path(tmp) / "pg")
        try:
            trio.run(_migrate, dsn)
            results = trio.run(_run, dsn, args.events, args.calls, args.rounds)
        finally:
            server.cleanup()
    print(f"machine: {machine()}; {args.events} events, {args.calls} calls x {args.rounds} rounds")
    print(f"{'query':<40} {'median ms':>10} {'p99 ms':>8} {'calls/s':>9}")
    for name, rounds in results.items():
        chosen = sorted(rounds, key=lambda r: r["median_ms"])[len(rounds) // 2]
        print(f"{name:<40} {chosen['median_ms']:>10.3f} {chosen['p99_ms']:>8.3f} {chosen['calls_per_second']:>9,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
