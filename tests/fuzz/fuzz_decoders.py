"""Coverage-guided fuzzing of kefu's decoders with atheris (libFuzzer for Python).

Run with `make fuzz` (bounded by FUZZ_SECONDS), or by hand:

    .venv/bin/python -m tests.fuzz.fuzz_decoders -max_total_time=60 build/fuzz-corpus

The invariant is the one of tests/protocol/test_fuzz*.py, on inputs libFuzzer evolves by
coverage: every frame decoder either returns a frame (which encodes and decodes to itself)
or raises RemoteProtocolError; the REST body checks either pass or raise InvalidInput. Any
other exception is a crash, and libFuzzer saves the input as crash-<sha1> in the working folder.
Install atheris with `pip install -e '.[fuzz]'`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["kefu"]):
    from kefu.protocol import (
        RemoteProtocolError,
        decode_agent_frame,
        decode_customer_frame,
        decode_server_frame,
        encode_frame,
    )
    from kefu.server import business_hours, queues
    from kefu.server.api.route import decode_json
    from kefu.server.directory import InvalidInput

DECODERS = (decode_customer_frame, decode_agent_frame, decode_server_frame)


def check_frames(data: bytes) -> None:
    for decode in DECODERS:
        try:
            frame = decode(data)
        except RemoteProtocolError:
            continue
        if decode(encode_frame(frame)) != frame:
            raise AssertionError(f"{frame!r} does not survive encode -> decode")


def check_rest_bodies(data: bytes) -> None:
    for kind in (business_hours.BusinessHoursChange, queues.QueueCreate):
        try:
            decode_json(data, kind)
        except InvalidInput:
            pass


def test_one_input(data: bytes) -> None:
    check_frames(data)
    check_rest_bodies(data)


def write_seeds(folder: Path) -> None:
    """Start from valid frames of every type (libFuzzer mutates them) when the corpus is empty."""
    from tests.protocol.samples import AGENT_SAMPLES, CUSTOMER_SAMPLES, SERVER_SAMPLES

    folder.mkdir(parents=True, exist_ok=True)
    if any(folder.iterdir()):
        return
    for number, frame in enumerate([*CUSTOMER_SAMPLES, *AGENT_SAMPLES, *SERVER_SAMPLES]):
        (folder / f"seed-{number:03}").write_bytes(encode_frame(frame))
    (folder / "seed-hours").write_bytes(b'{"timezone": "UTC", "schedule": {"mon": ["09:00-12:00"]}}')


def main() -> None:
    corpus = [Path(arg) for arg in sys.argv[1:] if not arg.startswith("-")]
    for folder in corpus:
        write_seeds(folder)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
