"""Decoders of the frames the server sends, for clients, tests and the load generator."""

from __future__ import annotations

from typing import Final, Literal, cast

from ._fields import (
    Decoder,
    JsonObject,
    optional_choice,
    optional_int,
    optional_str,
    require_bool,
    require_choice,
    require_int,
    require_object,
    require_str,
    require_timestamp,
)
from .client_decoders import message_body, transfer_target
from .common import (
    MAX_CLIENT_ID_CHARS,
    MAX_CODE_CHARS,
    MAX_ID_CHARS,
    MAX_LABEL_CHARS,
    MAX_NONCE_CHARS,
    MAX_SEQ,
    MAX_TEXT_CHARS,
    MESSAGE_KINDS,
    MessageKind,
)
from .errors import INVALID_FIELD, MISSING_FIELD, RemoteProtocolError
from .server import (
    AGENT_PRESENCES,
    CONVERSATION_STATES,
    OFFER_REVOKED_REASONS,
    SENDER_ROLES,
    Ack,
    AgentLoad,
    AgentPresence,
    AgentStatus,
    ConversationEvent,
    ConversationList,
    ConversationSummary,
    CustomerSummary,
    Limits,
    LiveStats,
    Offer,
    OfferRevoked,
    PeerRead,
    PeerTyping,
    Pong,
    QueuePosition,
    QueueStats,
    Resumed,
    Sender,
    ServerError,
    ServerFrame,
    Welcome,
)

__all__ = ["SERVER_DECODERS"]

_PEER_ROLES: Final = frozenset({"customer", "agent"})
_MAX_COUNT: Final = 2**31 - 1


def _welcome(obj: JsonObject) -> Welcome:
    limits = require_object(obj, "limits")
    return Welcome(
        protocol_version=require_int(obj, "protocol_version", 1, _MAX_COUNT),
        session_id=require_str(obj, "session_id", MAX_ID_CHARS),
        role=cast(Literal["customer", "agent"], require_choice(obj, "role", _PEER_ROLES)),
        user_id=require_str(obj, "user_id", MAX_ID_CHARS),
        server_time=require_timestamp(obj, "server_time"),
        limits=Limits(
            max_frame_bytes=require_int(limits, "max_frame_bytes", 1, _MAX_COUNT),
            max_text_chars=require_int(limits, "max_text_chars", 1, _MAX_COUNT),
            max_client_id_chars=require_int(limits, "max_client_id_chars", 1, _MAX_COUNT),
            heartbeat_seconds=require_int(limits, "heartbeat_seconds", 1, _MAX_COUNT),
        ),
        display_name=optional_str(obj, "display_name", MAX_LABEL_CHARS),
    )


def _ack(obj: JsonObject) -> Ack:
    return Ack(
        client_id=require_str(obj, "client_id", MAX_CLIENT_ID_CHARS),
        conversation_id=require_str(obj, "conversation_id", MAX_ID_CHARS),
        seq=require_int(obj, "seq", 1, MAX_SEQ),
    )


def _sender(obj: JsonObject) -> Sender:
    sender = require_object(obj, "sender")
    role = require_choice(sender, "role", SENDER_ROLES)
    return Sender(
        role=cast(Literal["customer", "agent", "system"], role),
        id=require_str(sender, "id", MAX_ID_CHARS),
        display_name=optional_str(sender, "display_name", MAX_LABEL_CHARS),
    )


def _event(obj: JsonObject) -> ConversationEvent:
    kind = require_str(obj, "kind", MAX_CODE_CHARS)
    message_kind = cast(MessageKind | None, optional_choice(obj, "message_kind", MESSAGE_KINDS))
    text = optional_str(obj, "text", MAX_TEXT_CHARS)
    attachment_id = optional_str(obj, "attachment_id", MAX_ID_CHARS)
    to_agent_id = optional_str(obj, "to_agent_id", MAX_ID_CHARS)
    to_department_id = optional_str(obj, "to_department_id", MAX_ID_CHARS)
    # Kind-specific rules; an unknown kind (from a newer server) is passed through.
    if kind == "message":
        message_kind, text, attachment_id = message_body(obj, "message_kind")
    elif kind in ("note", "system"):
        require_str(obj, "text", MAX_TEXT_CHARS)
    elif kind == "queued":
        require_str(obj, "queue_id", MAX_ID_CHARS)
    elif kind == "assigned":
        require_str(obj, "agent_id", MAX_ID_CHARS)
    elif kind == "transferred":
        to_agent_id, to_department_id = transfer_target(obj)
    return ConversationEvent(
        conversation_id=require_str(obj, "conversation_id", MAX_ID_CHARS),
        seq=require_int(obj, "seq", 1, MAX_SEQ),
        kind=kind,
        at=require_timestamp(obj, "at"),
        sender=_sender(obj),
        client_id=optional_str(obj, "client_id", MAX_CLIENT_ID_CHARS),
        message_kind=message_kind,
        text=text,
        attachment_id=attachment_id,
        queue_id=optional_str(obj, "queue_id", MAX_ID_CHARS),
        agent_id=optional_str(obj, "agent_id", MAX_ID_CHARS),
        from_agent_id=optional_str(obj, "from_agent_id", MAX_ID_CHARS),
        to_agent_id=to_agent_id,
        to_department_id=to_department_id,
        reason=optional_str(obj, "reason", MAX_LABEL_CHARS),
        wrap_up_code=optional_str(obj, "wrap_up_code", MAX_LABEL_CHARS),
    )


def _queue_position(obj: JsonObject) -> QueuePosition:
    return QueuePosition(
        conversation_id=require_str(obj, "conversation_id", MAX_ID_CHARS),
        position=require_int(obj, "position", 1, _MAX_COUNT),
        estimated_wait_seconds=optional_int(obj, "estimated_wait_seconds", 0, _MAX_COUNT),
    )


def _peer_typing(obj: JsonObject) -> PeerTyping:
    return PeerTyping(
        conversation_id=require_str(obj, "conversation_id", MAX_ID_CHARS),
        role=cast(Literal["customer", "agent"], require_choice(obj, "role", _PEER_ROLES)),
        active=require_bool(obj, "active"),
    )


def _peer_read(obj: JsonObject) -> PeerRead:
    return PeerRead(
        conversation_id=require_str(obj, "conversation_id", MAX_ID_CHARS),
        role=cast(Literal["customer", "agent"], require_choice(obj, "role", _PEER_ROLES)),
        seq=require_int(obj, "seq", 0, MAX_SEQ),
    )


def _offer(obj: JsonObject) -> Offer:
    customer = require_object(obj, "customer")
    return Offer(
        offer_id=require_str(obj, "offer_id", MAX_ID_CHARS),
        conversation_id=require_str(obj, "conversation_id", MAX_ID_CHARS),
        queue_id=require_str(obj, "queue_id", MAX_ID_CHARS),
        expires_in_seconds=require_int(obj, "expires_in_seconds", 0, _MAX_COUNT),
        customer=CustomerSummary(
            customer_id=require_str(customer, "customer_id", MAX_ID_CHARS),
            channel=require_str(customer, "channel", MAX_CODE_CHARS),
            display_name=optional_str(customer, "display_name", MAX_LABEL_CHARS),
            level=optional_int(customer, "level", 0, _MAX_COUNT),
            topic=optional_str(customer, "topic", MAX_LABEL_CHARS),
            preview=optional_str(customer, "preview", MAX_TEXT_CHARS),
        ),
    )


def _offer_revoked(obj: JsonObject) -> OfferRevoked:
    return OfferRevoked(
        offer_id=require_str(obj, "offer_id", MAX_ID_CHARS),
        reason=require_choice(obj, "reason", OFFER_REVOKED_REASONS),
    )


def _agent_status(obj: JsonObject) -> AgentStatus:
    status = require_choice(obj, "status", AGENT_PRESENCES)
    return AgentStatus(
        status=cast(AgentPresence, status),
        active_conversations=require_int(obj, "active_conversations", 0, _MAX_COUNT),
        capacity=require_int(obj, "capacity", 0, _MAX_COUNT),
        reason=optional_str(obj, "reason", MAX_LABEL_CHARS),
        wrap_up_seconds=optional_int(obj, "wrap_up_seconds", 0, _MAX_COUNT),
    )


def _objects(obj: JsonObject, name: str, max_items: int = 100_000) -> list[JsonObject]:
    """The required list ``name`` whose items are all objects."""
    value = obj.get(name)
    if value is None:
        raise RemoteProtocolError(MISSING_FIELD, f"field {name!r} is required")
    if type(value) is not list or len(value) > max_items or any(type(item) is not dict for item in value):
        raise RemoteProtocolError(INVALID_FIELD, f"field {name!r} must be a list of objects")
    return value


def _optional_number(obj: JsonObject, name: str) -> float | None:
    value = obj.get(name)
    if value is None:
        return None
    if type(value) not in (int, float) or value < 0:
        raise RemoteProtocolError(INVALID_FIELD, f"field {name!r} must be a number >= 0")
    return float(value)


def _conversation_list(obj: JsonObject) -> ConversationList:
    return ConversationList(
        conversations=tuple(
            ConversationSummary(
                conversation_id=require_str(item, "conversation_id", MAX_ID_CHARS),
                state=require_choice(item, "state", CONVERSATION_STATES),
                last_seq=require_int(item, "last_seq", 0, MAX_SEQ),
                customer_id=require_str(item, "customer_id", MAX_ID_CHARS),
                channel=require_str(item, "channel", MAX_CODE_CHARS),
                queue_id=optional_str(item, "queue_id", MAX_ID_CHARS),
                agent_id=optional_str(item, "agent_id", MAX_ID_CHARS),
                topic=optional_str(item, "topic", MAX_LABEL_CHARS),
                display_name=optional_str(item, "display_name", MAX_LABEL_CHARS),
            )
            for item in _objects(obj, "conversations")
        )
    )


def _live_stats(obj: JsonObject) -> LiveStats:
    return LiveStats(
        at=require_timestamp(obj, "at"),
        queues=tuple(
            QueueStats(
                queue_id=require_str(item, "queue_id", MAX_ID_CHARS),
                name=require_str(item, "name", MAX_LABEL_CHARS),
                waiting=require_int(item, "waiting", 0, _MAX_COUNT),
                longest_wait_seconds=require_int(item, "longest_wait_seconds", 0, _MAX_COUNT),
                offered=require_int(item, "offered", 0, _MAX_COUNT),
                answered=require_int(item, "answered", 0, _MAX_COUNT),
                abandoned=require_int(item, "abandoned", 0, _MAX_COUNT),
                agents_available=require_int(item, "agents_available", 0, _MAX_COUNT),
                service_level=_optional_number(item, "service_level"),
                average_speed_of_answer_seconds=_optional_number(item, "average_speed_of_answer_seconds"),
            )
            for item in _objects(obj, "queues")
        ),
        agents=tuple(
            AgentLoad(
                agent_id=require_str(item, "agent_id", MAX_ID_CHARS),
                display_name=require_str(item, "display_name", MAX_LABEL_CHARS),
                status=cast(AgentPresence, require_choice(item, "status", AGENT_PRESENCES)),
                load=require_int(item, "load", 0, _MAX_COUNT),
                capacity=require_int(item, "capacity", 0, _MAX_COUNT),
                reason=optional_str(item, "reason", MAX_LABEL_CHARS),
            )
            for item in _objects(obj, "agents")
        ),
    )


def _resumed(obj: JsonObject) -> Resumed:
    return Resumed(
        conversation_id=require_str(obj, "conversation_id", MAX_ID_CHARS),
        from_seq=require_int(obj, "from_seq", 0, MAX_SEQ),
        to_seq=require_int(obj, "to_seq", 0, MAX_SEQ),
    )


def _server_error(obj: JsonObject) -> ServerError:
    return ServerError(
        code=require_str(obj, "code", MAX_CODE_CHARS),
        message=require_str(obj, "message", MAX_TEXT_CHARS),
        retryable=require_bool(obj, "retryable"),
        ref=optional_str(obj, "ref", MAX_CLIENT_ID_CHARS),
    )


def _pong(obj: JsonObject) -> Pong:
    return Pong(nonce=optional_str(obj, "nonce", MAX_NONCE_CHARS))


SERVER_DECODERS: Final[dict[str, Decoder[ServerFrame]]] = {
    "welcome": _welcome,
    "ack": _ack,
    "event": _event,
    "queue.position": _queue_position,
    "typing": _peer_typing,
    "read": _peer_read,
    "offer": _offer,
    "offer.revoked": _offer_revoked,
    "status": _agent_status,
    "resumed": _resumed,
    "error": _server_error,
    "pong": _pong,
    "conversations": _conversation_list,
    "stats": _live_stats,
}
