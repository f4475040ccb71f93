"""Frames a customer (web-chat visitor) sends to the server on ``/ws/customer``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .common import MarkRead, Ping, Resume, SendMessage, SetTyping

__all__ = [
    "CUSTOMER_FRAME_TYPES",
    "CloseConversation",
    "CustomerFrame",
    "StartConversation",
]


@dataclass(frozen=True, slots=True)
class StartConversation:
    """Open a new conversation; it is queued for an agent.

    Answered by ``ack`` whose ``conversation_id`` names the new conversation and whose
    ``seq`` is that of its first event (``queued``). ``department`` picks the queue (the
    default queue when absent); ``topic`` is shown to the agent in the offer.
    """

    TYPE: ClassVar[str] = "conversation.start"

    client_id: str
    department: str | None = None
    topic: str | None = None


@dataclass(frozen=True, slots=True)
class CloseConversation:
    """End a conversation. Shared by both protocols.

    ``wrap_up_code`` is for agents only (it classifies the finished conversation and ends
    wrap-up at once); the server ignores it from customers.
    """

    TYPE: ClassVar[str] = "conversation.close"

    client_id: str
    conversation_id: str
    wrap_up_code: str | None = None


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
