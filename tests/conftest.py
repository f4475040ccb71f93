"""Shared fixtures: one embedded PostgreSQL for the whole run, a fresh database per module.

Tests talk to a real PostgreSQL (pgserver's), never a mock. Each test module gets its own
database (created from a migrated template), so modules cannot see each other's rows.
"""

from __future__ import annotations

import os
import threading
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
import trio
import trio_asyncio

from kefu.server.database import Database

TEMPLATE = "kefu_template"
TEST_DATA_KEY = "dGVzdHMgc2hhcmUgb25lIGRhdGEga2V5IChrZWZ1KSE="
"""The data key of every test node: a module's tests share one database, so they share its key."""


@pytest.fixture(scope="session", autouse=True)
def _data_key_for_subprocesses() -> Iterator[None]:
    """`kefu` subprocesses that inherit the environment (the browser tests') use TEST_DATA_KEY."""
    saved = os.environ.get("KEFU_DATA_KEY")
    os.environ["KEFU_DATA_KEY"] = TEST_DATA_KEY
    yield
    if saved is None:
        del os.environ["KEFU_DATA_KEY"]
    else:
        os.environ["KEFU_DATA_KEY"] = saved


def _admin_dsn(dsn: str, database: str) -> str:
    # pgserver's DSNs look like postgresql://postgres:@/postgres?host=/path
    head, _, query = dsn.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{database}?{query}" if query else f"{base}/{database}"


@pytest.fixture(scope="session")
def postgres_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DSN of the `postgres` database of a server for this run (KEFU_TEST_DATABASE_URL or embedded)."""
    configured = os.environ.get("KEFU_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(tmp_path_factory.mktemp("pg") / "data", cleanup_mode="delete")
    yield str(server.get_uri())
    server.cleanup()


def _in_fresh_thread(work: Callable[[], object]) -> None:
    """Run `work` in a thread of its own: no event loop of the caller's (Playwright's sync
    API keeps an asyncio loop running in the main thread during browser tests) gets in its way."""
    failure: list[BaseException] = []

    def target() -> None:
        try:
            work()
        except BaseException as error:
            failure.append(error)

    thread = threading.Thread(target=target, name="fixture-setup")
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


@pytest.fixture(scope="session")
def template_database(postgres_dsn: str) -> str:
    """A migrated database that per-module databases are copied from."""

    async def prepare() -> None:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE}")
            await conn.execute(f"CREATE DATABASE {TEMPLATE}")
        finally:
            await conn.close()

    async def migrate() -> None:
        async with open_database(_admin_dsn(postgres_dsn, TEMPLATE)) as database:
            await database.migrate()

    import asyncio

    _in_fresh_thread(lambda: asyncio.run(prepare()))
    _in_fresh_thread(lambda: trio.run(migrate))
    return TEMPLATE


@pytest.fixture(scope="module")
def database_dsn(postgres_dsn: str, template_database: str) -> Iterator[str]:
    """DSN of a freshly migrated database owned by one test module."""
    import asyncio

    name = f"kefu_test_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            await conn.execute(f"CREATE DATABASE {name} TEMPLATE {template_database}")
        finally:
            await conn.close()

    async def drop() -> None:
        conn = await asyncpg.connect(postgres_dsn)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()

    _in_fresh_thread(lambda: asyncio.run(create()))
    yield _admin_dsn(postgres_dsn, name)
    _in_fresh_thread(lambda: asyncio.run(drop()))


@asynccontextmanager
async def open_database(dsn: str, pool_size: int = 4) -> AsyncIterator[Database]:
    """A trio-asyncio loop and a `Database` on `dsn`, for the body of one trio test."""
    async with trio_asyncio.open_loop():
        database = await Database.open(dsn, pool_size=pool_size)
        try:
            yield database
        finally:
            await database.close()


async def new_account(database: Database) -> uuid.UUID:
    slug = f"t-{uuid.uuid4().hex[:10]}"
    account_id: uuid.UUID = await database.fetchval(
        "INSERT INTO accounts (slug, name) VALUES ($1, $2) RETURNING id", slug, slug
    )
    return account_id


async def new_conversation(database: Database, account_id: uuid.UUID, channel: str = "webchat") -> uuid.UUID:
    conversation_id: uuid.UUID = await database.fetchval(
        "INSERT INTO conversations (account_id, channel) VALUES ($1, $2) RETURNING id", account_id, channel
    )
    return conversation_id


REPO_ROOT = Path(__file__).resolve().parent.parent
