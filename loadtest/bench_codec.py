"""Nanoseconds per frame of the protocol codec, on the frames of the hot path.

    python -m kefu.loadtest.bench_codec [--number 20000] [--repeat 7] [--json out.json]

Each case is timed with `timeit` (`--repeat` runs of `--number` calls; the fastest run is
reported, as `timeit` advises: the others measure the machine's other work). The cases are
the frames a contact center decodes and encodes most:

- decode a customer's `message.send` (text) on `/ws/customer`, from bytes and from str
  (hypercorn hands text frames over as str);
- decode an agent's `message.send` on `/ws/agent`;
- decode the server's `ack` and message `event` (what clients and the load generator do);
- encode the `ack` and the message `event` (what the server does for every message).

The script uses only the codec's public API, so it measures another commit's codec unchanged:
put that commit's `protocol/` and this script in a tree `kefu/protocol`, `kefu/loadtest` (with
`__init__.py` files) and run it with `PYTHONPATH` pointing at the tree.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kefu.protocol import decode_agent_frame, decode_customer_frame, decode_server_frame, encode_frame
from kefu.protocol.common import SendMessage
from kefu.protocol.server import Ack, ConversationEvent, Sender

CONVERSATION_ID = "0b6f3a52-6f1e-4c7a-9d43-1f0d1c2b9e77"
TEXT = "Hello, my invoice 2024-17 is wrong: I was charged twice. 你好"

CUSTOMER_MESSAGE = encode_frame(
    SendMessage(client_id="c-1042", conversation_id=CONVERSATION_ID, kind="text", text=TEXT)
)
AGENT_MESSAGE = encode_frame(
    SendMessage(client_id="a-77", conversation_id=CONVERSATION_ID, kind="text", text="Let me look at it.")
)
ACK = Ack(client_id="c-1042", conversation_id=CONVERSATION_ID, seq=1042)
EVENT = ConversationEvent(
    conversation_id=CONVERSATION_ID,
    seq=1042,
    kind="message",
    at="2024-05-01T12:00:00.123Z",
    sender=Sender(role="customer", id="7d1c0c8e-7a43-4f7e-a2b8-33f5d1e0c3aa", display_name="Li Wei"),
    client_id="c-1042",
    message_kind="text",
    text=TEXT,
)
ACK_BYTES = encode_frame(ACK)
EVENT_BYTES = encode_frame(EVENT)


def cases() -> dict[str, Callable[[], object]]:
    """The timed calls, by name."""
    customer_text = CUSTOMER_MESSAGE.decode()
    return {
        "decode customer message.send (bytes)": lambda: decode_customer_frame(CUSTOMER_MESSAGE),
        "decode customer message.send (str)": lambda: decode_customer_frame(customer_text),
        "decode agent message.send": lambda: decode_agent_frame(AGENT_MESSAGE),
        "decode server ack": lambda: decode_server_frame(ACK_BYTES),
        "decode server event (message)": lambda: decode_server_frame(EVENT_BYTES),
        "encode ack": lambda: encode_frame(ACK),
        "encode event (message)": lambda: encode_frame(EVENT),
    }


def measure(number: int, repeat: int) -> dict[str, float]:
    """Nanoseconds per call of each case (the fastest of `repeat` runs of `number` calls)."""
    results: dict[str, float] = {}
    for name, call in cases().items():
        call()  # warm caches before timing
        runs = timeit.repeat(call, number=number, repeat=repeat)
        results[name] = min(runs) / number * 1e9
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--number", type=int, default=20_000, help="calls per timed run")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per case (the fastest is reported)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    results = measure(args.number, args.repeat)
    width = max(len(name) for name in results)
    for name, nanoseconds in results.items():
        print(f"{name:<{width}}  {nanoseconds:8.0f} ns/frame")
    if args.json:
        report: dict[str, Any] = {
            "python": sys.version.split()[0],
            "machine": platform.machine(),
            "number": args.number,
            "repeat": args.repeat,
            "ns_per_frame": results,
        }
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
