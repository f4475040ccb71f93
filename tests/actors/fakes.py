"""In-memory fakes of the ports the contact-center actors use (`kefu.actors.ports`, and the
store's `EventLog`), for unit tests of the actors under trio's mock clock.

- `FakeStorage` is the database: it satisfies `ConversationStorage` (the reads and
  bookkeeping writes) and the store's `EventLog` (the appends), over one in-memory event log,
  so a real `Store` actor can commit into it and a `CustomerSession` read back what it
  committed. Commits can be held (`hold_commits`) to see what waits for a COMMIT, and
  storage can be made unavailable (`unavailable`, `reads_fail`).
- `FakeOutbox` is one client connection: a bounded send buffer the test reads from, cut off
  as a slow consumer (close code 4001) exactly as the server's `Connection` is.

Both keep what they were asked for (`recorded_states`, `denials`, `FakeOutbox.frames()`)
so a test can assert on it. Nothing here sleeps or reads the wall clock for ordering.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import orjson
import trio

from kefu.actors.ports import AgentProfile, ConversationRow, QueueSettings, StoredEvent
from kefu.actors.store import Appended, AppendRejected, EventRecord, StoreUnavailable
from kefu.protocol.codec import encode_frame
from kefu.protocol.server import Ack, ServerError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from kefu.actors.ports import ConversationStorage, Outbox
    from kefu.actors.store import EventLog

__all__ = [
    "CLOSE_SLOW_CONSUMER",
    "DEFAULT_OUTBOX_CAPACITY",
    "DenialRecord",
    "FakeOutbox",
    "FakeStorage",
    "RecordedState",
    "stored_event",
]

CLOSE_SLOW_CONSUMER = 4001
"""The close code of a connection cut off because its buffer was full (as `server.sockets`)."""

DEFAULT_OUTBOX_CAPACITY = 256
"""Frames a `FakeOutbox` buffers before it cuts itself off, unless told otherwise."""


@dataclass(frozen=True, slots=True)
class RecordedState:
    """One `record_state` call: what the conversations row was told."""

    conversation_id: UUID
    status: str
    agent_id: UUID | None
    queue_id: UUID | None
    last_seq: int


@dataclass(frozen=True, slots=True)
class DenialRecord:
    """One `record_denial` call: a refused attempt written to the audit log."""

    account_id: UUID
    actor_role: str
    actor_id: UUID
    action: str
    target_id: UUID | str
    target_type: str
    detail: dict[str, Any] | None


@dataclass(slots=True)
class _Conversation:
    row: ConversationRow
    events: list[StoredEvent] = field(default_factory=list)
    seqs: set[int] = field(default_factory=set)
    by_client_id: dict[tuple[str, str | None, str], StoredEvent] = field(default_factory=dict)


class FakeStorage:
    """The database, in memory: a `ConversationStorage` and the store's `EventLog`.

    Appends follow the event log's rules (`kefu.server.event_log`): a retried append (same
    conversation, sender and client id) is answered with the original `Appended` marked
    `duplicate`; a taken seq is `AppendRejected("seq_conflict")`; an unknown conversation
    is `AppendRejected("unknown_conversation")`. One batch commits all its good records.
    """

    def __init__(self) -> None:
        self._conversations: dict[UUID, _Conversation] = {}
        self.agents: dict[UUID, AgentProfile] = {}
        self.account_queues: dict[UUID, list[QueueSettings]] = {}
        self.department_queues: dict[tuple[UUID, UUID], UUID] = {}
        """(account, department) -> the queue serving it; a department not here does not exist."""
        self.attachments: dict[tuple[UUID, str, UUID], str] = {}
        """(account, attachment id, uploader) -> the attachment's kind."""
        self.held: dict[UUID, list[UUID]] = {}
        """What `held_conversations` answers, per agent."""
        self.recorded_states: list[RecordedState] = []
        self.denials: list[DenialRecord] = []
        self.commits = 0
        """Batches committed (`append_batch` calls that returned)."""
        self.unavailable = False
        """True: `append_batch` raises `StoreUnavailable` and commits nothing."""
        self.reads_fail = False
        """True: `events_after` and `all_events` raise `ConnectionError`."""
        self._commits_allowed: trio.Event | None = None
        self.commits_waiting = 0
        """Batches waiting in `append_batch` while commits are held."""

    # -- setting up ---------------------------------------------------------------------------

    def add_conversation(
        self,
        account_id: UUID,
        *,
        conversation_id: UUID | None = None,
        customer_id: UUID | None = None,
        channel: str = "webchat",
        queue_id: UUID | None = None,
        customer_name: str | None = "Ada",
        customer_level: int = 0,
        topic: str | None = None,
        department_id: UUID | None = None,
        start_client_id: str | None = None,
    ) -> ConversationRow:
        """Open a conversation (as `storage.open_conversation` does); returns its row."""
        row = ConversationRow(
            account_id=account_id,
            conversation_id=conversation_id or uuid4(),
            customer_id=customer_id or uuid4(),
            channel=channel,
            topic=topic,
            department_id=department_id,
            queue_id=queue_id,
            customer_name=customer_name,
            customer_level=customer_level,
            start_client_id=start_client_id,
        )
        self._conversations[row.conversation_id] = _Conversation(row)
        return row

    def add_agent(self, profile: AgentProfile) -> None:
        self.agents[profile.agent_id] = profile

    def events(self, conversation_id: UUID) -> list[StoredEvent]:
        """Every committed event of the conversation, in seq order."""
        return list(self._conversations[conversation_id].events)

    def insert(self, conversation_id: UUID, event: StoredEvent) -> None:
        """Put an event straight into the log (a history written by someone else, or by an
        earlier incarnation), without checks."""
        conversation = self._conversations[conversation_id]
        events = conversation.events
        events.append(event)
        if len(events) > 1 and events[-2].seq > event.seq:
            events.sort(key=lambda stored: stored.seq)
        conversation.seqs.add(event.seq)
        if event.client_id is not None:
            conversation.by_client_id[(event.sender_role, event.sender_id, event.client_id)] = event

    # -- holding commits ----------------------------------------------------------------------

    def hold_commits(self) -> None:
        """From now on `append_batch` waits (nothing committed) until `release_commits`."""
        if self._commits_allowed is None:
            self._commits_allowed = trio.Event()

    def release_commits(self) -> None:
        allowed, self._commits_allowed = self._commits_allowed, None
        if allowed is not None:
            allowed.set()

    # -- EventLog -------------------------------------------------------------------------------

    async def append_batch(
        self, records: Sequence[EventRecord], created_at: datetime
    ) -> list[Appended | AppendRejected]:
        allowed = self._commits_allowed
        if allowed is not None:
            self.commits_waiting += 1
            try:
                await allowed.wait()
            finally:
                self.commits_waiting -= 1
        else:
            await trio.lowlevel.checkpoint()
        if self.unavailable:
            raise StoreUnavailable("the fake database is unavailable")
        outcomes = [self._append_one(record, created_at) for record in records]
        self.commits += 1
        return outcomes

    def _append_one(self, record: EventRecord, created_at: datetime) -> Appended | AppendRejected:
        conversation = self._conversations.get(record.conversation_id)
        if conversation is None or conversation.row.account_id != record.account_id:
            return AppendRejected(
                "unknown_conversation", f"conversation {record.conversation_id} does not exist in this account"
            )
        if record.client_id is not None:
            earlier = conversation.by_client_id.get((record.sender_role, record.sender_id, record.client_id))
            if earlier is not None:
                return Appended(record.conversation_id, earlier.seq, earlier.created_at, duplicate=True)
        if record.seq in conversation.seqs:
            return AppendRejected("seq_conflict", f"sequence number {record.seq} is already taken in this conversation")
        event = StoredEvent(
            seq=record.seq,
            kind=record.kind,
            sender_role=record.sender_role,
            sender_id=record.sender_id,
            client_id=record.client_id,
            # stored as JSON is: a copy the caller cannot change afterwards
            body=orjson.loads(orjson.dumps(record.body)),
            created_at=created_at,
        )
        self.insert(record.conversation_id, event)
        return Appended(record.conversation_id, record.seq, created_at)

    # -- ConversationStorage --------------------------------------------------------------------

    async def conversation(self, conversation_id: UUID) -> ConversationRow | None:
        await trio.lowlevel.checkpoint()
        conversation = self._conversations.get(conversation_id)
        return None if conversation is None else conversation.row

    async def events_after(self, conversation_id: UUID, after_seq: int, limit: int) -> list[StoredEvent]:
        await trio.lowlevel.checkpoint()
        if self.reads_fail:
            raise ConnectionError("the fake database is unavailable")
        events = [event for event in self._conversations[conversation_id].events if event.seq > after_seq]
        return events[:limit]

    async def all_events(self, conversation_id: UUID) -> list[StoredEvent]:
        await trio.lowlevel.checkpoint()
        if self.reads_fail:
            raise ConnectionError("the fake database is unavailable")
        return self.events(conversation_id)

    async def record_state(
        self,
        conversation_id: UUID,
        *,
        status: str,
        agent_id: UUID | None,
        queue_id: UUID | None,
        last_seq: int,
    ) -> None:
        await trio.lowlevel.checkpoint()
        self.recorded_states.append(RecordedState(conversation_id, status, agent_id, queue_id, last_seq))
        conversation = self._conversations.get(conversation_id)
        if conversation is not None:
            row = conversation.row
            conversation.row = ConversationRow(
                account_id=row.account_id,
                conversation_id=row.conversation_id,
                customer_id=row.customer_id,
                channel=row.channel,
                topic=row.topic,
                department_id=row.department_id,
                queue_id=queue_id,
                customer_name=row.customer_name,
                customer_level=row.customer_level,
                start_client_id=row.start_client_id,
                recorded_last_seq=last_seq,
            )

    async def attachment_kind(self, account_id: UUID, attachment_id: str, uploader_id: UUID) -> str | None:
        await trio.lowlevel.checkpoint()
        return self.attachments.get((account_id, attachment_id, uploader_id))

    async def agent_profile(self, agent_id: UUID) -> AgentProfile | None:
        await trio.lowlevel.checkpoint()
        return self.agents.get(agent_id)

    async def held_conversations(self, agent_id: UUID) -> list[UUID]:
        await trio.lowlevel.checkpoint()
        return list(self.held.get(agent_id, ()))

    async def last_seq(self, conversation_id: UUID) -> int:
        await trio.lowlevel.checkpoint()
        events = self._conversations[conversation_id].events
        return events[-1].seq if events else 0

    async def queues(self, account_id: UUID) -> list[QueueSettings]:
        await trio.lowlevel.checkpoint()
        return list(self.account_queues.get(account_id, ()))

    async def queue_for_department(self, account_id: UUID, department_id: UUID) -> UUID | None:
        await trio.lowlevel.checkpoint()
        return self.department_queues.get((account_id, department_id))

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
        await trio.lowlevel.checkpoint()
        self.denials.append(DenialRecord(account_id, actor_role, actor_id, action, target_id, target_type, detail))


class FakeOutbox:
    """One client connection with a bounded send buffer, as `server.sockets.Connection`.

    Frames the session sends wait in the buffer until the test `read`s them (the client
    reading its socket). A `send` that finds the buffer full cuts the connection off as a
    slow consumer (`CLOSE_SLOW_CONSUMER`) and drops the frame.
    """

    __slots__ = (
        "_buffered",
        "_closed",
        "capacity",
        "close_code",
        "close_reason",
        "role",
        "sees_contact_details",
        "sent",
        "user_id",
    )

    def __init__(
        self,
        role: str = "customer",
        user_id: UUID | None = None,
        *,
        capacity: int = DEFAULT_OUTBOX_CAPACITY,
        sees_contact_details: bool | None = None,
    ) -> None:
        self.role = role
        self.user_id = user_id or uuid4()
        self.sees_contact_details = role == "customer" if sees_contact_details is None else sees_contact_details
        self.capacity = capacity
        self.sent: list[bytes] = []
        """Every frame accepted, in order (read or still buffered)."""
        self._buffered: deque[bytes] = deque()
        self._closed = False
        self.close_code: int | None = None
        self.close_reason = ""

    # -- Outbox ---------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, data: bytes) -> bool:
        if self._closed:
            return False
        if len(self._buffered) >= self.capacity:
            self.close(CLOSE_SLOW_CONSUMER, "slow consumer: reconnect and resume from the last seq you saw")
            return False
        self._buffered.append(data)
        self.sent.append(data)
        return True

    def close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self.close_code = code
        self.close_reason = reason

    def room(self) -> int:
        return 0 if self._closed else self.capacity - len(self._buffered)

    def acked(self, ack: Ack) -> None:
        self.send(encode_frame(ack))

    def refused(self, error: ServerError) -> None:
        self.send(encode_frame(error))

    # -- the client's side ----------------------------------------------------------------------

    def read(self, count: int | None = None) -> list[dict[str, Any]]:
        """Take `count` frames (all by default) out of the buffer, as the client reading them."""
        taken = len(self._buffered) if count is None else min(count, len(self._buffered))
        return [orjson.loads(self._buffered.popleft()) for _ in range(taken)]

    @property
    def buffered(self) -> int:
        """Frames sent and not read yet."""
        return len(self._buffered)

    def frames(self, frame_type: str | None = None) -> list[dict[str, Any]]:
        """Every frame sent to this connection, decoded, in order (only `frame_type` if given)."""
        decoded: list[dict[str, Any]] = [orjson.loads(data) for data in self.sent]
        return decoded if frame_type is None else [frame for frame in decoded if frame.get("type") == frame_type]

    def seqs(self) -> list[int]:
        """The seqs of the `event` frames sent, in order."""
        return [frame["seq"] for frame in self.frames("event")]

    def __repr__(self) -> str:
        return f"<FakeOutbox {self.role} {self.user_id} sent={len(self.sent)} closed={self._closed}>"


def stored_event(
    seq: int,
    kind: str,
    *,
    sender_role: str = "system",
    sender_id: str | None = None,
    client_id: str | None = None,
    body: Mapping[str, Any] | None = None,
    created_at: datetime | None = None,
) -> StoredEvent:
    """A `StoredEvent` for `FakeStorage.insert` (a history the test writes)."""
    return StoredEvent(
        seq=seq,
        kind=kind,
        sender_role=sender_role,
        sender_id=sender_id,
        client_id=client_id,
        body=dict(body or {}),
        created_at=created_at or datetime.now(UTC),
    )


if TYPE_CHECKING:
    # The fakes satisfy the ports (checked by mypy, no cost at run time).
    def _storage_is_a_port(storage: FakeStorage) -> tuple[ConversationStorage, EventLog]:
        return storage, storage

    def _outbox_is_a_port(outbox: FakeOutbox) -> Outbox:
        return outbox
