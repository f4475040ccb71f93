"""Per-address rate limits of the endpoints a stranger may call: web-chat visitor creation and
uploads (a visitor token comes free from the first). Sign-in's are in test_auth.py.

The gate's clock is frozen (`freeze`): buckets refill no more while a test runs, so the counts
below do not depend on how fast the machine is.
"""

from __future__ import annotations

from pathlib import Path

from tests.server.live import live_center
from tests.server.test_auth import client_from, freeze, gate_of

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(256)) * 4


async def test_visitor_creation_is_limited_per_address(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path, visitors_per_address_per_minute=2) as center:
        freeze(gate_of(center))
        body = {"account": center.slug, "display_name": "Li Wei"}
        async with client_from(center, "127.0.0.2") as stranger, client_from(center, "127.0.0.3") as neighbour:
            answers = [await stranger.post("/api/v1/webchat/visitors", json=body) for _ in range(3)]
            assert [a.status_code for a in answers] == [201, 201, 429]
            refused = answers[2]
            assert refused.headers["Retry-After"] == "30"  # 2 a minute: the next in 30 s
            assert refused.json()["error"]["code"] == "rate_limited"
            assert "token" not in refused.json()
            (count,) = await center.fetch(
                "SELECT count(*) FROM customers c JOIN accounts a ON a.id = c.account_id WHERE a.slug = $1",
                center.slug,
            )
            assert count["count"] == 2
            # Another address has its own allowance.
            assert (await neighbour.post("/api/v1/webchat/visitors", json=body)).status_code == 201


async def test_uploads_are_limited_per_address_before_the_body_is_read(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path, uploads_per_address_per_minute=2) as center:
        freeze(gate_of(center))
        visitor = await center.add_visitor("Li Wei")
        headers = {**center.auth(visitor.token), "Content-Type": "image/png"}
        async with client_from(center, "127.0.0.2") as stranger, client_from(center, "127.0.0.3") as neighbour:
            answers = [
                await stranger.post("/api/v1/attachments?filename=a.png", content=PNG, headers=headers)
                for _ in range(3)
            ]
            assert [a.status_code for a in answers] == [201, 201, 429], answers[-1].text
            refused = answers[2]
            assert (refused.headers["Retry-After"], refused.headers["Connection"]) == ("30", "close")
            assert refused.json()["error"]["code"] == "rate_limited"
            # Counted before the token is looked up: a bad token is refused the same way.
            bad = await stranger.post(
                "/api/v1/attachments", content=PNG, headers={**headers, "Authorization": "Bearer kv_nonsense"}
            )
            assert (bad.status_code, bad.json()["error"]["code"]) == (429, "rate_limited")
            (count,) = await center.fetch(
                "SELECT count(*) FROM attachments t JOIN accounts a ON a.id = t.account_id WHERE a.slug = $1",
                center.slug,
            )
            assert count["count"] == 2
            ok = await neighbour.post("/api/v1/attachments?filename=b.png", content=PNG, headers=headers)
            assert ok.status_code == 201
