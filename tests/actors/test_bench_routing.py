"""The routing benchmark runs end to end at tiny sizes (no timing assertions)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kefu.actors.routing import RoutingStrategy
from kefu.loadtest import bench_routing


@pytest.mark.slow
def test_bench_routing_completes_and_reports_every_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "routing.json"
    args = ["--agents", "200", "--capacity", "3", "--queues", "4", "--assignments", "2000", "--rounds", "1"]
    assert bench_routing.main([*args, "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    names = [run["name"] for run in results["runs"]]
    assert names == [
        "trio channel round trip",
        *(f"router core: {s.value}" for s in RoutingStrategy),
        *(f"dispatcher: {s.value}" for s in RoutingStrategy),
    ]
    for run in results["runs"]:
        assert run["decisions"] == 2000
        assert run["per_second"] > 0
    for run in results["runs"][1:]:
        if run["name"].startswith("router core"):
            # the steady state stays loaded, so both matching and freeing happen
            assert 0.6 <= run["mean_load"] <= 0.8
    assert "dispatcher: least_load" in capsys.readouterr().out
