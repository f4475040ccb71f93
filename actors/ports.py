"""What the contact-center actors need from the outside world, as protocols.

The actors never import a database driver or a web framework: the server hands them
objects that satisfy these protocols (`kefu.server.conversations` for storage,
`kefu.server.sockets` for connections), and the tests may hand them others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

from kefu.actors.runtime import ActorRef, Mailbox
from kefu.protocol.permissions import Permission
from kefu.protocol.server import Ack, ServerError

if TYPE_CHECKING:
    from kefu.actors.messages import SessionMessage


class Outbox(Protocol):
    """One client connection's bounded send buffer.

    `send` never blocks: when the buffer is full the connection is cut off as a slow
    consumer (close code 4001) and the frame is dropped; the client resumes from the
    last `seq` it saw.
    """

    role: str
    """``customer`` or ``agent``."""
    user_id: UUID
    """The customer or the agent behind the connection."""
    sees_contact_details: bool
    """Phone numbers and e-mail addresses in texts are shown as written (a customer; an agent
    with `may_view_contact_details`, a supervisor, an admin); False: masked."""

    @property
    def closed(self) -> bool: ...

    def send(self, data: bytes) -> bool:
        """Queue one encoded frame; False when the connection is closed or was cut off."""
        ...

    def close(self, code: int, reason: str) -> None:
        """Close the connection (asynchronously); `send` returns False from now on."""
        ...

    def room(self) -> int:
        """Frames that can be sent now without cutting the connection off."""
        ...

    def acked(self, ack: Ack) -> None:
        """The sender's frame is stored as `ack.seq` (or was a retry of what is): the session's
        answer to the one who sent it, typed, so that a channel that is not a websocket (an API
        call waiting for its answer) never decodes kefu's frames back. Never waits."""
        ...

    def refused(self, error: ServerError) -> None:
        """The sender's frame was refused and changed nothing (`error.ref` names it). Never waits."""
        ...


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """One row of the event log, as read back."""

    seq: int
    kind: str
    sender_role: str
    sender_id: str | None
    client_id: str | None
    body: Mapping[str, Any]
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ConversationRow:
    """What the conversations table knows of one conversation."""

    account_id: UUID
    conversation_id: UUID
    customer_id: UUID
    channel: str
    topic: str | None
    department_id: UUID | None
    queue_id: UUID | None
    customer_name: str | None
    customer_level: int
    start_client_id: str | None
    recorded_last_seq: int = -1
    """The last seq the row's status and holder were written for (-1: unknown)."""


@dataclass(frozen=True, slots=True)
class AgentProfile:
    account_id: UUID
    agent_id: UUID
    display_name: str
    role: str
    """The name of the user's role, as data (audit rows record it); never compared: ask `permissions`."""
    capacity: int
    departments: frozenset[UUID]
    skills: Mapping[UUID, int]
    permissions: frozenset[Permission] = frozenset()
    """What the user may do (`kefu.protocol.permissions.permissions_of` their role)."""


@dataclass(frozen=True, slots=True)
class QueueSettings:
    """One queue's row (see migration 0004)."""

    account_id: UUID
    queue_id: UUID
    name: str
    strategy: str
    department_id: UUID | None = None
    skill_id: UUID | None = None
    min_skill_level: int = 1
    widen_after_seconds: float = 30.0
    offer_timeout_seconds: float = 20.0
    auto_accept: bool = False
    overflow_after_seconds: float | None = None
    overflow_queue_id: UUID | None = None
    no_agent_message: str | None = None
    is_default: bool = False


class ConversationStorage(Protocol):
    """The reads and bookkeeping writes of conversations (appends go through the store)."""

    async def conversation(self, conversation_id: UUID) -> ConversationRow | None: ...

    async def events_after(self, conversation_id: UUID, after_seq: int, limit: int) -> list[StoredEvent]: ...

    async def all_events(self, conversation_id: UUID) -> list[StoredEvent]: ...

    async def record_state(
        self,
        conversation_id: UUID,
        *,
        status: str,
        agent_id: UUID | None,
        queue_id: UUID | None,
        last_seq: int,
    ) -> None:
        """Keep the conversations row's status, holder, queue and last seq current (an index)."""
        ...

    async def attachment_kind(self, account_id: UUID, attachment_id: str, uploader_id: UUID) -> str | None:
        """The kind of an attachment `uploader_id` uploaded in the account; None otherwise."""
        ...

    async def agent_profile(self, agent_id: UUID) -> AgentProfile | None: ...

    async def held_conversations(self, agent_id: UUID) -> list[UUID]: ...

    async def last_seq(self, conversation_id: UUID) -> int: ...

    async def queues(self, account_id: UUID) -> list[QueueSettings]: ...

    async def queue_for_department(self, account_id: UUID, department_id: UUID) -> UUID | None:
        """The queue that serves `department_id` (its own, else the default); None: no such department."""
        ...

    async def record_denial(
        self,
        account_id: UUID,
        actor_role: str,
        actor_id: UUID,
        action: str,
        target_id: UUID | str,
        *,
        target_type: str = "conversation",
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append a refused attempt to the audit log."""
        ...


@dataclass(frozen=True, eq=False, slots=True)
class SessionHandle:
    """How the node reaches one conversation's CustomerSession, across its incarnations.

    The ids and the mailbox are immutable: the edge, the dispatcher and the timers only
    `tell` the mailbox (`ref`). `subscribers` belongs to the conversation's CustomerSession
    alone (`kefu.actors.session`): only it adds and removes connections, and nothing else
    reads it. It lives here, beside the mailbox, for one reason: like the mailbox it must
    outlive one incarnation of the session, so that sockets stay attached while a crashed
    session is rebuilt from the store.
    """

    account_id: UUID
    conversation_id: UUID
    mailbox: Mailbox[SessionMessage]
    subscribers: set[Outbox] = field(default_factory=set)
    """The connections that get the conversation's live events (owned by the session)."""

    @property
    def ref(self) -> ActorRef[SessionMessage]:
        return self.mailbox.ref
