"""Decoding and encoding frames: bytes in, frames out; frames in, bytes out.

Decoding is one msgspec pass per frame, after the size check (before any parsing): a tagged
union on ``type`` picks the frame class and checks every field's JSON type and limits, as
declared on the frame classes. Then the few rules between fields (``rules``) and the
timestamps' calendar are checked. Any input either decodes to a frame or raises
``RemoteProtocolError``; nothing else escapes (``tests/protocol/test_fuzz`` holds us to that).
Fields the decoder does not know are ignored, for forward compatibility.

The fast path does no work of its own beyond the size check. When msgspec refuses a frame,
the refusal is explained on the slow path, in the order a reader would check: the whole
input is parsed as plain JSON (``malformed_json``), must be an object (``invalid_envelope``)
with a supported ``v`` (``unsupported_version``) and a known ``type`` (``missing_field``,
``invalid_field``, ``unknown_type``); only then is msgspec's complaint about one field turned
into ``missing_field`` or ``invalid_field``. A frame with several faults is refused for one of
them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Final, get_args

import msgspec

from ._fields import MAX_CLIENT_ID_CHARS, MAX_LABEL_CHARS, Timestamp
from .client_decoders import (
    AGENT_DECODER,
    AGENT_WIRE_TYPES,
    CLIENT_RULES,
    CUSTOMER_CONVERSIONS,
    CUSTOMER_DECODER,
    CUSTOMER_WIRE_TYPES,
)
from .common import DEFAULT_MAX_FRAME_BYTES, PROTOCOL_VERSION
from .errors import (
    CLOSE_INVALID_PAYLOAD,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_PROTOCOL_ERROR,
    INVALID_ENVELOPE,
    INVALID_FIELD,
    MALFORMED_JSON,
    MISSING_FIELD,
    OVERSIZED,
    UNKNOWN_TYPE,
    UNSUPPORTED_VERSION,
    LocalProtocolError,
    RemoteProtocolError,
)
from .frames import (
    AGENT_FRAME_TYPES,
    CUSTOMER_FRAME_TYPES,
    SERVER_FRAME_TYPES,
    AgentFrame,
    CustomerFrame,
    Frame,
    ServerFrame,
)
from .rules import FieldRule, compile_rules
from .server import ServerError
from .server_decoders import SERVER_DECODER, SERVER_RULES, SERVER_WIRE_TYPES

__all__ = [
    "AGENT_DECODERS",
    "AGENT_WIRE_TYPES",
    "CUSTOMER_DECODERS",
    "CUSTOMER_WIRE_TYPES",
    "SERVER_DECODERS",
    "SERVER_WIRE_TYPES",
    "decode_agent_frame",
    "decode_customer_frame",
    "decode_server_frame",
    "encode_error",
    "encode_frame",
]

# The frame classes each receiver decodes, by wire type, under their names from before msgspec
# (when they mapped to one decoder function each).
CUSTOMER_DECODERS: Final = CUSTOMER_WIRE_TYPES
AGENT_DECODERS: Final = AGENT_WIRE_TYPES
SERVER_DECODERS: Final = SERVER_WIRE_TYPES

# A UTF-8 character takes at most 4 bytes: a str of n characters is at most 4n bytes.
_MAX_UTF8_BYTES_PER_CHAR: Final = 4


# --- what runs after msgspec's pass ---------------------------------------------------------


def _timestamp_fields(cls: type) -> tuple[str, ...]:
    """The fields of ``cls`` declared as ``Timestamp`` (their pattern is msgspec's to check,
    that the day exists is ours)."""
    pattern = msgspec.inspect.type_info(Timestamp)
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    return tuple(field.name for field in info.fields if field.type == pattern)


def _finisher(
    cls: type, rules: tuple[FieldRule, ...], convert: Callable[[Any], Any] | None
) -> Callable[[Any], Any] | None:
    """What to do with a decoded ``cls`` after msgspec's pass (``None``: nothing)."""
    timestamps = _timestamp_fields(cls)
    if not timestamps and convert is None:
        return compile_rules(rules) if rules else None
    check = compile_rules(rules)

    def finish(frame: Any) -> Any:
        check(frame)
        for name in timestamps:
            _check_instant(frame, name)
        return frame if convert is None else convert(frame)

    return finish


def _check_instant(frame: object, name: str) -> None:
    try:
        datetime.fromisoformat(getattr(frame, name))
    except ValueError:
        raise RemoteProtocolError(
            INVALID_FIELD, f"field {name!r} must be a date and time that exists", ref=getattr(frame, "client_id", None)
        ) from None


@dataclass(frozen=True, slots=True)
class _Receiver:
    """How one side reads its frames."""

    decoder: msgspec.json.Decoder[Any]
    wire_types: Mapping[str, type]
    # Per decoded struct class, what to do after msgspec's pass (absent: nothing).
    finish: Mapping[type, Callable[[Any], Any]]


def _receiver(
    decoder: msgspec.json.Decoder[Any],
    wire_types: Mapping[str, type],
    rules: Mapping[type, tuple[FieldRule, ...]],
    conversions: Mapping[type, Callable[[Any], Any]] = MappingProxyType({}),
) -> _Receiver:
    finish = {}
    for cls in get_args(decoder.type):  # the structs msgspec decodes (the union's members)
        finisher = _finisher(cls, rules.get(cls, ()), conversions.get(cls))
        if finisher is not None:
            finish[cls] = finisher
    return _Receiver(decoder, wire_types, MappingProxyType(finish))


_CUSTOMER: Final = _receiver(CUSTOMER_DECODER, CUSTOMER_WIRE_TYPES, CLIENT_RULES, CUSTOMER_CONVERSIONS)
_AGENT: Final = _receiver(AGENT_DECODER, AGENT_WIRE_TYPES, CLIENT_RULES)
_SERVER: Final = _receiver(SERVER_DECODER, SERVER_WIRE_TYPES, SERVER_RULES)


# --- decoding: the fast path ----------------------------------------------------------------


def _malformed(what: str) -> RemoteProtocolError:
    return RemoteProtocolError(MALFORMED_JSON, f"frame is not valid {what}", close_code=CLOSE_INVALID_PAYLOAD)


def _check_size(data: bytes | str, max_bytes: int) -> None:
    """Refuse a frame over ``max_bytes`` (in UTF-8) before anything reads it."""
    size = len(data)
    # A str's byte size is only computed (by encoding it) when its length leaves it unsure.
    if type(data) is str and size <= max_bytes < size * _MAX_UTF8_BYTES_PER_CHAR:
        try:
            size = len(data.encode("utf-8"))
        except UnicodeEncodeError:
            raise _malformed("UTF-8") from None
    if size > max_bytes:
        raise RemoteProtocolError(
            OVERSIZED, f"frame is larger than {max_bytes} bytes", close_code=CLOSE_MESSAGE_TOO_BIG
        )


def _decode(data: bytes | str, max_bytes: int, receiver: _Receiver) -> Any:
    if not isinstance(data, bytes | str):
        raise LocalProtocolError(f"frames are decoded from bytes or str, not {type(data)!r}")
    if len(data) * _MAX_UTF8_BYTES_PER_CHAR > max_bytes:  # else it fits, whatever it holds
        _check_size(data, max_bytes)
    try:
        # msgspec checks UTF-8 only in the strings it reads: the fields it skips are checked
        # here. ASCII (the common case) needs no check; a str is checked as msgspec encodes it.
        if isinstance(data, bytes) and not data.isascii():
            data.decode("utf-8")
        frame = receiver.decoder.decode(data)
    except (msgspec.DecodeError, RecursionError, UnicodeError) as error:
        raise _refusal(data, receiver, error) from None
    finish = receiver.finish.get(type(frame))
    return frame if finish is None else finish(frame)


def decode_customer_frame(data: bytes | str, *, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> CustomerFrame:
    """Decode one frame received on ``/ws/customer``; raise ``RemoteProtocolError`` if bad."""
    frame: CustomerFrame = _decode(data, max_bytes, _CUSTOMER)
    return frame


def decode_agent_frame(data: bytes | str, *, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> AgentFrame:
    """Decode one frame received on ``/ws/agent``; raise ``RemoteProtocolError`` if bad."""
    frame: AgentFrame = _decode(data, max_bytes, _AGENT)
    return frame


def decode_server_frame(data: bytes | str, *, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> ServerFrame:
    """Decode one frame sent by the server (for clients, tests and the load generator)."""
    frame: ServerFrame = _decode(data, max_bytes, _SERVER)
    return frame


# --- decoding: explaining a refusal ---------------------------------------------------------

_MISSING: Final = re.compile(r"Object missing required field `(?P<name>[^`]*)`(?: - at `\$(?P<at>[^`]*)`)?")
_AT: Final = re.compile(r"(?P<detail>.*) - at `\$(?P<at>[^`]*)`", re.DOTALL)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"


def _ref_of(obj: dict[str, Any]) -> str | None:
    client_id = obj.get("client_id")
    if type(client_id) is str and 0 < len(client_id) <= MAX_CLIENT_ID_CHARS:
        return client_id
    return None


def _refusal(data: bytes | str, receiver: _Receiver, error: Exception) -> RemoteProtocolError:
    """The ``RemoteProtocolError`` that explains why msgspec refused ``data``."""
    if isinstance(error, UnicodeError):
        return _malformed("UTF-8")
    if not isinstance(error, msgspec.ValidationError):
        return _malformed("UTF-8 JSON")
    # msgspec stops at the first fault: the JSON after it may be malformed, which comes first.
    try:
        obj = msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError, UnicodeError):
        return _malformed("UTF-8 JSON")
    if type(obj) is not dict:
        return RemoteProtocolError(INVALID_ENVELOPE, "frame must be a JSON object", close_code=CLOSE_INVALID_PAYLOAD)
    refusal = _envelope_refusal(obj, receiver)
    if refusal is None:
        refusal = _field_refusal(str(error))
    refusal.ref = _ref_of(obj)
    return refusal


def _envelope_refusal(obj: dict[str, Any], receiver: _Receiver) -> RemoteProtocolError | None:
    version = obj.get("v", PROTOCOL_VERSION)
    if type(version) is not int or version != PROTOCOL_VERSION:
        return RemoteProtocolError(
            UNSUPPORTED_VERSION,
            f"protocol version {PROTOCOL_VERSION} is the only one supported",
            close_code=CLOSE_PROTOCOL_ERROR,
        )
    frame_type = obj.get("type")
    if type(frame_type) is not str:
        code = MISSING_FIELD if frame_type is None else INVALID_FIELD
        return RemoteProtocolError(code, "field 'type' must be a string")
    if frame_type not in receiver.wire_types:
        return RemoteProtocolError(UNKNOWN_TYPE, f"unknown frame type {_clip(frame_type)!r}")
    return None


def _field_refusal(complaint: str) -> RemoteProtocolError:
    """msgspec's complaint about one field, as ``missing_field`` or ``invalid_field``.

    ``null`` for a required field is ``missing_field`` (absent and ``null`` are one thing),
    except as an item of a list, which has no name to be missing.
    """
    missing = _MISSING.fullmatch(complaint)
    if missing is not None:
        path = ".".join(part for part in (missing["at"].lstrip(".") if missing["at"] else "", missing["name"]) if part)
        return RemoteProtocolError(MISSING_FIELD, _clip(f"field {path!r} is required"))
    located = _AT.fullmatch(complaint)
    if located is None:
        return RemoteProtocolError(INVALID_FIELD, _clip(complaint))
    detail, path = located["detail"], located["at"].lstrip(".")
    if detail.endswith("got `null`") and not path.endswith("]"):
        return RemoteProtocolError(MISSING_FIELD, _clip(f"field {path!r} is required"))
    return RemoteProtocolError(INVALID_FIELD, _clip(f"field {path!r}: {detail[:1].lower()}{detail[1:]}"))


# --- encoding ------------------------------------------------------------------------------

_ENCODER: Final = msgspec.json.Encoder()
# msgspec writes the tag (`type`) first and leaves `v` out (it is the default): put it first.
_ENVELOPE_START: Final = b'{"v":%d,' % PROTOCOL_VERSION


def _check_receivers() -> dict[type, _Receiver]:
    """For each frame class, the receiver that reads it."""
    receivers: dict[type, _Receiver] = {}
    for agent_frame in AGENT_FRAME_TYPES:
        receivers[agent_frame] = _AGENT
    for customer_frame in CUSTOMER_FRAME_TYPES:
        receivers.setdefault(customer_frame, _CUSTOMER)
    for server_frame in SERVER_FRAME_TYPES:
        receivers[server_frame] = _SERVER
    return receivers


_RECEIVER_OF: Final = MappingProxyType(_check_receivers())


def encode_frame(frame: Frame, *, check: bool = False) -> bytes:
    """Encode any frame, client or server, as one JSON object (UTF-8 bytes).

    Raises ``LocalProtocolError`` for something that is not a frame or cannot be encoded.
    With ``check=True`` the bytes are decoded again as their receiver would, and a field the
    receiver would refuse (an empty id, a text of 8001 characters) raises
    ``LocalProtocolError`` too; leave it off on the hot path, where frames are built from
    values that were already validated.
    """
    receiver = _RECEIVER_OF.get(type(frame))
    if receiver is None:
        raise LocalProtocolError(f"not a frame: {type(frame)!r}")
    try:
        data = _ENVELOPE_START + _ENCODER.encode(frame)[1:]
    except (msgspec.EncodeError, TypeError, ValueError, OverflowError) as error:
        raise LocalProtocolError(f"cannot encode {frame.TYPE!r} frame: {error}") from None
    if check:
        try:
            _decode(data, DEFAULT_MAX_FRAME_BYTES, receiver)
        except RemoteProtocolError as error:
            raise LocalProtocolError(f"invalid {frame.TYPE!r} frame: {error}") from None
    return data


def encode_error(code: str, message: str, *, ref: str | None = None, retryable: bool = False) -> bytes:
    """The ``error`` frame a server sends, encoded: one helper for the edge and the actors."""
    return encode_frame(ServerError(code=code, message=message, retryable=retryable, ref=ref))
