"""Dispatcher: the one writer of assignments.

Theory of operation
-------------------
Sessions tell the dispatcher which conversations wait and in which queue; Agent actors
tell it who is available, with what capacity, departments and skills. The decisions
themselves are made by `kefu.actors.routing.Router` (one per account), a pure data
structure that keeps each queue's waiting list in its strategy's order and each agent's
load (held conversations plus reserved offers). The dispatcher turns its matches into
offers (or, for auto-accept queues, straight into assignments), times the offers out,
counts the offers an agent missed, moves conversations that waited too long to their
overflow queue, and keeps customers told of their place in the queue.

Queue position and estimated wait
---------------------------------
A waiting conversation's session is told its place (`QueueStatus`) as soon as it is
queued and again whenever its place or its estimate changes (someone ahead was offered,
left or moved; an answer changed the estimate), after the message that changed it.
Position 1 is the next conversation the queue offers, in the queue's own order.

The estimate is the queue's service interval times the position, rounded up to whole
seconds: ``estimated_wait_seconds = ceil(position × T)``. ``T`` is the queue's service
interval under load: the mean time between two consecutive answers of the queue, over its
last `ESTIMATE_WINDOW` answers that came while the line was backlogged, i.e. when the
previous answer's round of matching left conversations waiting because every slot of the
queue's agents was taken. So ``T`` is how often a slot frees (handle time ÷ slots), and
neither an idle gap nor a burst of answers by agents who had free slots counts. Until one
such interval was measured the estimate is absent (None).

Because only the dispatcher reserves and assigns slots, and it handles one message at a
time, two offers can never race for an agent's last slot.

Rules
-----
1. A slot is reserved when an offer is made and stays taken until the session reports
   the conversation `Released` (finished, transferred away) or the offer lapses.
2. An offer is withdrawn from the agent (``offer.revoked``) when it expires, when the
   customer leaves, or when the agent goes away; the conversation keeps its place in the
   queue and the agent who missed it is skipped for that conversation.
3. `max_missed_offers` expiries in a row put the agent on break; the dispatcher stops
   offering it work at once, before its actor reports the break.
4. The dispatcher never waits on a session or an agent: it tells them without blocking,
   and a message that finds a session's full mailbox is retried on the next tick. It never
   writes to an agent's sockets: the Agent actor owns them, and the offers and revocations
   for its tabs are handed to it (`Deliver`, through `AgentHandle.deliver_nowait`; a full
   agent mailbox drops the frame, logged: the offer then expires as missed).
5. An agent's load is its pending offers plus the conversations it holds: the ones it
   reported in its last `AgentUpdate` and the ones assigned since that it has not reported
   yet. A `Released` takes a conversation out of both, so a slot is never counted twice
   nor kept after its conversation left.
6. A restarted dispatcher starts with nothing and rebuilds, as OTP's ``init`` does, from
   the actors it serves: it withdraws every offer the dead incarnation left open (the
   ledger `ContactCenter.open_offers` outlives it; ``offer.revoked`` with ``cancelled``),
   and asks every Agent and CustomerSession to `Reannounce`: agents tell their status and
   held conversations, sessions enqueue again what waits (under offer included), and a
   pending transfer is asked for again. Those it cannot tell at once are asked on each
   tick until they have room.

Bounds and overflow
-------------------
- The mailbox holds `DISPATCHER_MAILBOX_CAPACITY` messages. Sessions and agents `tell` it
  (routing facts are never dropped: a sender waits for room, back-pressure on it alone);
  the ticker's `Tick` is dropped when the mailbox is full (the next one does its work), a
  timer's message is retried by the timer service, and a queue change that finds it full is
  noted in `ContactCenter.queues_to_reload` and applied at the next tick.
- What a session's full mailbox refused waits in the backlog, keyed by conversation, and is
  told again on each tick. Per conversation it keeps at most one message of each kind
  (`BACKLOG_KINDS`): a newer queue position replaces the older one, so does a newer offer
  state (``Offered``/``OfferLapsed``), a newer queue move, a newer transfer answer; an
  assignment and a "no agents" notice are at most one each by construction. So the backlog
  never holds more than `len(BACKLOG_KINDS)` messages for each open conversation, loses no
  decision, and the session ends in the state the latest message says.
- A decision for a conversation whose session is not running (closed and idle) starts it:
  at most `WAKE_CONCURRENCY` sessions are being started at once, by that many long-lived
  tasks taking conversations from the backlog (never one task per message).
"""

from __future__ import annotations

import logging
import math
import secrets
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, assert_never
from uuid import UUID

import trio

from kefu.actors import aggregator as agg
from kefu.actors import messages as m
from kefu.actors.center import ContactCenter
from kefu.actors.ports import AgentProfile, QueueSettings
from kefu.actors.routing import Match, QueueRules, Router, RoutingStrategy
from kefu.actors.runtime import Actor, Mailbox, MailboxFull
from kefu.actors.timers import Timer
from kefu.protocol import encode_frame
from kefu.protocol.server import CustomerSummary, Offer, OfferRevoked, ServerError

log = logging.getLogger("kefu.dispatcher")

DISPATCHER_MAILBOX_CAPACITY = 10_000
"""Messages waiting for the dispatcher. Full: `tell` waits (back-pressure), `tell_nowait` refuses."""
WAKE_CONCURRENCY = 8
"""Sessions started at once to receive a decision (their conversation's session was not running)."""
TICK_SECONDS = 1.0
ESTIMATE_WINDOW = 20
"""Answers (intervals between them, under load) a queue's service interval is averaged over."""

BACKLOG_KINDS: dict[type[Any], str] = {
    m.QueueStatus: "position",
    m.Offered: "offer",
    m.OfferLapsed: "offer",
    m.Requeued: "queue",
    m.Assign: "assign",
    m.NoAgents: "notice",
    m.TransferLapsed: "transfer",
}
"""The slot a message to a session takes in the backlog: a newer message of a slot replaces the older."""


@dataclass(slots=True)
class Undelivered:
    """What a session could not be told yet, at most one message a slot, in the order told."""

    account_id: UUID
    messages: dict[str, Any] = field(default_factory=dict)
    wake: bool = False
    """The session is not running: one of the wake tasks starts it."""


@dataclass(frozen=True, slots=True)
class DispatcherStatistics:
    """A snapshot of the dispatcher's own bounded buffers (its mailbox has `ActorStatistics`)."""

    backlog_conversations: int
    """Conversations with messages their session could not take yet."""
    backlog_messages: int
    """Messages waiting in the backlog (at most `len(BACKLOG_KINDS)` per conversation)."""
    waking: int
    """Sessions being started now to receive a decision (at most `WAKE_CONCURRENCY`)."""
    replaced: int
    """Backlog messages replaced by a newer one of the same slot, since this incarnation started."""


@dataclass(slots=True)
class Waiting:
    account_id: UUID
    queue_id: UUID
    waiting_since: float
    entered_queue: float
    level: int
    customer: CustomerSummary
    exclude: set[UUID] = field(default_factory=set)
    told: tuple[int, int | None] | None = None
    """The last (position, estimate) the session was told."""


@dataclass(slots=True)
class PendingOffer:
    offer_id: str
    account_id: UUID
    conversation_id: UUID
    queue_id: UUID
    agent_id: UUID
    transfer_from: UUID | None
    timer: Timer | None
    made_at: float


@dataclass(slots=True)
class AgentEntry:
    profile: AgentProfile
    available: bool
    missed: int = 0
    reported: frozenset[UUID] = frozenset()
    """The conversations the agent said it holds, in its last `AgentUpdate`."""
    assigned: set[UUID] = field(default_factory=set)
    """Conversations assigned to it that it has not reported holding yet."""
    counted: int = 0
    """Slots of the router's load that stand for held conversations (the rest are offers)."""


@dataclass(slots=True)
class QueueEntry:
    settings: QueueSettings
    last_answer: float | None = None
    backlogged: bool = False
    """After the last round of matching someone still waited: every slot of the queue's agents
    was taken, so the next answer comes when one frees (a service interval)."""
    intervals: deque[float] = field(default_factory=lambda: deque(maxlen=ESTIMATE_WINDOW))
    """Times between consecutive answers under load, the newest last (see the module doc)."""

    def service_interval(self) -> float | None:
        return sum(self.intervals) / len(self.intervals) if self.intervals else None


def implicit_default_queue(account_id: UUID) -> QueueSettings:
    """The stand-in for an account's default queue when its queues could not be read (every
    account has a real default queue, server/queues.py): every agent, least load first."""
    return QueueSettings(
        account_id=account_id, queue_id=account_id, name="Default", strategy="least_load", is_default=True
    )


def _rules(settings: QueueSettings) -> QueueRules:
    return QueueRules(
        queue_id=settings.queue_id,
        strategy=RoutingStrategy(settings.strategy),
        department_id=settings.department_id,
        skill_id=settings.skill_id,
        min_skill_level=settings.min_skill_level,
        widen_after_seconds=float(settings.widen_after_seconds),
    )


class Dispatcher(Actor[m.DispatcherMessage]):
    def __init__(self, mailbox: Mailbox[m.DispatcherMessage], center: ContactCenter) -> None:
        super().__init__(mailbox)
        self.center = center
        self.routers: dict[UUID, Router] = {}
        self.queues: dict[UUID, QueueEntry] = {}
        self.default_queue: dict[UUID, UUID] = {}
        self.agents: dict[UUID, AgentEntry] = {}
        self.waiting: dict[UUID, Waiting] = {}
        self.offers: dict[str, PendingOffer] = {}
        self.offer_of: dict[UUID, str] = {}
        self.holder: dict[UUID, UUID] = {}
        self.backlog: dict[UUID, Undelivered] = {}
        """Messages sessions could not take yet, by conversation (see "Bounds and overflow")."""
        self._wake_ready = trio.Event()
        self._lines_changed: set[UUID] = set()
        """Queues whose waiting line (or estimate) changed in the message being handled."""
        self._waking = 0
        self._replaced = 0
        self.dirty_accounts: set[UUID] = set()
        self._parked: dict[UUID, Waiting] = {}
        """Waiting records of conversations under offer, to requeue them if it lapses."""
        self.decisions = 0
        self._stats: list[agg.RoutingEvent] = []
        """Statistics events of the message being handled, sent to the aggregator at once after it."""
        self._nursery: trio.Nursery | None = None
        self._unannounced: list[Any] = []
        """Refs of actors asked to `Reannounce` whose mailbox was full: asked again on each tick."""

    # -- life ----------------------------------------------------------------------------

    async def started(self) -> None:
        # Rule 6: rebuild from the actors this incarnation serves.
        stranded = list(self.center.open_offers.items())
        self.center.open_offers.clear()
        for offer_id, (agent_id, _conversation_id) in stranded:
            self._send_agent(agent_id, encode_frame(OfferRevoked(offer_id, "cancelled")))
        self._unannounced = self.center.reannounce(sessions=True)
        if stranded or self.mailbox.starts > 1:
            log.info(
                "dispatcher rebuilding its state",
                extra={"withdrawn_offers": len(stranded), "agents": len(self.center.agents)},
            )

    async def run(self, stop_requested: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await self.started()
        task_status.started(self.ref)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._ticker)
            for _ in range(WAKE_CONCURRENCY):
                nursery.start_soon(self._waker)
            await self.message_loop(stop_requested)
            nursery.cancel_scope.cancel()

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(TICK_SECONDS)
            try:
                self.ref.tell_nowait(m.Tick())
            except MailboxFull:
                pass

    # -- accounts and queues ------------------------------------------------------------------

    async def _router(self, account_id: UUID) -> Router:
        router = self.routers.get(account_id)
        if router is None:
            router = self.routers[account_id] = Router()
            await self._load_queues(account_id, router)
        return router

    async def _load_queues(self, account_id: UUID, router: Router) -> None:
        try:
            settings = await self.center.storage.queues(account_id)
        except Exception:
            log.exception("could not load queues; using the default queue", extra={"account_id": str(account_id)})
            settings = []
        known = {queue_id for queue_id, entry in self.queues.items() if entry.settings.account_id == account_id}
        fresh = {queue.queue_id for queue in settings}
        default = next((queue.queue_id for queue in settings if queue.is_default), None)
        implicit = implicit_default_queue(account_id)
        if default is None:
            settings = [*settings, implicit]
            default = implicit.queue_id
            fresh.add(implicit.queue_id)
        self.default_queue[account_id] = default
        for queue in settings:
            entry = self.queues.get(queue.queue_id)
            if entry is None:
                self.queues[queue.queue_id] = QueueEntry(queue)
            else:
                entry.settings = queue
            router.set_queue(_rules(queue))
            self._stat(agg.QueueDescribed(account_id, queue.queue_id, queue.name))
        for queue_id in known - fresh:
            del self.queues[queue_id]
            self._stat(agg.QueueRemoved(account_id, queue_id))
            for conversation_id in router.remove_queue(queue_id):
                waiting = self.waiting[conversation_id]
                waiting.queue_id = default
                self._lines_changed.add(default)
                router.enqueue(
                    conversation_id,
                    default,
                    customer_level=waiting.level,
                    waiting_since=waiting.waiting_since,
                    exclude=frozenset(waiting.exclude),
                )
                self._tell_session(account_id, conversation_id, m.Requeued(default, "queue_removed"))
        self.dirty_accounts.add(account_id)

    def _queue_of(self, account_id: UUID, queue_id: UUID) -> UUID:
        entry = self.queues.get(queue_id)
        if entry is not None and entry.settings.account_id == account_id:
            return queue_id
        return self.default_queue[account_id]

    # -- messages --------------------------------------------------------------------------

    def _stat(self, event: agg.RoutingEvent) -> None:
        self._stats.append(event)

    async def handle(self, message: m.DispatcherMessage) -> None:
        try:
            if await self._handle(message):
                if self.dirty_accounts:
                    self._match()
                if self._lines_changed:
                    self._tell_positions()
        finally:
            if self._stats:
                self.center.tell_aggregator(agg.Folds(tuple(self._stats)))
                self._stats.clear()

    async def _handle(self, message: m.DispatcherMessage) -> bool:
        """Handle one message; True when routing may have changed (match and tell positions)."""
        match message:
            # the routing facts, the most frequent first
            case m.Enqueue():
                await self._enqueue(message)
            case m.Released():
                self._released(message)
            case m.AcceptOffer():
                self._accept(message)
            case m.DeclineOffer():
                self._decline(message)
            case m.OfferTimeout(offer_id):
                self._expire(offer_id)
            case m.Withdraw():
                self._withdraw(message)
            case m.AgentUpdate():
                await self._agent_update(message)
            case m.TransferToAgent():
                self._transfer_to_agent(message)
            case m.AgentLeft():
                self._agent_left(message)
            case m.Tick() | m.ReloadQueues() | m.Describe() | m.RouteProbe() | m.InjectCrash():
                return await self._control(message)
            case _:
                assert_never(message)
        return True

    async def _control(self, message: m.DispatcherControl) -> bool:
        match message:
            case m.Tick():
                while self.center.queues_to_reload:
                    account_id = self.center.queues_to_reload.pop()
                    await self._load_queues(account_id, await self._router(account_id))
                self._tick()
            case m.ReloadQueues(account_id):
                await self._load_queues(account_id, await self._router(account_id))
            case m.Describe():
                self._describe()
                return False
            case m.RouteProbe(reply):
                reply.set(None)
                return False
            case m.InjectCrash():
                raise RuntimeError("injected crash")
            case _:
                assert_never(message)
        return True

    async def _enqueue(self, message: m.Enqueue) -> None:
        conversation_id = message.conversation_id
        if conversation_id in self.waiting or conversation_id in self.offer_of or conversation_id in self.holder:
            # Already waiting, offered, or assigned (a session rebuilt before it stored the
            # assignment asks again; the Assign is still in its mailbox).
            return
        router = await self._router(message.account_id)
        queue_id = self._queue_of(message.account_id, message.queue_id)
        now = trio.current_time()
        waited = max(0.0, (datetime.now(UTC) - message.waiting_since).total_seconds())
        waiting = Waiting(message.account_id, queue_id, now - waited, now, message.customer_level, message.customer)
        self.waiting[conversation_id] = waiting
        self.holder.pop(conversation_id, None)
        router.enqueue(conversation_id, queue_id, customer_level=waiting.level, waiting_since=waiting.waiting_since)
        self._lines_changed.add(queue_id)
        self.dirty_accounts.add(message.account_id)
        self._stat(agg.ConversationQueued(message.account_id, conversation_id, queue_id, now))
        if router.available_agents(queue_id) == 0:
            text = self.queues[queue_id].settings.no_agent_message or self.center.settings.no_agent_message
            self._tell_session(message.account_id, conversation_id, m.NoAgents(text))

    async def _agent_update(self, message: m.AgentUpdate) -> None:
        profile = message.profile
        router = await self._router(profile.account_id)
        now = trio.current_time()
        entry = self.agents.get(profile.agent_id)
        router.set_agent(
            profile.agent_id,
            capacity=profile.capacity,
            departments=profile.departments,
            skills=profile.skills,
            now=now,
        )
        if entry is None:
            entry = self.agents[profile.agent_id] = AgentEntry(profile, False)
        entry.reported = message.held_ids
        entry.assigned -= message.held_ids
        for conversation_id in message.held_ids:
            self.holder.setdefault(conversation_id, profile.agent_id)
        self._count_held(entry, router, now)
        entry.profile = profile
        if message.available and not entry.available:
            entry.missed = 0
        entry.available = message.available
        router.set_available(profile.agent_id, message.available, now)
        if not message.available:
            # Away, on break or disconnected: its offers go to someone else now,
            # and are not counted as missed.
            for offer in [offer for offer in self.offers.values() if offer.agent_id == profile.agent_id]:
                self._lapse(offer, "cancelled", missed=False)
        self.dirty_accounts.add(profile.account_id)
        self._report_availability(profile.account_id, router)

    def _count_held(self, entry: AgentEntry, router: Router, now: float) -> None:
        """Rule 5: make the router's load count each held conversation exactly once."""
        target = len(entry.reported | entry.assigned)
        agent_id = entry.profile.agent_id
        while entry.counted < target:
            router.occupy(agent_id, now)
            entry.counted += 1
        while entry.counted > target:
            router.release(agent_id, now)
            entry.counted -= 1

    def _holds(self, agent_id: UUID, conversation_id: UUID) -> None:
        """An offer (or a direct assignment) became a held conversation: its reserved slot now
        counts as held."""
        self.holder[conversation_id] = agent_id
        entry = self.agents.get(agent_id)
        if entry is not None and conversation_id not in entry.reported and conversation_id not in entry.assigned:
            entry.assigned.add(conversation_id)
            entry.counted += 1

    def _describe(self) -> None:
        """Tell a fresh aggregator every queue, its availability and every waiting conversation."""
        for account_id, router in self.routers.items():
            for queue_id, entry in self.queues.items():
                if entry.settings.account_id == account_id:
                    self._stat(agg.QueueDescribed(account_id, queue_id, entry.settings.name))
            self._report_availability(account_id, router)
        for conversation_id, waiting in self.waiting.items():
            self._stat(
                agg.ConversationQueued(waiting.account_id, conversation_id, waiting.queue_id, waiting.waiting_since)
            )

    def _report_availability(self, account_id: UUID, router: Router) -> None:
        for queue_id, entry in self.queues.items():
            if entry.settings.account_id == account_id:
                self._stat(agg.QueueAvailability(account_id, queue_id, router.available_agents(queue_id)))

    def _agent_left(self, message: m.AgentLeft) -> None:
        for offer in [offer for offer in self.offers.values() if offer.agent_id == message.agent_id]:
            self._lapse(offer, "cancelled", missed=False)
        entry = self.agents.pop(message.agent_id, None)
        router = self.routers.get(message.account_id)
        if entry is not None and router is not None:
            router.remove_agent(message.agent_id)
            self._report_availability(message.account_id, router)

    # -- matching --------------------------------------------------------------------------------

    def _match(self) -> None:
        now = trio.current_time()
        accounts, self.dirty_accounts = self.dirty_accounts, set()
        for account_id in accounts:
            router = self.routers.get(account_id)
            if router is None:
                continue
            for match in router.next_matches(now):
                self._offer(account_id, match, now)

    def _offer(self, account_id: UUID, match: Match, now: float) -> None:
        self.decisions += 1
        conversation_id = match.conversation_id
        waiting = self.waiting.pop(conversation_id)
        waiting.told = None
        self._lines_changed.add(match.queue_id)
        queue = self.queues[match.queue_id].settings
        agent = self.agents.get(match.agent_id)
        self._stat(agg.ConversationOffered(account_id, conversation_id, match.queue_id, match.agent_id, now))
        if queue.auto_accept and agent is not None:
            self._holds(match.agent_id, conversation_id)
            self._answered(
                account_id, conversation_id, match.queue_id, match.agent_id, now - waiting.waiting_since, now
            )
            self._tell_session(account_id, conversation_id, m.Assign(match.agent_id, agent.profile.display_name))
            return
        offer_id = f"offer-{secrets.token_hex(8)}"
        timeout = float(queue.offer_timeout_seconds)
        offer = PendingOffer(offer_id, account_id, conversation_id, match.queue_id, match.agent_id, None, None, now)
        offer.timer = self.center.timers.call_later(timeout, self.ref, m.OfferTimeout(offer_id))
        self.offers[offer_id] = offer
        self.offer_of[conversation_id] = offer_id
        self.center.open_offers[offer_id] = (match.agent_id, conversation_id)
        self._parked[conversation_id] = waiting
        self._tell_session(account_id, conversation_id, m.Offered(match.agent_id))
        self._send_agent(
            match.agent_id,
            encode_frame(
                Offer(
                    offer_id=offer_id,
                    conversation_id=str(conversation_id),
                    queue_id=str(match.queue_id),
                    expires_in_seconds=int(timeout),
                    customer=waiting.customer,
                )
            ),
        )

    def _answered(
        self, account_id: UUID, conversation_id: UUID, queue_id: UUID, agent_id: UUID, waited: float, now: float
    ) -> None:
        entry = self.queues.get(queue_id)
        router = self.routers.get(account_id)
        if entry is not None and router is not None:
            if entry.backlogged and entry.last_answer is not None:
                entry.intervals.append(now - entry.last_answer)
                self._lines_changed.add(queue_id)  # the estimate changed
            entry.last_answer = now
            entry.backlogged = False  # until a round of matching leaves someone waiting
        self._stat(agg.ConversationAnswered(account_id, conversation_id, queue_id, agent_id, max(0.0, waited), now))

    # -- offers ------------------------------------------------------------------------------------

    def _accept(self, message: m.AcceptOffer) -> None:
        offer = self.offers.get(message.offer_id)
        if offer is not None and offer.agent_id != message.agent_id:
            self._denied(message, offer, "offer.accept")
        if offer is None or offer.agent_id != message.agent_id:
            message.connection.send(
                encode_frame(ServerError("offer_gone", "the offer expired, was taken, or was revoked", False))
            )
            return
        self._close_offer(offer)
        now = trio.current_time()
        agent = self.agents.get(offer.agent_id)
        if agent is not None:
            agent.missed = 0
        self._holds(offer.agent_id, offer.conversation_id)
        waiting = self._parked.pop(offer.conversation_id, None)
        if offer.transfer_from is None and waiting is not None:
            self._answered(
                offer.account_id,
                offer.conversation_id,
                offer.queue_id,
                offer.agent_id,
                now - waiting.waiting_since,
                now,
            )
        name = agent.profile.display_name if agent is not None else str(offer.agent_id)
        self._tell_session(offer.account_id, offer.conversation_id, m.Assign(offer.agent_id, name))

    def _denied(self, message: m.AcceptOffer | m.DeclineOffer, offer: PendingOffer, action: str) -> None:
        """Someone else's offer: answered like a lapsed one (it reveals nothing), and audited."""
        handle = self.center.agent(message.agent_id)
        if handle is None:
            return
        same_account = offer.account_id == message.account_id
        denial = m.Denied(
            action,
            "conversation" if same_account else "offer",
            offer.conversation_id if same_account else message.offer_id,
        )
        try:
            handle.tell_nowait(denial)
        except MailboxFull:
            log.warning("agent busy: an offer denial was not audited", extra={"agent_id": str(message.agent_id)})

    def _decline(self, message: m.DeclineOffer) -> None:
        offer = self.offers.get(message.offer_id)
        if offer is not None and offer.agent_id != message.agent_id:
            self._denied(message, offer, "offer.decline")
        if offer is None or offer.agent_id != message.agent_id:
            message.connection.send(
                encode_frame(ServerError("offer_gone", "the offer expired, was taken, or was revoked", False))
            )
            return
        self._lapse(offer, "cancelled", missed=False, notify_agent=False)

    def _expire(self, offer_id: str) -> None:
        offer = self.offers.get(offer_id)
        if offer is not None:
            self._lapse(offer, "expired", missed=True)

    def _close_offer(self, offer: PendingOffer) -> None:
        self.offers.pop(offer.offer_id, None)
        self.center.open_offers.pop(offer.offer_id, None)
        if self.offer_of.get(offer.conversation_id) == offer.offer_id:
            del self.offer_of[offer.conversation_id]
        if offer.timer is not None:
            offer.timer.cancel()

    def _lapse(self, offer: PendingOffer, reason: str, *, missed: bool, notify_agent: bool = True) -> None:
        """The offer ends unanswered: free the slot, skip the agent, wait again."""
        self._close_offer(offer)
        now = trio.current_time()
        router = self.routers.get(offer.account_id)
        if router is not None:
            router.release(offer.agent_id, now)
        if notify_agent:
            self._send_agent(offer.agent_id, encode_frame(OfferRevoked(offer.offer_id, reason)))
        agent = self.agents.get(offer.agent_id)
        if missed and agent is not None and router is not None:
            self._missed(agent, router, now)
        if offer.transfer_from is not None:
            outcome = "expired" if reason == "expired" else "declined"
            self._tell_session(offer.account_id, offer.conversation_id, m.TransferLapsed(offer.agent_id, outcome))
        else:
            waiting = self._parked.pop(offer.conversation_id, None)
            if waiting is not None and router is not None and offer.queue_id in self.queues:
                waiting.exclude.add(offer.agent_id)
                self.waiting[offer.conversation_id] = waiting
                self._lines_changed.add(waiting.queue_id)
                router.enqueue(
                    offer.conversation_id,
                    waiting.queue_id,
                    customer_level=waiting.level,
                    waiting_since=waiting.waiting_since,
                    exclude=frozenset(waiting.exclude),
                )
                self._tell_session(offer.account_id, offer.conversation_id, m.OfferLapsed())
        self.dirty_accounts.add(offer.account_id)

    def _missed(self, agent: AgentEntry, router: Router, now: float) -> None:
        """Rule 3: count an expired offer; `max_missed_offers` in a row put the agent on break.

        The agent is taken out of routing at once, before its actor reports the break: the
        actor sends its tabs what the dispatcher hands it in order, so an offer made meanwhile
        would reach them after the break."""
        agent.missed += 1
        limit = self.center.settings.max_missed_offers
        if agent.missed < limit:
            return
        agent.missed = 0
        agent_id = agent.profile.agent_id
        handle = self.center.agent(agent_id)
        if handle is None:
            return
        try:
            handle.tell_nowait(m.MissedOffers(limit))
        except MailboxFull:
            log.warning("agent mailbox full: missed-offer break not applied", extra={"agent_id": str(agent_id)})
            return
        agent.available = False
        router.set_available(agent_id, False, now)
        self._report_availability(agent.profile.account_id, router)

    def _withdraw(self, message: m.Withdraw) -> None:
        conversation_id = message.conversation_id
        offer_id = self.offer_of.get(conversation_id)
        now = trio.current_time()
        if offer_id is not None:
            offer = self.offers[offer_id]
            self._close_offer(offer)
            router = self.routers.get(offer.account_id)
            if router is not None:
                router.release(offer.agent_id, now)
            self._send_agent(offer.agent_id, encode_frame(OfferRevoked(offer_id, "customer_left")))
            waiting = self._parked.pop(conversation_id, None)
            if waiting is not None:
                self._stat(
                    agg.ConversationAbandoned(
                        message.account_id, conversation_id, waiting.queue_id, now - waiting.waiting_since, now
                    )
                )
            self.dirty_accounts.add(offer.account_id)
        waiting = self.waiting.pop(conversation_id, None)
        if waiting is not None:
            router = self.routers.get(waiting.account_id)
            if router is not None:
                router.withdraw(conversation_id)
                self._lines_changed.add(waiting.queue_id)
            self._stat(
                agg.ConversationAbandoned(
                    message.account_id, conversation_id, waiting.queue_id, now - waiting.waiting_since, now
                )
            )

    def _released(self, message: m.Released) -> None:
        router = self.routers.get(message.account_id)
        if self.holder.get(message.conversation_id) == message.agent_id:
            del self.holder[message.conversation_id]
            self._stat(
                agg.ConversationEnded(
                    message.account_id, message.conversation_id, message.agent_id, trio.current_time()
                )
            )
        entry = self.agents.get(message.agent_id)
        if router is not None and entry is not None:
            entry.reported = entry.reported - {message.conversation_id}
            entry.assigned.discard(message.conversation_id)
            self._count_held(entry, router, trio.current_time())
            self.dirty_accounts.add(message.account_id)

    def _transfer_to_agent(self, message: m.TransferToAgent) -> None:
        target = self.agents.get(message.to_agent_id)
        router = self.routers.get(message.account_id)
        if target is None or router is None or target.profile.account_id != message.account_id or not target.available:
            self._tell_session(
                message.account_id, message.conversation_id, m.TransferLapsed(message.to_agent_id, "unavailable")
            )
            return
        if router.load(message.to_agent_id) >= target.profile.capacity:
            self._tell_session(
                message.account_id, message.conversation_id, m.TransferLapsed(message.to_agent_id, "capacity_full")
            )
            return
        now = trio.current_time()
        router.occupy(message.to_agent_id, now)
        offer_id = f"offer-{secrets.token_hex(8)}"
        queue_id = self.default_queue.get(message.account_id, message.account_id)
        timeout = self.center.settings.default_offer_timeout_seconds
        offer = PendingOffer(
            offer_id,
            message.account_id,
            message.conversation_id,
            queue_id,
            message.to_agent_id,
            message.from_agent_id,
            None,
            now,
        )
        offer.timer = self.center.timers.call_later(timeout, self.ref, m.OfferTimeout(offer_id))
        self.offers[offer_id] = offer
        self.offer_of[message.conversation_id] = offer_id
        self.center.open_offers[offer_id] = (message.to_agent_id, message.conversation_id)
        self._send_agent(
            message.to_agent_id,
            encode_frame(
                Offer(
                    offer_id=offer_id,
                    conversation_id=str(message.conversation_id),
                    queue_id=str(queue_id),
                    expires_in_seconds=int(timeout),
                    customer=message.customer,
                )
            ),
        )

    # -- the tick: overflow, queue positions, retries ----------------------------------------------

    def statistics_of_buffers(self) -> DispatcherStatistics:
        return DispatcherStatistics(
            backlog_conversations=len(self.backlog),
            backlog_messages=sum(len(entry.messages) for entry in self.backlog.values()),
            waking=self._waking,
            replaced=self._replaced,
        )

    def _tick(self) -> None:
        now = trio.current_time()
        if self._unannounced:
            unannounced, self._unannounced = self._unannounced, []
            for ref in unannounced:
                try:
                    ref.tell_nowait(m.Reannounce())
                except MailboxFull:
                    self._unannounced.append(ref)
                except Exception:
                    pass  # stopped for good: a successor announces itself
        self._retry_backlog()
        for conversation_id, waiting in list(self.waiting.items()):
            queue = self.queues.get(waiting.queue_id)
            if queue is None:
                continue
            settings = queue.settings
            overflow_to = settings.overflow_queue_id
            if (
                settings.overflow_after_seconds is not None
                and overflow_to is not None
                and overflow_to in self.queues
                and now - waiting.entered_queue >= settings.overflow_after_seconds
            ):
                router = self.routers[waiting.account_id]
                router.move(conversation_id, overflow_to)
                self._lines_changed.update((waiting.queue_id, overflow_to))
                self._stat(
                    agg.ConversationMoved(waiting.account_id, conversation_id, waiting.queue_id, overflow_to, now)
                )
                waiting.queue_id = overflow_to
                waiting.entered_queue = now
                self.dirty_accounts.add(waiting.account_id)
                self._tell_session(waiting.account_id, conversation_id, m.Requeued(overflow_to, "overflow"))
        # Skills queues widen with time: every account with waiting conversations is looked at.
        self.dirty_accounts.update(waiting.account_id for waiting in self.waiting.values())
        self._match()
        if self._lines_changed:
            self._tell_positions()

    def _tell_positions(self) -> None:
        """Tell each conversation of a changed line its place and estimate, if they changed."""
        lines, self._lines_changed = self._lines_changed, set()
        for queue_id in lines:
            entry = self.queues.get(queue_id)
            if entry is None:
                continue
            router = self.routers.get(entry.settings.account_id)
            if router is None:
                continue
            line = router.waiting_in(queue_id)
            entry.backlogged = bool(line)
            interval = entry.service_interval()
            for position, conversation_id in enumerate(line, 1):
                waiting = self.waiting.get(conversation_id)
                if waiting is None:
                    continue
                told = (position, None if interval is None else math.ceil(position * interval))
                if waiting.told != told:
                    waiting.told = told
                    self._tell_session(waiting.account_id, conversation_id, m.QueueStatus(*told))

    # -- sending without waiting -----------------------------------------------------------------

    def _send_agent(self, agent_id: UUID, data: bytes) -> None:
        """Hand a frame to the agent's actor, which owns its sockets (never waits)."""
        handle = self.center.agent(agent_id)
        if handle is not None:
            handle.deliver_nowait(data)

    def _tell_session(self, account_id: UUID, conversation_id: UUID, message: Any) -> None:
        pending = self.backlog.get(conversation_id)
        if pending is not None:
            # behind what is already waiting for it: in order, one a slot
            self._hold(pending, message)
            return
        handle = self.center.session(conversation_id)
        if handle is not None:
            try:
                handle.ref.tell_nowait(message)
            except MailboxFull:
                self._hold(self._undelivered(account_id, conversation_id), message)
            return
        if isinstance(message, m.QueueStatus | m.OfferLapsed | m.Offered):
            return  # the session rebuilds these from the store when it starts
        pending = self._undelivered(account_id, conversation_id)
        pending.wake = True
        self._hold(pending, message)
        self._wake_ready.set()

    def _undelivered(self, account_id: UUID, conversation_id: UUID) -> Undelivered:
        pending = self.backlog.get(conversation_id)
        if pending is None:
            pending = self.backlog[conversation_id] = Undelivered(account_id)
        return pending

    def _hold(self, pending: Undelivered, message: Any) -> None:
        slot = BACKLOG_KINDS.get(type(message), type(message).__name__)
        if pending.messages.pop(slot, None) is not None:
            self._replaced += 1
        pending.messages[slot] = message  # last in the order: it is the newest

    def _retry_backlog(self) -> None:
        for conversation_id, pending in list(self.backlog.items()):
            if pending.wake:
                continue  # a wake task has it
            handle = self.center.session(conversation_id)
            if handle is None:
                pending.wake = True
                self._wake_ready.set()
                continue
            self._flush(conversation_id, pending, handle.ref)

    def _flush(self, conversation_id: UUID, pending: Undelivered, ref: Any) -> None:
        """Tell the session what waits for it, oldest first, until its mailbox is full."""
        messages = pending.messages
        while messages:
            slot = next(iter(messages))
            try:
                ref.tell_nowait(messages[slot])
            except MailboxFull:
                return
            except Exception:
                break  # the session stopped for good meanwhile: a successor is woken below
            del messages[slot]
        if messages:
            pending.wake = True
            self._wake_ready.set()
        elif self.backlog.get(conversation_id) is pending:
            del self.backlog[conversation_id]

    async def _waker(self) -> None:
        """One of `WAKE_CONCURRENCY` tasks that start sessions to give them their decisions."""
        while True:
            conversation_id = next((c for c, p in self.backlog.items() if p.wake), None)
            if conversation_id is None:
                if self._wake_ready.is_set():
                    self._wake_ready = trio.Event()  # every waker waits on the same one
                await self._wake_ready.wait()
                continue
            pending = self.backlog[conversation_id]
            pending.wake = False
            self._waking += 1
            try:
                handle = await self.center.ensure_session(pending.account_id, conversation_id)
            except Exception:
                log.exception("could not deliver a routing decision", extra={"conversation_id": str(conversation_id)})
                if self.backlog.get(conversation_id) is pending:
                    del self.backlog[conversation_id]
                continue
            finally:
                self._waking -= 1
            if self.backlog.get(conversation_id) is pending:
                pending.wake = False
                self._flush(conversation_id, pending, handle.ref)
