"""Durable appends per second: the store actor side by side with raw asyncpg, in one run.

    python -m kefu.loadtest.bench_store [--appends 50000] [--writers 500] [--json out.json]

Three ways to put the same rows into `conversation_events` of a fresh embedded PostgreSQL
(synchronous_commit on, fsync on), one after another in one process:

1. store actor: `--writers` concurrent trio tasks (think: conversations) each `ask` the
   store to append their next message and wait for the durable ack before sending the
   next, as a CustomerSession does. Group commit batches whatever is waiting.
2. raw COPY: plain asyncio + asyncpg, `copy_records_to_table` in batches of 1000 rows,
   one transaction each. The ceiling: no actors, no trio, no per-message waiting.
3. single-row INSERT: plain asyncio + asyncpg, one INSERT per transaction (autocommit),
   one connection: what durability costs without batching.

Every figure counts only appends whose COMMIT returned.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import asyncpg
import trio
import trio_asyncio

from kefu.actors.runtime import Mailbox
from kefu.actors.store import EventRecord, Store, StoreMessage, append
from kefu.actors.supervisor import Supervisor, actor_child
from kefu.server.database import Database, _init_connection
from kefu.server.event_log import COLUMNS, INSERT_ONE, PostgresEventLog

BODY = {"text": "您好，我的订单还没有发货，可以帮我查一下吗？ Hello, my order has not shipped yet."}


def _record(account: uuid.UUID, conversation: uuid.UUID, seq: int) -> EventRecord:
    return EventRecord(account, conversation, seq, f"m-{seq}", "message", "customer", "visitor", BODY)


def _row(account: uuid.UUID, conversation: uuid.UUID, seq: int, at: dt.datetime) -> tuple[Any, ...]:
    return (account, conversation, seq, f"m-{seq}", "message", "customer", "visitor", BODY, at)


async def _setup(dsn: str, conversations: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    conn = await asyncpg.connect(dsn)
    try:
        account = await conn.fetchval(
            "INSERT INTO accounts (slug, name) VALUES ($1, 'bench') RETURNING id", f"bench-{uuid.uuid4().hex[:8]}"
        )
        ids = [uuid.uuid4() for _ in range(conversations)]
        await conn.copy_records_to_table(
            "conversations", records=[(account, i, "webchat") for i in ids], columns=["account_id", "id", "channel"]
        )
        return account, ids
    finally:
        await conn.close()


# -- 1. the store actor -------------------------------------------------------------------


async def bench_store_actor(dsn: str, appends: int, writers: int) -> dict[str, Any]:
    account, conversations = await trio_asyncio.aio_as_trio(_setup)(dsn, writers)
    per_writer = appends // writers
    database = await Database.open(dsn, pool_size=4)
    stores: list[Store] = []
    mailbox: Mailbox[StoreMessage] = Mailbox("store", 20_000)

    def factory(mb: Mailbox[StoreMessage]) -> Store:
        stores.append(Store(mb, PostgresEventLog(database)))
        return stores[-1]

    supervisor = Supervisor("bench", [actor_child(factory, mailbox)])
    stop = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run, stop)

            async def conversation(conversation_id: uuid.UUID) -> None:
                for seq in range(per_writer):
                    await append(mailbox.ref, _record(account, conversation_id, seq), timeout=60)

            started = time.perf_counter()
            async with trio.open_nursery() as senders:
                for conversation_id in conversations:
                    senders.start_soon(conversation, conversation_id)
            elapsed = time.perf_counter() - started
            stop.set()
    finally:
        await database.close()
    stats = stores[-1].store_statistics()
    done = per_writer * writers
    return {
        "name": "store actor (group commit)",
        "appends": done,
        "seconds": elapsed,
        "appends_per_second": done / elapsed,
        "transactions": stats.transactions,
        "mean_batch": done / max(1, stats.transactions),
        "largest_batch": stats.largest_batch,
    }


# -- 2. and 3. raw asyncpg ------------------------------------------------------------------


async def bench_raw_copy(dsn: str, appends: int, batch: int = 1000) -> dict[str, Any]:
    account, (conversation,) = await _setup(dsn, 1)
    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    try:
        started = time.perf_counter()
        for first in range(0, appends, batch):
            at = dt.datetime.now(dt.UTC)
            rows = [_row(account, conversation, seq, at) for seq in range(first, min(first + batch, appends))]
            async with conn.transaction():
                await conn.copy_records_to_table("conversation_events", records=rows, columns=COLUMNS)
        elapsed = time.perf_counter() - started
    finally:
        await conn.close()
    return {
        "name": f"raw asyncpg COPY, batches of {batch}",
        "appends": appends,
        "seconds": elapsed,
        "appends_per_second": appends / elapsed,
    }


async def bench_single_insert(dsn: str, appends: int) -> dict[str, Any]:
    account, (conversation,) = await _setup(dsn, 1)
    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    try:
        started = time.perf_counter()
        for seq in range(appends):
            await conn.execute(INSERT_ONE, *_row(account, conversation, seq, dt.datetime.now(dt.UTC)))
        elapsed = time.perf_counter() - started
    finally:
        await conn.close()
    return {
        "name": "raw asyncpg single-row INSERT",
        "appends": appends,
        "seconds": elapsed,
        "appends_per_second": appends / elapsed,
    }


def _start_database(data_dir: Path) -> tuple[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgserver.postgres_server import get_server

        server = get_server(data_dir, cleanup_mode="delete")
    return str(server.get_uri()), server


async def _migrate(dsn: str) -> None:
    async with trio_asyncio.open_loop():
        database = await Database.open(dsn, pool_size=2)
        try:
            await database.check_durability()
            await database.migrate()
        finally:
            await database.close()


async def _store_run(dsn: str, appends: int, writers: int) -> dict[str, Any]:
    async with trio_asyncio.open_loop():
        return await bench_store_actor(dsn, appends, writers)


def median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    ordered = sorted(runs, key=lambda run: run["appends_per_second"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["all_rounds_appends_per_second"] = [round(run["appends_per_second"]) for run in runs]
    return chosen


def machine() -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--appends", type=int, default=50_000, help="appends for the store and COPY runs")
    parser.add_argument("--single-appends", type=int, default=3_000, help="appends for the single-row run (slow)")
    parser.add_argument("--writers", type=int, default=1000, help="concurrent conversations appending")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all three runs; the median round is reported")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)
    if not 1 <= args.writers <= args.appends <= 1_000_000 or not 1 <= args.rounds <= 20:
        parser.error("need 1 <= writers <= appends <= 1,000,000 and 1 <= rounds <= 20")

    with tempfile.TemporaryDirectory(prefix="kefu-bench-") as tmp:
        dsn, server = _start_database(Path(tmp) / "pg")
        try:
            trio.run(_migrate, dsn)
            rounds = []
            for _ in range(args.rounds):  # interleaved, so drift on the machine hits all three alike
                rounds.append(
                    (
                        trio.run(_store_run, dsn, args.appends, args.writers),
                        asyncio.run(bench_raw_copy(dsn, args.appends)),
                        asyncio.run(bench_single_insert(dsn, args.single_appends)),
                    )
                )
        finally:
            server.cleanup()
    store, copy, single = (median_run([r[i] for r in rounds]) for i in range(3))

    results: dict[str, Any] = {
        "benchmark": "durable appends",
        "machine": machine(),
        "runs": [store, copy, single],
        "ratios": {
            "store_vs_copy": store["appends_per_second"] / copy["appends_per_second"],
            "store_vs_single_insert": store["appends_per_second"] / single["appends_per_second"],
        },
        "targets": {"store_vs_copy": 0.4, "store_vs_single_insert": 10.0},
    }
    print(f"{'run':<40} {'appends':>9} {'seconds':>8} {'appends/s':>11}")
    for run in results["runs"]:
        print(
            f"{run['name']:<40} {run['appends']:>9} {run['seconds']:>8.2f} {run['appends_per_second']:>11,.0f}"
            f"   rounds: {run['all_rounds_appends_per_second']}"
        )
    print(
        f"store: {store['transactions']} transactions, mean batch {store['mean_batch']:.1f},"
        f" largest {store['largest_batch']}"
    )
    for key, value in results["ratios"].items():
        target = results["targets"][key]
        print(f"{key}: {value:.2f}x (target >= {target}x) {'ok' if value >= target else 'BELOW TARGET'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
