"""In-memory stand-ins for what the Dispatcher, Agent and ContactCenter use of the outside world
(`kefu.actors.ports`): a connection that records its frames, a storage port that holds profiles,
queues and conversations in dictionaries, and a contact center wired to mailboxes the test reads.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import trio

from kefu.actors import messages as m
from kefu.actors.center import CenterSettings, ContactCenter
from kefu.actors.ports import AgentProfile, ConversationRow, QueueSettings, SessionHandle, StoredEvent
from kefu.actors.runtime import Actor, Mailbox
from kefu.actors.supervisor import DynamicSupervisor
from kefu.actors.timers import Timers
from kefu.protocol import decode_server_frame
from kefu.protocol.codec import encode_frame
from kefu.protocol.permissions import AGENT, permissions_of
from kefu.protocol.server import Ack, CustomerSummary, ServerError

ACCOUNT = UUID(int=1)
DEFAULT_QUEUE = UUID(int=2)
CUSTOMER = CustomerSummary(customer_id="c", channel="webchat")


class FakeConnection:
    """An `Outbox` that keeps every frame it was sent, decoded."""

    def __init__(self, user_id: UUID, role: str = "agent", room: int = 1000) -> None:
        self.role = role
        self.user_id = user_id
        self.sees_contact_details = False
        self.frames: list[Any] = []
        self.close_code: int | None = None
        self._room = room

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    def send(self, data: bytes) -> bool:
        if self.closed:
            return False
        if self._room <= 0:
            self.close(4001, "slow consumer")
            return False
        self._room -= 1
        self.frames.append(decode_server_frame(data))
        return True

    def close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code = code

    def room(self) -> int:
        return self._room

    def acked(self, ack: Ack) -> None:
        self.send(encode_frame(ack))

    def refused(self, error: ServerError) -> None:
        self.send(encode_frame(error))

    def of(self, kind: str) -> list[Any]:
        """The frames of one `TYPE` (``offer``, ``status`` …), oldest first."""
        return [frame for frame in self.frames if frame.TYPE == kind]


@dataclass
class FakeStorage:
    """The storage port in dictionaries; what a test does not set up is absent."""

    profiles: dict[UUID, AgentProfile] = field(default_factory=dict)
    held: dict[UUID, list[UUID]] = field(default_factory=dict)
    account_queues: dict[UUID, list[QueueSettings]] = field(default_factory=dict)
    rows: dict[UUID, ConversationRow] = field(default_factory=dict)
    denials: list[tuple[UUID, str, UUID, str, UUID | str, str]] = field(default_factory=list)
    profile_reads: int = 0

    async def conversation(self, conversation_id: UUID) -> ConversationRow | None:
        return self.rows.get(conversation_id)

    async def events_after(self, conversation_id: UUID, after_seq: int, limit: int) -> list[StoredEvent]:
        return []

    async def all_events(self, conversation_id: UUID) -> list[StoredEvent]:
        return []

    async def record_state(
        self, conversation_id: UUID, *, status: str, agent_id: UUID | None, queue_id: UUID | None, last_seq: int
    ) -> None:
        pass

    async def attachment_kind(self, account_id: UUID, attachment_id: str, uploader_id: UUID) -> str | None:
        return None

    async def agent_profile(self, agent_id: UUID) -> AgentProfile | None:
        self.profile_reads += 1
        return self.profiles.get(agent_id)

    async def held_conversations(self, agent_id: UUID) -> list[UUID]:
        return list(self.held.get(agent_id, []))

    async def last_seq(self, conversation_id: UUID) -> int:
        return 0

    async def queues(self, account_id: UUID) -> list[QueueSettings]:
        return list(self.account_queues.get(account_id, []))

    async def queue_for_department(self, account_id: UUID, department_id: UUID) -> UUID | None:
        return None

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
        self.denials.append((account_id, actor_role, actor_id, action, target_id, target_type))


def profile(number: int, *, capacity: int = 1, departments: frozenset[UUID] = frozenset()) -> AgentProfile:
    """Agent `number`'s profile (agent id ``UUID(int=100 + number)``), with the agent role."""
    return AgentProfile(
        ACCOUNT,
        UUID(int=100 + number),
        f"Agent {number}",
        AGENT,
        capacity,
        departments,
        {},
        permissions_of(AGENT),
    )


def queue(queue_id: UUID = DEFAULT_QUEUE, **settings: Any) -> QueueSettings:
    base = QueueSettings(ACCOUNT, queue_id, f"Queue {queue_id.int}", "least_load", is_default=queue_id == DEFAULT_QUEUE)
    return replace(base, **settings)


def conversation_row(conversation_id: UUID, topic: str | None = None) -> ConversationRow:
    return ConversationRow(
        ACCOUNT, conversation_id, uuid.uuid4(), "webchat", topic, None, DEFAULT_QUEUE, "Customer", 0, None
    )


def make_center(storage: FakeStorage, **settings: Any) -> ContactCenter:
    """A contact center with no running actors: the test sets `dispatcher` and the handles."""
    return ContactCenter(
        store=Mailbox[Any]("store").ref,
        storage=storage,
        timers=Timers(),
        sessions=DynamicSupervisor("sessions"),
        agents=DynamicSupervisor("agents"),
        settings=CenterSettings(**settings),
    )


def drain(box: Mailbox[Any]) -> list[Any]:
    """Every message waiting in `box` now, oldest first."""
    messages = []
    while box.size:
        messages.append(box.receive_nowait())
    return messages


def of_type(messages: list[Any], kind: type[Any]) -> list[Any]:
    return [message for message in messages if isinstance(message, kind)]


def session_box(center: ContactCenter, conversation_id: UUID) -> Mailbox[Any]:
    """A session handle whose mailbox the test reads instead of a CustomerSession."""
    box: Mailbox[Any] = Mailbox(f"session:{conversation_id}", 64)
    center.sessions[conversation_id] = SessionHandle(ACCOUNT, conversation_id, box)
    return box


def enqueue(conversation_id: UUID, queue_id: UUID = DEFAULT_QUEUE, level: int = 0) -> m.Enqueue:
    return m.Enqueue(ACCOUNT, conversation_id, queue_id, datetime.now(UTC), CUSTOMER, level)


def new_ids(count: int) -> Iterator[UUID]:
    return (uuid.uuid4() for _ in range(count))


async def settle() -> None:
    """Let every actor handle what it was told (the mock clock does not move)."""
    await trio.testing.wait_all_tasks_blocked()


class Stopper:
    """Starts actors in a nursery and stops them all at the end of a test."""

    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.stop = trio.Event()

    async def start(self, actor: Actor[Any]) -> None:
        await self.nursery.start(actor.run, self.stop)
