"""The aggregator actor: routing events folded into live statistics, streamed to supervisors.

Theory of operation
-------------------
The dispatcher, the agents and the sessions tell the aggregator what happens (a queue is
described, a conversation is queued, moved, offered, answered or abandoned, an agent
changes status or load). The aggregator folds each event into per-account state: its
queues (a waiting line and the day's counters each), its agents (what supervisors see of
each) and which queue each waiting conversation is in. Every `interval` seconds it builds
one `LiveStats` frame per account that has a queue or an agent and that is watched (a
supervisor is connected), and hands it to its `LiveFeeds`. A `Snapshot` ask answers
the same frame on demand (the REST endpoint).

Figures per queue, counted since midnight UTC (the `wall_clock` date; one day for every
account, whatever its business-hours time zone) unless "now":

- ``waiting`` (now): conversations queued and neither answered, abandoned nor moved away.
- ``longest_wait_seconds`` (now): the oldest waiting conversation's wait, whole seconds,
  from when it first entered a queue (a move keeps its start).
- ``offered``, ``answered``, ``abandoned``: offers made (a re-offer counts again),
  answers, customers who left while waiting.
- ``service_level``, a fraction from 0 to 1, the standard formula that leaves out
  customers who hung up before the threshold T (`service_level_seconds`, default 20)::

      answered with waited <= T / (answered + abandoned with waited > T)

  None while the denominator is 0.
- ``average_speed_of_answer_seconds``: the mean ``waited_seconds`` of the answers, None
  before the first.
- ``agents_available``: the latest `QueueAvailability` for the queue (0 before one).

Agents are listed sorted by display name, queues by name (case-insensitively, ties by id).

Rules
-----
1. Folding an event is O(1): dictionary updates and, for a conversation that joins a
   queue out of wait-start order (a move), one heap push. Nothing scans per event.
   Building a snapshot is O(queues + agents) of its account (plus sorting them).
2. Accounts are separate: every event names its account, and a snapshot is built from
   that account's state alone.
3. Counters reset when the UTC date changes (checked at every event and every tick);
   waiting conversations, agents and availability do not.
4. Events the aggregator cannot place do not crash it: an unknown queue is created with
   its id as its name until `QueueDescribed` names it; an answer or abandon of a
   conversation it did not see waiting still counts; an agent status outside
   `AGENT_PRESENCES` or a negative load is logged and ignored, and so is an event whose
   folding raised (a sender's bug): a crash would restart the aggregator empty (rule 7)
   and cost every account the day's figures.
5. `feeds.publish` is called synchronously and must not block (it puts bytes into bounded
   buffers). An exception from `publish` or `wants` is logged and counted; the aggregator
   goes on, and other accounts still get their snapshot.
6. Senders should `tell_nowait`: routing never waits for statistics. An event refused by
   a full mailbox is lost (counted in the mailbox's ``messages_refused``).
7. A restart keeps the day. With a `store` (the node's is PostgreSQL), the aggregator
   loads at start today's counters (queues' and agents') and the conversations still
   waiting with their wait starts (from the event log), before it folds anything; a
   start whose load fails retries at every tick and adds what it loads to what it counted
   meanwhile. Changed counters are saved (absolute values, idempotent) once per tick, one
   save at a time, at a day's roll-over (the day that ends), and when the aggregator stops
   or crashes. A kill -9 loses at most one tick's counts; waiting lines lose nothing.
   Without a store, a restart starts from nothing.
8. Agent figures list the users who take conversations: one who may handle conversations
   and does not watch the floor (`listed_while_offline`: an agent) always, anyone else (a
   supervisor, an admin) only while not offline or holding conversations (a supervisor
   watching the dashboard is not an offline agent).
9. The aggregator owns the watchers (`LiveFeeds`): a supervisor's socket is added by
   `WatchStarted` and removed by `WatchEnded`, both sent by the edge through the mailbox,
   which it waits for (`tell`: a watch starts or ends after the events queued before it; a
   full mailbox delays it, never loses it). The edge waits at most a few seconds for room
   to send `WatchEnded` of a closed socket; if it gives up, the socket leaves at the next
   snapshot of its account, when sending to it fails. An account nobody watches any more
   is forgotten (no empty set is kept).

Times: ``at`` of every event is a `trio.current_time()` reading supplied by the sender,
in the same clock as the `clock` argument (by default `trio.current_time`: trio's clock
has an offset of its own, so mixing it with `time.monotonic` gave a longest wait of 0);
the frame's ``at`` is the wall clock.
"""

from __future__ import annotations

import heapq
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol, assert_never
from uuid import UUID

import trio

from kefu.actors.ports import Outbox
from kefu.actors.runtime import Actor, ActorStatistics, Mailbox, Reply
from kefu.protocol.common import MAX_LABEL_CHARS
from kefu.protocol.permissions import Permission
from kefu.protocol.server import AGENT_PRESENCES, AgentLoad, AgentPresence, LiveStats, QueueStats, utc_timestamp

log = logging.getLogger("kefu.aggregator")

AGGREGATOR_MAILBOX_CAPACITY = 10_000
"""Events waiting for the aggregator. Full: `tell_nowait` refuses (see rule 6)."""

DEFAULT_INTERVAL = 1.0
"""Seconds between two snapshots of an account."""

DEFAULT_SERVICE_LEVEL_SECONDS = 20.0
"""The service-level threshold: an answer within this many seconds of waiting is in time."""

STORE_TIMEOUT_SECONDS = 10.0
"""Longest a load or save of the day's figures may take; past it, it is tried again later."""


# -- what a restart keeps (rule 7) ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueDay:
    """One queue's counters for one day."""

    account_id: UUID
    queue_id: UUID
    offered: int
    answered: int
    abandoned: int
    answered_in_time: int
    abandoned_late: int
    answer_wait_total: float


@dataclass(frozen=True, slots=True)
class AgentDay:
    """Conversations one agent finished in one day."""

    account_id: UUID
    agent_id: UUID
    handled: int


@dataclass(frozen=True, slots=True)
class WaitingConversation:
    """A conversation waiting in a queue, since `waiting_since` (wall clock)."""

    account_id: UUID
    conversation_id: UUID
    queue_id: UUID
    waiting_since: datetime


@dataclass(frozen=True, slots=True)
class DayState:
    """What the store knows of a day: the saved counters, who waits now, and queue names."""

    queues: tuple[QueueDay, ...] = ()
    agents: tuple[AgentDay, ...] = ()
    waiting: tuple[WaitingConversation, ...] = ()
    queue_names: tuple[tuple[UUID, UUID, str], ...] = ()
    """(account, queue, name) of the queues above."""


class DayStore(Protocol):
    async def load_day(self, day: date) -> DayState: ...

    async def save_day(self, day: date, queues: Sequence[QueueDay], agents: Sequence[AgentDay]) -> None: ...


class LiveFeeds(Protocol):
    """Who watches each account's live statistics, and how a snapshot reaches them (rule 9).

    Only the aggregator calls these, from its own task: it is the one owner of the watchers.
    The node keeps the object, so a restarted aggregator still knows who watches."""

    def watch(self, account_id: UUID, connection: Outbox) -> None: ...

    def unwatch(self, account_id: UUID, connection: Outbox) -> None: ...

    def wants(self, account_id: UUID) -> bool:
        """Whether anyone watches the account."""
        ...

    def publish(self, account_id: UUID, frame: LiveStats) -> None:
        """Send the frame to the account's watchers, without waiting; a watcher whose send
        fails (closed, or too slow) stops watching."""
        ...


class Unwatched:
    """The `LiveFeeds` of an aggregator with no supervisors (the routing benchmark): a watch is
    ignored and no snapshot is built."""

    def watch(self, account_id: UUID, connection: Outbox) -> None:
        pass

    def unwatch(self, account_id: UUID, connection: Outbox) -> None:
        pass

    def wants(self, account_id: UUID) -> bool:
        return False

    def publish(self, account_id: UUID, frame: LiveStats) -> None:
        pass


# -- messages --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueDescribed:
    """A queue exists or was renamed."""

    account_id: UUID
    queue_id: UUID
    name: str


@dataclass(frozen=True, slots=True)
class QueueRemoved:
    """A queue is gone; the conversations still waiting in it are forgotten."""

    account_id: UUID
    queue_id: UUID


@dataclass(frozen=True, slots=True)
class ConversationQueued:
    """A conversation entered a queue and starts waiting (sent once per conversation)."""

    account_id: UUID
    conversation_id: UUID
    queue_id: UUID
    at: float


@dataclass(frozen=True, slots=True)
class ConversationMoved:
    """Overflow or transfer: a waiting conversation leaves one queue for another and keeps
    its original wait start."""

    account_id: UUID
    conversation_id: UUID
    from_queue_id: UUID
    to_queue_id: UUID
    at: float


@dataclass(frozen=True, slots=True)
class ConversationOffered:
    """An offer was made to an agent (the conversation keeps waiting)."""

    account_id: UUID
    conversation_id: UUID
    queue_id: UUID
    agent_id: UUID
    at: float


@dataclass(frozen=True, slots=True)
class ConversationAnswered:
    """Accepted (or auto-accepted) after `waited_seconds`: the conversation stops waiting."""

    account_id: UUID
    conversation_id: UUID
    queue_id: UUID
    agent_id: UUID
    waited_seconds: float
    at: float


@dataclass(frozen=True, slots=True)
class ConversationAbandoned:
    """The customer left after waiting `waited_seconds`."""

    account_id: UUID
    conversation_id: UUID
    queue_id: UUID
    waited_seconds: float
    at: float


@dataclass(frozen=True, slots=True)
class ConversationEnded:
    """A handled conversation finished (counted per agent for the day)."""

    account_id: UUID
    conversation_id: UUID
    agent_id: UUID
    at: float


@dataclass(frozen=True, slots=True)
class AgentChanged:
    """An agent's status or load changed; `status` is one of `AGENT_PRESENCES`."""

    account_id: UUID
    agent_id: UUID
    display_name: str
    status: str
    reason: str | None
    load: int
    capacity: int
    at: float
    permissions: frozenset[Permission] = frozenset({Permission.CONVERSATIONS_HANDLE})
    """What the user may do (rule 8): by default an agent's."""


@dataclass(frozen=True, slots=True)
class AgentGone:
    """The agent signed out or its actor stopped: it leaves the snapshot."""

    account_id: UUID
    agent_id: UUID


@dataclass(frozen=True, slots=True)
class QueueAvailability:
    """How many eligible agents could take the queue's next conversation now."""

    account_id: UUID
    queue_id: UUID
    agents_available: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Ask for the account's current `LiveStats` (empty for an account never seen)."""

    account_id: UUID
    reply: Reply[LiveStats]


RoutingEvent = (
    QueueAvailability
    | ConversationOffered
    | ConversationQueued
    | ConversationAnswered
    | ConversationEnded
    | AgentChanged
    | ConversationAbandoned
    | ConversationMoved
    | AgentGone
    | QueueDescribed
    | QueueRemoved
)
"""What happens in routing, folded into the statistics (in the order `_fold` looks for them:
the most frequent first)."""


@dataclass(frozen=True, slots=True)
class Folds:
    """Several events in one message: the dispatcher sends what one of its messages caused
    at once, so the aggregator pays one mailbox hop per batch, not per event."""

    events: tuple[RoutingEvent, ...]


@dataclass(frozen=True, slots=True)
class WatchStarted:
    """A supervisor's socket (`connection`) starts watching the account's live statistics."""

    account_id: UUID
    connection: Outbox


@dataclass(frozen=True, slots=True)
class WatchEnded:
    """The socket stops watching (it closed). Also implied when a send to it fails (rule 9)."""

    account_id: UUID
    connection: Outbox


AggregatorMessage = Folds | RoutingEvent | Snapshot | WatchStarted | WatchEnded


@dataclass(frozen=True, slots=True)
class AggregatorStatistics:
    actor: ActorStatistics
    """The aggregator's mailbox and restarts."""
    accounts: int
    """Accounts with any state (queues, agents or handled counts)."""
    queues: int
    agents: int
    waiting: int
    """Conversations waiting, all accounts together."""
    events_folded: int
    """Events taken into the statistics by this incarnation."""
    events_ignored: int
    """Events refused as malformed (rule 4)."""
    snapshots_published: int
    """`publish` calls that returned."""
    publish_failures: int
    """Snapshots not delivered because `publish`, `wants` or building them raised."""
    day_loaded: bool
    """The day's stored figures were loaded (always True without a store)."""
    saves: int
    """Saves of changed counters that succeeded."""
    save_failures: int
    """Loads and saves that failed (they are tried again at the next tick)."""


# -- state -----------------------------------------------------------------------------------


class _WaitingLine:
    """The conversations waiting in one queue with their wait starts; the oldest in O(1).

    Most conversations join in start order (they were just queued): they go to an
    OrderedDict, whose first entry is the oldest of them. One that joins with an earlier
    start than the last (a move keeps its start) goes to a heap instead; removing it only
    forgets it, and its heap entry is dropped when it reaches the top or at a compaction.
    """

    __slots__ = ("_in_order", "_late", "_starts", "_tail")

    def __init__(self) -> None:
        self._starts: dict[UUID, float] = {}
        self._in_order: OrderedDict[UUID, float] = OrderedDict()
        self._late: list[tuple[float, UUID]] = []
        self._tail = float("-inf")

    def __len__(self) -> int:
        return len(self._starts)

    def ids(self) -> list[UUID]:
        return list(self._starts)

    def add(self, conversation_id: UUID, start: float) -> None:
        self.remove(conversation_id)
        self._starts[conversation_id] = start
        if start >= self._tail:
            self._in_order[conversation_id] = start
            self._tail = start
        else:
            heapq.heappush(self._late, (start, conversation_id))

    def remove(self, conversation_id: UUID) -> float | None:
        """Forget the conversation; returns its wait start, None when it was not here."""
        start = self._starts.pop(conversation_id, None)
        if start is None:
            return None
        if conversation_id in self._in_order:
            del self._in_order[conversation_id]
        elif len(self._late) > 2 * len(self._starts) + 16:
            self._compact()
        return start

    def _live(self, entry: tuple[float, UUID]) -> bool:
        start, conversation_id = entry
        return self._starts.get(conversation_id) == start and conversation_id not in self._in_order

    def _compact(self) -> None:
        live = {entry for entry in self._late if self._live(entry)}
        self._late = list(live)
        heapq.heapify(self._late)

    def oldest(self) -> float | None:
        """The earliest wait start of the conversations waiting here."""
        late = self._late
        while late and not self._live(late[0]):
            heapq.heappop(late)
        first = next(iter(self._in_order.values()), None)
        if not late:
            return first
        if first is None:
            return late[0][0]
        return min(first, late[0][0])


class _Queue:
    __slots__ = (
        "abandoned",
        "abandoned_late",
        "agents_available",
        "answer_wait_total",
        "answered",
        "answered_in_time",
        "line",
        "name",
        "offered",
        "queue_id",
    )

    def __init__(self, queue_id: UUID) -> None:
        self.queue_id = queue_id
        self.name = str(queue_id)
        self.line = _WaitingLine()
        self.agents_available = 0
        self.reset_counters()

    def reset_counters(self) -> None:
        self.offered = 0
        self.answered = 0
        self.abandoned = 0
        self.answered_in_time = 0
        self.abandoned_late = 0
        self.answer_wait_total = 0.0

    def add_day(self, day: QueueDay) -> None:
        self.offered += day.offered
        self.answered += day.answered
        self.abandoned += day.abandoned
        self.answered_in_time += day.answered_in_time
        self.abandoned_late += day.abandoned_late
        self.answer_wait_total += day.answer_wait_total

    def day(self, account_id: UUID) -> QueueDay:
        return QueueDay(
            account_id,
            self.queue_id,
            self.offered,
            self.answered,
            self.abandoned,
            self.answered_in_time,
            self.abandoned_late,
            self.answer_wait_total,
        )

    def stats(self, now: float) -> QueueStats:
        oldest = self.line.oldest()
        denominator = self.answered + self.abandoned_late
        return QueueStats(
            queue_id=str(self.queue_id),
            name=self.name,
            waiting=len(self.line),
            longest_wait_seconds=0 if oldest is None else max(0, int(now - oldest)),
            offered=self.offered,
            answered=self.answered,
            abandoned=self.abandoned,
            agents_available=self.agents_available,
            service_level=self.answered_in_time / denominator if denominator else None,
            average_speed_of_answer_seconds=self.answer_wait_total / self.answered if self.answered else None,
        )


class _Account:
    __slots__ = ("agents", "handled", "queues", "waiting_in")

    def __init__(self) -> None:
        self.queues: dict[UUID, _Queue] = {}
        self.agents: dict[UUID, AgentLoad] = {}
        self.waiting_in: dict[UUID, UUID] = {}
        """conversation id -> the queue it waits in."""
        self.handled: dict[UUID, int] = {}
        """agent id -> conversations that agent finished today."""

    def queue(self, queue_id: UUID) -> _Queue:
        queue = self.queues.get(queue_id)
        if queue is None:
            queue = self.queues[queue_id] = _Queue(queue_id)
        return queue

    def stop_waiting(self, conversation_id: UUID) -> float | None:
        """Take the conversation off its waiting line; returns its wait start if it had one."""
        queue_id = self.waiting_in.pop(conversation_id, None)
        if queue_id is None:
            return None
        return self.queues[queue_id].line.remove(conversation_id)

    def join(self, conversation_id: UUID, queue_id: UUID, start: float) -> None:
        self.queue(queue_id).line.add(conversation_id, start)
        self.waiting_in[conversation_id] = queue_id

    @property
    def empty(self) -> bool:
        return not self.queues and not self.agents and not self.handled


def listed_while_offline(permissions: frozenset[Permission]) -> bool:
    """Rule 8: whether a user is listed as an agent also while offline with nothing held: one who
    may handle conversations and does not watch the floor (the agent role's permissions)."""
    return Permission.CONVERSATIONS_HANDLE in permissions and Permission.CONVERSATIONS_MONITOR not in permissions


def _label(text: str, fallback: UUID) -> str:
    """A name the wire accepts: not empty, at most `MAX_LABEL_CHARS`."""
    return text[:MAX_LABEL_CHARS] if text else str(fallback)


def _utc_now() -> datetime:
    return datetime.now(UTC)


# -- the actor -------------------------------------------------------------------------------


class Aggregator(Actor[AggregatorMessage]):
    def __init__(
        self,
        mailbox: Mailbox[AggregatorMessage],
        *,
        feeds: LiveFeeds,
        interval: float = DEFAULT_INTERVAL,
        service_level_seconds: float = DEFAULT_SERVICE_LEVEL_SECONDS,
        clock: Callable[[], float] = trio.current_time,
        wall_clock: Callable[[], datetime] = _utc_now,
        store: DayStore | None = None,
    ) -> None:
        super().__init__(mailbox)
        if interval <= 0 or service_level_seconds < 0:
            raise ValueError("the interval must be positive and the service-level threshold not negative")
        self.feeds = feeds
        self.interval = interval
        self.service_level_seconds = service_level_seconds
        self.clock = clock
        self.wall_clock = wall_clock
        self._accounts: dict[UUID, _Account] = {}
        self._day: date = wall_clock().astimezone(UTC).date()
        self._next_roll_check = -math.inf
        self.events_folded = 0
        self.events_ignored = 0
        self.snapshots_published = 0
        self.publish_failures = 0
        self.store = store
        self._day_loaded = store is None
        self._dirty_queues: set[tuple[UUID, UUID]] = set()
        self._dirty_agents: set[tuple[UUID, UUID]] = set()
        self._unsaved: list[tuple[date, list[QueueDay], list[AgentDay]]] = []
        """Counters of days that ended before they were saved."""
        self._saving = False
        self.saves = 0
        self.save_failures = 0

    # -- the loop ---------------------------------------------------------------------------

    async def run(self, stop_requested: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await self.started()
        crash: Exception | None = None
        try:
            async with trio.open_nursery() as nursery:
                task_status.started(self.ref)
                # The day's stored figures first (rule 7): events wait in the mailbox meanwhile.
                await self.load_day()
                nursery.start_soon(self._publish_every_interval, nursery)
                try:
                    await self.message_loop(stop_requested)
                except Exception as error:
                    crash = error
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await self.save_changes()  # on a stop, a crash or a cancellation: the day survives
        if crash is not None:
            # raised outside the nursery so the supervisor sees it bare, not in an ExceptionGroup
            raise crash
        await self.stopping()

    async def _publish_every_interval(self, nursery: trio.Nursery) -> None:
        # Runs between messages (the message loop checkpoints before each), so it always
        # sees state with every event either wholly folded or not at all.
        deadline = trio.current_time()
        while True:
            deadline += self.interval
            await trio.sleep_until(deadline)
            self.publish_snapshots()
            if self.store is not None and not self._saving:
                self._saving = True
                nursery.start_soon(self._load_or_save)
            now = trio.current_time()
            if now >= deadline + self.interval:
                deadline = now  # fell behind: skip the ticks that are already late

    async def _load_or_save(self) -> None:
        try:
            if not self._day_loaded:
                await self.load_day()
            await self.save_changes()
        finally:
            self._saving = False

    async def load_day(self) -> None:
        """Add today's stored figures and waiting conversations to the state (rule 7)."""
        if self.store is None or self._day_loaded:
            return
        day = self._day
        try:
            with trio.fail_after(STORE_TIMEOUT_SECONDS):
                state = await self.store.load_day(day)
        except Exception as error:
            self.save_failures += 1
            log.warning(
                "aggregator could not load the day's figures: retrying at the next tick", extra={"error": repr(error)}
            )
            return
        if day != self._day:
            return  # the day ended while loading: nothing of it is wanted now
        wall_now, now = self.wall_clock(), self.clock()
        for queue_day in state.queues:
            self._account(queue_day.account_id).queue(queue_day.queue_id).add_day(queue_day)
            self._dirty_queues.add((queue_day.account_id, queue_day.queue_id))
        for agent_day in state.agents:
            handled = self._account(agent_day.account_id).handled
            handled[agent_day.agent_id] = handled.get(agent_day.agent_id, 0) + agent_day.handled
            self._dirty_agents.add((agent_day.account_id, agent_day.agent_id))
        for account_id, queue_id, name in state.queue_names:
            queue = self._account(account_id).queue(queue_id)
            if queue.name == str(queue_id):
                queue.name = _label(name, queue_id)
        for waiting in state.waiting:
            account = self._account(waiting.account_id)
            if waiting.conversation_id not in account.waiting_in:
                start = now - max(0.0, (wall_now - waiting.waiting_since).total_seconds())
                account.join(waiting.conversation_id, waiting.queue_id, start)
        self._day_loaded = True
        if state.queues or state.agents or state.waiting:
            log.info(
                "aggregator loaded the day's figures",
                extra={"queues": len(state.queues), "agents": len(state.agents), "waiting": len(state.waiting)},
            )

    def _changes(self) -> list[tuple[date, list[QueueDay], list[AgentDay]]]:
        """Take the changed counters (and the unsaved days that ended) for one save."""
        changes, self._unsaved = self._unsaved, []
        queues = [
            self._accounts[a].queues[q].day(a)
            for a, q in self._dirty_queues
            if a in self._accounts and q in self._accounts[a].queues
        ]
        agents = [
            AgentDay(a, agent, self._accounts[a].handled[agent])
            for a, agent in self._dirty_agents
            if a in self._accounts and agent in self._accounts[a].handled
        ]
        self._dirty_queues, self._dirty_agents = set(), set()
        if queues or agents:
            changes.append((self._day, queues, agents))
        return changes

    async def save_changes(self) -> None:
        """Save the counters changed since the last save; on failure they are saved next time."""
        if self.store is None or not self._day_loaded:
            return  # before the load, a save would overwrite the stored day with part of it
        changes = self._changes()
        for index, (day, queues, agents) in enumerate(changes):
            try:
                with trio.fail_after(STORE_TIMEOUT_SECONDS):
                    await self.store.save_day(day, queues, agents)
            except BaseException as error:
                # Cancelled too (the aggregator stops): the final save takes these rows again.
                self._retry(changes[index:])
                if not isinstance(error, Exception):
                    raise
                self.save_failures += 1
                log.warning(
                    "aggregator could not save the day's figures: retrying at the next tick",
                    extra={"error": repr(error)},
                )
                return
            self.saves += 1

    def _retry(self, changes: list[tuple[date, list[QueueDay], list[AgentDay]]]) -> None:
        for day, queues, agents in changes:
            if day == self._day:
                # today's rows are rebuilt from the state at the next save (newer values)
                self._dirty_queues.update((q.account_id, q.queue_id) for q in queues)
                self._dirty_agents.update((a.account_id, a.agent_id) for a in agents)
            else:
                self._unsaved.append((day, queues, agents))

    def publish_snapshots(self) -> None:
        """Hand one snapshot to `publish` for each watched account with a queue or an agent."""
        self._roll_over()
        at = utc_timestamp(self.wall_clock())
        now = self.clock()
        for account_id, account in list(self._accounts.items()):
            if not account.queues and not account.agents:
                continue
            try:
                if not self.feeds.wants(account_id):
                    continue
                self.feeds.publish(account_id, self._snapshot(account, at, now))
            except Exception:
                self.publish_failures += 1
                log.exception("publishing live statistics failed", extra={"account_id": str(account_id)})
            else:
                self.snapshots_published += 1

    async def handle(self, message: AggregatorMessage) -> None:
        now = self.clock()
        if now >= self._next_roll_check:
            # the date is looked at once a second, not for every event
            self._next_roll_check = now + 1.0
            self._roll_over()
        match message:
            case Folds():  # what the dispatcher sends
                self._fold(message.events)
            case AgentChanged():  # sent alone, by every agent at every change of load
                try:
                    self._agent_changed(message)
                except Exception:
                    self._ignore(message)
                else:
                    self.events_folded += 1
            case Snapshot():
                account = self._accounts.get(message.account_id)
                at = utc_timestamp(self.wall_clock())
                message.reply.set(LiveStats(at, (), ()) if account is None else self._snapshot(account, at, now))
            case WatchStarted():
                self.feeds.watch(message.account_id, message.connection)
            case WatchEnded():
                self.feeds.unwatch(message.account_id, message.connection)
            case _:
                self._fold((message,))

    def _fold(self, events: tuple[RoutingEvent, ...]) -> None:
        """Fold each event into the state (rule 1); the most frequent kinds are looked for first."""
        for event in events:
            try:
                match event:
                    case QueueAvailability():
                        self._availability(event)
                    case ConversationOffered():
                        self._offered(event)
                    case ConversationQueued():
                        self._queued(event)
                    case ConversationAnswered():
                        self._answered(event)
                    case ConversationEnded():
                        self._ended(event)
                    case _:
                        self._fold_rare(event)
            except Exception:
                self._ignore(event)
                continue
            self.events_folded += 1

    def _ignore(self, event: object) -> None:
        """Called in the `except` of a fold that raised: a malformed event (a sender's bug, or
        something not an event at all, which `assert_never` refuses) must not cost the day's
        figures by a restart (rule 4)."""
        self.events_ignored += 1
        log.exception("aggregator ignored an event it could not fold", extra={"aggregator_event": repr(event)})

    def _fold_rare(
        self,
        event: AgentChanged | ConversationAbandoned | ConversationMoved | AgentGone | QueueDescribed | QueueRemoved,
    ) -> None:
        match event:
            case AgentChanged():  # in a batch (an agent's own comes alone: see `handle`)
                self._agent_changed(event)
            case ConversationAbandoned():
                self._abandoned(event)
            case ConversationMoved():
                self._moved(event)
            case AgentGone():
                self._agent_gone(event)
            case QueueDescribed():
                self._queue_described(event)
            case QueueRemoved():
                self._queue_removed(event)
            case _:
                assert_never(event)

    # -- folding ------------------------------------------------------------------------------

    def _roll_over(self) -> None:
        today = self.wall_clock().astimezone(UTC).date()
        if today == self._day:
            return
        if self._day_loaded:
            ended = self._changes()  # the day that ends is saved with its last figures
            self._unsaved = ended
        self._day = today
        for account_id, account in list(self._accounts.items()):
            for queue in account.queues.values():
                queue.reset_counters()
            account.handled.clear()
            if account.empty:
                del self._accounts[account_id]

    def _account(self, account_id: UUID) -> _Account:
        account = self._accounts.get(account_id)
        if account is None:
            account = self._accounts[account_id] = _Account()
        return account

    def _forget_if_empty(self, account_id: UUID) -> None:
        account = self._accounts.get(account_id)
        if account is not None and account.empty:
            del self._accounts[account_id]

    def _queue_described(self, message: QueueDescribed) -> None:
        self._account(message.account_id).queue(message.queue_id).name = _label(message.name, message.queue_id)

    def _queue_removed(self, message: QueueRemoved) -> None:
        account = self._accounts.get(message.account_id)
        if account is None:
            return
        queue = account.queues.pop(message.queue_id, None)
        if queue is not None:
            for conversation_id in queue.line.ids():  # a rare administrative event
                account.waiting_in.pop(conversation_id, None)
        self._forget_if_empty(message.account_id)

    def _queued(self, message: ConversationQueued) -> None:
        account = self._account(message.account_id)
        # not sent twice by rule; if it is, the conversation keeps its first start
        start = account.stop_waiting(message.conversation_id)
        account.join(message.conversation_id, message.queue_id, message.at if start is None else start)

    def _moved(self, message: ConversationMoved) -> None:
        account = self._account(message.account_id)
        start = account.stop_waiting(message.conversation_id)
        account.join(message.conversation_id, message.to_queue_id, message.at if start is None else start)

    def _offered(self, message: ConversationOffered) -> None:
        self._account(message.account_id).queue(message.queue_id).offered += 1
        self._dirty_queues.add((message.account_id, message.queue_id))

    def _answered(self, message: ConversationAnswered) -> None:
        account = self._account(message.account_id)
        account.stop_waiting(message.conversation_id)
        queue = account.queue(message.queue_id)
        waited = max(0.0, float(message.waited_seconds))
        queue.answered += 1
        queue.answer_wait_total += waited
        if waited <= self.service_level_seconds:
            queue.answered_in_time += 1
        self._dirty_queues.add((message.account_id, message.queue_id))

    def _abandoned(self, message: ConversationAbandoned) -> None:
        account = self._account(message.account_id)
        account.stop_waiting(message.conversation_id)
        queue = account.queue(message.queue_id)
        queue.abandoned += 1
        if message.waited_seconds > self.service_level_seconds:
            queue.abandoned_late += 1
        self._dirty_queues.add((message.account_id, message.queue_id))

    def _ended(self, message: ConversationEnded) -> None:
        account = self._account(message.account_id)
        account.stop_waiting(message.conversation_id)  # it cannot be waiting any more
        account.handled[message.agent_id] = account.handled.get(message.agent_id, 0) + 1
        self._dirty_agents.add((message.account_id, message.agent_id))

    def _agent_changed(self, message: AgentChanged) -> None:
        if message.status not in AGENT_PRESENCES or message.load < 0 or message.capacity < 0:
            self.events_ignored += 1
            log.warning(
                "aggregator ignored a malformed agent change",
                extra={"agent_id": str(message.agent_id), "status": message.status},
            )
            return
        status: AgentPresence = message.status  # type: ignore[assignment]
        if status == "offline" and message.load == 0 and not listed_while_offline(message.permissions):
            # rule 8: a supervisor or admin who takes no conversations is not an (offline) agent
            self._agent_gone(AgentGone(message.account_id, message.agent_id))
            return
        self._account(message.account_id).agents[message.agent_id] = AgentLoad(
            agent_id=str(message.agent_id),
            display_name=_label(message.display_name, message.agent_id),
            status=status,
            load=message.load,
            capacity=message.capacity,
            reason=message.reason[:MAX_LABEL_CHARS] if message.reason else None,
        )

    def _agent_gone(self, message: AgentGone) -> None:
        account = self._accounts.get(message.account_id)
        if account is not None:
            account.agents.pop(message.agent_id, None)
            self._forget_if_empty(message.account_id)

    def _availability(self, message: QueueAvailability) -> None:
        queue = self._account(message.account_id).queue(message.queue_id)
        available = message.agents_available
        queue.agents_available = available if available > 0 else 0

    # -- reading ------------------------------------------------------------------------------

    @staticmethod
    def _snapshot(account: _Account, at: str, now: float) -> LiveStats:
        queues = sorted(account.queues.values(), key=lambda q: (q.name.casefold(), q.name, str(q.queue_id)))
        agents = sorted(account.agents.values(), key=lambda a: (a.display_name.casefold(), a.display_name, a.agent_id))
        return LiveStats(at=at, queues=tuple(queue.stats(now) for queue in queues), agents=tuple(agents))

    def handled_today(self, account_id: UUID) -> dict[UUID, int]:
        """Conversations each agent of the account finished since midnight UTC (not in the
        `LiveStats` frame, which has no field for it yet)."""
        account = self._accounts.get(account_id)
        return dict(account.handled) if account is not None else {}

    def aggregator_statistics(self) -> AggregatorStatistics:
        accounts = self._accounts.values()
        return AggregatorStatistics(
            actor=self.statistics(),
            accounts=len(self._accounts),
            queues=sum(len(account.queues) for account in accounts),
            agents=sum(len(account.agents) for account in accounts),
            waiting=sum(len(account.waiting_in) for account in accounts),
            events_folded=self.events_folded,
            events_ignored=self.events_ignored,
            snapshots_published=self.snapshots_published,
            publish_failures=self.publish_failures,
            day_loaded=self._day_loaded,
            saves=self.saves,
            save_failures=self.save_failures,
        )
