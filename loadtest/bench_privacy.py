"""What privacy costs per operation: encryption, blind index, phone parsing, masking, log scrubbing.

    python -m kefu.loadtest.bench_privacy [--operations 20000] [--rounds 3]

Each operation is timed `--operations` times in a row, `--rounds` times; the best round is
reported in microseconds per operation (CPU only: no database, no network).
"""

from __future__ import annotations

import argparse
import sys
import timeit
import uuid
from collections.abc import Callable

from kefu.server.logs import scrub
from kefu.server.privacy import DataKeys, mask_phone, normalize_phone

LOG_LINE = (
    '{"time":"2026-11-24T09:07:49.962Z","level":"info","logger":"kefu.node","event":"kefu is serving",'
    '"urls":["http://127.0.0.1:39025"],"conversation_id":"550e8400-e29b-41d4-a716-446655440000"}'
)


def operations() -> dict[str, Callable[[], object]]:
    keys = DataKeys.from_key(b"b" * 32)
    account, customer = uuid.uuid4(), uuid.uuid4()
    sealed = keys.encrypt(account, customer, "phone", "+8613812345678")
    return {
        "AES-256-GCM encrypt (a phone number)": lambda: keys.encrypt(account, customer, "phone", "+8613812345678"),
        "AES-256-GCM decrypt": lambda: keys.decrypt(account, customer, "phone", sealed),
        "blind index (HMAC-SHA256)": lambda: keys.blind_index(account, "phone", "+8613812345678"),
        "normalize a phone number (phonenumbers)": lambda: normalize_phone("138 1234 5678", "CN"),
        "mask a phone number": lambda: mask_phone("+8613812345678", "CN"),
        f"scrub a {len(LOG_LINE)}-character log line": lambda: scrub(LOG_LINE),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench_privacy", description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=20_000, help="operations per round (1 to 10,000,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (1 to 20)")
    args = parser.parse_args(argv)
    if not 1 <= args.operations <= 10_000_000 or not 1 <= args.rounds <= 20:
        print("bench_privacy: --operations must be 1 to 10,000,000 and --rounds 1 to 20", file=sys.stderr)
        return 2
    print(f"| operation | µs per operation (best of {args.rounds} × {args.operations:,}) |")
    print("| --- | ---: |")
    for name, operation in operations().items():
        best = min(timeit.repeat(operation, number=args.operations, repeat=args.rounds)) / args.operations
        print(f"| {name} | {best * 1e6:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
