"""Decoding and encoding frames: round trips, every error code, the size limit."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from kefu.protocol.codec import (
    AGENT_WIRE_TYPES,
    CUSTOMER_WIRE_TYPES,
    SERVER_WIRE_TYPES,
    decode_agent_frame,
    decode_customer_frame,
    decode_server_frame,
    encode_frame,
)
from kefu.protocol.errors import (
    CLOSE_INVALID_PAYLOAD,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_PROTOCOL_ERROR,
    PROTOCOL_ERROR_CODES,
    LocalProtocolError,
    RemoteProtocolError,
    error_frame,
)
from kefu.protocol.frames import (
    AGENT_FRAME_TYPES,
    CUSTOMER_FRAME_TYPES,
    DEFAULT_MAX_FRAME_BYTES,
    MAX_SEQ,
    MAX_TEXT_CHARS,
    SERVER_FRAME_TYPES,
    Ack,
    AgentFrame,
    CloseConversation,
    CustomerFrame,
    MarkRead,
    Ping,
    SendMessage,
    ServerError,
    ServerFrame,
    StartConversation,
    Transfer,
    utc_timestamp,
)

from .samples import AGENT_SAMPLES, CUSTOMER_SAMPLES, SERVER_SAMPLES


def wire(**fields: Any) -> bytes:
    return orjson.dumps(fields)


def remote_error(data: bytes | str, decode: Any = decode_customer_frame) -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        decode(data)
    return info.value


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("frame", CUSTOMER_SAMPLES, ids=repr)
def test_customer_frames_round_trip(frame: CustomerFrame) -> None:
    data = encode_frame(frame, check=True)
    assert decode_customer_frame(data) == frame
    assert decode_customer_frame(data.decode()) == frame


@pytest.mark.parametrize("frame", AGENT_SAMPLES, ids=repr)
def test_agent_frames_round_trip(frame: AgentFrame) -> None:
    assert decode_agent_frame(encode_frame(frame, check=True)) == frame


@pytest.mark.parametrize("frame", SERVER_SAMPLES, ids=repr)
def test_server_frames_round_trip(frame: ServerFrame) -> None:
    assert decode_server_frame(encode_frame(frame, check=True)) == frame


def test_samples_cover_every_frame_type() -> None:
    assert {type(f) for f in CUSTOMER_SAMPLES} == set(CUSTOMER_FRAME_TYPES)
    assert {type(f) for f in AGENT_SAMPLES} == set(AGENT_FRAME_TYPES)
    assert {type(f) for f in SERVER_SAMPLES} == set(SERVER_FRAME_TYPES)
    assert set(CUSTOMER_WIRE_TYPES) == {cls.TYPE for cls in CUSTOMER_FRAME_TYPES}
    assert set(AGENT_WIRE_TYPES) == {cls.TYPE for cls in AGENT_FRAME_TYPES}
    assert set(SERVER_WIRE_TYPES) == {cls.TYPE for cls in SERVER_FRAME_TYPES}


def test_encoding_is_the_documented_envelope() -> None:
    frame = SendMessage(client_id="c-1", conversation_id="conv-1", kind="text", text="hi")
    assert orjson.loads(encode_frame(frame)) == {
        "v": 1,
        "type": "message.send",
        "client_id": "c-1",
        "conversation_id": "conv-1",
        "kind": "text",
        "text": "hi",
    }


def test_version_is_optional_and_extra_fields_are_ignored() -> None:
    data = wire(type="read", conversation_id="conv-1", seq=3, sent_by="widget 2.0")
    assert decode_customer_frame(data) == MarkRead(conversation_id="conv-1", seq=3)


def test_null_optional_field_is_absent() -> None:
    data = wire(v=1, type="ping", nonce=None)
    assert decode_customer_frame(data) == Ping()


def test_customer_wrap_up_code_is_ignored() -> None:
    data = wire(type="conversation.close", client_id="c", conversation_id="x", wrap_up_code="w")
    assert decode_customer_frame(data) == CloseConversation(client_id="c", conversation_id="x")
    assert decode_agent_frame(data) == CloseConversation("c", "x", wrap_up_code="w")


def test_customer_wrap_up_code_is_not_even_read() -> None:
    data = wire(type="conversation.close", client_id="c", conversation_id="x", wrap_up_code=5)
    assert decode_customer_frame(data) == CloseConversation(client_id="c", conversation_id="x")
    assert remote_error(data, decode_agent_frame).code == "invalid_field"


def test_str_and_bytes_input_agree() -> None:
    text = '{"type":"message.send","client_id":"c","conversation_id":"x","kind":"text","text":"é"}'
    assert decode_customer_frame(text) == decode_customer_frame(text.encode())


def test_utc_timestamp() -> None:
    from datetime import datetime, timedelta, timezone

    moment = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    assert utc_timestamp(moment) == "2024-05-01T12:00:00.000Z"
    with pytest.raises(ValueError):
        utc_timestamp(datetime(2024, 5, 1))


# --- every error code from a concrete bad input --------------------------------------------

BAD_INPUTS: list[tuple[str, bytes | str, str, int | None]] = [
    ("truncated JSON", b'{"type": "ping"', "malformed_json", CLOSE_INVALID_PAYLOAD),
    ("invalid UTF-8", b'{"type": "ping", "nonce": "\xff"}', "malformed_json", 1007),
    ("lone surrogate in str", '{"type": "ping", "nonce": "\ud800"}', "malformed_json", 1007),
    ("escaped lone surrogate", b'{"type": "ping", "nonce": "\\udc00"}', "malformed_json", 1007),
    ("NaN", b'{"type": "read", "conversation_id": "x", "seq": NaN}', "malformed_json", 1007),
    ("deep nesting", b"[" * 5000 + b"]" * 5000, "malformed_json", 1007),
    ("empty", b"", "malformed_json", 1007),
    ("JSON array", b'[{"type": "ping"}]', "invalid_envelope", 1007),
    ("JSON string", b'"ping"', "invalid_envelope", 1007),
    ("JSON null", b"null", "invalid_envelope", 1007),
    ("version 2", wire(v=2, type="ping"), "unsupported_version", CLOSE_PROTOCOL_ERROR),
    ("version true", wire(v=True, type="ping"), "unsupported_version", 1002),
    ("version 1.0", b'{"v": 1.0, "type": "ping"}', "unsupported_version", 1002),
    ("version string", wire(v="1", type="ping"), "unsupported_version", 1002),
    ("no type", wire(v=1, nonce="x"), "missing_field", None),
    ("type is a list", wire(type=["ping"]), "invalid_field", None),
    ("unknown type", wire(type="offer.accept", offer_id="o"), "unknown_type", None),
    ("seq missing", wire(type="read", conversation_id="x"), "missing_field", None),
    ("seq true", wire(type="read", conversation_id="x", seq=True), "invalid_field", None),
    ("seq float", wire(type="read", conversation_id="x", seq=1.0), "invalid_field", None),
    ("seq negative", wire(type="read", conversation_id="x", seq=-1), "invalid_field", None),
    ("seq huge", wire(type="read", conversation_id="x", seq=MAX_SEQ + 1), "invalid_field", None),
    ("seq 1e30", b'{"type":"read","conversation_id":"x","seq":1e30}', "invalid_field", None),
    ("seq beyond 64 bits", b'{"type":"read","conversation_id":"x","seq":2' + b"0" * 30 + b"}", "invalid_field", None),
    ("id is a list", wire(type="resume", conversation_id=["x"], last_seq=0), "invalid_field", None),
    ("id is empty", wire(type="resume", conversation_id="", last_seq=0), "invalid_field", None),
    ("active is 1", wire(type="typing", conversation_id="x", active=1), "invalid_field", None),
    ("client_id too long", wire(type="conversation.start", client_id="c" * 65), "invalid_field", None),
]


@pytest.mark.parametrize(
    ("data", "code", "close_code"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
def test_bad_input_gives_its_error(data: bytes | str, code: str, close_code: int | None) -> None:
    error = remote_error(data)
    assert error.code == code
    assert error.close_code == close_code
    assert error.must_close == (close_code is not None)
    assert error.message


def test_every_error_code_is_covered() -> None:
    produced = {case[2] for case in BAD_INPUTS} | {"oversized"}
    assert produced == PROTOCOL_ERROR_CODES


def message(**fields: Any) -> bytes:
    return wire(type="message.send", client_id="c-9", conversation_id="conv-1", **fields)


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (message(kind="text"), "missing_field"),
        (message(kind="text", text=""), "invalid_field"),
        (message(kind="text", text="x" * (MAX_TEXT_CHARS + 1)), "invalid_field"),
        (message(kind="text", text="hi", attachment_id="a"), "invalid_field"),
        (message(kind="image"), "missing_field"),
        (message(kind="sticker", attachment_id="a"), "invalid_field"),
        (message(kind=["text"], text="hi"), "invalid_field"),
        (message(text="hi"), "missing_field"),
    ],
)
def test_message_rules(data: bytes, code: str) -> None:
    error = remote_error(data)
    assert error.code == code
    assert error.ref == "c-9"
    assert error.close_code is None


def test_longest_text_is_accepted() -> None:
    frame = decode_customer_frame(message(kind="text", text="字" * MAX_TEXT_CHARS))
    assert isinstance(frame, SendMessage)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({}, "missing_field"),
        ({"to_agent_id": "a", "to_department_id": "d"}, "invalid_field"),
        ({"to_agent_id": 7}, "invalid_field"),
    ],
)
def test_transfer_needs_exactly_one_target(fields: dict[str, Any], code: str) -> None:
    data = wire(type="transfer", client_id="t-1", conversation_id="conv-1", **fields)
    error = remote_error(data, decode_agent_frame)
    assert (error.code, error.ref) == (code, "t-1")
    data = wire(type="transfer", client_id="t-1", conversation_id="conv-1", to_agent_id="a")
    assert isinstance(decode_agent_frame(data), Transfer)


def test_agent_only_frames_are_unknown_to_customers() -> None:
    assert remote_error(wire(type="status.set", status="online")).code == "unknown_type"
    data = wire(type="conversation.start", client_id="c-1")
    assert remote_error(data, decode_agent_frame).code == "unknown_type"


def test_server_frames_are_checked_too() -> None:
    data = wire(type="ack", client_id="c", conversation_id="x", seq=0)
    assert remote_error(data, decode_server_frame).code == "invalid_field"
    event = dict(
        type="event", conversation_id="x", seq=1, kind="system", text="hi", sender={"role": "system", "id": "system"}
    )
    for at in ["yesterday", "2024-05-01T12:00:00", "2024-05-01T12:00:00+02:00"]:
        assert remote_error(wire(**event, at=at), decode_server_frame).code == "invalid_field"
    assert decode_server_frame(wire(**event, at="2024-05-01T12:00:00Z"))
    unknown_kind = {**event, "kind": "survey_sent"}
    assert decode_server_frame(wire(**unknown_kind, at="2024-05-01T12:00:00Z"))


def test_ref_is_the_client_id_when_readable() -> None:
    assert remote_error(wire(type="nope", client_id="c-1")).ref == "c-1"
    assert remote_error(wire(type="nope", client_id=5)).ref is None
    assert remote_error(wire(type="nope", client_id="c" * 65)).ref is None
    assert remote_error(wire(v=3, type="ping", client_id="c-2")).ref == "c-2"
    assert remote_error(b"{").ref is None


# --- the size limit ------------------------------------------------------------------------


def test_oversized_closes_with_1009() -> None:
    data = message(kind="text", text="x" * DEFAULT_MAX_FRAME_BYTES)
    error = remote_error(data)
    assert (error.code, error.close_code, error.ref) == ("oversized", CLOSE_MESSAGE_TOO_BIG, None)


def test_size_is_checked_before_parsing() -> None:
    error = remote_error(b"{" * 101, lambda d: decode_customer_frame(d, max_bytes=100))
    assert error.code == "oversized"
    assert decode_customer_frame(b'{"type":"ping"}', max_bytes=15) == Ping()
    assert remote_error(b'{"type":"ping"} ', lambda d: decode_customer_frame(d, max_bytes=15))


def test_size_of_str_is_counted_in_utf8_bytes() -> None:
    frame = '{"type":"ping","nonce":"' + "字" * 10 + '"}'  # 36 characters, 56 bytes
    assert decode_customer_frame(frame, max_bytes=56) == Ping(nonce="字" * 10)
    error = remote_error(frame, lambda d: decode_customer_frame(d, max_bytes=55))
    assert error.close_code == 1009
    surrogate = '{"type":"ping","nonce":"\ud800"}'
    error = remote_error(surrogate, lambda d: decode_customer_frame(d, max_bytes=40))
    assert (error.code, error.close_code) == ("malformed_json", 1007)


# --- errors and misuse ---------------------------------------------------------------------


def test_error_frame_from_remote_error() -> None:
    error = remote_error(wire(type="read", client_id="c-1", conversation_id="x", seq="7"))
    frame = error_frame(error)
    assert frame == ServerError(code="invalid_field", message=error.message, retryable=False, ref="c-1")
    assert decode_server_frame(encode_frame(frame)) == frame


def test_encoding_a_non_frame_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame({"type": "ping"})  # type: ignore[arg-type]


def test_encoding_an_unencodable_value_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        encode_frame(Ping(nonce="\ud800"))


def test_an_integer_beyond_64_bits_is_refused_by_the_check() -> None:
    # JSON (and msgspec) can write it; no receiver accepts it (seq is a PostgreSQL bigint).
    frame = Ack(client_id="c", conversation_id="x", seq=2**64)
    assert encode_frame(frame)
    with pytest.raises(LocalProtocolError):
        encode_frame(frame, check=True)


def test_check_refuses_what_a_peer_would_refuse() -> None:
    bad = StartConversation(client_id="")
    assert encode_frame(bad)  # the hot path does not look
    with pytest.raises(LocalProtocolError):
        encode_frame(bad, check=True)
    with pytest.raises(LocalProtocolError):
        encode_frame(SendMessage("c", "x", "image"), check=True)


def test_decoding_a_non_buffer_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        decode_customer_frame(123)  # type: ignore[arg-type]


def test_remote_error_reads_well() -> None:
    error = remote_error(b"[]")
    assert str(error) == "invalid_envelope: frame must be a JSON object"
    assert "close_code=1007" in repr(error)
