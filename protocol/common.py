"""The envelope, the limits, and the client frames both protocols share.

Every frame on the wire is one JSON object ``{"v": 1, "type": "<name>", ...fields}``.
Frames are frozen ``msgspec.Struct`` classes derived from ``Envelope``: the wire ``type`` is
the struct's tag, also named by the class variable ``TYPE``. Each field's type carries its
limits (``_fields``), so one declaration gives the decoder, the encoder and the JSON Schema
(``schema``). Optional fields default to ``None`` and are left out of the encoded object
when ``None``.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Final, Literal, get_args

from msgspec import Meta, Struct

from ._fields import (
    DEFAULT_MAX_FRAME_BYTES,
    MAX_CLIENT_ID_CHARS,
    MAX_CODE_CHARS,
    MAX_ID_CHARS,
    MAX_LABEL_CHARS,
    MAX_NONCE_CHARS,
    MAX_SEQ,
    MAX_TEXT_CHARS,
    ClientId,
    Id,
    Nonce,
    Seq,
    Text,
)

__all__ = [
    "DEFAULT_MAX_FRAME_BYTES",
    "MAX_CLIENT_ID_CHARS",
    "MAX_CODE_CHARS",
    "MAX_ID_CHARS",
    "MAX_LABEL_CHARS",
    "MAX_NONCE_CHARS",
    "MAX_SEQ",
    "MAX_TEXT_CHARS",
    "MESSAGE_KINDS",
    "PROTOCOL_VERSION",
    "SUPPORTED_VERSIONS",
    "Envelope",
    "Link",
    "Location",
    "MarkRead",
    "MessageKind",
    "Ping",
    "Record",
    "Resume",
    "SendMessage",
    "SetTyping",
]

PROTOCOL_VERSION: Final = 1
SUPPORTED_VERSIONS: Final = frozenset({PROTOCOL_VERSION})

MessageKind = Literal["text", "image", "voice", "video", "file"]
MESSAGE_KINDS: Final[frozenset[str]] = frozenset(get_args(MessageKind))


# Frames hold only strings, numbers and other frozen structs, so they can never be part of a
# reference cycle: gc=False keeps them out of the cycle collector (cheaper to make and free).
class Envelope(
    Struct,
    frozen=True,
    kw_only=True,
    tag_field="type",
    omit_defaults=True,
    repr_omit_defaults=True,
    gc=False,
):
    """What every frame has: the protocol version ``v`` and the frame's ``type`` (its tag).

    ``v`` may be left out by clients (it then means 1); ``encode_frame`` always writes it
    first. It is keyword-only and last, so frames are built positionally from their own
    fields. Subclasses name their tag twice, as ``tag=`` and ``TYPE`` (a test holds them equal).
    """

    TYPE: ClassVar[str]

    v: Annotated[
        Literal[1],
        Meta(
            description="The protocol version. Clients may leave it out (it then means 1); the server always sends it."
        ),
    ] = PROTOCOL_VERSION


class Record(Struct, frozen=True, omit_defaults=True, gc=False):
    """A nested object inside a frame (a sender, a customer, a queue's figures...)."""


class Location(Record, frozen=True, kw_only=True):
    """A place a customer shares (a ``location`` message), in WGS-84 degrees."""

    latitude: Annotated[float, Meta(ge=-90, le=90)]
    longitude: Annotated[float, Meta(ge=-180, le=180)]
    name: Annotated[str, Meta(min_length=1, max_length=MAX_LABEL_CHARS)] | None = None
    address: Annotated[str, Meta(min_length=1, max_length=MAX_LABEL_CHARS * 2)] | None = None


class Link(Record, frozen=True, kw_only=True):
    """A web page shared as a card (a ``link`` message): its address and what the card shows."""

    url: Annotated[str, Meta(min_length=8, max_length=2048, pattern=r"^https?://")]
    title: Annotated[str, Meta(min_length=1, max_length=MAX_LABEL_CHARS)] | None = None
    description: Annotated[str, Meta(min_length=1, max_length=MAX_LABEL_CHARS * 2)] | None = None


class SendMessage(Envelope, frozen=True, tag="message.send"):
    """A chat message from a customer or an agent into a conversation.

    ``kind == "text"`` requires ``text`` and forbids ``attachment_id``; every other kind
    requires ``attachment_id`` (uploaded beforehand over HTTP) and allows ``text`` as a
    caption. Answered by ``ack`` once the message is durably stored.
    """

    TYPE: ClassVar[str] = "message.send"

    client_id: ClientId
    conversation_id: Id
    kind: MessageKind
    text: Text | None = None
    attachment_id: Id | None = None


class SetTyping(Envelope, frozen=True, tag="typing"):
    """The sender started (``active``) or stopped typing. Not stored, never acked."""

    TYPE: ClassVar[str] = "typing"

    conversation_id: Id
    active: bool


class MarkRead(Envelope, frozen=True, tag="read"):
    """The sender has read every event of the conversation up to and including ``seq``."""

    TYPE: ClassVar[str] = "read"

    conversation_id: Id
    seq: Seq


class Resume(Envelope, frozen=True, tag="resume"):
    """Replay the events after ``last_seq`` (0: from the start), then answer ``resumed``."""

    TYPE: ClassVar[str] = "resume"

    conversation_id: Id
    last_seq: Seq


class Ping(Envelope, frozen=True, tag="ping"):
    """Heartbeat; answered by ``pong`` with the same ``nonce``."""

    TYPE: ClassVar[str] = "ping"

    nonce: Nonce | None = None
