"""Decoding and encoding frames: bytes in, frames out; frames in, bytes out.

Decoding is table-driven. After the size check (before any parsing) and one ``orjson``
parse, the envelope is checked and the frame's ``type`` is looked up in a dict of decoders,
one small function per frame type that reads its fields. Any input either decodes to a
frame or raises ``RemoteProtocolError``; nothing else escapes (``tests/protocol/test_fuzz``
holds us to that). Fields the decoder does not know are ignored, for forward compatibility.
"""

from __future__ import annotations

from dataclasses import fields
from functools import cache
from typing import Any, Final, TypeVar, cast

import orjson

from ._fields import Decoder, JsonObject
from .client_decoders import AGENT_DECODERS, CUSTOMER_DECODERS
from .common import DEFAULT_MAX_FRAME_BYTES, MAX_CLIENT_ID_CHARS, PROTOCOL_VERSION
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
from .server import AgentLoad, ConversationSummary, CustomerSummary, Limits, QueueStats, Sender
from .server_decoders import SERVER_DECODERS

__all__ = [
    "AGENT_DECODERS",
    "CUSTOMER_DECODERS",
    "SERVER_DECODERS",
    "decode_agent_frame",
    "decode_customer_frame",
    "decode_server_frame",
    "encode_frame",
]

F = TypeVar("F")

# A UTF-8 character takes at most 4 bytes: a str of n characters is at most 4n bytes.
_MAX_UTF8_BYTES_PER_CHAR: Final = 4


# --- decoding ------------------------------------------------------------------------------


def _ref_of(obj: JsonObject) -> str | None:
    client_id = obj.get("client_id")
    if type(client_id) is str and 0 < len(client_id) <= MAX_CLIENT_ID_CHARS:
        return client_id
    return None


def _parse(data: bytes | str, max_bytes: int) -> JsonObject:
    """Size check, then JSON parse, then the envelope's object shape."""
    if not isinstance(data, bytes | str):
        raise LocalProtocolError(f"frames are decoded from bytes or str, not {type(data)!r}")
    size = len(data)
    # A str's byte size is only computed (by encoding it) when its length leaves it unsure.
    if isinstance(data, str) and size <= max_bytes < size * _MAX_UTF8_BYTES_PER_CHAR:
        try:
            size = len(data.encode("utf-8"))
        except UnicodeEncodeError:
            raise RemoteProtocolError(
                MALFORMED_JSON, "frame is not valid UTF-8", close_code=CLOSE_INVALID_PAYLOAD
            ) from None
    if size > max_bytes:
        raise RemoteProtocolError(
            OVERSIZED,
            f"frame is larger than {max_bytes} bytes",
            close_code=CLOSE_MESSAGE_TOO_BIG,
        )
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise RemoteProtocolError(
            MALFORMED_JSON, "frame is not valid UTF-8 JSON", close_code=CLOSE_INVALID_PAYLOAD
        ) from None
    if type(obj) is not dict:
        raise RemoteProtocolError(INVALID_ENVELOPE, "frame must be a JSON object", close_code=CLOSE_INVALID_PAYLOAD)
    return cast(JsonObject, obj)


def _decode(data: bytes | str, max_bytes: int, decoders: dict[str, Decoder[F]]) -> F:
    obj = _parse(data, max_bytes)
    version = obj.get("v", PROTOCOL_VERSION)
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise RemoteProtocolError(
            UNSUPPORTED_VERSION,
            f"protocol version {PROTOCOL_VERSION} is the only one supported",
            close_code=CLOSE_PROTOCOL_ERROR,
            ref=_ref_of(obj),
        )
    frame_type = obj.get("type")
    if type(frame_type) is not str:
        code = MISSING_FIELD if frame_type is None else INVALID_FIELD
        raise RemoteProtocolError(code, "field 'type' must be a string", ref=_ref_of(obj))
    decoder = decoders.get(frame_type)
    if decoder is None:
        raise RemoteProtocolError(UNKNOWN_TYPE, f"unknown frame type {frame_type[:64]!r}", ref=_ref_of(obj))
    try:
        return decoder(obj)
    except RemoteProtocolError as error:
        error.ref = _ref_of(obj)
        raise


def decode_customer_frame(data: bytes | str, *, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> CustomerFrame:
    """Decode one frame received on ``/ws/customer``; raise ``RemoteProtocolError`` if bad."""
    return _decode(data, max_bytes, CUSTOMER_DECODERS)


def decode_agent_frame(data: bytes | str, *, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> AgentFrame:
    """Decode one frame received on ``/ws/agent``; raise ``RemoteProtocolError`` if bad."""
    return _decode(data, max_bytes, AGENT_DECODERS)


def decode_server_frame(data: bytes | str, *, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> ServerFrame:
    """Decode one frame sent by the server (for clients, tests and the load generator)."""
    return _decode(data, max_bytes, SERVER_DECODERS)


# --- encoding ------------------------------------------------------------------------------

# The nested records that travel inside frames.
_NESTED: Final[frozenset[type]] = frozenset(
    {Sender, Limits, CustomerSummary, ConversationSummary, QueueStats, AgentLoad}
)


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(field.name for field in fields(cls))


def _fields_to_wire(record: Any, out: dict[str, Any]) -> dict[str, Any]:
    """Copy ``record``'s fields into ``out``, dropping ``None``, recursing into records."""
    for name in _field_names(type(record)):
        value = getattr(record, name)
        if value is None:
            continue
        if type(value) in _NESTED:
            value = _fields_to_wire(value, {})
        elif type(value) is tuple:
            value = [_fields_to_wire(item, {}) if type(item) in _NESTED else item for item in value]
        out[name] = value
    return out


def _check_tables() -> dict[type, dict[str, Decoder[Any]]]:
    """For each frame class, the decoder table its receiver uses."""
    tables: dict[type, dict[str, Decoder[Any]]] = {}
    for cls in AGENT_FRAME_TYPES:
        tables[cls] = AGENT_DECODERS
    for cls in CUSTOMER_FRAME_TYPES:
        tables.setdefault(cls, CUSTOMER_DECODERS)
    for cls in SERVER_FRAME_TYPES:
        tables[cls] = SERVER_DECODERS
    return tables


_CHECK_TABLES: Final = _check_tables()
_TYPE_OF: Final[dict[type, str]] = {cls: cls.TYPE for cls in _CHECK_TABLES}


def encode_frame(frame: Frame, *, check: bool = False) -> bytes:
    """Encode any frame, client or server, as one JSON object (UTF-8 bytes).

    Raises ``LocalProtocolError`` for something that is not a frame or cannot be encoded.
    With ``check=True`` the bytes are decoded again as their receiver would, and a field the
    receiver would refuse (an empty id, a text of 8001 characters) raises
    ``LocalProtocolError`` too; leave it off on the hot path, where frames are built from
    values that were already validated.
    """
    cls = type(frame)
    wire_type = _TYPE_OF.get(cls)
    if wire_type is None:
        raise LocalProtocolError(f"not a frame: {cls!r}")
    payload = _fields_to_wire(frame, {"v": PROTOCOL_VERSION, "type": wire_type})
    try:
        data = orjson.dumps(payload)
    except orjson.JSONEncodeError as error:
        raise LocalProtocolError(f"cannot encode {wire_type!r} frame: {error}") from None
    if check:
        try:
            _decode(data, DEFAULT_MAX_FRAME_BYTES, _CHECK_TABLES[cls])
        except RemoteProtocolError as error:
            raise LocalProtocolError(f"invalid {wire_type!r} frame: {error}") from None
    return data
