"""The benchmark suite runs end to end at tiny sizes: every server it starts relays every
message exactly once and in order, with no error (figures are not asserted)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kefu.loadtest import bench_suite
from kefu.loadtest.relay import Tally


def _assert_clean(name: str, run: dict, expected: int) -> None:
    check = run["check"]
    assert check["sent"] == expected, (name, check)
    assert check["delivered"] == expected, (name, check)
    assert check["lost"] == check["duplicated"] == check["out_of_order"] == check["unexpected"] == 0, (name, check)
    assert not run["errors"], (name, run["errors"])
    assert run["server_alive_at_end"], name


@pytest.mark.slow
def test_suite_relays_every_message_exactly_once_on_kefu_and_the_baselines(tmp_path: Path) -> None:
    affinity = os.sched_getaffinity(0)
    out = tmp_path / "bench.json"
    table = tmp_path / "bench.md"
    sizes = (
        "--relay-rooms 2 --relay-per-room 3 --relay-messages 60 --per-room 5 --latency-rooms 2 --latency-active 4"
        " --latency-rate 40 --latency-seconds 1 --memory-idle 6 --settle 0.2 --capacity-steps 6,12"
        " --capacity-active 4 --capacity-rate 20 --capacity-seconds 1 --capacity-p99-ms 1e9 --timeout 60"
        " --reuse-kefu"
    )
    only = "relay,latency,memory,capacity"
    code = bench_suite.main(["--only", only, "--json", str(out), "--markdown", str(table), *sizes.split()])
    assert code == 0
    assert os.sched_getaffinity(0) == affinity  # the test process is not left pinned
    results = json.loads(out.read_text())
    b = results["benchmarks"]

    assert set(b["relay"]["runs"]) == {"trio", "quart", "kefu"}
    for name, run in b["relay"]["runs"].items():
        _assert_clean(f"relay {name}", run, expected=60)
        assert run["senders"] == 6 and run["receivers"] == 2

    assert set(b["latency"]["runs"]) == {"quart", "kefu"}
    for name, run in b["latency"]["runs"].items():
        _assert_clean(f"latency {name}", run, expected=40)
        assert run["sockets"] == 2 * (5 + 1)  # receivers + idle and active senders were all open
        assert run["latency"]["count"] == 40

    for name, run in b["memory"]["runs"].items():
        assert run["idle_connections"] == 6, name
        assert not run["errors"], (name, run["errors"])
        assert run["rss_after_kib"] > 0 and run["rss_before_kib"] > 0

    for name, run in b["capacity"]["runs"].items():
        assert not run["errors"], (name, run["errors"])
        steps = run["steps"]
        assert [s["sockets_wanted"] for s in steps] == [6, 12], (name, steps)
        assert all("limit" not in s for s in steps), (name, steps)
        assert steps[-1]["check"]["lost"] == 0 and steps[-1]["check"]["sent"] == 40

    # one ready-to-paste markdown table with kefu beside its baselines
    text = table.read_text()
    assert text == results["markdown"]
    assert "| benchmark | kefu | baseline(s) |" in text
    assert "trio-websocket" in text and "quart-trio" in text
    assert text.count("\n| ") >= 6  # header, rule, relay, latency, memory, two capacity rows


def test_the_exactly_once_check_counts_lost_duplicated_and_reordered_messages() -> None:
    tally = Tally(record_latency=False)
    tally.sent = {0: 3, 1: 3}
    for text in ("b 0 0 1.0", "b 0 2 1.0", "b 0 2 1.0", "b 1 1 1.0", "b 1 0 1.0", "b 1 2 1.0", "b 7 0 1.0"):
        tally.arrived(text, 2.0)
    tally.arrived("garbage", 2.0)
    check = tally.check()
    assert check["lost"] == 1  # sender 0's message 1
    assert check["duplicated"] == 1  # sender 0's message 2, twice
    assert check["out_of_order"] == 2  # sender 0: 2 after 2; sender 1: 0 after 1
    assert check["unexpected"] == 1  # from a sender that never sent
    assert tally.errors == {"unexpected text at a receiver": 1}


def test_unknown_benchmark_and_out_of_range_sizes_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench_suite.main(["--only", "relay,nonsense"])
    assert "unknown benchmark" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_suite.main(["--per-room", "101"])
    assert "--per-room" in capsys.readouterr().err
