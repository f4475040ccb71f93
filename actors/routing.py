"""Routing: which available agent gets which waiting conversation. The pure core of the dispatcher.

Theory of operation
-------------------
`Router` is a plain synchronous data structure: no trio, no I/O, no clock of its own. The
Dispatcher actor owns one per account, feeds it what happens (agents' profiles, availability and
load; conversations entering, leaving and moving between queues) and asks `next_matches(now)` for
the offers it may make now. Time is the caller's monotonic clock in seconds, passed as `now`.

Agents are grouped by what queues filter on, (department, skill): every queue with the same
filter shares one `_Group`, and each group keeps, only for the strategies its queues use, an index
of its *free* agents (available and below capacity):

- least load, priority: one insertion-ordered bucket per load (0, 1, 2 …). An agent's idle time
  restarts whenever its load changes or it becomes available, so appending at the end of its
  bucket keeps each bucket ordered by idle time: the best agent is the first of the lowest
  non-empty bucket, found in O(1) amortized.
- skills: the same buckets, one set per skill level 1..10; the best agent for a required level L
  is the best of the heads of the levels L..10 (at most ten looks).
- longest idle: a heap on (never offered first, time of last offer or of becoming available),
  with lazy deletion: O(log n).
- round robin: per queue, a ring cursor over the agents' join order, kept as two heaps (this lap
  after the cursor, next lap before it) with lazy deletion: O(log n).

An agent belongs to the few groups whose filter it passes, so a change of its load or availability
touches only those groups' indexes (O(groups of the agent)), never all agents. Waiting
conversations sit in one sorted list per queue (FIFO by `waiting_since`; PRIORITY by customer
level, then `waiting_since`) with a moving head, so taking the head is O(1) and a re-queued
conversation is put back at its old place by bisection.

Only *dirty* queues are looked at: a queue becomes dirty when a conversation enters it, when an
agent of its group frees a slot or becomes available (or its profile changes), and, for SKILLS,
when the required level of its blocked head drops (a timer per queue, checked by
`next_matches(now)`). A dirty queue whose group has no free agent costs O(1). Dirty queues are
served one match at a time in the order of their heads' `waiting_since` (the conversation that has
waited longest, over all dirty queues, is offered first), so when several queues compete for the
same agents the oldest customer wins and no queue starves another.

Rules
-----
1. `next_matches` never takes an agent's load above its capacity, and never matches an
   unavailable agent. Each match reserves one slot (load + 1) at once; the caller gives it back
   with `release` when the offer is declined or expires, or when the conversation ends. `occupy`
   (a direct transfer, state restored after a restart) is the only way load can exceed capacity;
   such an agent gets nothing more until its load is below capacity again.
2. A conversation is matched at most once per `enqueue`: the match removes it from waiting.
   Re-queueing (a decline, an expiry) is a new `enqueue` with the original `waiting_since`, which
   puts it back at its old place.
3. Within a queue, conversations are offered in order of `waiting_since` (FIFO; ties in order of
   arrival), except PRIORITY: higher customer level first, then `waiting_since`. A conversation is
   passed over only when every free agent for it is in its `exclude` set.
4. Exclusions (agents who declined or missed the conversation) are always skipped, until they
   cover every available agent eligible for the queue: then the exclusion is forgotten and the
   conversation may go to any of them again rather than wait forever.
5. Eligibility: an agent serves a queue when it is a member of the queue's department (if any)
   and has the queue's skill (if any) at any level. SKILLS additionally requires level >=
   the conversation's required level: `min_skill_level`, lowered by one for each full
   `widen_after_seconds` the conversation has waited, never below 1. `available_agents` counts
   the available eligible agents at any level (each of them may serve once the level widened).
6. Ties in least load go to the agent idle longest: idle since its load last changed or it last
   became available, whichever is later. LONGEST_IDLE orders agents by their last offer or
   assignment (agents never offered anything first, by when they became available).
7. `now` never goes back: a smaller `now` than one seen before is taken as the later one.
8. Unknown ids: `release` of an agent that was removed is ignored (its conversations ended with
   it), as is a release at load 0; other calls raise `KeyError` for an unknown agent, queue or
   conversation, and `ValueError` for a conversation that is already waiting.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from itertools import count
from typing import Any
from uuid import UUID

MIN_SKILL_LEVEL = 1
MAX_SKILL_LEVEL = 10
_EPSILON = 1e-9
"""Slack when turning waited seconds into widening steps, so a step is due exactly at its time."""
_NO_EXCLUSION: frozenset[UUID] = frozenset()


class RoutingStrategy(StrEnum):
    LEAST_LOAD = "least_load"
    """Fewest active conversations; ties to the agent idle longest."""
    LONGEST_IDLE = "longest_idle"
    """The agent whose last offer or assignment was longest ago (never offered first)."""
    ROUND_ROBIN = "round_robin"
    """Agents in a fixed ring (the order they joined the queue); the cursor moves past each one picked."""
    SKILLS = "skills"
    """Only agents with the queue's skill at the required level, which widens with the wait; then least load."""
    PRIORITY = "priority"
    """Conversations by customer level (higher first), then by wait; agents by least load."""


@dataclass(frozen=True, slots=True)
class QueueRules:
    queue_id: UUID
    strategy: RoutingStrategy
    department_id: UUID | None = None
    """Only members of this department are eligible (None: every agent of the account)."""
    skill_id: UUID | None = None
    """Agents must have this skill (any level, except the SKILLS strategy's level rule). Required for SKILLS."""
    min_skill_level: int = 1
    """SKILLS: the level (1..10) required of the agent while the conversation has not waited long."""
    widen_after_seconds: float = 30.0
    """SKILLS: each time the conversation has waited this long again, the required level drops by one."""
    prefer_higher_level: bool = False
    """SKILLS: on equal load prefer the higher skill level before the longer idle time."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "strategy", RoutingStrategy(self.strategy))
        if not MIN_SKILL_LEVEL <= self.min_skill_level <= MAX_SKILL_LEVEL:
            raise ValueError(f"min_skill_level must be {MIN_SKILL_LEVEL}..{MAX_SKILL_LEVEL}")
        if not self.widen_after_seconds > 0:
            raise ValueError("widen_after_seconds must be positive")
        if self.strategy is RoutingStrategy.SKILLS and self.skill_id is None:
            raise ValueError("the skills strategy needs a skill_id")


@dataclass(frozen=True, slots=True)
class Match:
    """Offer `conversation_id` (waiting in `queue_id`) to `agent_id`; one slot of the agent is reserved."""

    conversation_id: UUID
    queue_id: UUID
    agent_id: UUID


# -- agents and their indexes ------------------------------------------------------------


class _Agent:
    __slots__ = (
        "agent_id",
        "available",
        "available_since",
        "capacity",
        "departments",
        "free",
        "groups",
        "idle_since",
        "last_offer",
        "load",
        "skills",
    )

    def __init__(
        self, agent_id: UUID, capacity: int, departments: frozenset[UUID], skills: dict[UUID, int], now: float
    ) -> None:
        self.agent_id = agent_id
        self.capacity = capacity
        self.departments = departments
        self.skills = skills
        self.available = False
        self.available_since = now
        self.idle_since = now
        self.last_offer: float | None = None
        self.load = 0
        self.free = False
        self.groups: list[_Group] = []

    def idle_key(self) -> tuple[int, float]:
        if self.last_offer is None:
            return (0, self.available_since)
        return (1, self.last_offer)


class _LoadIndex:
    """Free agents by load, then idle time: one insertion-ordered bucket per load.

    Agents are keyed by their `_Agent` object (hashed by identity in C), not by UUID, whose
    `__hash__` is Python code: on this hot path that alone was a fifth of the time.
    """

    __slots__ = ("buckets", "latest", "low", "where")

    def __init__(self) -> None:
        self.buckets: list[OrderedDict[_Agent, float]] = []  # load -> {agent: idle_since}, oldest first
        self.where: dict[_Agent, int] = {}  # agent -> its bucket
        self.low = 0  # no agent in a bucket below this
        self.latest = -math.inf  # no agent in any bucket idle since later than this

    def sync(self, agent: _Agent, free: bool) -> None:
        where = self.where
        old = where.get(agent)
        if old is not None:
            # While an agent stays free its idle time changes only with its load.
            if free and old == agent.load:
                return
            del self.buckets[old][agent]
            del where[agent]
        if free:
            self._put(agent, agent.load, agent.idle_since)

    def _put(self, agent: _Agent, load: int, since: float) -> None:
        buckets = self.buckets
        while len(buckets) <= load:
            buckets.append(OrderedDict())
        bucket = buckets[load]
        if since >= self.latest:
            self.latest = since
            bucket[agent] = since
        elif bucket and bucket[next(reversed(bucket))] > since:
            # Out of order (an agent idle since earlier joins, e.g. its capacity was raised while
            # full, or it joined a department): rebuild this bucket in order. Rare.
            items = sorted([*bucket.items(), (agent, since)], key=lambda item: item[1])
            bucket.clear()
            bucket.update(items)
        else:
            bucket[agent] = since
        self.where[agent] = load
        if load < self.low:
            self.low = load

    def best(self, exclude: Collection[UUID]) -> _Agent | None:
        if not self.where:
            return None
        buckets = self.buckets
        low = self.low
        while not buckets[low]:
            low += 1
        self.low = low
        if not exclude:
            return next(iter(buckets[low]))
        for load in range(low, len(buckets)):
            for agent in buckets[load]:
                if agent.agent_id not in exclude:
                    return agent
        return None


class _IdleIndex:
    """Free agents by (never offered first, time of last offer or of becoming available): a lazy heap."""

    __slots__ = ("heap", "live")

    def __init__(self) -> None:
        self.heap: list[tuple[int, float, int, _Agent]] = []
        self.live: dict[_Agent, tuple[tuple[int, float], int]] = {}  # agent -> (key, token of its heap entry)

    def sync(self, agent: _Agent, free: bool) -> None:
        live = self.live
        current = live.get(agent)
        if not free:
            if current is not None:
                del live[agent]
            return
        key = agent.idle_key()
        if current is not None and current[0] == key:
            return
        token = next(_tokens)
        live[agent] = (key, token)
        heapq.heappush(self.heap, (key[0], key[1], token, agent))
        if len(self.heap) > 2 * len(live) + 64:
            self.heap = [(k[0], k[1], t, a) for a, (k, t) in live.items()]
            heapq.heapify(self.heap)

    def _valid(self, entry: tuple[int, float, int, _Agent]) -> bool:
        current = self.live.get(entry[3])
        return current is not None and current[1] == entry[2]

    def best(self, exclude: Collection[UUID]) -> _Agent | None:
        heap = self.heap
        while heap and not self._valid(heap[0]):
            heapq.heappop(heap)
        if not heap:
            return None
        if not exclude or heap[0][3].agent_id not in exclude:
            return heap[0][3]
        return _first_not_excluded(heap, exclude, self._valid, 3)


class _Ring:
    """Round robin for one queue: free agents in join order, from a cursor, as two lazy heaps."""

    __slots__ = ("ahead", "behind", "cursor", "live")

    def __init__(self) -> None:
        self.ahead: list[tuple[int, int, _Agent]] = []  # (join number, token, agent) after the cursor
        self.behind: list[tuple[int, int, _Agent]] = []  # at or before the cursor: the next lap
        self.cursor = -1
        self.live: dict[_Agent, int] = {}  # agent -> token of its entry

    def sync(self, agent: _Agent, number: int, free: bool) -> None:
        live = self.live
        if not free:
            live.pop(agent, None)
            return
        if agent in live:
            return
        token = next(_tokens)
        live[agent] = token
        heapq.heappush(self.ahead if number > self.cursor else self.behind, (number, token, agent))
        if len(self.ahead) + len(self.behind) > 2 * len(live) + 64:
            self.ahead = [e for e in self.ahead if self._valid(e)]
            self.behind = [e for e in self.behind if self._valid(e)]
            heapq.heapify(self.ahead)
            heapq.heapify(self.behind)

    def _valid(self, entry: tuple[int, int, _Agent]) -> bool:
        return self.live.get(entry[2]) == entry[1]

    def best(self, exclude: Collection[UUID]) -> _Agent | None:
        for heap in (self.ahead, self.behind):
            while heap and not self._valid(heap[0]):
                heapq.heappop(heap)
        if not self.ahead:
            if not self.behind:
                return None
            self.ahead, self.behind, self.cursor = self.behind, [], -1  # a new lap
        if not exclude or self.ahead[0][2].agent_id not in exclude:
            return self.ahead[0][2]
        found = _first_not_excluded(self.ahead, exclude, self._valid, 2)
        if found is None:
            found = _first_not_excluded(self.behind, exclude, self._valid, 2)
        return found

    def picked(self, agent: _Agent, number: int) -> None:
        """Move the cursor past `agent` (call before its load changes)."""
        self.live.pop(agent, None)
        if number < self.cursor:
            # Picked from the next lap (the rest of this lap was excluded): the lap restarts here.
            entries = self.ahead + self.behind
            self.ahead = [e for e in entries if e[0] > number]
            self.behind = [e for e in entries if e[0] <= number]
            heapq.heapify(self.ahead)
            heapq.heapify(self.behind)
        self.cursor = number


def _first_not_excluded(
    heap: list[Any], exclude: Collection[UUID], valid: Callable[[Any], bool], at: int
) -> _Agent | None:
    """The smallest valid entry of `heap` whose agent is not excluded (pops and pushes back)."""
    aside = []
    found = None
    while heap:
        entry = heapq.heappop(heap)
        if not valid(entry):
            continue
        aside.append(entry)
        if entry[at].agent_id not in exclude:
            found = entry[at]
            break
    for entry in aside:
        heapq.heappush(heap, entry)
    return found


_tokens = count()


class _Group:
    """The agents that pass one (department, skill) filter, and the indexes its queues need."""

    __slots__ = (
        "available",
        "by_idle",
        "by_level",
        "by_load",
        "department_id",
        "free",
        "levels",
        "members",
        "queues",
        "rings",
        "skill_id",
    )

    def __init__(self, department_id: UUID | None, skill_id: UUID | None) -> None:
        self.department_id = department_id
        self.skill_id = skill_id
        self.members: dict[_Agent, int] = {}  # agent -> join number (round-robin ring order)
        self.available = 0  # members available
        self.free = 0  # members available with a free slot
        self.queues: dict[UUID, _Queue] = {}
        self.by_load: _LoadIndex | None = None
        self.by_level: list[_LoadIndex] | None = None  # index = skill level
        self.by_idle: _IdleIndex | None = None
        self.levels: dict[_Agent, int] = {}  # agent -> its level of the group's skill (for by_level)
        self.rings: list[_Ring] = []  # the rings of the group's round-robin queues

    def admits(self, agent: _Agent) -> bool:
        return (self.department_id is None or self.department_id in agent.departments) and (
            self.skill_id is None or self.skill_id in agent.skills
        )

    def sync(self, agent: _Agent, free: bool) -> None:
        if self.by_load is not None:
            self.by_load.sync(agent, free)
        if self.by_level is not None:
            self.by_level[self.levels[agent]].sync(agent, free)
        if self.by_idle is not None:
            self.by_idle.sync(agent, free)
        if self.rings:
            number = self.members[agent]
            for ring in self.rings:
                ring.sync(agent, number, free)

    def reindex(self) -> None:
        """Keep exactly the indexes the group's queues need, building new ones from the members."""
        kinds = {queue.kind for queue in self.queues.values()}
        need_load = bool(kinds & {_LEAST_LOAD, _PRIORITY})
        need_level = _SKILLS in kinds
        need_idle = _LONGEST_IDLE in kinds
        fresh = []
        if not need_load:
            self.by_load = None
        elif self.by_load is None:
            self.by_load = _LoadIndex()
            fresh.append(self.by_load.sync)
        if not need_level:
            self.by_level = None
        elif self.by_level is None:
            levels = [_LoadIndex() for _ in range(MAX_SKILL_LEVEL + 1)]
            self.by_level = levels
            fresh.append(lambda agent, free: levels[self.levels[agent]].sync(agent, free))
        if not need_idle:
            self.by_idle = None
        elif self.by_idle is None:
            self.by_idle = _IdleIndex()
            fresh.append(self.by_idle.sync)
        self.rings = [queue.ring for queue in self.queues.values() if queue.ring is not None]
        rings = [
            queue.ring
            for queue in self.queues.values()
            if queue.ring is not None and not queue.ring.live and not queue.ring.ahead and not queue.ring.behind
        ]
        if not fresh and not rings:
            return
        # In idle order, so the load buckets are built by appending.
        for agent in sorted((agent for agent in self.members if agent.free), key=lambda agent: agent.idle_since):
            for sync in fresh:
                sync(agent, True)
            for ring in rings:
                ring.sync(agent, self.members[agent], True)


# -- queues and waiting conversations ----------------------------------------------------

_LEAST_LOAD, _LONGEST_IDLE, _ROUND_ROBIN, _SKILLS, _PRIORITY = range(5)
_KIND = {
    RoutingStrategy.LEAST_LOAD: _LEAST_LOAD,
    RoutingStrategy.LONGEST_IDLE: _LONGEST_IDLE,
    RoutingStrategy.ROUND_ROBIN: _ROUND_ROBIN,
    RoutingStrategy.SKILLS: _SKILLS,
    RoutingStrategy.PRIORITY: _PRIORITY,
}

_Entry = tuple[int, float, int, "_Waiting"]
"""A waiting conversation's place: (-customer level for PRIORITY else 0, waiting_since, arrival number, itself)."""


class _Queue:
    __slots__ = ("by_age", "group", "head", "items", "kind", "queue_id", "ring", "rules", "widen_due")

    def __init__(self, rules: QueueRules, group: _Group) -> None:
        self.queue_id = rules.queue_id
        self.rules = rules
        self.kind = _KIND[rules.strategy]
        self.group = group
        self.items: list[_Entry] = []  # sorted from `head` on; entries before `head` are gone
        self.head = 0
        self.ring: _Ring | None = _Ring() if self.kind == _ROUND_ROBIN else None
        self.by_age: list[tuple[float, int, _Waiting]] | None = [] if self.kind == _PRIORITY else None
        self.widen_due: float | None = None

    def waiting(self) -> int:
        return len(self.items) - self.head

    def required_level(self, waiting_since: float, now: float) -> int:
        rules = self.rules
        steps = math.floor((now - waiting_since) / rules.widen_after_seconds + _EPSILON)
        return max(MIN_SKILL_LEVEL, rules.min_skill_level - max(0, steps))


class _Waiting:
    __slots__ = ("conversation_id", "customer_level", "entry", "exclude", "queue", "waiting_since")

    def __init__(
        self, conversation_id: UUID, queue: _Queue, customer_level: int, waiting_since: float, exclude: frozenset[UUID]
    ) -> None:
        self.conversation_id = conversation_id
        self.queue = queue
        self.customer_level = customer_level
        self.waiting_since = waiting_since
        self.exclude = exclude
        self.entry: _Entry = (0, waiting_since, 0, self)


class Router:
    """Agents, queues and waiting conversations of one account; decides the offers. See the module doc."""

    def __init__(self) -> None:
        self._agents: dict[UUID, _Agent] = {}
        self._queues: dict[UUID, _Queue] = {}
        self._groups: dict[tuple[UUID | None, UUID | None], _Group] = {}
        self._waiting: dict[UUID, _Waiting] = {}
        self._dirty: dict[_Queue, None] = {}  # queues to look at in the next `next_matches`
        self._timers: list[tuple[float, int, UUID]] = []  # (due, number, queue): SKILLS widening
        self._numbers = count()
        self._now = -math.inf

    def _tick(self, now: float) -> float:
        if now > self._now:
            self._now = now
        return self._now

    # -- queues ------------------------------------------------------------------------

    def set_queue(self, rules: QueueRules) -> None:
        """Add a queue or replace its rules; conversations waiting in it stay, in the new order."""
        old = self._queues.get(rules.queue_id)
        if old is not None:
            if old.rules == rules:
                return
            waiting = [entry[3] for entry in old.items[old.head :]]
            self._detach(old)
        else:
            waiting = []
        queue = _Queue(rules, self._group(rules.department_id, rules.skill_id))
        self._queues[rules.queue_id] = queue
        queue.group.queues[rules.queue_id] = queue
        queue.group.reindex()
        for item in waiting:
            item.queue = queue
            self._insert(queue, item)
        if waiting:
            self._dirty[queue] = None

    def remove_queue(self, queue_id: UUID) -> list[UUID]:
        """Forget a queue; returns the conversations that were waiting in it, in its order."""
        queue = self._queues[queue_id]
        gone = [entry[3].conversation_id for entry in queue.items[queue.head :]]
        for conversation_id in gone:
            del self._waiting[conversation_id]
        self._detach(queue)
        return gone

    def _detach(self, queue: _Queue) -> None:
        del self._queues[queue.queue_id]
        self._dirty.pop(queue, None)
        group = queue.group
        del group.queues[queue.queue_id]
        if group.queues:
            group.reindex()
            return
        del self._groups[(group.department_id, group.skill_id)]
        for agent in group.members:
            agent.groups.remove(group)

    def _group(self, department_id: UUID | None, skill_id: UUID | None) -> _Group:
        group = self._groups.get((department_id, skill_id))
        if group is None:
            group = self._groups[(department_id, skill_id)] = _Group(department_id, skill_id)
            for agent in self._agents.values():
                if group.admits(agent):
                    self._join(group, agent, next(self._numbers))
        return group

    # -- agents --------------------------------------------------------------------------

    def set_agent(
        self,
        agent_id: UUID,
        *,
        capacity: int,
        departments: frozenset[UUID],
        skills: Mapping[UUID, int],
        now: float,
    ) -> None:
        """Add an agent (unavailable, load 0) or update its profile; load and availability are kept."""
        now = self._tick(now)
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        for level in skills.values():
            if not MIN_SKILL_LEVEL <= level <= MAX_SKILL_LEVEL:
                raise ValueError(f"skill levels must be {MIN_SKILL_LEVEL}..{MAX_SKILL_LEVEL}")
        agent = self._agents.get(agent_id)
        numbers: dict[int, int] = {}
        if agent is None:
            agent = self._agents[agent_id] = _Agent(agent_id, capacity, frozenset(departments), dict(skills), now)
        else:
            for group in list(agent.groups):
                numbers[id(group)] = group.members[agent]
                self._leave(group, agent)
            agent.capacity = capacity
            agent.departments = frozenset(departments)
            agent.skills = dict(skills)
            agent.free = agent.available and agent.load < capacity
        for group in self._groups.values():
            if group.admits(agent):
                number = numbers.get(id(group))
                self._join(group, agent, next(self._numbers) if number is None else number)
        if agent.free:
            self._mark_dirty(agent)

    def remove_agent(self, agent_id: UUID) -> None:
        """Signed out: forget the agent, its load and availability."""
        agent = self._agents.pop(agent_id, None)
        if agent is not None:
            for group in list(agent.groups):
                self._leave(group, agent)

    def _join(self, group: _Group, agent: _Agent, number: int) -> None:
        group.members[agent] = number
        if group.skill_id is not None:
            group.levels[agent] = agent.skills[group.skill_id]
        agent.groups.append(group)
        group.available += agent.available
        group.free += agent.free
        if agent.free:
            group.sync(agent, True)

    def _leave(self, group: _Group, agent: _Agent) -> None:
        group.sync(agent, False)
        group.available -= agent.available
        group.free -= agent.free
        del group.members[agent]
        group.levels.pop(agent, None)
        agent.groups.remove(group)

    def set_available(self, agent_id: UUID, available: bool, now: float) -> None:
        """Online (may receive offers) or not. Setting the state it already has changes nothing."""
        now = self._tick(now)
        agent = self._agents[agent_id]
        if agent.available == available:
            return
        agent.available = available
        step = 1 if available else -1
        for group in agent.groups:
            group.available += step
        if available:
            agent.available_since = now
            agent.idle_since = now
        self._refresh(agent, freed=available)

    def load(self, agent_id: UUID) -> int:
        """Active plus reserved conversations of the agent (0 for an unknown agent)."""
        agent = self._agents.get(agent_id)
        return 0 if agent is None else agent.load

    def capacity(self, agent_id: UUID) -> int:
        return self._agents[agent_id].capacity

    def is_available(self, agent_id: UUID) -> bool:
        agent = self._agents.get(agent_id)
        return agent is not None and agent.available

    def release(self, agent_id: UUID, now: float) -> None:
        """One slot of the agent is free again (conversation ended, offer declined or expired)."""
        now = self._tick(now)
        agent = self._agents.get(agent_id)
        if agent is None or agent.load == 0:
            return
        agent.load -= 1
        agent.idle_since = now
        self._refresh(agent, freed=True)

    def occupy(self, agent_id: UUID, now: float) -> None:
        """One slot taken outside `next_matches` (a direct transfer, restoring state after a restart).

        This is the one way an agent's load may exceed its capacity: the caller decided so.
        `next_matches` gives such an agent nothing until its load is below capacity again.
        """
        now = self._tick(now)
        agent = self._agents[agent_id]
        agent.load += 1
        agent.idle_since = now
        agent.last_offer = now
        self._refresh(agent, freed=False)

    def queue_ids_of_agent(self, agent_id: UUID) -> frozenset[UUID]:
        """The queues the agent is eligible for (any skill level)."""
        agent = self._agents.get(agent_id)
        if agent is None:
            return frozenset()
        return frozenset(queue_id for group in agent.groups for queue_id in group.queues)

    def _refresh(self, agent: _Agent, *, freed: bool) -> None:
        """After a change of load or availability: update the agent's indexes, mark queues dirty."""
        free = agent.available and agent.load < agent.capacity
        delta = free - agent.free
        agent.free = free
        for group in agent.groups:
            group.free += delta
            group.sync(agent, free)
        if freed and free:
            self._mark_dirty(agent)

    def _mark_dirty(self, agent: _Agent) -> None:
        dirty = self._dirty
        for group in agent.groups:
            for queue in group.queues.values():
                if queue.head < len(queue.items):
                    dirty[queue] = None

    # -- conversations ---------------------------------------------------------------------

    def enqueue(
        self,
        conversation_id: UUID,
        queue_id: UUID,
        *,
        customer_level: int = 0,
        waiting_since: float,
        exclude: frozenset[UUID] = _NO_EXCLUSION,
    ) -> None:
        """Put a conversation in a queue. Re-queue with the original `waiting_since` to keep its place.

        `exclude`: agents who declined or missed it; they are skipped until they are every available
        agent eligible for the queue (rule 4).
        """
        if conversation_id in self._waiting:
            raise ValueError(f"conversation {conversation_id} is already waiting")
        queue = self._queues[queue_id]
        item = _Waiting(conversation_id, queue, customer_level, waiting_since, frozenset(exclude))
        self._waiting[conversation_id] = item
        self._insert(queue, item)
        self._dirty[queue] = None

    def _insert(self, queue: _Queue, item: _Waiting) -> None:
        number = next(self._numbers)
        priority = -item.customer_level if queue.kind == _PRIORITY else 0
        item.entry = entry = (priority, item.waiting_since, number, item)
        items = queue.items
        if not items or items[-1] < entry:
            items.append(entry)
        else:
            items.insert(bisect_left(items, entry, queue.head), entry)
        if queue.by_age is not None:
            heapq.heappush(queue.by_age, (item.waiting_since, number, item))

    def withdraw(self, conversation_id: UUID) -> bool:
        """The conversation stops waiting (customer left, moved elsewhere); False if it was not waiting."""
        item = self._waiting.pop(conversation_id, None)
        if item is None:
            return False
        self._remove(item)
        return True

    def _remove(self, item: _Waiting) -> None:
        queue = item.queue
        items = queue.items
        index = bisect_left(items, item.entry, queue.head)
        if index == queue.head:
            queue.head += 1
            if queue.head > 64 and 2 * queue.head > len(items):
                del items[: queue.head]
                queue.head = 0
        else:
            del items[index]
        by_age = queue.by_age
        if by_age is not None and len(by_age) > 2 * queue.waiting() + 64:
            queue.by_age = [(e[1], e[2], e[3]) for e in items[queue.head :]]
            heapq.heapify(queue.by_age)

    def move(self, conversation_id: UUID, to_queue_id: UUID) -> None:
        """Overflow: the conversation waits in another queue, keeping waiting_since, level and exclusions."""
        item = self._waiting[conversation_id]
        target = self._queues[to_queue_id]
        if item.queue is target:
            return
        self._remove(item)
        item.queue = target
        self._insert(target, item)
        self._dirty[target] = None

    def position(self, conversation_id: UUID) -> int | None:
        """1 for the next conversation of its queue (in that queue's order); None if not waiting."""
        item = self._waiting.get(conversation_id)
        if item is None:
            return None
        queue = item.queue
        return bisect_left(queue.items, item.entry, queue.head) - queue.head + 1

    def waiting(self, queue_id: UUID) -> int:
        return self._queues[queue_id].waiting()

    def waiting_in(self, queue_id: UUID) -> list[UUID]:
        """The conversations waiting in the queue, in its order (the next to be offered first)."""
        queue = self._queues.get(queue_id)
        if queue is None:
            return []
        return [entry[3].conversation_id for entry in queue.items[queue.head :]]

    def waiting_since(self, conversation_id: UUID) -> float | None:
        item = self._waiting.get(conversation_id)
        return None if item is None else item.waiting_since

    def queue_of(self, conversation_id: UUID) -> UUID | None:
        item = self._waiting.get(conversation_id)
        return None if item is None else item.queue.queue_id

    def longest_waiting(self, queue_id: UUID, now: float) -> float:
        """Seconds the longest-waiting conversation of the queue has waited; 0 when empty."""
        queue = self._queues[queue_id]
        if queue.head == len(queue.items):
            return 0.0
        if queue.by_age is None:
            oldest = queue.items[queue.head][1]
        else:
            by_age = queue.by_age
            while True:
                _, number, item = by_age[0]
                if item.queue is queue and item.entry[2] == number and self._waiting.get(item.conversation_id) is item:
                    break
                heapq.heappop(by_age)
            oldest = by_age[0][0]
        return max(0.0, now - oldest)

    def available_agents(self, queue_id: UUID) -> int:
        """Available agents eligible for the queue, with or without a free slot (any skill level)."""
        return self._queues[queue_id].group.available

    # -- matching ----------------------------------------------------------------------------

    def next_matches(self, now: float, limit: int | None = None) -> list[Match]:
        """Every offer possible now (at most `limit`), oldest waiting conversation first across queues.

        Each match reserves one slot of its agent and removes the conversation from waiting.
        """
        now = self._tick(now)
        if self._timers and self._timers[0][0] <= now:
            self._widen(now)
        if not self._dirty or (limit is not None and limit <= 0):
            return []
        order = []
        for queue in self._dirty:
            if queue.head < len(queue.items):
                head = queue.items[queue.head]
                order.append((head[1], head[2], queue))
        self._dirty = {}
        heapq.heapify(order)
        matches: list[Match] = []
        while order:
            if limit is not None and len(matches) >= limit:
                for _, _, queue in order:
                    self._dirty[queue] = None
                break
            _, _, queue = heapq.heappop(order)
            found = self._find(queue, now)
            if found is None:
                continue  # blocked until an agent of its group frees a slot (or its level widens)
            item, agent = found
            del self._waiting[item.conversation_id]
            self._remove(item)
            if queue.ring is not None:
                queue.ring.picked(agent, queue.group.members[agent])
            agent.load += 1
            agent.idle_since = now
            agent.last_offer = now
            self._refresh(agent, freed=False)
            matches.append(Match(item.conversation_id, queue.queue_id, agent.agent_id))
            if queue.head < len(queue.items):
                head = queue.items[queue.head]
                heapq.heappush(order, (head[1], head[2], queue))
        return matches

    def _widen(self, now: float) -> None:
        """Queues whose skill level widened by `now` are looked at again."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            due, _, queue_id = heapq.heappop(timers)
            queue = self._queues.get(queue_id)
            if queue is not None and queue.widen_due == due:
                queue.widen_due = None
                if queue.head < len(queue.items):
                    self._dirty[queue] = None

    def _find(self, queue: _Queue, now: float) -> tuple[_Waiting, _Agent] | None:
        """The first conversation of the queue that a free agent can take now, and that agent."""
        group = queue.group
        if not group.free:
            return None
        skills = queue.kind == _SKILLS
        level = MIN_SKILL_LEVEL
        items = queue.items
        for index in range(queue.head, len(items)):
            item = items[index][3]
            if skills:
                level = queue.required_level(item.waiting_since, now)
            agent = self._pick(queue, item.exclude, level)
            if agent is not None:
                return item, agent
            if item.exclude:
                if not self._excludes_everyone(group, item.exclude):
                    continue  # only agents it may not have are free: the next conversation may take them
                item.exclude = _NO_EXCLUSION
                agent = self._pick(queue, item.exclude, level)
                if agent is not None:
                    return item, agent
            # Nobody free for this conversation, nor for those after it (their level is not lower).
            if skills and level > MIN_SKILL_LEVEL:
                rules = queue.rules
                steps = rules.min_skill_level - level + 1
                due = item.waiting_since + steps * rules.widen_after_seconds
                if queue.widen_due is None or due < queue.widen_due:
                    queue.widen_due = due
                    heapq.heappush(self._timers, (due, next(self._numbers), queue.queue_id))
            return None
        return None

    def _pick(self, queue: _Queue, exclude: frozenset[UUID], level: int) -> _Agent | None:
        kind = queue.kind
        group = queue.group
        if kind == _LEAST_LOAD or kind == _PRIORITY:
            return group.by_load.best(exclude)  # type: ignore[union-attr]
        if kind == _LONGEST_IDLE:
            return group.by_idle.best(exclude)  # type: ignore[union-attr]
        if kind == _ROUND_ROBIN:
            return queue.ring.best(exclude)  # type: ignore[union-attr]
        # SKILLS: the best of the heads of the levels >= level.
        prefer_level = queue.rules.prefer_higher_level
        levels: list[_LoadIndex] = group.by_level  # type: ignore[assignment]
        best: _Agent | None = None
        best_key: tuple[int, int, float] = (0, 0, 0.0)
        for at in range(level, MAX_SKILL_LEVEL + 1):
            index = levels[at]
            if not index.where:
                continue
            agent = index.best(exclude)
            if agent is None:
                continue
            key = (agent.load, -at if prefer_level else 0, agent.idle_since)
            if best is None or key < best_key:
                best, best_key = agent, key
        return best

    def _excludes_everyone(self, group: _Group, exclude: frozenset[UUID]) -> bool:
        excluded = 0
        for agent_id in exclude:
            agent = self._agents.get(agent_id)
            if agent is not None and agent.available and agent in group.members:
                excluded += 1
        return excluded >= group.available
