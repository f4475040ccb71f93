"""The channel-neutral events between gateways and sessions.

Inbound, a gateway turns what its channel says into these (a web-chat frame, an API call, a
WeChat XML message all become an `InboundMessage`); sessions never see a wire format.
Outbound, what happened in a conversation is an `Activity`: `activities_of` derives them
from a stored event of the conversation's log, and a gateway encodes them for its channel (a
webhook call, a push notification, a WeChat customer-service message, ...). The web-chat
gateway's encoding is the customer websocket's `event` frame (kefu.protocol.server).

Internal events (notes, wrap-up, transfer notes) have no activity: nothing internal leaves
kefu through a channel.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from msgspec import Struct

from kefu.protocol.common import Link, Location

ChannelNoticeKind = Literal["follow", "unfollow", "subscribe", "unsubscribe", "enter", "leave"]


# -- inbound ----------------------------------------------------------------------------------


class InboundMessage(Struct, frozen=True, kw_only=True, gc=False):
    """A customer's message, as any channel delivers it.

    `client_id` is the channel's own id for the message (WeChat's MsgId, the API's idempotency
    key, the websocket frame's client_id): a retry with the same id is stored once."""

    client_id: str
    kind: str
    """One of `capabilities.ALL_MESSAGE_KINDS`."""
    text: str | None = None
    attachment_id: str | None = None
    location: Location | None = None
    link: Link | None = None


class ChannelNotice(Struct, frozen=True, kw_only=True, gc=False):
    """Something a channel says about a customer that is not a message: followed or unfollowed
    an official account, entered a chat, ..."""

    kind: ChannelNoticeKind


# -- outbound ---------------------------------------------------------------------------------


class Activity(Struct, frozen=True, kw_only=True, tag_field="type", omit_defaults=True, gc=False):
    """Something that happened in a conversation, for the customer's channel and for webhooks.

    `seq` is the stored event's (None for what is not stored: typing, unread notices)."""

    TYPE: ClassVar[str]

    conversation_id: str
    seq: int | None = None
    at: str


class ConversationCreated(Activity, frozen=True, kw_only=True, tag="conversation.created"):
    TYPE: ClassVar[str] = "conversation.created"

    channel: str | None = None


class ConversationQueued(Activity, frozen=True, kw_only=True, tag="conversation.queued"):
    TYPE: ClassVar[str] = "conversation.queued"

    queue_id: str | None = None
    reason: str | None = None


class ConversationAssigned(Activity, frozen=True, kw_only=True, tag="conversation.assigned"):
    TYPE: ClassVar[str] = "conversation.assigned"

    agent_id: str
    agent_name: str | None = None


class ConversationTransferred(Activity, frozen=True, kw_only=True, tag="conversation.transferred"):
    TYPE: ClassVar[str] = "conversation.transferred"

    from_agent_id: str | None = None
    to_agent_id: str | None = None
    to_department_id: str | None = None


class ConversationClosed(Activity, frozen=True, kw_only=True, tag="conversation.closed"):
    TYPE: ClassVar[str] = "conversation.closed"

    reason: str | None = None


class MessageCreated(Activity, frozen=True, kw_only=True, tag="message.created"):
    TYPE: ClassVar[str] = "message.created"

    sender_role: Literal["customer", "agent", "system", "bot"]
    sender_id: str | None = None
    sender_name: str | None = None
    client_id: str | None = None
    kind: str
    text: str | None = None
    attachment_id: str | None = None
    location: Location | None = None
    link: Link | None = None


class Typing(Activity, frozen=True, kw_only=True, tag="typing"):
    TYPE: ClassVar[str] = "typing"

    role: Literal["customer", "agent"]
    active: bool


class MessageUnread(Activity, frozen=True, kw_only=True, tag="message.unread"):
    """An agent's reply reached a conversation whose customer has no open socket (the hook for an
    app's push notification)."""

    TYPE: ClassVar[str] = "message.unread"

    customer_id: str
    sender_name: str | None = None
    preview: str | None = None


ActivityType = (
    ConversationCreated
    | ConversationQueued
    | ConversationAssigned
    | ConversationTransferred
    | ConversationClosed
    | MessageCreated
    | Typing
    | MessageUnread
)

ACTIVITY_TYPES: tuple[str, ...] = tuple(
    cls.TYPE
    for cls in (
        ConversationCreated,
        ConversationQueued,
        ConversationAssigned,
        ConversationTransferred,
        ConversationClosed,
        MessageCreated,
        Typing,
        MessageUnread,
    )
)
"""Every activity type, as webhook endpoints subscribe to them."""


def _location(value: Any) -> Location | None:
    if not isinstance(value, Mapping):
        return None
    return Location(
        latitude=float(value["latitude"]),
        longitude=float(value["longitude"]),
        name=value.get("name"),
        address=value.get("address"),
    )


def _link(value: Any) -> Link | None:
    if not isinstance(value, Mapping):
        return None
    return Link(url=str(value["url"]), title=value.get("title"), description=value.get("description"))


def activities_of(
    conversation_id: str,
    *,
    seq: int,
    kind: str,
    sender_role: str,
    sender_id: str | None,
    client_id: str | None,
    body: Mapping[str, Any],
    at: str,
    channel: str | None = None,
) -> list[ActivityType]:
    """The activities one stored event of a conversation's log means (none for internal ones).

    The first event (seq 1, `queued`) is the conversation's creation and its first queueing."""
    out: list[ActivityType] = []
    match kind:
        case "queued":
            if seq == 1:
                out.append(ConversationCreated(conversation_id=conversation_id, seq=seq, at=at, channel=channel))
            out.append(
                ConversationQueued(
                    conversation_id=conversation_id,
                    seq=seq,
                    at=at,
                    queue_id=body.get("queue_id"),
                    reason=body.get("reason"),
                )
            )
        case "assigned":
            out.append(
                ConversationAssigned(
                    conversation_id=conversation_id,
                    seq=seq,
                    at=at,
                    agent_id=str(body.get("agent_id") or sender_id),
                    agent_name=body.get("sender_name"),
                )
            )
        case "transferred":
            out.append(
                ConversationTransferred(
                    conversation_id=conversation_id,
                    seq=seq,
                    at=at,
                    from_agent_id=body.get("from_agent_id"),
                    to_agent_id=body.get("to_agent_id"),
                    to_department_id=body.get("to_department_id"),
                )
            )
        case "closed":
            out.append(ConversationClosed(conversation_id=conversation_id, seq=seq, at=at, reason=body.get("reason")))
        case "message" | "system":
            role = sender_role if sender_role in ("customer", "agent", "system", "bot") else "system"
            out.append(
                MessageCreated(
                    conversation_id=conversation_id,
                    seq=seq,
                    at=at,
                    sender_role=role,  # type: ignore[arg-type]
                    sender_id=sender_id,
                    sender_name=body.get("sender_name"),
                    client_id=client_id,
                    kind=str(body.get("message_kind") or "text"),
                    text=body.get("text"),
                    attachment_id=body.get("attachment_id"),
                    location=_location(body.get("location")),
                    link=_link(body.get("link")),
                )
            )
        case _:
            pass  # notes, wrap-up and kinds of newer servers: internal
    return out
