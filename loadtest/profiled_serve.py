"""`kefu serve` under cProfile, for the benchmark suite's `--profile`.

    python -m kefu.loadtest.profiled_serve --output kefu.prof [--top 40] [--on-signal]

Configuration comes from the environment exactly as for `kefu serve` (KEFU_* variables). On
SIGTERM kefu stops gracefully; then the profile is written to `--output` (pstats format, for
`python -m pstats` or snakeviz) and the functions with the most own and cumulative time are
written next to it as text (`.txt`). With `--on-signal` the profiler starts switched off:
SIGUSR1 switches it on and SIGUSR2 off again, so that only a measuring window is profiled, not
the setup. cProfile slows Python code down (roughly 1.5-2x), so read the shares, not the times;
and it counts wall time, so a system call that lets another process run (a write that wakes
PostgreSQL on the same core) is charged with that process's time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import signal
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--on-signal", action="store_true", help="profile only between SIGUSR1 and SIGUSR2")
    args = parser.parse_args(argv)

    from kefu.server.cli import main as kefu_main

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


if __name__ == "__main__":
    sys.exit(main())
