"""A flood of wrong sign-ins, to measure what it costs a running node's other users.

    python -m kefu.loadtest.sign_in_flood --url http://127.0.0.1:8080 --account acme-support \
        --threads 40 --seconds 20

`--threads` threads each send wrong sign-ins (a new random e-mail each time, so the per-user
limit never applies) one after another, each waiting for its answer, as a flooding script does;
thread i sends from its own loopback address 127.0.9.(i+2), so the per-address limits apply to
each separately and the hashing pool is what holds. Prints the answers counted by status. Run
`kefu.loadtest.contact_center` beside it to see the neighbours' latency (docs/benchmarks.md).
Loopback only, at most 250 threads and 600 s; it stops by itself.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import sys
import threading
import time
import urllib.parse
import uuid

from kefu.loadtest.contact_center import RefusedTarget, check_target

MAX_THREADS = 250
MAX_SECONDS = 600.0


def flood(url: str, account: str, threads: int, seconds: float) -> dict[str, int]:
    parsed = urllib.parse.urlsplit(url)
    counts: collections.Counter[str] = collections.Counter()
    lock = threading.Lock()

    def sender(i: int) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            connection = http.client.HTTPConnection(
                parsed.hostname or "", parsed.port, timeout=30, source_address=(f"127.0.9.{i + 2}", 0)
            )
            body = {"account": account, "email": f"flood-{uuid.uuid4().hex[:12]}@example.invalid", "password": "x" * 12}
            try:
                connection.request(
                    "POST", "/api/v1/auth/sign-in", body=json.dumps(body), headers={"Content-Type": "application/json"}
                )
                response = connection.getresponse()
                response.read()
                answer = str(response.status)
            except OSError as error:
                answer = type(error).__name__
            finally:
                connection.close()
            with lock:
                counts[answer] += 1

    workers = [threading.Thread(target=sender, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return dict(counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--account", required=True, help="an account's slug (its users are not touched)")
    parser.add_argument("--threads", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args(argv)
    try:
        host = check_target(args.url)
    except RefusedTarget as refused:
        print(f"sign_in_flood: {refused}", file=sys.stderr)
        return 2
    if not host.startswith("127.") and host != "localhost":
        print("sign_in_flood: needs an IPv4 loopback URL (it sends from 127.0.9.x)", file=sys.stderr)
        return 2
    if not 1 <= args.threads <= MAX_THREADS or not 0 < args.seconds <= MAX_SECONDS:
        print(f"sign_in_flood: --threads 1-{MAX_THREADS}, --seconds up to {MAX_SECONDS:.0f}", file=sys.stderr)
        return 2
    print(json.dumps(flood(args.url, args.account, args.threads, args.seconds), sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
