"""Agent: one actor per signed-in agent.

Theory of operation
-------------------
The Agent actor owns what is personal to an agent: the status the agent chose (online,
break with a reason, offline), the conversations it holds, the ones in wrap-up, and its
open connections (one per browser tab). From these it derives its presence (``wrap_up``
while an online agent does after-contact work) and its availability for offers, and
tells the dispatcher about every change, so the dispatcher (the one writer of
assignments) never offers work to an agent who is away, on break or disconnected.
Capacity slots themselves are counted by the dispatcher, which reserves one before it
makes an offer.

Ownership
---------
The Agent actor is the one writer of the agent's status, its capacity (its profile), its
wrap-up deadlines and its open connections: the dispatcher, the sessions and the edge never
touch them, they tell the actor (`AgentHandle`'s methods) and ask it (`ListConnections`).
The dispatcher's frames for the agent (offers, revoked offers) go through the actor too
(`Deliver`). What must survive a crash of the actor (the connections with their sign-in
sessions, the chosen status, the wrap-up deadlines) is kept in `AgentKept`, which one
incarnation hands to the next as it hands over the mailbox; nothing else writes it (and
only `AgentHandle.sign_out_nowait` reads it, when the actor cannot be told).

Mailbox: `kefu.actors.center.AGENT_MAILBOX_CAPACITY` messages (`AgentMessage`). The edge and
the sessions `tell` (they wait for room); the dispatcher and the timers never wait: a
`Deliver` that finds the mailbox full is dropped and logged (an offer then expires as
missed, a revoked one is answered ``offer_gone`` if taken), a `MissedOffers` or `Denied` is
dropped and logged, a timer is retried; a `SignedOut` that finds it full closes the
session's sockets at once (`AgentHandle.sign_out_nowait`).

Rules
-----
1. Every connection of the agent gets every ``status`` frame; a new one also gets the
   list of held conversations to resume.
2. An agent is available only when online and connected. When its last tab closes it keeps
   the status it chose for `reconnect_grace_seconds` (30 s: a page reload keeps it online),
   but gets no offers and is reported ``offline`` to supervisors until a tab is back; if
   none is back by then, its status becomes ``offline``. Wrap-up is per conversation,
   as in the omnichannel routers of the trade: a conversation in wrap-up keeps its
   capacity slot until the wrap-up ends, so an agent with capacity 1 gets no offer
   meanwhile, and one with capacity 3 can take two more chats while it writes its notes.
   (Making the whole agent unavailable instead would also withdraw every offer pending to
   it each time one of its chats ended.)
3. Sign-out closes the sockets of that session, disabling and a role change (which
   revoke every session) all of the agent's (close code 1008); a department change only
   reloads the profile (the access checks read departments live, so nothing reconnects).
4. The actor stops when the agent is offline with no connection and nothing held.
5. A new dispatcher or aggregator incarnation knows nothing: on `Reannounce` the agent
   publishes its whole state again (status, availability, the conversations it holds).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, assert_never
from uuid import UUID

import trio

from kefu.actors import messages as m
from kefu.actors.deadlines import Timer
from kefu.actors.ports import AgentProfile, Outbox
from kefu.actors.runtime import Actor, ActorCrashed, ActorRef, ActorStopped, AskTimeout, Mailbox, MailboxFull
from kefu.protocol import encode_frame
from kefu.protocol.errors import CLOSE_POLICY_VIOLATION as CLOSE_POLICY
from kefu.protocol.masking import mask_text
from kefu.protocol.server import AgentStatus, ConversationList, ConversationSummary

if TYPE_CHECKING:
    from kefu.actors.center import ContactCenter

log = logging.getLogger("kefu.agent")

ASK_AGENT_SECONDS = 5.0
"""How long `AgentHandle.connections` waits for the Agent actor's answer (then: no connections)."""


@dataclass(eq=False, slots=True)
class AgentKept:
    """What one Agent incarnation hands to the next, as the mailbox is handed over, so a crash
    of the actor neither logs the agent out nor changes its status, nor forgets which socket
    belongs to which sign-in session. Read and written by the Agent actor alone (and read by
    `AgentHandle.sign_out_nowait` when the actor cannot be told)."""

    tabs: dict[Outbox, bytes | None] = field(default_factory=dict)
    """The agent's open connections (one per browser tab), each with the SHA-256 of the sign-in
    token it was opened with, so that signing out one session closes that session's sockets."""
    status: str = "offline"
    """The status the agent chose: ``online``, ``break`` or ``offline``."""
    reason: str | None = None
    """The reason of a ``break``."""
    wrap_up: dict[UUID, float] = field(default_factory=dict)
    """Conversations in wrap-up, with the (trio clock) time each wrap-up ends."""


@dataclass(frozen=True, eq=False, slots=True)
class AgentHandle:
    """How the dispatcher, the sessions and the edge reach one agent's actor: its identity and
    its mailbox (which outlive every incarnation), and methods that send it messages."""

    account_id: UUID
    agent_id: UUID
    mailbox: Mailbox[m.AgentMessage]
    kept: AgentKept = field(default_factory=AgentKept, repr=False)
    """The Agent actor's own (see `AgentKept`): only it writes it; `sign_out_nowait` reads its
    tabs when the actor cannot be told (a full mailbox)."""

    @property
    def ref(self) -> ActorRef[m.AgentMessage]:
        return self.mailbox.ref

    async def tell(self, message: m.AgentMessage) -> None:
        """Tell the actor, waiting for room in its mailbox."""
        await self.mailbox.ref.tell(message)

    def tell_nowait(self, message: m.AgentMessage) -> None:
        """Tell the actor or raise `MailboxFull` at once."""
        self.mailbox.ref.tell_nowait(message)

    def deliver_nowait(self, frame: bytes) -> None:
        """Have `frame` sent to every tab of the agent, never waiting (a full mailbox drops it)."""
        try:
            self.mailbox.ref.tell_nowait(m.Deliver(frame))
        except MailboxFull:
            log.warning("agent busy: a frame for its tabs was dropped", extra={"agent_id": str(self.agent_id)})
        except ActorStopped:
            pass  # it stops only with no tab open

    def sign_out_nowait(self, session_token_hash: bytes | None) -> None:
        """A sign-in session was revoked (None: every session of the agent): close its sockets.

        Never waits: when the mailbox is full the sockets are closed at once (they are the edge's
        objects; the actor hears `Disconnected` for each as their handlers end)."""
        try:
            self.mailbox.ref.tell_nowait(m.SignedOut(session_token_hash))
        except MailboxFull:
            for connection, token_hash in list(self.kept.tabs.items()):
                if session_token_hash is None or token_hash == session_token_hash:
                    connection.close(CLOSE_POLICY, "signed out")
        except ActorStopped:
            pass

    async def show_contact_details(self, sees: bool) -> None:
        """Have the actor set whether the agent's open tabs see contact details as written, and
        wait until it has (a change applies to open sockets at once); logged if it cannot."""
        try:
            await self.mailbox.ref.ask(partial(m.ContactDetailsVisibility, sees), timeout=ASK_AGENT_SECONDS)
        except (AskTimeout, ActorStopped, ActorCrashed):
            log.warning("agent did not apply a contact details change", extra={"agent_id": str(self.agent_id)})

    async def connections(self) -> frozenset[Outbox]:
        """The agent's open connections now, as the actor answers (none if it cannot)."""
        try:
            return await self.mailbox.ref.ask(m.ListConnections, timeout=ASK_AGENT_SECONDS)
        except (AskTimeout, ActorStopped, ActorCrashed):
            log.warning("agent did not list its connections", extra={"agent_id": str(self.agent_id)})
            return frozenset()


class Agent(Actor[m.AgentMessage]):
    def __init__(self, handle: AgentHandle, center: ContactCenter) -> None:
        super().__init__(handle.mailbox)
        self.center = center
        self.agent_id = handle.agent_id
        self.account_id = handle.account_id
        self.kept = handle.kept
        self.profile: AgentProfile | None = None
        self.held: set[UUID] = set()
        self._last_update: tuple[Any, ...] | None = None
        self._grace: Timer | None = None
        """The timer that ends the reconnect grace, while no tab is connected."""
        self._grace_ends: float | None = None

    async def run(self, stop_requested: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await self.started()
        task_status.started(self.ref)
        await self.message_loop(stop_requested)
        if not stop_requested.is_set():
            self.center.agent_ended(self.agent_id)
            await self.center.tell_dispatcher(m.AgentLeft(self.account_id, self.agent_id))

    async def started(self) -> None:
        storage = self.center.storage
        self.profile = await storage.agent_profile(self.agent_id)
        if self.profile is None:
            raise LookupError(f"agent {self.agent_id} does not exist")
        self.held = set(await storage.held_conversations(self.agent_id))
        if not self.connected:
            self._start_grace()  # restarted while no tab was connected
        await self._publish(force=True)

    # -- derived state ---------------------------------------------------------------------

    @property
    def status(self) -> str:
        return self.kept.status

    @property
    def reason(self) -> str | None:
        return self.kept.reason

    def _set_status(self, status: str, reason: str | None = None) -> None:
        self.kept.status = status
        self.kept.reason = reason if status == "break" else None

    @property
    def presence(self) -> str:
        if self.status == "online" and self.kept.wrap_up:
            return "wrap_up"
        return self.status

    @property
    def connected(self) -> bool:
        return any(not c.closed for c in self.kept.tabs)

    @property
    def available(self) -> bool:
        return self.status == "online" and self.connected

    def _start_grace(self) -> None:
        if self.status == "offline" or self._grace_ends is not None:
            return
        seconds = self.center.settings.reconnect_grace_seconds
        self._grace_ends = trio.current_time() + seconds
        self._grace = self.center.timers.call_later(seconds, self.ref, m.ReconnectGraceOver())

    def _end_grace(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
        self._grace = None
        self._grace_ends = None

    def _status_frame(self) -> bytes:
        profile = self.profile
        assert profile is not None
        wrap_up_seconds = None
        if self.presence == "wrap_up":
            wrap_up_seconds = max(0, int(max(self.kept.wrap_up.values()) - trio.current_time() + 0.999))
        return encode_frame(
            AgentStatus(
                status=self.presence,  # type: ignore[arg-type]
                active_conversations=len(self.held),
                capacity=profile.capacity,
                reason=self.reason if self.status == "break" else None,
                wrap_up_seconds=wrap_up_seconds,
            )
        )

    def _broadcast(self, data: bytes) -> None:
        """Send `data` to every tab; a tab that was cut off or closed is forgotten."""
        tabs = self.kept.tabs
        for connection in list(tabs):
            if not connection.send(data):
                del tabs[connection]

    async def _publish(self, *, force: bool = False) -> None:
        """Tell the dispatcher, the aggregator and every tab when anything changed."""
        profile = self.profile
        assert profile is not None
        connected = self.connected
        update = (self.presence, self.reason, self.available, connected, len(self.held), profile)
        if update == self._last_update and not force:
            return
        # what the tabs see does not include whether a tab is connected
        seen_by_tabs = update[:3] + update[4:] != (self._last_update or ())[:3] + (self._last_update or ())[4:]
        self._last_update = update
        await self.center.tell_dispatcher(m.AgentUpdate(profile, self.available, len(self.held), frozenset(self.held)))
        # Supervisors see an agent with no tab connected as offline (it gets no offers),
        # also while it keeps its status for a reconnect.
        presence = self.presence if connected else "offline"
        self.center.agent_changed(profile, presence, self.reason if presence == "break" else None, len(self.held))
        if force or seen_by_tabs:
            self._broadcast(self._status_frame())

    # -- messages ----------------------------------------------------------------------------

    async def handle(self, message: m.AgentMessage) -> None:
        match message:
            case (
                m.Connected()
                | m.Disconnected()
                | m.ReconnectGraceOver()
                | m.SignedOut()
                | m.Deliver()
                | m.ListConnections()
                | m.ContactDetailsVisibility()
            ):
                await self._on_tabs(message)
            case (
                m.ChangeStatus()
                | m.Held()
                | m.WrapUpStarted()
                | m.Let()
                | m.MissedOffers()
                | m.ProfileChanged()
                | m.Denied()
                | m.Reannounce()
                | m.InjectCrash()
            ):
                await self._on_work(message)
            case _:
                assert_never(message)

    async def _on_tabs(self, message: m.AgentTabMessage) -> None:
        match message:
            case m.Deliver(frame):
                self._broadcast(frame)
            case m.Connected():
                await self._connected(message)
            case m.Disconnected(connection):
                await self._disconnected(connection)
            case m.ReconnectGraceOver():
                await self._grace_over()
            case m.SignedOut(session_token_hash):
                await self._signed_out(session_token_hash)
            case m.ListConnections(reply):
                reply.set(frozenset(self.kept.tabs))
            case m.ContactDetailsVisibility(sees, reply):
                for connection in self.kept.tabs:
                    connection.sees_contact_details = sees
                reply.set(None)
            case _:
                assert_never(message)

    async def _on_work(self, message: m.AgentWorkMessage) -> None:
        match message:
            case m.Held(conversation_id):
                self.held.add(conversation_id)
                await self._publish()
            case m.WrapUpStarted(conversation_id, seconds):
                self.kept.wrap_up[conversation_id] = trio.current_time() + seconds
                await self._publish(force=True)
            case m.Let(conversation_id):
                self.held.discard(conversation_id)
                self.kept.wrap_up.pop(conversation_id, None)
                await self._publish()
                self._maybe_stop()
            case m.ChangeStatus(status, reason):
                self._set_status(status, reason)
                await self._publish(force=True)
                self._maybe_stop()
            case m.MissedOffers():
                await self._missed_offers()
            case m.ProfileChanged():
                await self._reload_profile()
            case m.Denied():
                await self._audit_denial(message)
            case m.Reannounce():
                await self._publish(force=True)
            case m.InjectCrash():
                raise RuntimeError("injected crash")
            case _:
                assert_never(message)

    # -- the agent's tabs ------------------------------------------------------------------------

    async def _connected(self, message: m.Connected) -> None:
        self.kept.tabs[message.connection] = message.session_token_hash
        self._end_grace()
        await self._greet(message.connection)
        await self._publish()

    async def _disconnected(self, connection: Outbox) -> None:
        self.kept.tabs.pop(connection, None)
        if not self.connected:
            self._start_grace()
        await self._publish()
        self._maybe_stop()

    async def _grace_over(self) -> None:
        ends = self._grace_ends
        if ends is None or trio.current_time() < ends or self.connected:
            return
        self._end_grace()
        self._set_status("offline")
        log.info("agent offline: no tab came back", extra={"agent_id": str(self.agent_id)})
        await self._publish(force=True)
        self._maybe_stop()

    async def _signed_out(self, session_token_hash: bytes | None) -> None:
        tabs = self.kept.tabs
        for connection, token_hash in list(tabs.items()):
            if session_token_hash is None or token_hash == session_token_hash:
                connection.close(CLOSE_POLICY, "signed out")
                del tabs[connection]
        if session_token_hash is None:
            self._set_status("offline")
        await self._publish()
        self._maybe_stop()

    async def _greet(self, connection: Outbox) -> None:
        """A new tab: its status, and the held conversations it should resume."""
        summaries = []
        for conversation_id in sorted(self.held):
            summary = await self._summary(conversation_id, connection)
            if summary is not None:
                summaries.append(summary)
        connection.send(encode_frame(ConversationList(tuple(summaries))))
        connection.send(self._status_frame())

    async def _summary(self, conversation_id: UUID, connection: Outbox) -> ConversationSummary | None:
        storage = self.center.storage
        row = await storage.conversation(conversation_id)
        if row is None:
            return None
        return ConversationSummary(
            conversation_id=str(conversation_id),
            state="wrap_up" if conversation_id in self.kept.wrap_up else "assigned",
            last_seq=await storage.last_seq(conversation_id),
            customer_id=str(row.customer_id),
            channel=row.channel,
            queue_id=str(row.queue_id) if row.queue_id else None,
            agent_id=str(self.agent_id),
            topic=row.topic if row.topic is None or connection.sees_contact_details else mask_text(row.topic),
            display_name=row.customer_name,
        )

    # -- status, profile, audit -------------------------------------------------------------------

    async def _missed_offers(self) -> None:
        if self.status != "online":
            return
        self._set_status("break", "missed_offers")
        log.info("agent put on break after missed offers", extra={"agent_id": str(self.agent_id)})
        await self._publish(force=True)

    async def _reload_profile(self) -> None:
        profile = await self.center.storage.agent_profile(self.agent_id)
        if profile is not None:
            self.profile = profile
        await self._publish()

    async def _audit_denial(self, message: m.Denied) -> None:
        profile = self.profile
        assert profile is not None  # read in `started`
        await self.center.audit_denial(
            self.account_id,
            profile.role,
            self.agent_id,
            message.action,
            message.target_id,
            target_type=message.target_type,
        )

    def _maybe_stop(self) -> None:
        if self.status == "offline" and not self.held and not self.connected:
            self._end_grace()
            self.finish()
