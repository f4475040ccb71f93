"""`kefu serve` under cProfile, for the benchmark suite's `--profile`.

    python -m kefu.loadtest.profiled_serve --output kefu.prof [--top 40] [--on-signal]

Configuration comes from the environment exactly as for `kefu serve` (KEFU_* variables). On
SIGTERM kefu stops gracefully; then the profile is written to `--output` (pstats format, for
`python -m pstats` or snakeviz) and the functions with the most own and cumulative time are
written next to it as text (`.txt`). With `--on-signal` the profiler starts switched off:
SIGUSR1 switches it on and SIGUSR2 off again, so that only a measuring window is profiled, not
the setup. cProfile slows Python code down (roughly 1.5-2x), so read the shares, not the times;
and it counts wall time, so a system call that lets another process run (a write that wakes
PostgreSQL on the same core) is charged with that process's time. `--memory` traces
allocations instead (tracemalloc; it needs memory of its own, so RSS figures of such a run
are not the plain ones).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import signal
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--on-signal", action="store_true", help="profile only between SIGUSR1 and SIGUSR2")
    parser.add_argument(
        "--memory",
        action="store_true",
        help="instead of CPU: trace allocations (tracemalloc) and write what was allocated and still held"
        " between SIGUSR1 and SIGUSR2, by source line, to the output file (text)",
    )
    args = parser.parse_args(argv)

    from kefu.server.cli import main as kefu_main

    if args.memory:
        return _memory(args.output, args.top, kefu_main)

    profiler = cProfile.Profile()
    if args.on_signal:
        # The handlers run in the main thread, which is the one running trio (and asyncpg through
        # trio-asyncio), so that is the thread profiled.
        signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())
        signal.signal(signal.SIGUSR2, lambda *_: profiler.disable())
    else:
        profiler.enable()
    try:
        code = kefu_main(["serve"])
    finally:
        profiler.disable()
        profiler.dump_stats(args.output)
        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text)
        stats.sort_stats("tottime").print_stats(args.top)
        stats.sort_stats("cumulative").print_stats(args.top)
        args.output.with_suffix(".txt").write_text(text.getvalue())
    return code


def _memory(output: Path, top: int, kefu_main: Callable[[list[str]], int]) -> int:
    tracemalloc.start(1)
    snapshots: dict[str, tracemalloc.Snapshot] = {}

    def before(*_: object) -> None:
        snapshots["before"] = tracemalloc.take_snapshot()

    def after(*_: object) -> None:
        snapshot = tracemalloc.take_snapshot()
        if "before" not in snapshots:
            return
        lines = ["memory held at SIGUSR2 that was not at SIGUSR1, by source line (tracemalloc)", ""]
        for key in ("lineno", "filename"):
            stats = snapshot.compare_to(snapshots["before"], key)
            total = sum(stat.size_diff for stat in stats)
            lines.append(f"by {key}: {total / 1024:,.0f} KiB in all")
            for stat in stats[:top]:
                lines.append(f"  {stat.size_diff / 1024:>10,.1f} KiB {stat.count_diff:>+9,} blocks  {stat.traceback}")
            lines.append("")
        output.write_text("\n".join(lines))

    signal.signal(signal.SIGUSR1, before)
    signal.signal(signal.SIGUSR2, after)
    return kefu_main(["serve"])


if __name__ == "__main__":
    sys.exit(main())
