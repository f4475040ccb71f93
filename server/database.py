"""PostgreSQL: the embedded server, the asyncpg pool inside trio, and migrations.

asyncpg is an asyncio library; kefu runs it inside its single trio run through
trio-asyncio (`open_loop` at the root, `aio_as_trio` at each call). Everything here that
touches asyncpg is an asyncio coroutine wrapped once at the boundary, so a batch of work
costs one crossing between the two event loops.
"""

from __future__ import annotations

import hashlib
import logging
import re
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar, cast

import asyncpg
import orjson
import trio
import trio_asyncio

from kefu.server.config import Config

log = logging.getLogger("kefu.database")

T = TypeVar("T")

QUERY_TIMEOUT_SECONDS = 30.0
"""Longest wait for a pooled connection and the work done on it; longer counts as unavailable."""

MIGRATION_LOCK_ID = 0x6B656675  # "kefu": one migrator at a time across processes


async def _reset_connection(conn: asyncpg.Connection) -> None:
    """Leave a released connection as it is: no round trip on every release.

    asyncpg's default reset sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL` each time a connection goes back to the pool: one more round trip for every
    query kefu runs. kefu leaves no session state on pooled connections (no LISTEN, no SET,
    no cursors or advisory locks outside a transaction; the migration lock is released in
    `finally`). An open transaction left by a cancelled caller is still rolled back: the
    pool does that before it calls this.
    """


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL cannot be reached now; the operation may be retried."""


class DurabilityOff(RuntimeError):
    """The server would acknowledge commits that are not yet durable."""


class MigrationError(RuntimeError):
    """The database's schema history does not match the bundled migrations."""


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL in `data_dir` and return its DSN.

    Several kefu processes may share it (`kefu serve` and a `kefu account create` beside
    it): the last one to exit normally stops it. After a hard kill it keeps running and
    the next start joins it. Its files live in `data_dir`.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        from pgserver.postgres_server import get_server

        data_dir.parent.mkdir(parents=True, exist_ok=True)
        server = get_server(data_dir, cleanup_mode="stop")
        return str(server.get_uri())


def resolve_dsn(config: Config) -> str:
    if config.database_url:
        return config.database_url
    return start_embedded_postgres(config.postgres_dir.resolve())


def _encode_jsonb(value: Any) -> bytes:
    return b"\x01" + orjson.dumps(value)


def _decode_jsonb(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb", encoder=_encode_jsonb, decoder=_decode_jsonb, schema="pg_catalog", format="binary"
    )


# -- migrations ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def bundled_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("kefu.server").joinpath("migrations").iterdir():
        match = re.fullmatch(r"(\d{4})_([a-z0-9_]+)\.sql", entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    return found


async def _migrate_aio(conn: asyncpg.Connection, migrations: list[Migration]) -> list[Migration]:
    applied_now: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
        done = {r["version"]: r["checksum"] for r in rows}
        for migration in migrations:
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} was changed after it was applied"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
            applied_now.append(migration)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    return applied_now


class Database:
    """The asyncpg pool, used from trio. Open with `Database.open` inside `trio_asyncio.open_loop()`."""

    def __init__(self, pool: asyncpg.Pool, dsn: str) -> None:
        self.pool = pool
        self.dsn = dsn

    @classmethod
    async def open(cls, dsn: str, *, pool_size: int = 10) -> Database:
        async def create() -> asyncpg.Pool:
            return await asyncpg.create_pool(
                dsn,
                min_size=2,
                max_size=pool_size,
                init=_init_connection,
                reset=_reset_connection,
                # No inactivity timer: asyncpg arms one (300 s) on every release and cancels it
                # on the next acquire, but a cancelled asyncio timer stays in trio-asyncio's heap
                # until it would have fired, so every query left one behind for 5 minutes (about
                # 2 KiB of heap per new customer in the memory benchmark). Idle connections stay
                # open instead, at most `pool_size` of them; a broken one is replaced on acquire.
                max_inactive_connection_lifetime=0,
            )

        pool = await trio_asyncio.aio_as_trio(create)()
        return cls(pool, dsn)

    async def close(self) -> None:
        async def close_pool() -> None:
            await self.pool.close()

        with trio.move_on_after(5) as scope:
            await trio_asyncio.aio_as_trio(close_pool)()
        if scope.cancelled_caught:
            self.pool.terminate()

    async def run(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """Run the asyncio function `work(connection)` on a pooled connection."""

        async def on_connection() -> T:
            async with self.pool.acquire() as conn:
                # the pool's proxy forwards every method of the connection it wraps
                return await work(cast("asyncpg.Connection", conn))

        try:
            # The time limit lives on trio's side: asyncpg's own `command_timeout` leaves an
            # asyncio timer per query in trio-asyncio's heap until it would have fired.
            with trio.fail_after(QUERY_TIMEOUT_SECONDS):
                result: T = await trio_asyncio.aio_as_trio(on_connection)()
                return result
        except trio.TooSlowError as error:
            raise DatabaseUnavailable(
                f"the database did not answer within {QUERY_TIMEOUT_SECONDS:g} s (pool wait included)"
            ) from error
        except (
            OSError,
            asyncpg.exceptions.ConnectionDoesNotExistError,
            asyncpg.exceptions.CannotConnectNowError,
            asyncpg.exceptions.InterfaceError,
        ) as error:
            raise DatabaseUnavailable(str(error) or type(error).__name__) from error

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        async def work(conn: asyncpg.Connection) -> list[asyncpg.Record]:
            return await conn.fetch(query, *args)

        return await self.run(work)

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        async def work(conn: asyncpg.Connection) -> asyncpg.Record | None:
            return await conn.fetchrow(query, *args)

        return await self.run(work)

    async def fetchval(self, query: str, *args: Any) -> Any:
        async def work(conn: asyncpg.Connection) -> Any:
            return await conn.fetchval(query, *args)

        return await self.run(work)

    async def execute(self, query: str, *args: Any) -> str:
        async def work(conn: asyncpg.Connection) -> str:
            return await conn.execute(query, *args)

        return await self.run(work)

    async def migrate(self) -> list[Migration]:
        """Apply the bundled migrations not yet applied; returns those applied now."""
        migrations = bundled_migrations()

        async def work(conn: asyncpg.Connection) -> list[Migration]:
            return await _migrate_aio(conn, migrations)

        applied = await self.run(work)
        for migration in applied:
            log.info("migration applied", extra={"version": migration.version, "migration": migration.name})
        return applied

    async def pending_migrations(self) -> list[Migration]:
        migrations = bundled_migrations()
        exists = await self.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        if not exists:
            return migrations
        rows = await self.fetch("SELECT version FROM schema_migrations")
        done = {r["version"] for r in rows}
        return [m for m in migrations if m.version not in done]

    async def check_durability(self) -> None:
        """Refuse to run when commits could be acknowledged before they are durable."""
        setting = await self.fetchval("SHOW synchronous_commit")
        if setting == "off":
            raise DurabilityOff(
                "PostgreSQL has synchronous_commit=off: kefu acknowledges a message only after it is "
                "durable and will not start. Set synchronous_commit to on."
            )
        fsync = await self.fetchval("SHOW fsync")
        if fsync == "off":
            raise DurabilityOff("PostgreSQL has fsync=off: kefu will not start. Turn fsync on.")

    async def ping(self, timeout: float = 2.0) -> bool:
        with trio.move_on_after(timeout):
            try:
                return bool(await self.fetchval("SELECT 1") == 1)
            except (DatabaseUnavailable, asyncpg.PostgresError):
                return False
        return False
