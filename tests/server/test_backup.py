"""`kefu backup` and `kefu restore` round-trip a populated database."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kefu.server.backup import BackupError, backup, restore
from tests.conftest import new_account, new_conversation, open_database


async def _snapshot(dsn: str) -> dict[str, list[tuple[object, ...]]]:
    async with open_database(dsn) as database:
        return {
            "accounts": [tuple(r) for r in await database.fetch("SELECT id, slug, name FROM accounts ORDER BY id")],
            "conversations": [
                tuple(r) for r in await database.fetch("SELECT id, channel FROM conversations ORDER BY id")
            ],
            "events": [
                (r["conversation_id"], r["seq"], r["kind"], r["body"])
                for r in await database.fetch(
                    "SELECT conversation_id, seq, kind, body FROM conversation_events ORDER BY conversation_id, seq"
                )
            ],
            "audit": [tuple(r) for r in await database.fetch("SELECT id, action FROM audit_log ORDER BY id")],
            "migrations": [tuple(r) for r in await database.fetch("SELECT version FROM schema_migrations ORDER BY 1")],
        }


async def test_a_backup_restores_every_row(database_dsn: str, tmp_path: Path) -> None:
    async with open_database(database_dsn) as database:
        account = await new_account(database)
        for number in range(3):
            conversation = await new_conversation(database, account)
            await database.execute(
                "INSERT INTO conversation_events (account_id, conversation_id, seq, client_id, kind, sender_role,"
                " body, created_at) SELECT $1, $2, s, 'c-' || s, 'message', 'customer',"
                " jsonb_build_object('text', '你好 ' || s || ' of ' || $3::int), now() FROM generate_series(1, 20) s",
                account,
                conversation,
                number,
            )
        # the append-only audit log (a trigger refuses UPDATE and DELETE) comes back too
        await database.execute(
            "INSERT INTO audit_log (account_id, actor_role, action, target_type) VALUES ($1, 'admin', 'x', 'y')",
            account,
        )
    before = await _snapshot(database_dsn)
    assert len(before["events"]) == 60 and len(before["audit"]) == 1

    written = await _in_thread(backup, database_dsn, tmp_path / "backups" / "kefu.dump")
    assert written.is_file() and written.stat().st_size > 0
    assert not list(written.parent.glob("*.partial"))

    async with open_database(database_dsn) as database:  # losing data after the backup
        await database.execute("DELETE FROM accounts WHERE id = $1", account)
    assert (await _snapshot(database_dsn))["events"] == []

    await _in_thread(restore, database_dsn, written)
    assert await _snapshot(database_dsn) == before


async def test_restore_refuses_a_missing_or_broken_file_and_changes_nothing(database_dsn: str, tmp_path: Path) -> None:
    before = await _snapshot(database_dsn)
    with pytest.raises(BackupError, match="no backup file"):
        await _in_thread(restore, database_dsn, tmp_path / "nothing.dump")
    broken = tmp_path / "broken.dump"
    broken.write_bytes(b"not a dump")
    with pytest.raises(BackupError, match="pg_restore failed"):
        await _in_thread(restore, database_dsn, broken)
    assert await _snapshot(database_dsn) == before


def test_cli_restore_asks_for_yes(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kefu.server.cli", "restore", str(tmp_path / "x.dump"), "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "--yes" in result.stderr


async def _in_thread(function, *args):  # type: ignore[no-untyped-def]
    import trio

    return await trio.to_thread.run_sync(function, *args)
