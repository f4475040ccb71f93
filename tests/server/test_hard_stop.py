"""Every acknowledged append survives a hard stop of the process and of PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import trio

from tests.conftest import REPO_ROOT, new_account, new_conversation, open_database

ACKS_BEFORE_KILL = 400


def start_postgres(data_dir: Path):  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        return pgserver.get_server(data_dir, cleanup_mode="delete")


def crash_postgres(server) -> None:  # type: ignore[no-untyped-def]
    """Stop PostgreSQL the way a power cut would: no checkpoint, no flush of shared buffers."""
    from pgserver._commands import pg_ctl

    pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=server.pgdata, user=server.system_user)


async def test_acknowledged_appends_survive_kill_9_and_a_database_crash(tmp_path: Path) -> None:
    server = start_postgres(tmp_path / "pg")
    try:
        dsn = str(server.get_uri())
        async with open_database(dsn) as database:
            await database.migrate()
            account = await new_account(database)
            conversations = [await new_conversation(database, account) for _ in range(8)]

        driver = subprocess.Popen(
            [sys.executable, "-m", "tests.server.append_driver", dsn, str(account), *map(str, conversations)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        acknowledged: list[tuple[str, int]] = []
        assert driver.stdout is not None
        with trio.fail_after(60):
            while len(acknowledged) < ACKS_BEFORE_KILL:
                line = await trio.to_thread.run_sync(driver.stdout.readline)
                assert line, "the driver stopped before acknowledging enough appends"
                _, conversation, seq = line.decode().split()
                acknowledged.append((conversation, int(seq)))
        # kill -9 while appends are in flight, then crash the database too
        driver.send_signal(signal.SIGKILL)
        rest, _ = driver.communicate(timeout=10)
        for line in rest.decode().splitlines():
            if line.startswith("ack "):
                _, conversation, seq = line.split()
                acknowledged.append((conversation, int(seq)))
        crash_postgres(server)
        server.ensure_postgres_running()

        async with open_database(str(server.get_uri())) as database:
            rows = await database.fetch(
                "SELECT conversation_id::text AS c, seq, count(*) OVER (PARTITION BY conversation_id, seq) AS n "
                "FROM conversation_events WHERE account_id = $1",
                account,
            )
        stored = {(r["c"], r["seq"]) for r in rows}
        assert all(r["n"] == 1 for r in rows)
        missing = [ack for ack in acknowledged if ack not in stored]
        assert not missing, f"{len(missing)} acknowledged appends were lost, e.g. {missing[:3]}"
        assert len(acknowledged) >= ACKS_BEFORE_KILL
    finally:
        server.cleanup()
