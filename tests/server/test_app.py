"""The HTTP edge, served in-process by `kefu.server.node.serve` on a real database."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import trio

from kefu.server.app import create_app
from kefu.server.config import Config
from kefu.server.node import Node, serve
from tests.conftest import TEST_DATA_KEY


@asynccontextmanager
async def running_node(database_dsn: str, tmp_path: Path) -> AsyncIterator[tuple[Node, httpx.AsyncClient]]:
    config = Config(
        port=0,
        database_url=database_dsn,
        data_dir=tmp_path,
        database_pool_size=3,
        shutdown_grace=1.0,
        data_key=TEST_DATA_KEY,
    )
    async with trio.open_nursery() as nursery:
        with trio.fail_after(20):
            node: Node = await nursery.start(serve, config)
        assert node.urls, "serve() reported no bound URL"
        base = node.urls[0]
        assert base.startswith("http://127.0.0.1:")
        assert not base.endswith(":0")
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            yield node, client
        nursery.cancel_scope.cancel()


async def test_health_readiness_and_errors(database_dsn: str, tmp_path: Path) -> None:
    async with running_node(database_dsn, tmp_path) as (_node, client):
        response = await client.get("/healthz")
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        assert response.headers["content-type"].startswith("application/json")

        response = await client.get("/readyz")
        assert response.status_code == 200
        assert response.json() == {"ready": True, "checks": {"database": True, "migrations": True, "store": True}}

        response = await client.get("/no/such/thing")
        assert response.status_code == 404
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"]["code"] == "not_found"

        response = await client.post("/healthz", content=b"{}")
        assert response.status_code == 405
        assert response.headers["content-type"].startswith("application/json")
        assert response.json()["error"]["code"] == "method_not_allowed"
        assert "GET" in response.headers["allow"]


async def test_metrics_are_prometheus_text(database_dsn: str, tmp_path: Path) -> None:
    async with running_node(database_dsn, tmp_path) as (_node, client):
        before = await client.get("/metrics")
        gc.collect()  # a full collection: the whole process pauses, and /metrics shows it
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert "# TYPE kefu_actor_mailbox_capacity_messages gauge" in text
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    assert samples['kefu_actor_mailbox_capacity_messages{actor="store"}'] > 0
    assert samples['kefu_supervisor_children{supervisor="root"}'] == 7
    assert samples['kefu_supervisor_children{supervisor="core"}'] == 2
    assert 'kefu_actor_mailbox_messages{actor="dispatcher"}' in samples
    assert 'kefu_actor_mailbox_messages{actor="store"}' in samples
    assert "kefu_store_transactions_total" in samples
    full_collections = 'kefu_gc_pause_seconds_count{generation="2"}'
    earlier = next(line for line in before.text.splitlines() if line.startswith(full_collections))
    assert samples[full_collections] >= float(earlier.split()[1]) + 1
    assert samples['kefu_gc_longest_pause_seconds{generation="2"}'] > 0
    assert samples['kefu_gc_pause_seconds_bucket{generation="2",le="+Inf"}'] == samples[full_collections]


async def test_readiness_reports_an_unreachable_database(database_dsn: str, tmp_path: Path) -> None:
    # The node's database calls run on serve()'s trio-asyncio loop, so readiness is asked
    # through the HTTP handler (which runs inside that loop), not from the test task.
    async with running_node(database_dsn, tmp_path) as (node, client):
        assert (await client.get("/readyz")).status_code == 200
        # Every pooled connection is cut and the closed pool refuses to hand out new ones.
        node.database.pool.terminate()
        response = await client.get("/readyz")
        assert response.status_code == 503
        assert response.json() == {
            "ready": False,
            "checks": {"database": False, "migrations": False, "store": True},
        }
        # The process itself is still alive and says so.
        assert (await client.get("/healthz")).status_code == 200


class BrokenNode:
    """Just enough of a Node for the app, with a readiness check that has a bug."""

    config = Config()
    on_closing: list[object] = []

    async def readiness(self) -> dict[str, bool]:
        raise RuntimeError("a bug in a check")


async def test_unexpected_error_is_answered_with_json_500() -> None:
    app = create_app(BrokenNode())  # type: ignore[arg-type]
    client = app.test_client()
    response = await client.get("/readyz")
    assert response.status_code == 500
    assert response.content_type.startswith("application/json")
    body = await response.get_json()
    assert body == {"error": {"code": "internal_error", "message": "internal server error"}}
    assert "a bug in a check" not in await response.get_data(as_text=True)
