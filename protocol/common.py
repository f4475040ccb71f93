"""The envelope, the limits, and the client frames both protocols share.

Every frame on the wire is one JSON object ``{"v": 1, "type": "<name>", ...fields}``.
Frames are frozen dataclasses; each names its wire ``type`` in the class variable ``TYPE``.
Optional fields default to ``None`` and are left out of the encoded object when ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final, Literal

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
    "MarkRead",
    "MessageKind",
    "Ping",
    "Resume",
    "SendMessage",
    "SetTyping",
]

PROTOCOL_VERSION: Final = 1
SUPPORTED_VERSIONS: Final = frozenset({PROTOCOL_VERSION})

# A text message of MAX_TEXT_CHARS four-byte characters plus its envelope fits.
DEFAULT_MAX_FRAME_BYTES: Final = 64 * 1024
MAX_TEXT_CHARS: Final = 8000
MAX_CLIENT_ID_CHARS: Final = 64
MAX_ID_CHARS: Final = 128
MAX_NONCE_CHARS: Final = 64
# Machine words: error codes, event kinds, channel names.
MAX_CODE_CHARS: Final = 64
# Short free-text labels: reasons, topics, wrap-up codes, departments, display names.
MAX_LABEL_CHARS: Final = 200
# Sequence numbers are PostgreSQL bigints.
MAX_SEQ: Final = 2**63 - 1

MessageKind = Literal["text", "image", "voice", "video", "file"]
MESSAGE_KINDS: Final[frozenset[str]] = frozenset({"text", "image", "voice", "video", "file"})


@dataclass(frozen=True, slots=True)
class SendMessage:
    """A chat message from a customer or an agent into a conversation.

    ``kind == "text"`` requires ``text`` and forbids ``attachment_id``; every other kind
    requires ``attachment_id`` (uploaded beforehand over HTTP) and allows ``text`` as a
    caption. Answered by ``ack`` once the message is durably stored.
    """

    TYPE: ClassVar[str] = "message.send"

    client_id: str
    conversation_id: str
    kind: MessageKind
    text: str | None = None
    attachment_id: str | None = None


@dataclass(frozen=True, slots=True)
class SetTyping:
    """The sender started (``active``) or stopped typing. Not stored, never acked."""

    TYPE: ClassVar[str] = "typing"

    conversation_id: str
    active: bool


@dataclass(frozen=True, slots=True)
class MarkRead:
    """The sender has read every event of the conversation up to and including ``seq``."""

    TYPE: ClassVar[str] = "read"

    conversation_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class Resume:
    """Replay the events after ``last_seq`` (0: from the start), then answer ``resumed``."""

    TYPE: ClassVar[str] = "resume"

    conversation_id: str
    last_seq: int


@dataclass(frozen=True, slots=True)
class Ping:
    """Heartbeat; answered by ``pong`` with the same ``nonce``."""

    TYPE: ClassVar[str] = "ping"

    nonce: str | None = None
