"""Frames the server sends, on either websocket (``/ws/customer`` or ``/ws/agent``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Final, Literal

from .common import MessageKind

__all__ = [
    "AGENT_PRESENCES",
    "CONVERSATION_STATES",
    "EVENT_KINDS",
    "OFFER_REVOKED_REASONS",
    "SENDER_ROLES",
    "SERVER_FRAME_TYPES",
    "Ack",
    "AgentLoad",
    "AgentPresence",
    "AgentStatus",
    "ConversationEvent",
    "ConversationList",
    "ConversationSummary",
    "CustomerSummary",
    "EventKind",
    "Limits",
    "LiveStats",
    "Offer",
    "OfferRevoked",
    "PeerRead",
    "PeerTyping",
    "Pong",
    "QueuePosition",
    "QueueStats",
    "Resumed",
    "Sender",
    "SenderRole",
    "ServerError",
    "ServerFrame",
    "Welcome",
    "utc_timestamp",
]

SenderRole = Literal["customer", "agent", "system"]
SENDER_ROLES: Final[frozenset[str]] = frozenset({"customer", "agent", "system"})

EventKind = Literal["message", "note", "queued", "assigned", "transferred", "closed", "wrapped_up", "system"]
EVENT_KINDS: Final[frozenset[str]] = frozenset(
    {"message", "note", "queued", "assigned", "transferred", "closed", "wrapped_up", "system"}
)

AgentPresence = Literal["online", "break", "offline", "wrap_up"]
AGENT_PRESENCES: Final[frozenset[str]] = frozenset({"online", "break", "offline", "wrap_up"})
"""What the server reports of an agent: the status it chose, or ``wrap_up`` while it does
after-contact work (online agents only; no offers meanwhile)."""

CONVERSATION_STATES: Final[frozenset[str]] = frozenset(
    {"queued", "offered", "assigned", "transferring", "wrap_up", "closed"}
)

OFFER_REVOKED_REASONS: Final[frozenset[str]] = frozenset({"expired", "taken", "customer_left", "cancelled"})


def utc_timestamp(moment: datetime) -> str:
    """``moment`` as the wire's ISO-8601 UTC form, e.g. ``2024-05-01T12:00:00.123Z``."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no defined UTC instant")
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Limits:
    """What the server accepts on this connection."""

    max_frame_bytes: int
    max_text_chars: int
    max_client_id_chars: int
    # Send a frame (``ping`` will do) at least this often or be closed with 4002.
    heartbeat_seconds: int


@dataclass(frozen=True, slots=True)
class Welcome:
    """First frame after the handshake: who you are and what the server accepts."""

    TYPE: ClassVar[str] = "welcome"

    protocol_version: int
    session_id: str
    role: Literal["customer", "agent"]
    user_id: str
    server_time: str
    limits: Limits
    display_name: str | None = None


@dataclass(frozen=True, slots=True)
class Ack:
    """The frame with ``client_id`` is durably committed as event ``seq``.

    A retry with the same ``client_id`` receives this same ack again.
    """

    TYPE: ClassVar[str] = "ack"

    client_id: str
    conversation_id: str
    seq: int


@dataclass(frozen=True, slots=True)
class Sender:
    """Who caused an event. ``id`` is ``"system"`` for the system."""

    role: SenderRole
    id: str
    display_name: str | None = None


@dataclass(frozen=True, slots=True)
class ConversationEvent:
    """One stored event of a conversation, number ``seq``.

    The body fields used by each ``kind``:

    - ``message``: ``message_kind``, ``text`` and/or ``attachment_id``, ``client_id``
    - ``note`` (agents only): ``text``, ``client_id``
    - ``queued``: ``queue_id``
    - ``assigned``: ``agent_id``
    - ``transferred``: ``from_agent_id``, one of ``to_agent_id`` / ``to_department_id``, ``text``
    - ``closed``: ``reason``
    - ``wrapped_up`` (agents only): ``wrap_up_code``
    - ``system``: ``text``
    """

    TYPE: ClassVar[str] = "event"

    conversation_id: str
    seq: int
    kind: str
    at: str
    sender: Sender
    client_id: str | None = None
    message_kind: MessageKind | None = None
    text: str | None = None
    attachment_id: str | None = None
    queue_id: str | None = None
    agent_id: str | None = None
    from_agent_id: str | None = None
    to_agent_id: str | None = None
    to_department_id: str | None = None
    reason: str | None = None
    wrap_up_code: str | None = None


@dataclass(frozen=True, slots=True)
class QueuePosition:
    """Where a waiting conversation stands: 1 is next. The wait estimate may be unknown."""

    TYPE: ClassVar[str] = "queue.position"

    conversation_id: str
    position: int
    estimated_wait_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class PeerTyping:
    """The other side started or stopped typing."""

    TYPE: ClassVar[str] = "typing"

    conversation_id: str
    role: Literal["customer", "agent"]
    active: bool


@dataclass(frozen=True, slots=True)
class PeerRead:
    """The other side has read up to and including ``seq``."""

    TYPE: ClassVar[str] = "read"

    conversation_id: str
    role: Literal["customer", "agent"]
    seq: int


@dataclass(frozen=True, slots=True)
class CustomerSummary:
    """What an agent sees of a customer before accepting an offer."""

    customer_id: str
    channel: str
    display_name: str | None = None
    level: int | None = None
    topic: str | None = None
    preview: str | None = None


@dataclass(frozen=True, slots=True)
class Offer:
    """A conversation offered to this agent; accept or decline before it expires."""

    TYPE: ClassVar[str] = "offer"

    offer_id: str
    conversation_id: str
    queue_id: str
    expires_in_seconds: int
    customer: CustomerSummary


@dataclass(frozen=True, slots=True)
class OfferRevoked:
    """The offer is gone: ``expired``, ``taken``, ``customer_left`` or ``cancelled``."""

    TYPE: ClassVar[str] = "offer.revoked"

    offer_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class AgentStatus:
    """The agent's status, sent after ``status.set`` and whenever it changes.

    ``wrap_up_seconds`` is the after-contact time left while ``status`` is ``wrap_up``.
    """

    TYPE: ClassVar[str] = "status"

    status: AgentPresence
    active_conversations: int
    capacity: int
    reason: str | None = None
    wrap_up_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class ConversationSummary:
    """One open conversation of the receiver, as listed after ``welcome``."""

    conversation_id: str
    state: str
    last_seq: int
    customer_id: str
    channel: str
    queue_id: str | None = None
    agent_id: str | None = None
    topic: str | None = None
    display_name: str | None = None


@dataclass(frozen=True, slots=True)
class ConversationList:
    """The receiver's open conversations (sent after ``welcome``): resume each of them."""

    TYPE: ClassVar[str] = "conversations"

    conversations: tuple[ConversationSummary, ...]


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Live figures of one queue, counted since midnight UTC (``waiting`` and
    ``longest_wait_seconds`` are right now)."""

    queue_id: str
    name: str
    waiting: int
    longest_wait_seconds: int
    offered: int
    answered: int
    abandoned: int
    agents_available: int
    service_level: float | None = None
    average_speed_of_answer_seconds: float | None = None


@dataclass(frozen=True, slots=True)
class AgentLoad:
    """One signed-in agent as supervisors see it."""

    agent_id: str
    display_name: str
    status: AgentPresence
    load: int
    capacity: int
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class LiveStats:
    """A snapshot of the account's contact center, streamed to supervisors every second."""

    TYPE: ClassVar[str] = "stats"

    at: str
    queues: tuple[QueueStats, ...]
    agents: tuple[AgentLoad, ...]


@dataclass(frozen=True, slots=True)
class Resumed:
    """Replay after ``resume`` is complete: events ``from_seq`` to ``to_seq`` were sent.

    ``from_seq > to_seq`` means there was nothing to replay.
    """

    TYPE: ClassVar[str] = "resumed"

    conversation_id: str
    from_seq: int
    to_seq: int


@dataclass(frozen=True, slots=True)
class ServerError:
    """A frame was refused. ``ref`` is its ``client_id`` when known.

    ``retryable`` is true when the same frame may succeed later (e.g. ``rate_limited``).
    """

    TYPE: ClassVar[str] = "error"

    code: str
    message: str
    retryable: bool
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Pong:
    """Answer to ``ping``."""

    TYPE: ClassVar[str] = "pong"

    nonce: str | None = None


ServerFrame = (
    Welcome
    | Ack
    | ConversationEvent
    | QueuePosition
    | PeerTyping
    | PeerRead
    | Offer
    | OfferRevoked
    | AgentStatus
    | Resumed
    | ServerError
    | Pong
    | ConversationList
    | LiveStats
)

SERVER_FRAME_TYPES: tuple[type[ServerFrame], ...] = (
    Welcome,
    Ack,
    ConversationEvent,
    QueuePosition,
    PeerTyping,
    PeerRead,
    Offer,
    OfferRevoked,
    AgentStatus,
    Resumed,
    ServerError,
    Pong,
    ConversationList,
    LiveStats,
)
