"""Frames an agent (from the workbench) sends to the server on ``/ws/agent``.

``message.send``, ``typing``, ``read``, ``resume``, ``ping`` and ``conversation.close``
are shared with the customer protocol (see ``common`` and ``customer``).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar, Final, Literal, get_args

from ._fields import ClientId, Id, Label, Text
from .common import Envelope, MarkRead, Ping, Resume, SendMessage, SetTyping
from .customer import CloseConversation
from .permissions import Permission

__all__ = [
    "AGENT_FRAME_PERMISSIONS",
    "AGENT_FRAME_TYPES",
    "AGENT_STATUSES",
    "AcceptOffer",
    "AddNote",
    "AgentFrame",
    "AgentStatusName",
    "DeclineOffer",
    "SetStatus",
    "Transfer",
]

AgentStatusName = Literal["online", "break", "offline"]
AGENT_STATUSES: Final[frozenset[str]] = frozenset(get_args(AgentStatusName))


class SetStatus(Envelope, frozen=True, tag="status.set"):
    """Change the agent's availability; echoed by a ``status`` frame.

    Only ``online`` agents receive offers. ``reason`` explains a break (``"lunch"``).
    """

    TYPE: ClassVar[str] = "status.set"

    status: AgentStatusName
    reason: Label | None = None


class AcceptOffer(Envelope, frozen=True, tag="offer.accept"):
    """Take the offered conversation; the server answers with an ``assigned`` event."""

    TYPE: ClassVar[str] = "offer.accept"

    offer_id: Id


class DeclineOffer(Envelope, frozen=True, tag="offer.decline"):
    """Refuse the offer; the conversation goes back to its queue (or its agent)."""

    TYPE: ClassVar[str] = "offer.decline"

    offer_id: Id
    reason: Label | None = None


class AddNote(Envelope, frozen=True, tag="note.add"):
    """An internal note on a conversation: seen by agents and supervisors, never customers."""

    TYPE: ClassVar[str] = "note.add"

    client_id: ClientId
    conversation_id: Id
    text: Text


class Transfer(Envelope, frozen=True, tag="transfer"):
    """Hand the conversation to another agent or to another department's queue.

    Exactly one of ``to_agent_id`` and ``to_department_id`` is set. ``note`` is shown to
    the receiving agent.
    """

    TYPE: ClassVar[str] = "transfer"

    client_id: ClientId
    conversation_id: Id
    to_agent_id: Id | None = None
    to_department_id: Id | None = None
    note: Text | None = None


AgentFrame = (
    SetStatus
    | AcceptOffer
    | DeclineOffer
    | SendMessage
    | AddNote
    | Transfer
    | CloseConversation
    | SetTyping
    | MarkRead
    | Resume
    | Ping
)

AGENT_FRAME_TYPES: tuple[type[AgentFrame], ...] = (
    SetStatus,
    AcceptOffer,
    DeclineOffer,
    SendMessage,
    AddNote,
    Transfer,
    CloseConversation,
    SetTyping,
    MarkRead,
    Resume,
    Ping,
)

AGENT_FRAME_PERMISSIONS: Final[Mapping[type[AgentFrame], Permission | None]] = MappingProxyType(
    {
        SetStatus: Permission.CONVERSATIONS_HANDLE,
        AcceptOffer: Permission.CONVERSATIONS_HANDLE,
        DeclineOffer: Permission.CONVERSATIONS_HANDLE,
        SendMessage: Permission.CONVERSATIONS_HANDLE,
        AddNote: Permission.CONVERSATIONS_HANDLE,
        Transfer: Permission.CONVERSATIONS_HANDLE,
        CloseConversation: Permission.CONVERSATIONS_HANDLE,
        SetTyping: Permission.CONVERSATIONS_HANDLE,
        MarkRead: Permission.CONVERSATIONS_HANDLE,
        Resume: None,  # reading is scoped by the session (own, departments', or all with read_all)
        Ping: None,
    }
)
"""The one permission each frame on ``/ws/agent`` needs (``None``: being signed in is enough).
A frame whose permission the user lacks is answered with ``error`` ``forbidden`` and changes nothing."""
