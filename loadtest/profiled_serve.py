"""`kefu serve` under cProfile, for the benchmark suite's `--profile`.

    python -m kefu.loadtest.profiled_serve --output kefu.prof [--top 40]

Configuration comes from the environment exactly as for `kefu serve` (KEFU_* variables). On
SIGTERM kefu stops gracefully; then the profile is written to `--output` (pstats format, for
`python -m pstats` or snakeviz) and the functions with the most own time are written next to
it as text (`.txt`). cProfile slows Python code down by roughly 1.5-2x, evenly enough that the
shares are what to read, not the absolute times.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)

    from kefu.server.cli import main as kefu_main

    profiler = cProfile.Profile()
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
