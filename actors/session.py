"""CustomerSession: one actor per open conversation.

Theory of operation
-------------------
The session is the only writer of its conversation's event log. It owns the state
machine (`kefu.protocol.conversation`), the next sequence number and the client ids
each sender already used, all rebuilt from the stored events when it starts, so a crashed
session comes back exactly where the last COMMIT left it. Every storable frame becomes
one append to the store; only after the COMMIT does the session ack the sender and fan
the event out to the connections subscribed to the conversation.

Live and on a rebuild, every stored event is folded the same way, into the session's
`ConversationHistory` (`kefu.actors.history`): the events that move the conversation go
through the protocol's transition table, so a history the table does not allow raises
`LocalProtocolError`: a bug, which crashes the session; its supervisor restarts it and it
rebuilds from the log. An append is checked against the table before it is sent to the
store, so such an event is never stored.

The session owns its state alone: its subscribers (kept on its `SessionHandle` only so that
they outlive an incarnation, as its mailbox does), its client ids, its holder and queue.
Others tell it things through its mailbox (`SessionMessage`); it never writes another
actor's state.

Subscribers are the customer's connections and the holding agent's connections that
have caught up (a new connection joins after its `resume` replay, so a live event can
never overtake or repeat a replayed one). Delivery puts encoded bytes into each
connection's bounded buffer without waiting; a connection that cannot keep up is cut off
by its own buffer and resumes later. A slow client therefore never slows the session.

Routing is the dispatcher's: the session tells it a conversation waits (`Enqueue`) or
stopped waiting (`Withdraw`) and records what it decides (`Assign`), so there is one
writer of assignments.

Rules
-----
1. Ack after COMMIT, with the event's seq; seqs are gapless per conversation.
2. A frame whose client_id its sender already stored in this conversation is answered with
   the original ack before any other check, and stores nothing. Client ids are per sender
   (role, id): a customer's `c-2` and an agent's `c-2` are two events. A `message.send` or
   `note.add` that reuses a stored client id with another body (or for another kind of event)
   is refused with `client_id_reused`; other frames under a used id get the original ack (the
   first stored wins).
3. A frame the sender may not send (not its conversation, wrong state) is refused with an
   error frame and changes nothing.
4. Events that are internal (notes, wrap-up, transfer notes) never reach a customer.
5. Reading a conversation one does not hold (`resume`) takes having held it, being offered
   it in a transfer, or the permission `conversations.read_all`.
6. Personal data: the customer's display name is not stored in events (frames take it from the
   customer record, stored encrypted); the `text` of events reaches agents without
   `may_view_contact_details` with phone numbers and e-mail addresses masked (`mask_text`),
   everyone else as written. Masking happens when a frame is built, never in storage.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol, TypeAlias, TypeVar, assert_never
from uuid import UUID

import trio

from kefu.actors import messages as m
from kefu.actors.center import ContactCenter
from kefu.actors.history import ConversationHistory, SenderClientId, uuid_or_none
from kefu.actors.ports import ConversationRow, Outbox, SessionHandle, StoredEvent
from kefu.actors.runtime import Actor, AskTimeout
from kefu.actors.store import AppendRejected, EventRecord, StoreUnavailable, append
from kefu.protocol.agent import AddNote, Transfer
from kefu.protocol.codec import encode_frame
from kefu.protocol.common import MarkRead, Resume, SendMessage, SetTyping
from kefu.protocol.conversation import Event, State
from kefu.protocol.customer import CloseConversation
from kefu.protocol.errors import LocalProtocolError
from kefu.protocol.masking import mask_text
from kefu.protocol.permissions import Permission
from kefu.protocol.server import (
    Ack,
    ConversationEvent,
    CustomerSummary,
    PeerRead,
    PeerTyping,
    QueuePosition,
    Resumed,
    Sender,
    ServerError,
    utc_timestamp,
)

log = logging.getLogger("kefu.session")

AGENT_ONLY_KINDS = frozenset({"note", "wrapped_up"})
SYSTEM_RETRY_SECONDS = 0.5
"""How soon a system event that storage refused (unavailable) is tried again."""
REPLAY_HEADROOM = 16
"""Buffer slots a replay leaves free for live frames (acks, typing) to the same connection."""
REPLAY_WAIT_SECONDS = 0.05
"""How soon a replay that found the connection's buffer full looks again."""
CLOSED_IDLE_SECONDS = 60.0
"""A closed conversation's session stays this long for late resumes, then stops."""

ConversationFrame: TypeAlias = m.CustomerConversationFrame | m.AgentConversationFrame
AgentAction: TypeAlias = SendMessage | AddNote | SetTyping | MarkRead | Transfer | CloseConversation
"""The agent frames the holder acts with (every `AgentConversationFrame` but `resume`)."""

_Message = TypeVar("_Message")


class _Timer(Protocol):
    """What the session keeps of a timer it set: the means to cancel it."""

    def cancel(self) -> None: ...


class Refused(Exception):
    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


def event_frame(
    conversation_id: UUID,
    event: StoredEvent,
    *,
    for_customer: bool,
    customer_name: str | None = None,
    masked: bool = False,
) -> ConversationEvent:
    """The `event` frame of a stored event.

    `customer_name`: the customer's display name (from its record) for the customer's events;
    `masked`: phone numbers and e-mail addresses in `text` are masked (an agent without
    `may_view_contact_details`).
    """
    body = event.body
    sender_id = event.sender_id or "system"
    text = body.get("text")
    if for_customer and event.kind == "transferred":
        text = None  # the transfer note is for the receiving agent
    if masked and text:
        text = mask_text(text)
    display_name = customer_name if event.sender_role == "customer" else body.get("sender_name")
    return ConversationEvent(
        conversation_id=str(conversation_id),
        seq=event.seq,
        kind=event.kind,
        at=utc_timestamp(event.created_at),
        sender=Sender(role=event.sender_role, id=sender_id, display_name=display_name),  # type: ignore[arg-type]
        client_id=event.client_id,
        message_kind=body.get("message_kind"),
        text=text,
        attachment_id=body.get("attachment_id"),
        queue_id=body.get("queue_id"),
        agent_id=body.get("agent_id"),
        from_agent_id=body.get("from_agent_id"),
        to_agent_id=body.get("to_agent_id"),
        to_department_id=body.get("to_department_id"),
        reason=body.get("reason"),
        wrap_up_code=body.get("wrap_up_code"),
    )


class CustomerSession(Actor[m.SessionMessage]):
    def __init__(self, handle: SessionHandle, center: ContactCenter) -> None:
        super().__init__(handle.mailbox)
        self.center = center
        self.conversation_id = handle.conversation_id
        self.account_id = handle.account_id
        self.subscribers = handle.subscribers
        """The connections that get live events: this session's alone (see `SessionHandle`)."""
        self.row: ConversationRow | None = None
        self.history = ConversationHistory()
        """What the conversation's event log says, folded (rebuilt in `started`)."""
        self.wrap_up_epoch = 0
        self.wrap_up_timer: _Timer | None = None
        self.last_position: tuple[int, int | None] | None = None
        self.uncertain = False
        """An append failed in a way that may have committed it: catch up before the next."""

    @property
    def _row(self) -> ConversationRow:
        row = self.row
        assert row is not None, "read in `started`"
        return row

    # -- life ----------------------------------------------------------------------------

    async def run(self, stop_requested: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            await self.started()
            task_status.started(self.ref)
            await self.message_loop(stop_requested)
        finally:
            if self.wrap_up_timer is not None:
                self.wrap_up_timer.cancel()
        if not stop_requested.is_set():
            await self._hand_over_late_messages()

    async def _hand_over_late_messages(self) -> None:
        """Stopped idle (closed). Whatever reached the mailbox meanwhile goes to a fresh
        session of the conversation, so a late `resume` is answered, never lost."""
        self.center.session_ended(self.conversation_id)
        while True:
            try:
                late = self.mailbox.receive_nowait()
            except trio.WouldBlock:
                break
            self.mailbox.mark_handled()
            if isinstance(late, m.IdleStop | m.WrapUpExpired | m.QueueStatus):
                continue
            successor = await self.center.ensure_session(self.account_id, self.conversation_id)
            await successor.ref.tell(late)

    async def started(self) -> None:
        storage = self.center.storage
        self.row = row = await storage.conversation(self.conversation_id)
        if row is None:
            raise LookupError(f"conversation {self.conversation_id} does not exist")
        self.history.queue_id = row.queue_id
        for event in await storage.all_events(self.conversation_id):
            self.history.apply(event)
        if self.history.last_seq != row.recorded_last_seq:
            # The row is an index of the log: a crash between an append and `_record_state`
            # left it behind (an assignment the agent's listing would not show). Write it again.
            await self._record_state()
        if self.history.state.state is State.QUEUED and self.history.last_seq > 0:
            await self._enqueue()
        elif self.history.state.state is State.WRAP_UP:
            self._start_wrap_up_timer()
        elif self.history.state.is_closed:
            self.center.timers.call_later(CLOSED_IDLE_SECONDS, self.ref, m.IdleStop())

    def _check_transitions(self, kind: str, body: Mapping[str, Any], *, caught_up: bool) -> None:
        """Refuse to store an event the fold would reject (`ConversationHistory.apply` after the COMMIT).

        A bug in the session raises `LocalProtocolError`; after a catch-up that moved the
        conversation (an earlier append committed after all), the event is refused instead:
        the sender decided on a state that is gone."""
        try:
            self.history.check(kind, body)
        except LocalProtocolError:
            if caught_up:
                message = f"{kind} is not allowed while the conversation is {self.history.state.state}"
                raise Refused("illegal_state", message) from None
            raise

    # -- the append path -------------------------------------------------------------------

    async def _append(
        self,
        kind: str,
        body: dict[str, Any],
        *,
        sender_role: str,
        sender_id: str | None,
        client_id: str | None = None,
    ) -> StoredEvent:
        caught_up = await self._catch_up() if self.uncertain else False
        if kind != "message":  # the hot path: a message moves nothing
            self._check_transitions(kind, body, caught_up=caught_up)
        record = EventRecord(
            account_id=self.account_id,
            conversation_id=self.conversation_id,
            seq=self.history.last_seq + 1,
            client_id=client_id,
            kind=kind,
            sender_role=sender_role,
            sender_id=sender_id,
            body=body,
        )
        try:
            appended = await append(self.center.store, record, timeout=self.center.settings.append_timeout)
        except (StoreUnavailable, AskTimeout) as error:
            # A COMMIT cut off by a database crash may have happened all the same.
            self.uncertain = True
            raise Refused(
                "unavailable", "storage is unavailable; retry with the same client_id", retryable=True
            ) from error
        except AppendRejected as error:
            if error.code == "seq_conflict":
                # Only this session writes this conversation; a conflict means our view is
                # stale (e.g. a previous incarnation's append committed after a timeout).
                raise RuntimeError("event log moved under the session; rebuilding") from error
            raise Refused("invalid_field", str(error)) from error
        event = StoredEvent(
            seq=appended.seq,
            kind=kind,
            sender_role=sender_role,
            sender_id=sender_id,
            client_id=client_id,
            body=body,
            created_at=appended.created_at,
        )
        if appended.duplicate:
            return event
        self.history.apply(event)
        self._fan_out(event)
        return event

    async def _catch_up(self) -> bool:
        """After an append of unknown outcome: take in (and fan out) what the log has beyond
        `last_seq`, so the next append gets the next free seq. True when it found any."""
        found = False
        while True:
            try:
                events = await self.center.storage.events_after(
                    self.conversation_id, self.history.last_seq, self.center.settings.resume_page_size
                )
            except Exception as error:
                raise Refused(
                    "unavailable", "storage is unavailable; retry with the same client_id", retryable=True
                ) from error
            for event in events:
                self.history.apply(event)
                self._fan_out(event)
                found = True
            if len(events) < self.center.settings.resume_page_size:
                self.uncertain = False
                return found

    def _event_bytes(self, event: StoredEvent, connection: Outbox) -> bytes:
        for_customer = connection.role == "customer"
        customer_name = self.row.customer_name if self.row is not None else None
        frame = event_frame(
            self.conversation_id,
            event,
            for_customer=for_customer,
            customer_name=customer_name,
            masked=not (for_customer or connection.sees_contact_details),
        )
        return encode_frame(frame)

    def _fan_out(self, event: StoredEvent) -> None:
        # Each frame is encoded once per kind of reader: the customer, agents who see contact
        # details in full, agents who see them masked.
        encoded: dict[tuple[bool, bool], bytes] = {}
        subscribers = self.subscribers
        for connection in list(subscribers):
            if connection.closed:
                subscribers.discard(connection)
                continue
            for_customer = connection.role == "customer"
            if for_customer and event.kind in AGENT_ONLY_KINDS:
                continue
            reader = (for_customer, for_customer or connection.sees_contact_details)
            data = encoded.get(reader)
            if data is None:
                data = encoded[reader] = self._event_bytes(event, connection)
            if not connection.send(data):
                subscribers.discard(connection)

    def _send_peers(self, data: bytes, *, role: str) -> None:
        """Send an unstored frame (typing, read) to the subscribers of `role`."""
        subscribers = self.subscribers
        for connection in list(subscribers):
            if connection.role == role and not connection.send(data):
                subscribers.discard(connection)

    def _ack_retry(self, connection: Outbox, key: SenderClientId, frame: ConversationFrame, seq: int) -> None:
        """Answer a frame whose client id its sender already stored: the original ack, unless it
        is a message or note that says something else than what was stored under that id."""
        if not self.history.same_as_stored(key, frame):
            raise Refused(
                "client_id_reused",
                f"client_id {key[2]!r} was used for another frame (seq {seq}); use a fresh client_id",
            )
        self._ack(connection, key[2], seq)

    def _ack(self, connection: Outbox, client_id: str, seq: int) -> None:
        connection.acked(Ack(client_id=client_id, conversation_id=str(self.conversation_id), seq=seq))

    # -- messages ----------------------------------------------------------------------------

    async def handle(self, message: m.SessionMessage) -> None:
        match message:
            case m.CustomerInput():
                await self._guarded(message.connection, message.frame, self._customer_frame, message)
            case m.AgentInput():
                await self._guarded(message.connection, message.frame, self._agent_frame, message)
            case m.Begin():
                await self._guarded(message.connection, message, self._begin, message)
            case m.ResumeMore():
                await self._replay(message.connection, message.after_seq, message.from_seq)
            case (
                m.Offered()
                | m.OfferLapsed()
                | m.Assign()
                | m.TransferLapsed()
                | m.Requeued()
                | m.NoAgents()
                | m.QueueStatus()
                | m.Reannounce()
            ):
                await self._routing_decision(message)
            case m.WrapUpExpired():
                if message.epoch == self.wrap_up_epoch and self.history.state.state is State.WRAP_UP:
                    await self._retry_later(message, self._finish_wrap_up)
            case m.IdleStop():
                if self.history.state.is_closed:
                    self.finish()
            case m.InjectCrash():
                raise RuntimeError("injected crash")
            case _:
                assert_never(message)

    async def _routing_decision(self, message: m.RoutingDecision) -> None:
        match message:
            case m.Offered():
                if self.history.state.state is State.QUEUED:
                    self.history.state.handle(Event.OFFER)
            case m.OfferLapsed():
                if self.history.state.state is State.OFFERED:
                    self.history.state.handle(Event.OFFER_EXPIRED)
            case m.Assign():
                await self._assign(message)
            case m.TransferLapsed():
                await self._transfer_lapsed(message)
            case m.Requeued():
                await self._requeued(message)
            case m.NoAgents():
                await self._no_agents(message)
            case m.QueueStatus():
                self._queue_status(message)
            case m.Reannounce():
                await self._reannounce()
            case _:
                assert_never(message)

    async def _guarded(
        self,
        connection: Outbox,
        frame: object,
        handler: Callable[[_Message], Awaitable[None]],
        message: _Message,
    ) -> None:
        try:
            await handler(message)
        except Refused as refusal:
            ref = getattr(frame, "client_id", None)
            connection.refused(
                ServerError(code=refusal.code, message=str(refusal), ref=ref, retryable=refusal.retryable)
            )
        except Exception:
            # the session crashes and is rebuilt from the log; the sender is not left waiting
            ref = getattr(frame, "client_id", None)
            connection.refused(
                ServerError(
                    code="unavailable", message="internal error; retry with the same client_id", ref=ref, retryable=True
                )
            )
            raise

    async def _retry_later(
        self, message: m.SessionMessage, action: Callable[..., Awaitable[None]], *args: object
    ) -> bool:
        """Run a system-initiated write (assignment, wrap-up end, ...); True when it stored.

        Nobody waits for an ack of these, so when storage is unavailable the message comes
        back to this session through the timer service and is tried again.
        """
        try:
            await action(*args)
        except Refused as refusal:
            if not refusal.retryable:
                log.error(
                    "system event refused", extra={"conversation_id": str(self.conversation_id), "code": refusal.code}
                )
                return False
            log.warning("system event not stored yet; retrying", extra={"conversation_id": str(self.conversation_id)})
            self.center.timers.call_later(SYSTEM_RETRY_SECONDS, self.ref, message)
            return False
        return True

    # -- customer frames -------------------------------------------------------------------

    async def _begin(self, message: m.Begin) -> None:
        connection = message.connection
        # The start is stored as the system's `queued` event, under the customer's client id.
        started = self.history.client_ids.get(("system", None, message.client_id))
        if started is not None:
            self._ack(connection, message.client_id, started)
            await self._replay(connection, 0, 1)
            return
        if self.history.last_seq > 0:
            raise Refused("invalid_field", "this conversation was started with another client_id")
        self.history.waiting_since = None
        event = await self._append(
            "queued",
            {"queue_id": str(self._row.queue_id or self.account_id)},
            sender_role="system",
            sender_id=None,
            client_id=message.client_id,
        )
        self._ack(connection, message.client_id, event.seq)
        await self._replay(connection, 0, 1)
        await self._enqueue()
        await self._record_state()

    async def _customer_frame(self, message: m.CustomerInput) -> None:
        connection, frame = message.connection, message.frame
        row = self._row
        if connection.user_id != row.customer_id:
            await self.center.audit_denial(
                self.account_id, "customer", connection.user_id, frame.TYPE, self.conversation_id
            )
            raise Refused("forbidden", "this conversation belongs to another customer")
        client_id: str | None = getattr(frame, "client_id", None)
        if client_id is not None:
            key = ("customer", str(row.customer_id), client_id)
            stored = self.history.client_ids.get(key)
            if stored is not None:
                self._ack_retry(connection, key, frame, stored)
                return
        if not self.history.state.customer_may_send(frame.TYPE):
            raise Refused(
                "illegal_state", f"{frame.TYPE} is not allowed while the conversation is {self.history.state.state}"
            )
        await self._customer_action(connection, frame, row.customer_id)

    async def _customer_action(self, connection: Outbox, frame: m.CustomerConversationFrame, customer_id: UUID) -> None:
        match frame:
            case SendMessage():
                # No sender_name: the customer's name stays in its (encrypted) record.
                body = await self._message_body(frame, "customer", customer_id)
                event = await self._append(
                    "message", body, sender_role="customer", sender_id=str(customer_id), client_id=frame.client_id
                )
                self._ack(connection, frame.client_id, event.seq)
            case SetTyping():
                data = encode_frame(PeerTyping(str(self.conversation_id), "customer", frame.active))
                self._send_peers(data, role="agent")
            case MarkRead():
                data = encode_frame(
                    PeerRead(str(self.conversation_id), "customer", min(frame.seq, self.history.last_seq))
                )
                self._send_peers(data, role="agent")
            case Resume():
                await self._replay(connection, frame.last_seq, frame.last_seq + 1)
            case CloseConversation():
                await self._customer_close(connection, frame)
            case _:
                assert_never(frame)

    async def _customer_close(self, connection: Outbox, frame: CloseConversation) -> None:
        before = self.history.state.state
        if before is State.WRAP_UP:
            self._ack(connection, frame.client_id, self.history.closed_seq)
            return
        event = await self._append(
            "closed",
            {"reason": "customer_left"},
            sender_role="customer",
            sender_id=str(self._row.customer_id),
            client_id=frame.client_id,
        )
        self._ack(connection, frame.client_id, event.seq)
        await self._after_close(before)

    async def _after_close(self, before: State) -> None:
        if before in (State.QUEUED, State.OFFERED, State.TRANSFERRING):
            await self.center.tell_dispatcher(m.Withdraw(self.account_id, self.conversation_id, "closed"))
        if self.history.state.state is State.WRAP_UP:
            self._start_wrap_up_timer()
            agent = self.center.agent(self.history.agent_id) if self.history.agent_id else None
            if agent is not None:
                await agent.ref.tell(m.WrapUpStarted(self.conversation_id, self.center.settings.wrap_up_seconds))
        await self._record_state()
        if self.history.state.is_closed:
            self.center.timers.call_later(CLOSED_IDLE_SECONDS, self.ref, m.IdleStop())

    async def _message_body(self, frame: SendMessage, sender_role: str, sender_id: UUID) -> dict[str, Any]:
        body: dict[str, Any] = {"message_kind": frame.kind}
        if frame.text is not None:
            body["text"] = frame.text
        if frame.attachment_id is not None:
            # Only the sender's own uploads: an id never lets one customer see another's file.
            kind = await self.center.storage.attachment_kind(self.account_id, frame.attachment_id, sender_id)
            if kind is None:
                await self.center.audit_denial(
                    self.account_id,
                    sender_role,
                    sender_id,
                    "message.send",
                    frame.attachment_id,
                    target_type="attachment",
                )
                raise Refused("not_found", "no such attachment")
            if kind != frame.kind:
                raise Refused("invalid_field", f"attachment {frame.attachment_id} is a {kind}, not a {frame.kind}")
            body["attachment_id"] = frame.attachment_id
        return body

    # -- agent frames ------------------------------------------------------------------------

    async def _agent_frame(self, message: m.AgentInput) -> None:
        connection, frame = message.connection, message.frame
        is_holder = self.history.agent_id == message.agent_id and self.history.state.is_held
        if isinstance(frame, Resume):
            await self._agent_resume(message, frame, is_holder=is_holder)
            return
        if isinstance(frame, MarkRead) and not is_holder and message.agent_id in self.history.assignees:
            return  # reading a conversation one no longer holds tells the customer nothing
        client_id: str | None = getattr(frame, "client_id", None)
        key = None if client_id is None else ("agent", str(message.agent_id), client_id)
        stored = None if key is None else self.history.client_ids.get(key)
        if not is_holder:
            if key is not None and stored is not None and message.agent_id in self.history.assignees:
                self._ack_retry(connection, key, frame, stored)
                return
            await self.center.audit_denial(
                self.account_id, message.role, message.agent_id, frame.TYPE, self.conversation_id
            )
            raise Refused("forbidden", "this conversation is not yours")
        if key is not None and stored is not None:
            self._ack_retry(connection, key, frame, stored)
            return
        if not self.history.state.agent_may_send(frame.TYPE):
            raise Refused(
                "illegal_state", f"{frame.TYPE} is not allowed while the conversation is {self.history.state.state}"
            )
        await self._agent_action(message, frame)

    async def _agent_resume(self, message: m.AgentInput, frame: Resume, *, is_holder: bool) -> None:
        """An agent reads the conversation: its holder, a former holder, the agent a transfer
        offers it to, or whoever may read every conversation (rule 5)."""
        agent_id = message.agent_id
        if not (
            is_holder
            or agent_id in self.history.assignees
            or agent_id == self.history.transfer_to
            or Permission.CONVERSATIONS_READ_ALL in message.permissions
        ):
            await self.center.audit_denial(self.account_id, message.role, agent_id, "resume", self.conversation_id)
            raise Refused("forbidden", "this conversation is not yours")
        await self._replay(message.connection, frame.last_seq, frame.last_seq + 1)

    async def _agent_action(self, message: m.AgentInput, frame: AgentAction) -> None:
        connection = message.connection
        match frame:
            case SendMessage():
                body = await self._message_body(frame, message.role, message.agent_id)
                body["sender_name"] = message.agent_name
                event = await self._append(
                    "message", body, sender_role="agent", sender_id=str(message.agent_id), client_id=frame.client_id
                )
                self._ack(connection, frame.client_id, event.seq)
            case AddNote():
                body = {"text": frame.text, "sender_name": message.agent_name}
                event = await self._append(
                    "note", body, sender_role="agent", sender_id=str(message.agent_id), client_id=frame.client_id
                )
                self._ack(connection, frame.client_id, event.seq)
            case SetTyping():
                data = encode_frame(PeerTyping(str(self.conversation_id), "agent", frame.active))
                self._send_peers(data, role="customer")
            case MarkRead():
                data = encode_frame(PeerRead(str(self.conversation_id), "agent", min(frame.seq, self.history.last_seq)))
                self._send_peers(data, role="customer")
            case Transfer():
                await self._transfer(message, frame)
            case CloseConversation():
                await self._agent_close(message, frame)
            case _:
                assert_never(frame)

    async def _agent_close(self, message: m.AgentInput, frame: CloseConversation) -> None:
        sender_id = str(message.agent_id)
        before = self.history.state.state
        if before is State.WRAP_UP:
            await self._agent_wraps_up(message, frame)
            return
        event = await self._append(
            "closed",
            {"reason": "agent_closed", "sender_name": message.agent_name},
            sender_role="agent",
            sender_id=sender_id,
            client_id=frame.client_id,
        )
        self._ack(message.connection, frame.client_id, event.seq)
        if frame.wrap_up_code is not None:
            await self._append(
                "wrapped_up", {"wrap_up_code": frame.wrap_up_code}, sender_role="agent", sender_id=sender_id
            )
            if before is State.TRANSFERRING:
                await self.center.tell_dispatcher(m.Withdraw(self.account_id, self.conversation_id, "closed"))
            await self._released()
        else:
            await self._after_close(before)

    async def _agent_wraps_up(self, message: m.AgentInput, frame: CloseConversation) -> None:
        """`conversation.close` in wrap-up: with a wrap-up code it ends the conversation."""
        if frame.wrap_up_code is None:
            self._ack(message.connection, frame.client_id, self.history.closed_seq)
            return
        event = await self._append(
            "wrapped_up",
            {"wrap_up_code": frame.wrap_up_code},
            sender_role="agent",
            sender_id=str(message.agent_id),
            client_id=frame.client_id,
        )
        self._ack(message.connection, frame.client_id, event.seq)
        await self._released()

    async def _transfer(self, message: m.AgentInput, frame: Transfer) -> None:
        if frame.to_agent_id is not None:
            await self._transfer_to_agent(message, frame, frame.to_agent_id)
        else:
            await self._transfer_to_department(message, frame)

    async def _transfer_to_agent(self, message: m.AgentInput, frame: Transfer, to_agent_id: str) -> None:
        to_agent = uuid_or_none(to_agent_id)
        if to_agent is None or to_agent == message.agent_id:
            raise Refused("invalid_field", "to_agent_id must be another agent's id")
        profile = await self.center.storage.agent_profile(to_agent)
        if profile is None or profile.account_id != self.account_id:
            raise Refused("not_found", "no such agent")
        body: dict[str, Any] = {"from_agent_id": str(message.agent_id), "to_agent_id": str(to_agent)}
        if frame.note:
            body["text"] = frame.note
        event = await self._append(
            "transferred", body, sender_role="agent", sender_id=str(message.agent_id), client_id=frame.client_id
        )
        self._ack(message.connection, frame.client_id, event.seq)
        await self.center.tell_dispatcher(
            m.TransferToAgent(self.account_id, self.conversation_id, message.agent_id, to_agent, self._summary())
        )

    async def _transfer_to_department(self, message: m.AgentInput, frame: Transfer) -> None:
        department = uuid_or_none(frame.to_department_id)
        queue_id = await self.center.storage.queue_for_department(self.account_id, department) if department else None
        if queue_id is None:
            raise Refused("not_found", "no such department")
        body: dict[str, Any] = {"from_agent_id": str(message.agent_id), "to_department_id": str(department)}
        if frame.note:
            body["text"] = frame.note
        event = await self._append(
            "transferred", body, sender_role="agent", sender_id=str(message.agent_id), client_id=frame.client_id
        )
        self._ack(message.connection, frame.client_id, event.seq)
        await self._let_go(message.agent_id)
        await self._append("queued", {"queue_id": str(queue_id)}, sender_role="system", sender_id=None)
        await self._enqueue()
        await self._record_state()

    # -- dispatcher decisions ------------------------------------------------------------------

    async def _assign(self, message: m.Assign) -> None:
        state = self.history.state.state
        if state is State.QUEUED:
            self.history.state.handle(Event.OFFER)
        elif state not in (State.OFFERED, State.TRANSFERRING):
            # The conversation ended meanwhile: give the slot back.
            await self.center.tell_dispatcher(m.Released(self.account_id, message.agent_id, self.conversation_id))
            return
        previous = self.history.agent_id if state is State.TRANSFERRING else None
        if not await self._retry_later(message, self._append_assigned, message):
            return
        if previous is not None and previous != message.agent_id:
            await self._let_go(previous)
        agent = self.center.agent(message.agent_id)
        if agent is not None:
            await agent.ref.tell(m.Held(self.conversation_id))
            # The new holder's open tabs get the conversation from its start, then live.
            for connection in await agent.connections():
                await self._replay(connection, 0, 1)
        await self._record_state()

    async def _append_assigned(self, message: m.Assign) -> None:
        body = {"agent_id": str(message.agent_id), "sender_name": message.agent_name}
        await self._append("assigned", body, sender_role="agent", sender_id=str(message.agent_id))

    async def _transfer_lapsed(self, message: m.TransferLapsed) -> None:
        if self.history.state.state is not State.TRANSFERRING or self.history.transfer_to != message.to_agent_id:
            return
        await self._retry_later(message, self._append_system_note, f"transfer {message.reason}", message.reason)

    async def _append_system_note(self, text: str, outcome: str) -> None:
        await self._append("note", {"text": text, "transfer_outcome": outcome}, sender_role="system", sender_id=None)

    async def _requeued(self, message: m.Requeued) -> None:
        if self.history.state.state is not State.QUEUED:
            return
        self.history.queue_id = message.queue_id
        if await self._retry_later(message, self._append_queued, message.queue_id):
            await self._record_state()

    async def _append_queued(self, queue_id: UUID) -> None:
        await self._append(
            "queued", {"queue_id": str(queue_id), "reason": "overflow"}, sender_role="system", sender_id=None
        )

    async def _no_agents(self, message: m.NoAgents) -> None:
        if self.history.told_no_agents or self.history.state.state is not State.QUEUED:
            return
        if await self._retry_later(message, self._append_system_text, message.text):
            self.history.told_no_agents = True

    async def _append_system_text(self, text: str) -> None:
        await self._append("system", {"text": text}, sender_role="system", sender_id=None)

    def _queue_status(self, message: m.QueueStatus) -> None:
        if self.history.state.state not in (State.QUEUED, State.OFFERED):
            return
        position = (message.position, message.estimated_wait_seconds)
        if position == self.last_position:
            return
        self.last_position = position
        data = encode_frame(QueuePosition(str(self.conversation_id), message.position, message.estimated_wait_seconds))
        self._send_peers(data, role="customer")

    # -- wrap-up and release ---------------------------------------------------------------------

    def _start_wrap_up_timer(self) -> None:
        self.wrap_up_epoch += 1
        if self.wrap_up_timer is not None:
            self.wrap_up_timer.cancel()
        seconds = self.center.settings.wrap_up_seconds
        if self.history.closed_at is not None:
            seconds -= (datetime.now(UTC) - self.history.closed_at).total_seconds()
        self.wrap_up_timer = self.center.timers.call_later(seconds, self.ref, m.WrapUpExpired(self.wrap_up_epoch))

    async def _finish_wrap_up(self) -> None:
        sender_id = str(self.history.agent_id) if self.history.agent_id else None
        await self._append("wrapped_up", {"reason": "timeout"}, sender_role="system", sender_id=sender_id)
        await self._released()

    async def _released(self) -> None:
        if self.wrap_up_timer is not None:
            self.wrap_up_timer.cancel()
            self.wrap_up_timer = None
        if self.history.agent_id is not None:
            await self._let_go(self.history.agent_id)
        await self._record_state()
        self.center.timers.call_later(CLOSED_IDLE_SECONDS, self.ref, m.IdleStop())

    async def _let_go(self, agent_id: UUID) -> None:
        """`agent_id` stops holding the conversation: free its slot and detach its sockets."""
        await self.center.tell_dispatcher(m.Released(self.account_id, agent_id, self.conversation_id))
        agent = self.center.agent(agent_id)
        if agent is not None:
            await agent.ref.tell(m.Let(self.conversation_id))
        subscribers = self.subscribers
        for connection in [c for c in subscribers if c.role == "agent" and c.user_id == agent_id]:
            subscribers.discard(connection)

    # -- routing helpers -------------------------------------------------------------------------

    def _summary(self) -> CustomerSummary:
        row = self._row
        return CustomerSummary(
            customer_id=str(row.customer_id),
            channel=row.channel,
            display_name=row.customer_name,
            level=row.customer_level,
            topic=None if row.topic is None else mask_text(row.topic),
            # Agents see the summary before any permission check: numbers and addresses masked.
            preview=None if self.history.preview is None else mask_text(self.history.preview),
        )

    async def _reannounce(self) -> None:
        """A new dispatcher incarnation: ask again for what the dead one was doing for us.

        An offer it made died with it (it revoked it from the agent), so a conversation
        under offer waits again; a transfer offer is asked for again."""
        state = self.history.state.state
        if state is State.OFFERED:
            state = self.history.state.handle(Event.OFFER_EXPIRED)
        if state is State.QUEUED and self.history.last_seq > 0:
            self.last_position = None
            await self._enqueue()
        elif state is State.TRANSFERRING and self.history.transfer_to is not None and self.history.agent_id is not None:
            await self.center.tell_dispatcher(
                m.TransferToAgent(
                    self.account_id,
                    self.conversation_id,
                    self.history.agent_id,
                    self.history.transfer_to,
                    self._summary(),
                )
            )

    async def _enqueue(self) -> None:
        row = self._row
        queue_id = self.history.queue_id or row.queue_id or self.account_id
        self.history.queue_id = queue_id
        await self.center.tell_dispatcher(
            m.Enqueue(
                self.account_id,
                self.conversation_id,
                queue_id,
                self.history.waiting_since or datetime.now(UTC),
                self._summary(),
                row.customer_level,
            )
        )

    async def _record_state(self) -> None:
        try:
            await self.center.storage.record_state(
                self.conversation_id,
                status=self.history.state.state.value,
                agent_id=self.history.agent_id,
                queue_id=self.history.queue_id,
                last_seq=self.history.last_seq,
            )
        except Exception:
            # The conversations row is an index; the event log is the truth and the next
            # state change (or a restart) writes it again.
            log.warning("could not record conversation state", extra={"conversation_id": str(self.conversation_id)})

    # -- replay ----------------------------------------------------------------------------------

    async def _replay(self, connection: Outbox, after_seq: int, from_seq: int) -> None:
        """Send the events after `after_seq` as the connection has room, then `resumed`, then join.

        A replay never overfills the connection's buffer: it sends what fits (a page at
        most), and comes back through the timer service when the client has read some.
        The connection joins the live stream only once the replay is complete, so live
        events follow the replay and never repeat or overtake it.
        """
        if connection.closed:
            return
        self.subscribers.discard(connection)
        after_seq = min(after_seq, self.history.last_seq)
        if after_seq < self.history.last_seq and not await self._replay_page(connection, after_seq, from_seq):
            return
        connection.send(encode_frame(Resumed(str(self.conversation_id), from_seq, self.history.last_seq)))
        self.subscribers.add(connection)
        if connection.role == "customer" and self.last_position is not None:
            if self.history.state.state in (State.QUEUED, State.OFFERED):
                # a customer who comes back while waiting hears its place at once
                position, estimate = self.last_position
                connection.send(encode_frame(QueuePosition(str(self.conversation_id), position, estimate)))

    async def _replay_page(self, connection: Outbox, after_seq: int, from_seq: int) -> bool:
        """Send the next page of a replay; True when it reached `last_seq` (the replay is complete)."""
        room = connection.room() - REPLAY_HEADROOM
        if room <= 0:
            self.center.timers.call_later(REPLAY_WAIT_SECONDS, self.ref, m.ResumeMore(connection, after_seq, from_seq))
            return False
        page_size = self.center.settings.resume_page_size
        try:
            events = await self.center.storage.events_after(self.conversation_id, after_seq, min(page_size, room))
        except Exception as error:
            message = f"cannot read the history now: {error.__class__.__name__}"
            connection.refused(ServerError(code="unavailable", message=message, retryable=True))
            return False
        for_customer = connection.role == "customer"
        for event in events:
            if for_customer and event.kind in AGENT_ONLY_KINDS:
                continue
            if not connection.send(self._event_bytes(event, connection)):
                return False
        if events and events[-1].seq < self.history.last_seq:
            delay = 0.0 if len(events) == page_size else REPLAY_WAIT_SECONDS
            self.center.timers.call_later(delay, self.ref, m.ResumeMore(connection, events[-1].seq, from_seq))
            return False
        return True
