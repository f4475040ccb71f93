"""Frames the server sends, on either websocket (``/ws/customer`` or ``/ws/agent``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, ClassVar, Final, Literal, TypeAlias, get_args

from msgspec import Meta

from ._fields import (
    MAX_LIST_ITEMS,
    ClientId,
    Code,
    Count,
    Id,
    Label,
    Nonce,
    NonNegativeNumber,
    PositiveCount,
    PositiveSeq,
    Seq,
    Text,
    Timestamp,
)
from .common import Envelope, MessageKind, Record

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
    "ConversationStateName",
    "ConversationSummary",
    "CustomerSummary",
    "EventKind",
    "Limits",
    "LiveStats",
    "Offer",
    "OfferRevoked",
    "OfferRevokedReason",
    "PeerRead",
    "PeerRole",
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
SENDER_ROLES: Final[frozenset[str]] = frozenset(get_args(SenderRole))

PeerRole = Literal["customer", "agent"]

EventKind = Literal["message", "note", "queued", "assigned", "transferred", "closed", "wrapped_up", "system"]
EVENT_KINDS: Final[frozenset[str]] = frozenset(get_args(EventKind))

AgentPresence = Literal["online", "break", "offline", "wrap_up"]
AGENT_PRESENCES: Final[frozenset[str]] = frozenset(get_args(AgentPresence))
"""What the server reports of an agent: the status it chose, or ``wrap_up`` while it does
after-contact work (online agents only; no offers meanwhile)."""

ConversationStateName = Literal["queued", "offered", "assigned", "transferring", "wrap_up", "closed"]
CONVERSATION_STATES: Final[frozenset[str]] = frozenset(get_args(ConversationStateName))

OfferRevokedReason = Literal["expired", "taken", "customer_left", "cancelled"]
OFFER_REVOKED_REASONS: Final[frozenset[str]] = frozenset(get_args(OfferRevokedReason))

# `OfferRevoked.reason` is checked on the wire as the Literal (msgspec reads annotations at run
# time), but typed `str` for kefu's code, whose dispatcher passes on the reason it was given.
if TYPE_CHECKING:
    _RevokedReason: TypeAlias = str
else:
    _RevokedReason = OfferRevokedReason


def utc_timestamp(moment: datetime) -> str:
    """``moment`` as the wire's ISO-8601 UTC form, e.g. ``2024-05-01T12:00:00.123Z``."""
    if moment.tzinfo is None:
        raise ValueError("a naive datetime has no defined UTC instant")
    text = moment.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


class Limits(Record, frozen=True):
    """What the server accepts on this connection."""

    max_frame_bytes: PositiveCount
    max_text_chars: PositiveCount
    max_client_id_chars: PositiveCount
    heartbeat_seconds: Annotated[
        PositiveCount,
        Meta(description="Send a frame (ping will do) at least this often, or be closed with 4002."),
    ]


class Welcome(Envelope, frozen=True, tag="welcome"):
    """First frame after the handshake: who you are and what the server accepts."""

    TYPE: ClassVar[str] = "welcome"

    protocol_version: PositiveCount
    session_id: Id
    role: PeerRole
    user_id: Id
    server_time: Timestamp
    limits: Limits
    display_name: Label | None = None


class Ack(Envelope, frozen=True, tag="ack"):
    """The frame with ``client_id`` is durably committed as event ``seq``.

    A retry with the same ``client_id`` receives this same ack again.
    """

    TYPE: ClassVar[str] = "ack"

    client_id: ClientId
    conversation_id: Id
    seq: PositiveSeq


class Sender(Record, frozen=True):
    """Who caused an event. ``id`` is ``"system"`` for the system."""

    role: SenderRole
    id: Id
    display_name: Label | None = None


class ConversationEvent(Envelope, frozen=True, tag="event"):
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

    A ``kind`` not listed (from a newer server) is passed through: count it as seen.
    """

    TYPE: ClassVar[str] = "event"

    conversation_id: Id
    seq: PositiveSeq
    kind: Annotated[Code, Meta(description="One of " + ", ".join(get_args(EventKind)) + ", or a newer kind.")]
    at: Timestamp
    sender: Sender
    client_id: ClientId | None = None
    message_kind: MessageKind | None = None
    text: Text | None = None
    attachment_id: Id | None = None
    queue_id: Id | None = None
    agent_id: Id | None = None
    from_agent_id: Id | None = None
    to_agent_id: Id | None = None
    to_department_id: Id | None = None
    reason: Label | None = None
    wrap_up_code: Label | None = None


class QueuePosition(Envelope, frozen=True, tag="queue.position"):
    """Where a waiting conversation stands: 1 is next. The wait estimate may be unknown."""

    TYPE: ClassVar[str] = "queue.position"

    conversation_id: Id
    position: PositiveCount
    estimated_wait_seconds: Count | None = None


class PeerTyping(Envelope, frozen=True, tag="typing"):
    """The other side started or stopped typing."""

    TYPE: ClassVar[str] = "typing"

    conversation_id: Id
    role: PeerRole
    active: bool


class PeerRead(Envelope, frozen=True, tag="read"):
    """The other side has read up to and including ``seq``."""

    TYPE: ClassVar[str] = "read"

    conversation_id: Id
    role: PeerRole
    seq: Seq


class CustomerSummary(Record, frozen=True):
    """What an agent sees of a customer before accepting an offer."""

    customer_id: Id
    channel: Annotated[Code, Meta(description="webchat, app, wechat, qq, phone, email, api, ...")]
    display_name: Label | None = None
    level: Annotated[Count, Meta(description="Higher is more important.")] | None = None
    topic: Label | None = None
    preview: Annotated[Text, Meta(description="The customer's first message.")] | None = None


class Offer(Envelope, frozen=True, tag="offer"):
    """A conversation offered to this agent; accept or decline before it expires."""

    TYPE: ClassVar[str] = "offer"

    offer_id: Id
    conversation_id: Id
    queue_id: Id
    expires_in_seconds: Count
    customer: CustomerSummary


class OfferRevoked(Envelope, frozen=True, tag="offer.revoked"):
    """The offer is gone: ``expired``, ``taken``, ``customer_left`` or ``cancelled``."""

    TYPE: ClassVar[str] = "offer.revoked"

    offer_id: Id
    reason: _RevokedReason


class AgentStatus(Envelope, frozen=True, tag="status"):
    """The agent's status, sent after ``status.set`` and whenever it changes.

    ``wrap_up_seconds`` is the after-contact time left while ``status`` is ``wrap_up``.
    """

    TYPE: ClassVar[str] = "status"

    status: AgentPresence
    active_conversations: Count
    capacity: Count
    reason: Label | None = None
    wrap_up_seconds: Count | None = None


class ConversationSummary(Record, frozen=True):
    """One open conversation of the receiver, as listed after ``welcome``."""

    conversation_id: Id
    state: ConversationStateName
    last_seq: Seq
    customer_id: Id
    channel: Code
    queue_id: Id | None = None
    agent_id: Id | None = None
    topic: Label | None = None
    display_name: Label | None = None


class ConversationList(Envelope, frozen=True, tag="conversations"):
    """The receiver's open conversations (sent after ``welcome``): resume each of them."""

    TYPE: ClassVar[str] = "conversations"

    conversations: Annotated[tuple[ConversationSummary, ...], Meta(max_length=MAX_LIST_ITEMS)]


class QueueStats(Record, frozen=True):
    """Live figures of one queue, counted since midnight UTC (``waiting`` and
    ``longest_wait_seconds`` are right now)."""

    queue_id: Id
    name: Label
    waiting: Count
    longest_wait_seconds: Count
    offered: Count
    answered: Count
    abandoned: Count
    agents_available: Count
    service_level: NonNegativeNumber | None = None
    average_speed_of_answer_seconds: NonNegativeNumber | None = None


class AgentLoad(Record, frozen=True):
    """One signed-in agent as supervisors see it."""

    agent_id: Id
    display_name: Label
    status: AgentPresence
    load: Count
    capacity: Count
    reason: Label | None = None


class LiveStats(Envelope, frozen=True, tag="stats"):
    """A snapshot of the account's contact center, streamed to supervisors every second."""

    TYPE: ClassVar[str] = "stats"

    at: Timestamp
    queues: Annotated[tuple[QueueStats, ...], Meta(max_length=MAX_LIST_ITEMS)]
    agents: Annotated[tuple[AgentLoad, ...], Meta(max_length=MAX_LIST_ITEMS)]


class Resumed(Envelope, frozen=True, tag="resumed"):
    """Replay after ``resume`` is complete: events ``from_seq`` to ``to_seq`` were sent.

    ``from_seq > to_seq`` means there was nothing to replay.
    """

    TYPE: ClassVar[str] = "resumed"

    conversation_id: Id
    from_seq: Seq
    to_seq: Seq


class ServerError(Envelope, frozen=True, tag="error"):
    """A frame was refused. ``ref`` is its ``client_id`` when known.

    ``retryable`` is true when the same frame may succeed later (e.g. ``rate_limited``).
    """

    TYPE: ClassVar[str] = "error"

    code: Code
    message: Annotated[Text, Meta(description="English, for logs and developers: match on code, never on this.")]
    retryable: bool
    ref: ClientId | None = None


class Pong(Envelope, frozen=True, tag="pong"):
    """Answer to ``ping``."""

    TYPE: ClassVar[str] = "pong"

    nonce: Nonce | None = None


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
