"""The messages the contact-center actors send each other.

They live in one module because the actors talk in circles (a session tells the
dispatcher a conversation is waiting; the dispatcher tells the session who took it), and
every message is a plain frozen record: no actor ever shares mutable state through one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias
from uuid import UUID

from kefu.actors.ports import AgentProfile, Outbox
from kefu.actors.runtime import Reply
from kefu.protocol.agent import AddNote, Transfer
from kefu.protocol.common import MarkRead, Resume, SendMessage, SetTyping
from kefu.protocol.customer import CloseConversation
from kefu.protocol.permissions import Permission
from kefu.protocol.server import CustomerSummary

# --- to a CustomerSession -----------------------------------------------------------------
# Every message a CustomerSession takes is one of `SessionMessage` (at the end of this part).

CustomerConversationFrame: TypeAlias = SendMessage | SetTyping | MarkRead | Resume | CloseConversation
"""The customer frames the edge hands to a conversation's session (`CustomerInput.frame`)."""

AgentConversationFrame: TypeAlias = SendMessage | AddNote | SetTyping | MarkRead | Resume | Transfer | CloseConversation
"""The agent frames the edge hands to a conversation's session (`AgentInput.frame`); the offer
and status frames go to the dispatcher and the Agent actor instead."""


@dataclass(frozen=True, slots=True)
class Begin:
    """A customer's ``conversation.start`` (first or retried): ack it and replay from 0."""

    connection: Outbox
    client_id: str


@dataclass(frozen=True, slots=True)
class CustomerInput:
    connection: Outbox
    frame: CustomerConversationFrame


@dataclass(frozen=True, slots=True)
class AgentInput:
    connection: Outbox
    agent_id: UUID
    agent_name: str
    role: str
    """The user's role, as audit data only (access is decided by `permissions`)."""
    permissions: frozenset[Permission]
    """What the signed-in user may do (`SignedInUser.permissions`)."""
    frame: AgentConversationFrame


@dataclass(frozen=True, slots=True)
class Offered:
    """The dispatcher offered the conversation to an agent (nothing is stored)."""

    agent_id: UUID


@dataclass(frozen=True, slots=True)
class OfferLapsed:
    """The queue offer was declined or expired: the conversation waits again."""


@dataclass(frozen=True, slots=True)
class Assign:
    """The dispatcher's decision: `agent_id` now holds the conversation."""

    agent_id: UUID
    agent_name: str


@dataclass(frozen=True, slots=True)
class TransferLapsed:
    """A transfer to an agent was declined, expired or impossible (`reason`)."""

    to_agent_id: UUID
    reason: str


@dataclass(frozen=True, slots=True)
class Requeued:
    """The dispatcher moved the waiting conversation to another queue (overflow)."""

    queue_id: UUID
    reason: str


@dataclass(frozen=True, slots=True)
class NoAgents:
    """No agent of its queue is online: tell the customer `text` (once per wait)."""

    text: str


@dataclass(frozen=True, slots=True)
class QueueStatus:
    position: int
    estimated_wait_seconds: int | None


@dataclass(frozen=True, slots=True)
class WrapUpExpired:
    epoch: int


@dataclass(frozen=True, slots=True)
class ResumeMore:
    """Continue a replay to `connection` after `after_seq` (a page at a time)."""

    connection: Outbox
    after_seq: int
    from_seq: int


@dataclass(frozen=True, slots=True)
class IdleStop:
    pass


@dataclass(frozen=True, slots=True)
class Reannounce:
    """A new incarnation of the dispatcher (or the aggregator) started with nothing: tell it
    your routing state again. An Agent publishes its status, availability and held
    conversations; a session whose conversation waits (or was under an offer the dead
    incarnation made) enqueues it again; one under a transfer offer asks for it again."""


@dataclass(frozen=True, slots=True)
class InjectCrash:
    """Fault injection for tests: the actor raises while handling it."""


SessionInput: TypeAlias = Begin | CustomerInput | AgentInput | ResumeMore
"""What a conversation's connections (and their replays) ask of its session."""

RoutingDecision: TypeAlias = (
    Offered | OfferLapsed | Assign | TransferLapsed | Requeued | NoAgents | QueueStatus | Reannounce
)
"""What the dispatcher tells a session about its conversation's place in the queues."""

SessionTimeout: TypeAlias = WrapUpExpired | IdleStop
"""What a session asked the timer service to tell it later."""

SessionMessage: TypeAlias = SessionInput | RoutingDecision | SessionTimeout | InjectCrash
"""Every message a CustomerSession handles: its mailbox is a `Mailbox[SessionMessage]`."""


# --- to the Dispatcher ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Enqueue:
    """A conversation waits for an agent in `queue_id` (idempotent)."""

    account_id: UUID
    conversation_id: UUID
    queue_id: UUID
    waiting_since: datetime
    customer: CustomerSummary
    customer_level: int = 0


@dataclass(frozen=True, slots=True)
class Withdraw:
    """The conversation no longer waits (customer left, closed, transferred elsewhere)."""

    account_id: UUID
    conversation_id: UUID
    reason: str


@dataclass(frozen=True, slots=True)
class AgentUpdate:
    """An agent's profile, availability and held conversations, sent on every change."""

    profile: AgentProfile
    available: bool
    held: int
    held_ids: frozenset[UUID] = frozenset()
    """The conversations the agent holds (in wrap-up included): the dispatcher counts the
    agent's load from these, so a restarted dispatcher learns it exactly."""


@dataclass(frozen=True, slots=True)
class AgentLeft:
    account_id: UUID
    agent_id: UUID


@dataclass(frozen=True, slots=True)
class AcceptOffer:
    account_id: UUID
    agent_id: UUID
    offer_id: str
    connection: Outbox


@dataclass(frozen=True, slots=True)
class DeclineOffer:
    account_id: UUID
    agent_id: UUID
    offer_id: str
    connection: Outbox


@dataclass(frozen=True, slots=True)
class Released:
    """`agent_id` no longer holds `conversation_id`: its slot is free."""

    account_id: UUID
    agent_id: UUID
    conversation_id: UUID


@dataclass(frozen=True, slots=True)
class TransferToAgent:
    account_id: UUID
    conversation_id: UUID
    from_agent_id: UUID
    to_agent_id: UUID
    customer: CustomerSummary


@dataclass(frozen=True, slots=True)
class OfferTimeout:
    offer_id: str


@dataclass(frozen=True, slots=True)
class Tick:
    pass


@dataclass(frozen=True, slots=True)
class ReloadQueues:
    account_id: UUID


@dataclass(frozen=True, slots=True)
class Describe:
    """A new aggregator incarnation started: tell it every queue, its availability and who waits."""


@dataclass(frozen=True, slots=True)
class RouteProbe:
    """Benchmarks and tests: answer once every queued message before it is handled."""

    reply: Reply[None]


DispatcherControl: TypeAlias = Tick | ReloadQueues | Describe | RouteProbe | InjectCrash
"""The dispatcher's own housekeeping, as opposed to the routing facts sessions and agents tell it."""

DispatcherMessage: TypeAlias = (
    Enqueue
    | Released
    | AcceptOffer
    | DeclineOffer
    | OfferTimeout
    | Withdraw
    | AgentUpdate
    | TransferToAgent
    | AgentLeft
    | DispatcherControl
)
"""Everything the dispatcher's mailbox takes (`kefu.actors.dispatcher.DISPATCHER_MAILBOX_CAPACITY`)."""


# --- to an Agent ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Connected:
    connection: Outbox
    session_token_hash: bytes | None


@dataclass(frozen=True, slots=True)
class Disconnected:
    connection: Outbox


@dataclass(frozen=True, slots=True)
class ChangeStatus:
    """The agent chose a status (``online``, ``break`` with a reason, ``offline``)."""

    status: str
    reason: str | None
    connection: Outbox | None = None


@dataclass(frozen=True, slots=True)
class ReconnectGraceOver:
    """The agent's last tab closed `reconnect_grace_seconds` ago: if none came back, it is offline."""


@dataclass(frozen=True, slots=True)
class Held:
    conversation_id: UUID


@dataclass(frozen=True, slots=True)
class WrapUpStarted:
    conversation_id: UUID
    seconds: float


@dataclass(frozen=True, slots=True)
class Let:
    """The agent no longer holds `conversation_id` (finished or transferred away)."""

    conversation_id: UUID


@dataclass(frozen=True, slots=True)
class MissedOffers:
    """The dispatcher saw `count` offers in a row expire: the agent goes on break."""

    count: int


@dataclass(frozen=True, slots=True)
class SignedOut:
    session_token_hash: bytes | None
    """The revoked session; None: every session of the agent (disabled)."""


@dataclass(frozen=True, slots=True)
class ProfileChanged:
    pass


@dataclass(frozen=True, slots=True)
class Denied:
    """The dispatcher refused one of this agent's frames: the Agent actor writes the audit record
    (the dispatcher never waits for storage)."""

    action: str
    target_type: str
    target_id: UUID | str


@dataclass(frozen=True, slots=True)
class Deliver:
    """A frame for every open tab of the agent (an offer, a revoked offer): the Agent actor owns
    the sockets, so the dispatcher hands frames to it instead of writing to them."""

    frame: bytes


@dataclass(frozen=True, slots=True)
class ListConnections:
    """Which connections (tabs) the agent has open now: answered with an immutable set."""

    reply: Reply[frozenset[Outbox]]


@dataclass(frozen=True, slots=True)
class ContactDetailsVisibility:
    """The agent's `contacts.view_unmasked` changed: the Agent actor sets `sees_contact_details`
    on its tabs (it is the flag's only writer once a tab is its own), then answers through `reply`."""

    sees: bool
    reply: Reply[None]


AgentTabMessage: TypeAlias = (
    Connected | Disconnected | ReconnectGraceOver | SignedOut | Deliver | ListConnections | ContactDetailsVisibility
)
"""What concerns the agent's open connections (tabs)."""

AgentWorkMessage: TypeAlias = (
    ChangeStatus | Held | WrapUpStarted | Let | MissedOffers | ProfileChanged | Denied | Reannounce | InjectCrash
)
"""What concerns the agent's status, the conversations it holds and its profile."""

AgentMessage: TypeAlias = AgentTabMessage | AgentWorkMessage
"""Everything an Agent actor's mailbox takes (`kefu.actors.center.AGENT_MAILBOX_CAPACITY`)."""
