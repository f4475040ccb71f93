"""The asyncpg pool inside trio: a database that stops answering is a clear, retryable error."""

from __future__ import annotations

import pytest
import trio
import trio_asyncio

from kefu.server import database as database_module
from kefu.server.database import DatabaseUnavailable
from tests.conftest import open_database


async def test_a_query_that_hangs_is_cut_off_and_the_pool_keeps_working(
    database_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database_module, "QUERY_TIMEOUT_SECONDS", 0.5)
    async with open_database(database_dsn) as database:
        with trio.fail_after(10), pytest.raises(DatabaseUnavailable, match=r"did not answer within 0\.5 s"):
            await database.fetchval("SELECT pg_sleep(30)")
        # the connection it ran on was given back or replaced: the next queries work
        for _ in range(5):
            assert await database.fetchval("SELECT 41 + 1") == 42


async def test_queries_leave_no_asyncio_timers_behind(database_dsn: str) -> None:
    # trio-asyncio keeps a cancelled asyncio timer until it would have fired: a timer armed per
    # query (asyncpg's pool inactivity timer, its command_timeout) would pile up in memory.
    async with open_database(database_dsn) as database:
        assert await database.fetchval("SELECT 1") == 1
        loop = trio_asyncio.current_loop.get()
        before = len(loop._timers)
        for _ in range(50):
            assert await database.fetchval("SELECT 41 + 1") == 42
        assert len(loop._timers) - before < 5
