"""The contact-center load test runs end to end against an in-process node (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kefu.loadtest.contact_center import LoadConfig, RefusedTarget, check_target, main, run_load, write_outputs
from tests.server.live import PASSWORD, live_center


@pytest.mark.slow
async def test_load_run_loses_nothing_and_completes_every_conversation(database_dsn: str, tmp_path: Path) -> None:
    # 30 customers beside a limit of 5 new visitors a minute per address: they pass only because
    # each comes from a loopback address of its own, as real customers come from theirs.
    async with live_center(database_dsn, tmp_path, visitors_per_address_per_minute=5) as center:
        config = LoadConfig(
            url=center.node.urls[0],
            account=center.slug,
            admin_email=f"admin@{center.slug}.example",
            admin_password=PASSWORD,
            customers=30,
            agents=4,
            capacity=5,
            rate=10,
            messages=3,
            duration=6,
            ramp=1,
            drain=20,
            agent_think=0.05,
            customer_think=0.1,
            reconnect_share=0.2,
            seed=7,
            progress=False,
        )
        result = await run_load(config)
    assert result.errors == {}
    assert result.messages["lost"] == 0
    assert result.messages["duplicated"] == 0
    assert result.messages["out_of_order"] == 0
    conversations = result.conversations
    assert conversations["started"] > 0
    assert conversations["completed"] == conversations["started"] == conversations["planned"]
    assert conversations["failed"] == 0
    assert result.messages["sent"] == 2 * 3 * conversations["completed"]
    assert result.messages["delivered"] == result.messages["sent"]
    assert result.latency["customer_to_agent"]["count"] > 0
    assert result.latency["agent_to_customer"]["count"] > 0
    assert result.latency["queue_time"]["count"] == conversations["completed"]
    assert sum(result.fairness["per_agent"]) == conversations["completed"]
    assert result.throughput["messages_per_second"] > 0
    # open loop: customers arrive on their schedule (30 at 10/s take about 3 s), not all at once
    assert max(t["second"] for t in result.timeline if t["started"]) >= 2
    assert result.ok
    out = tmp_path / "result.json"
    svg = write_outputs(result, out)
    assert json.loads(out.read_text())["ok"] is True
    assert svg.read_text().startswith("<svg") and "<polyline" in svg.read_text()


def test_non_loopback_url_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(RefusedTarget):
        check_target("http://192.0.2.10:8080")
    with pytest.raises(RefusedTarget):
        check_target("ftp://127.0.0.1/")
    assert check_target("http://127.0.0.1:8080") == "127.0.0.1"
    assert check_target("http://[::1]:8080") == "::1"
    assert check_target("http://192.0.2.10:8080", ("192.0.2.10",)) == "192.0.2.10"
    args = ["--url", "http://192.0.2.10", "--account", "a", "--admin-email", "e", "--admin-password", "p"]
    assert main(args) == 2
    assert "refusing" in capsys.readouterr().err
    args = ["--url", "http://127.0.0.1:9", "--account", "a", "--admin-email", "e", "--admin-password", "p"]
    assert main([*args, "--duration", "3601"]) == 2
    assert "--duration" in capsys.readouterr().err
