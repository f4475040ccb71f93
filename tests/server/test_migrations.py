"""Migrations and the durability check, on a real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import trio

from kefu.server.database import DurabilityOff, bundled_migrations
from tests.conftest import _admin_dsn, open_database


def _scratch_database(postgres_dsn: str, *, template: str | None = None, settings: str = "") -> Iterator[str]:
    name = f"kefu_scratch_{uuid.uuid4().hex[:12]}"

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(admin(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else "")))
    if settings:
        asyncio.run(admin(f"ALTER DATABASE {name} SET {settings}"))
    try:
        yield _admin_dsn(postgres_dsn, name)
    finally:
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def empty_dsn(postgres_dsn: str) -> Iterator[str]:
    """A database with no schema at all."""
    yield from _scratch_database(postgres_dsn)


@pytest.fixture(scope="module")
def unsafe_dsn(postgres_dsn: str, template_database: str) -> Iterator[str]:
    """A migrated database where commits are acknowledged before they are durable."""
    yield from _scratch_database(postgres_dsn, template=template_database, settings="synchronous_commit = off")


async def test_migrate_from_empty_applies_all_then_nothing(empty_dsn: str) -> None:
    expected = [m.version for m in bundled_migrations()]
    assert expected, "no bundled migrations found"
    async with open_database(empty_dsn) as database:
        assert [m.version for m in await database.pending_migrations()] == expected
        applied = await database.migrate()
        assert [m.version for m in applied] == expected
        assert await database.pending_migrations() == []
        assert await database.migrate() == []
        assert await database.pending_migrations() == []
        rows = await database.fetch("SELECT version, name, checksum FROM schema_migrations ORDER BY version")
    assert [(r["version"], r["name"], r["checksum"]) for r in rows] == [
        (m.version, m.name, m.checksum) for m in bundled_migrations()
    ]


async def test_migrate_on_migrated_database_is_a_no_op(database_dsn: str) -> None:
    async with open_database(database_dsn) as database:
        assert await database.pending_migrations() == []
        assert await database.migrate() == []
        assert await database.fetchval("SELECT count(*) FROM schema_migrations") == len(bundled_migrations())


async def test_tampered_checksum_makes_migrate_refuse(empty_dsn: str) -> None:
    async with open_database(empty_dsn) as database:
        await database.migrate()
        first = bundled_migrations()[0]
        await database.execute("UPDATE schema_migrations SET checksum = 'tampered' WHERE version = $1", first.version)
        with pytest.raises(RuntimeError, match=f"{first.version:04d}_{first.name} was changed after it was applied"):
            await database.migrate()
        # The advisory lock was released: after repair, migrate works again.
        await database.execute(
            "UPDATE schema_migrations SET checksum = $1 WHERE version = $2", first.checksum, first.version
        )
        assert await database.migrate() == []


async def test_every_table_carries_its_account(database_dsn: str) -> None:
    async with open_database(database_dsn) as database:
        tables = {
            r["table_name"]
            for r in await database.fetch(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
            )
        }
        with_account = {
            r["table_name"]
            for r in await database.fetch(
                "SELECT table_name FROM information_schema.columns "
                "WHERE table_schema = 'public' AND column_name = 'account_id'"
            )
        }
    assert {"accounts", "users", "conversations", "conversation_events"} <= tables
    # The accounts table is the tenant itself: its key is the account id.
    missing = tables - with_account - {"schema_migrations", "accounts"}
    assert missing == set(), f"tables without account_id: {sorted(missing)}"


async def test_accounts_table_is_keyed_by_account(database_dsn: str) -> None:
    async with open_database(database_dsn) as database:
        key = await database.fetch(
            """SELECT a.attname FROM pg_index i
               JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
               WHERE i.indrelid = 'accounts'::regclass AND i.indisprimary"""
        )
    assert [r["attname"] for r in key] == ["id"]


async def test_durable_database_passes_the_check(database_dsn: str) -> None:
    async with open_database(database_dsn) as database:
        await database.check_durability()


async def test_synchronous_commit_off_is_refused(unsafe_dsn: str) -> None:
    async with open_database(unsafe_dsn) as database:
        assert await database.fetchval("SHOW synchronous_commit") == "off"
        with pytest.raises(DurabilityOff, match="synchronous_commit=off"):
            await database.check_durability()


def _kefu(*args: str, dsn: str, tmp_path: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
    env |= {"KEFU_DATABASE_URL": dsn, "KEFU_DATA_DIR": str(tmp_path / "data"), "KEFU_PORT": "0"}
    return subprocess.run(
        [sys.executable, "-m", "kefu.server.cli", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("command", ["migrate", "serve"])
def test_cli_refuses_a_database_without_durable_commits(unsafe_dsn: str, tmp_path: Path, command: str) -> None:
    result = _kefu(command, dsn=unsafe_dsn, tmp_path=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "synchronous_commit=off" in result.stderr
    assert "will not start" in result.stderr
    assert "Traceback" not in result.stderr
    assert "kefu is serving" not in result.stderr


def test_cli_unreachable_database_fails_cleanly(tmp_path: Path) -> None:
    result = _kefu("migrate", dsn="postgresql://kefu@127.0.0.1:1/kefu?connect_timeout=2", tmp_path=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "cannot reach the database" in result.stderr
    assert "Traceback" not in result.stderr


async def test_cli_migrate_reports_a_tampered_history(empty_dsn: str, tmp_path: Path) -> None:
    async with open_database(empty_dsn) as database:
        await database.migrate()
        await database.execute("UPDATE schema_migrations SET checksum = 'tampered' WHERE version = 1")
    result = await trio.to_thread.run_sync(lambda: _kefu("migrate", dsn=empty_dsn, tmp_path=tmp_path))
    assert result.returncode == 1, result.stderr
    assert "was changed after it was applied" in result.stderr
    assert "Traceback" not in result.stderr
