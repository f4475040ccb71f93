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
from typing import Any
from uuid import UUID

import trio

from kefu.actors import messages as m
from kefu.actors.center import ContactCenter
from kefu.actors.ports import AgentHandle, AgentProfile, Outbox
from kefu.actors.runtime import Actor
from kefu.protocol import encode_frame
from kefu.protocol.errors import CLOSE_POLICY_VIOLATION as CLOSE_POLICY
from kefu.protocol.masking import mask_text
from kefu.protocol.server import AgentStatus, ConversationList, ConversationSummary

log = logging.getLogger("kefu.agent")


class Agent(Actor[Any]):
    def __init__(self, handle: AgentHandle, center: ContactCenter) -> None:
        super().__init__(handle.mailbox)
        self.shared = handle
        self.center = center
        self.agent_id = handle.agent_id
        self.account_id = handle.account_id
        self.profile: AgentProfile | None = None
        self.held: set[UUID] = set()
        self.wrap_up = handle.wrap_up
        self.tokens = handle.session_tokens
        self._last_update: tuple[Any, ...] | None = None
        self._grace: Any = None
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

    @property
    def status(self) -> str:
        return self.shared.status

    @status.setter
    def status(self, value: str) -> None:
        self.shared.status = value

    @property
    def reason(self) -> str | None:
        return self.shared.reason

    @reason.setter
    def reason(self, value: str | None) -> None:
        self.shared.reason = value

    # -- derived state ---------------------------------------------------------------------

    @property
    def presence(self) -> str:
        if self.status == "online" and self.wrap_up:
            return "wrap_up"
        return self.status

    @property
    def connected(self) -> bool:
        return any(not c.closed for c in self.shared.connections)

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
            wrap_up_seconds = max(0, int(max(self.wrap_up.values()) - trio.current_time() + 0.999))
        return encode_frame(
            AgentStatus(
                status=self.presence,  # type: ignore[arg-type]
                active_conversations=len(self.held),
                capacity=profile.capacity,
                reason=self.reason if self.status == "break" else None,
                wrap_up_seconds=wrap_up_seconds,
            )
        )

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
            self.shared.broadcast(self._status_frame())

    # -- messages ----------------------------------------------------------------------------

    async def handle(self, message: Any) -> None:
        if isinstance(message, m.Connected):
            self.shared.connections.add(message.connection)
            self.tokens[message.connection] = message.session_token_hash
            self._end_grace()
            await self._greet(message.connection)
            await self._publish()
        elif isinstance(message, m.Disconnected):
            self.shared.connections.discard(message.connection)
            self.tokens.pop(message.connection, None)
            if not self.connected:
                self._start_grace()
            await self._publish()
            self._maybe_stop()
        elif isinstance(message, m.ReconnectGraceOver):
            ends = self._grace_ends
            if ends is not None and trio.current_time() >= ends and not self.connected:
                self._end_grace()
                self.status = "offline"
                self.reason = None
                log.info("agent offline: no tab came back", extra={"agent_id": str(self.agent_id)})
                await self._publish(force=True)
                self._maybe_stop()
        elif isinstance(message, m.ChangeStatus):
            self.status = message.status
            self.reason = message.reason if message.status == "break" else None
            await self._publish(force=True)
            self._maybe_stop()
        elif isinstance(message, m.Held):
            self.held.add(message.conversation_id)
            await self._publish()
        elif isinstance(message, m.WrapUpStarted):
            self.wrap_up[message.conversation_id] = trio.current_time() + message.seconds
            await self._publish(force=True)
        elif isinstance(message, m.Let):
            self.held.discard(message.conversation_id)
            self.wrap_up.pop(message.conversation_id, None)
            await self._publish()
            self._maybe_stop()
        elif isinstance(message, m.MissedOffers):
            if self.status == "online":
                self.status = "break"
                self.reason = "missed_offers"
                log.info("agent put on break after missed offers", extra={"agent_id": str(self.agent_id)})
                await self._publish(force=True)
        elif isinstance(message, m.SignedOut):
            for connection, token_hash in list(self.tokens.items()):
                if message.session_token_hash is None or token_hash == message.session_token_hash:
                    connection.close(CLOSE_POLICY, "signed out")
                    self.shared.connections.discard(connection)
                    self.tokens.pop(connection, None)
            if message.session_token_hash is None:
                self.status = "offline"
            await self._publish()
            self._maybe_stop()
        elif isinstance(message, m.ProfileChanged):
            profile = await self.center.storage.agent_profile(self.agent_id)
            if profile is not None:
                self.profile = profile
            await self._publish()
        elif isinstance(message, m.Denied):
            profile = self.profile
            role = profile.role if profile is not None else "agent"
            await self.center.audit_denial(
                self.account_id, role, self.agent_id, message.action, message.target_id, target_type=message.target_type
            )
        elif isinstance(message, m.Reannounce):
            await self._publish(force=True)
        elif isinstance(message, m.InjectCrash):
            raise RuntimeError("injected crash")

    async def _greet(self, connection: Outbox) -> None:
        """A new tab: its status, and the held conversations it should resume."""
        summaries = []
        for conversation_id in sorted(self.held):
            row = await self.center.storage.conversation(conversation_id)
            if row is None:
                continue
            summaries.append(
                ConversationSummary(
                    conversation_id=str(conversation_id),
                    state="wrap_up" if conversation_id in self.wrap_up else "assigned",
                    last_seq=await self.center.storage.last_seq(conversation_id),
                    customer_id=str(row.customer_id),
                    channel=row.channel,
                    queue_id=str(row.queue_id) if row.queue_id else None,
                    agent_id=str(self.agent_id),
                    topic=row.topic if row.topic is None or connection.sees_contact_details else mask_text(row.topic),
                    display_name=row.customer_name,
                )
            )
        connection.send(encode_frame(ConversationList(tuple(summaries))))
        connection.send(self._status_frame())

    def _maybe_stop(self) -> None:
        if self.status == "offline" and not self.held and not self.connected:
            self._end_grace()
            self.finish()
