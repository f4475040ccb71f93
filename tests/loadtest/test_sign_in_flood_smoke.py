"""The sign-in flood runs against an in-process node and gets only refusals (no timing assertions)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import trio

from kefu.loadtest.sign_in_flood import flood, main
from tests.server.live import live_center


async def test_a_flood_of_wrong_sign_ins_is_only_refused(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path, refusal_delay_seconds=0.05) as center:
        answers = await trio.to_thread.run_sync(partial(flood, center.node.urls[0], center.slug, 3, 1.0))
        assert answers, "the flood sent nothing"
        assert set(answers) <= {"401", "429", "503"}, answers
        response = await center.http.get("/readyz")
        assert response.status_code == 200


def test_only_loopback_is_flooded() -> None:
    assert main(["--url", "http://192.0.2.10:8080", "--account", "a"]) == 2
    assert main(["--url", "http://127.0.0.1:9", "--account", "a", "--threads", "1000"]) == 2
