# Invariant: any input either decodes to a frame or raises RemoteProtocolError, nothing else.
# (In the manner of h11's fuzz/afl-server.py.) And a valid frame survives encode -> decode.
"""Property tests of the three decoders: raw bytes, arbitrary JSON, mutated valid frames."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kefu.protocol.codec import (
    decode_agent_frame,
    decode_customer_frame,
    decode_server_frame,
    encode_frame,
)
from kefu.protocol.errors import PROTOCOL_ERROR_CODES, RemoteProtocolError
from kefu.protocol.frames import (
    AGENT_FRAME_TYPES,
    CUSTOMER_FRAME_TYPES,
    SERVER_FRAME_TYPES,
    AgentFrame,
    CustomerFrame,
    ServerFrame,
)

from .samples import (
    AGENT_SAMPLES,
    CUSTOMER_SAMPLES,
    SERVER_SAMPLES,
    agent_frames,
    customer_frames,
    server_frames,
)

FUZZ = settings(
    max_examples=400,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

Decode = Callable[..., object]
DECODERS: list[tuple[Decode, tuple[type, ...]]] = [
    (decode_customer_frame, CUSTOMER_FRAME_TYPES),
    (decode_agent_frame, AGENT_FRAME_TYPES),
    (decode_server_frame, SERVER_FRAME_TYPES),
]
FRAME_TYPES = sorted({cls.TYPE for cls in (*CUSTOMER_FRAME_TYPES, *AGENT_FRAME_TYPES, *SERVER_FRAME_TYPES)})


def decodes_or_refuses(data: bytes | str, *, max_bytes: int | None = None) -> None:
    """The invariant, for each of the three decoders."""
    for decode, frame_types in DECODERS:
        try:
            if max_bytes is None:
                frame = decode(data)
            else:
                frame = decode(data, max_bytes=max_bytes)
        except RemoteProtocolError as error:
            assert error.code in PROTOCOL_ERROR_CODES
            assert error.message
            assert error.close_code in (None, 1002, 1007, 1009)
            assert error.ref is None or 0 < len(error.ref) <= 64
        else:
            assert isinstance(frame, frame_types)


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(FRAME_TYPES)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)


def to_json(value: object) -> bytes:
    # orjson refuses integers beyond 64 bits; write those with the standard library.
    import json

    return json.dumps(value).encode()


# --- raw input -----------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=300))
def test_raw_bytes(data: bytes) -> None:
    decodes_or_refuses(data)


@FUZZ
@given(st.text(max_size=200) | st.text(st.characters(categories=["Cs", "Lo", "Po"]), max_size=50))
def test_raw_text(data: str) -> None:
    decodes_or_refuses(data)


@FUZZ
@given(st.binary(max_size=200), st.integers(min_value=0, max_value=250))
def test_raw_bytes_under_a_small_limit(data: bytes, max_bytes: int) -> None:
    decodes_or_refuses(data, max_bytes=max_bytes)


# --- arbitrary JSON ------------------------------------------------------------------------


@FUZZ
@given(json_values)
def test_arbitrary_json(value: object) -> None:
    decodes_or_refuses(to_json(value))


@FUZZ
@given(
    st.sampled_from(FRAME_TYPES),
    st.dictionaries(
        st.sampled_from(
            [
                "v",
                "client_id",
                "conversation_id",
                "kind",
                "text",
                "attachment_id",
                "seq",
                "last_seq",
                "active",
                "offer_id",
                "status",
                "to_agent_id",
                "to_department_id",
                "at",
                "sender",
                "limits",
                "customer",
                "role",
                "message_kind",
                "code",
                "message",
                "retryable",
                "nonce",
                "position",
                "from_seq",
                "to_seq",
                "server_time",
            ]
        ),
        json_values,
        max_size=10,
    ),
)
def test_arbitrary_fields_of_a_known_type(frame_type: str, fields: dict[str, Any]) -> None:
    decodes_or_refuses(to_json({**fields, "type": frame_type}))


# --- mutated valid frames ------------------------------------------------------------------

valid_frames = st.sampled_from([*CUSTOMER_SAMPLES, *AGENT_SAMPLES, *SERVER_SAMPLES])


@FUZZ
@given(valid_frames, st.data())
def test_drop_a_field(frame: object, data: st.DataObject) -> None:
    obj = orjson.loads(encode_frame(frame))  # type: ignore[arg-type]
    del obj[data.draw(st.sampled_from(sorted(obj)))]
    decodes_or_refuses(orjson.dumps(obj))


@FUZZ
@given(valid_frames, st.data(), json_values)
def test_replace_a_field(frame: object, data: st.DataObject, value: object) -> None:
    obj = orjson.loads(encode_frame(frame))  # type: ignore[arg-type]
    obj[data.draw(st.sampled_from(sorted(obj)))] = value
    decodes_or_refuses(to_json(obj))


@FUZZ
@given(valid_frames, st.data(), json_values)
def test_replace_a_nested_field(frame: object, data: st.DataObject, value: object) -> None:
    obj = orjson.loads(encode_frame(frame))  # type: ignore[arg-type]
    nested = [key for key, field in obj.items() if isinstance(field, dict)]
    if nested:
        inner = obj[data.draw(st.sampled_from(nested))]
        inner[data.draw(st.sampled_from(sorted(inner)))] = value
    decodes_or_refuses(to_json(obj))


@FUZZ
@given(valid_frames, st.data())
def test_truncate_or_flip_bytes(frame: object, data: st.DataObject) -> None:
    encoded = bytearray(encode_frame(frame))  # type: ignore[arg-type]
    cut = data.draw(st.integers(min_value=0, max_value=len(encoded)))
    decodes_or_refuses(bytes(encoded[:cut]))
    position = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    encoded[position] = data.draw(st.integers(min_value=0, max_value=255))
    decodes_or_refuses(bytes(encoded))


# --- round trips of generated valid frames -------------------------------------------------


@FUZZ
@given(customer_frames)
def test_customer_round_trip(frame: CustomerFrame) -> None:
    assert decode_customer_frame(encode_frame(frame)) == frame


@FUZZ
@given(agent_frames)
def test_agent_round_trip(frame: AgentFrame) -> None:
    assert decode_agent_frame(encode_frame(frame)) == frame


@FUZZ
@given(server_frames)
def test_server_round_trip(frame: ServerFrame) -> None:
    assert decode_server_frame(encode_frame(frame)) == frame
