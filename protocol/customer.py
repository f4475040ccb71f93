"""Frames a customer (web-chat visitor) sends to the server on ``/ws/customer``."""

from __future__ import annotations

from typing import ClassVar

from ._fields import ClientId, Id, Label
from .common import Envelope, MarkRead, Ping, Resume, SendMessage, SetTyping

__all__ = [
    "CUSTOMER_FRAME_TYPES",
    "CloseConversation",
    "CloseConversationAsCustomer",
    "CustomerFrame",
    "CustomerWireFrame",
    "StartConversation",
]


class StartConversation(Envelope, frozen=True, tag="conversation.start"):
    """Open a new conversation; it is queued for an agent.

    Answered by ``ack`` whose ``conversation_id`` names the new conversation and whose
    ``seq`` is that of its first event (``queued``). ``department`` picks the queue (the
    default queue when absent); ``topic`` is shown to the agent in the offer.
    """

    TYPE: ClassVar[str] = "conversation.start"

    client_id: ClientId
    department: Id | None = None
    topic: Label | None = None


class CloseConversation(Envelope, frozen=True, tag="conversation.close"):
    """End a conversation. Shared by both protocols.

    ``wrap_up_code`` is for agents only (it classifies the finished conversation and ends
    wrap-up at once); the server ignores it from customers.
    """

    TYPE: ClassVar[str] = "conversation.close"

    client_id: ClientId
    conversation_id: Id
    wrap_up_code: Label | None = None


class CloseConversationAsCustomer(Envelope, frozen=True, tag="conversation.close"):
    """End a conversation (``conversation.close`` as ``/ws/customer`` reads it).

    A customer's ``wrap_up_code`` is ignored like any unknown field. The decoder returns a
    ``CloseConversation``; this struct only describes what is read.
    """

    TYPE: ClassVar[str] = "conversation.close"

    client_id: ClientId
    conversation_id: Id


CustomerFrame = StartConversation | SendMessage | SetTyping | MarkRead | Resume | CloseConversation | Ping

CUSTOMER_FRAME_TYPES: tuple[type[CustomerFrame], ...] = (
    StartConversation,
    SendMessage,
    SetTyping,
    MarkRead,
    Resume,
    CloseConversation,
    Ping,
)

# What msgspec decodes on /ws/customer: one tagged union, one C pass.
CustomerWireFrame = StartConversation | SendMessage | SetTyping | MarkRead | Resume | CloseConversationAsCustomer | Ping
