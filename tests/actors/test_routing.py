"""The routing core: who gets which waiting conversation, under each strategy."""

from __future__ import annotations

import uuid
from collections import Counter
from uuid import UUID

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kefu.actors.routing import Match, QueueRules, Router, RoutingStrategy

Q = uuid.UUID(int=1)
SALES = uuid.UUID(int=100)
SUPPORT = uuid.UUID(int=101)
CHINESE = uuid.UUID(int=200)


def ids(n: int, base: int = 1000) -> list[UUID]:
    return [uuid.UUID(int=base + i) for i in range(n)]


def router_with(
    strategy: RoutingStrategy, agents: list[UUID], *, capacity: int = 5, now: float = 0.0, **rules: object
) -> Router:
    router = Router()
    router.set_queue(QueueRules(Q, strategy, **rules))  # type: ignore[arg-type]
    for agent in agents:
        router.set_agent(agent, capacity=capacity, departments=frozenset(), skills={}, now=now)
        router.set_available(agent, True, now)
    return router


def enqueue_many(router: Router, conversations: list[UUID], *, at: float = 0.0, queue: UUID = Q) -> None:
    for i, conversation in enumerate(conversations):
        router.enqueue(conversation, queue, waiting_since=at + i * 0.001)


# -- least load -----------------------------------------------------------------------


def test_least_load_spreads_conversations_evenly() -> None:
    agents = ids(10)
    router = router_with(RoutingStrategy.LEAST_LOAD, agents)
    enqueue_many(router, ids(50, 5000))
    matches = router.next_matches(now=1.0)
    assert len(matches) == 50
    assert Counter(m.agent_id for m in matches) == dict.fromkeys(agents, 5)
    assert router.waiting(Q) == 0


def test_least_load_never_exceeds_capacity_and_leaves_the_rest_waiting() -> None:
    agents = ids(3)
    router = router_with(RoutingStrategy.LEAST_LOAD, agents, capacity=2)
    enqueue_many(router, ids(10, 5000))
    assert len(router.next_matches(now=1.0)) == 6
    assert router.waiting(Q) == 4
    assert [router.load(a) for a in agents] == [2, 2, 2]
    assert router.next_matches(now=2.0) == []
    router.release(agents[1], now=3.0)
    (match,) = router.next_matches(now=3.0)
    assert match.agent_id == agents[1]
    assert match.conversation_id == uuid.UUID(int=5006)  # the oldest still waiting


def test_least_load_tie_goes_to_the_agent_idle_longest() -> None:
    a, b, c = ids(3)
    router = router_with(RoutingStrategy.LEAST_LOAD, [a, b, c])
    for agent, t in ((a, 1.0), (b, 2.0), (c, 3.0)):
        router.occupy(agent, now=t)
    # All have load 1; b's load changes last, so a (unchanged since t=1) has been idle longest.
    router.occupy(b, now=4.0)
    router.release(b, now=5.0)
    router.enqueue(uuid.uuid4(), Q, waiting_since=6.0)
    assert [m.agent_id for m in router.next_matches(now=6.0)] == [a]
    router.enqueue(uuid.uuid4(), Q, waiting_since=7.0)
    assert [m.agent_id for m in router.next_matches(now=7.0)] == [c]  # load 1 beats a's 2; c idle since 3 < b's 5


# -- longest idle ---------------------------------------------------------------------


def test_longest_idle_picks_the_agent_offered_longest_ago() -> None:
    a, b, c = ids(3)
    router = router_with(RoutingStrategy.LONGEST_IDLE, [a, b, c], now=0.0)
    router.occupy(b, now=1.0)  # b: last assignment at 1
    router.occupy(a, now=2.0)  # a: at 2; c never assigned: first
    router.occupy(a, now=2.5)
    router.enqueue(uuid.uuid4(), Q, waiting_since=3.0)
    assert [m.agent_id for m in router.next_matches(now=3.0)] == [c]
    router.enqueue(uuid.uuid4(), Q, waiting_since=4.0)
    # b was offered at 1, a at 2.5 (a's higher load does not matter to this strategy)
    assert [m.agent_id for m in router.next_matches(now=4.0)] == [b]
    router.release(b, now=4.5)  # freeing a slot does not make b "offered later"
    router.enqueue(uuid.uuid4(), Q, waiting_since=5.0)
    assert [m.agent_id for m in router.next_matches(now=5.0)] == [a]


def test_longest_idle_never_assigned_agents_go_in_the_order_they_became_available() -> None:
    a, b = ids(2)
    router = Router()
    router.set_queue(QueueRules(Q, RoutingStrategy.LONGEST_IDLE))
    for agent in (a, b):
        router.set_agent(agent, capacity=1, departments=frozenset(), skills={}, now=0.0)
    router.set_available(b, True, now=1.0)
    router.set_available(a, True, now=2.0)
    enqueue_many(router, ids(2, 5000), at=3.0)
    assert [m.agent_id for m in router.next_matches(now=3.0)] == [b, a]


# -- round robin ----------------------------------------------------------------------


def test_round_robin_cycles_in_join_order_and_skips_full_agents() -> None:
    a, b, c = ids(3)
    router = router_with(RoutingStrategy.ROUND_ROBIN, [a, b, c], capacity=10)
    enqueue_many(router, ids(7, 5000))
    assert [m.agent_id for m in router.next_matches(now=1.0)] == [a, b, c, a, b, c, a]
    # b fills up: the ring goes on without it
    for _ in range(router.capacity(b) - router.load(b)):
        router.occupy(b, now=2.0)
    enqueue_many(router, ids(4, 6000), at=2.0)
    assert [m.agent_id for m in router.next_matches(now=2.0)] == [c, a, c, a]


def test_round_robin_cursor_is_kept_between_calls() -> None:
    a, b, c = ids(3)
    router = router_with(RoutingStrategy.ROUND_ROBIN, [a, b, c], capacity=10)
    picked = []
    for i in range(6):
        router.enqueue(uuid.uuid4(), Q, waiting_since=float(i))
        picked += [m.agent_id for m in router.next_matches(now=float(i))]
    assert picked == [a, b, c, a, b, c]


# -- skills ---------------------------------------------------------------------------


def test_skills_widen_the_required_level_with_the_wait() -> None:
    junior = uuid.UUID(int=7)
    router = Router()
    router.set_queue(
        QueueRules(Q, RoutingStrategy.SKILLS, skill_id=CHINESE, min_skill_level=5, widen_after_seconds=30.0)
    )
    router.set_agent(junior, capacity=5, departments=frozenset(), skills={CHINESE: 3}, now=0.0)
    router.set_available(junior, True, now=0.0)
    conversation = uuid.uuid4()
    router.enqueue(conversation, Q, waiting_since=100.0)
    assert router.next_matches(now=100.0) == []
    assert router.next_matches(now=129.9) == []  # level 5
    assert router.next_matches(now=130.0) == []  # level 4
    assert router.next_matches(now=159.9) == []
    assert router.next_matches(now=160.0) == [Match(conversation, Q, junior)]  # level 3 after 2 x 30 s


def test_skills_prefer_a_qualified_agent_and_ignore_agents_without_the_skill() -> None:
    expert, junior, none = ids(3)
    router = Router()
    router.set_queue(QueueRules(Q, RoutingStrategy.SKILLS, skill_id=CHINESE, min_skill_level=5))
    router.set_agent(expert, capacity=1, departments=frozenset(), skills={CHINESE: 8}, now=0.0)
    router.set_agent(junior, capacity=5, departments=frozenset(), skills={CHINESE: 2}, now=0.0)
    router.set_agent(none, capacity=5, departments=frozenset(), skills={}, now=0.0)
    for agent in (expert, junior, none):
        router.set_available(agent, True, now=0.0)
    assert router.available_agents(Q) == 2
    assert router.queue_ids_of_agent(none) == frozenset()
    enqueue_many(router, ids(2, 5000), at=1.0)
    assert [m.agent_id for m in router.next_matches(now=1.0)] == [expert]
    # after 3 widenings (level 2) the junior takes the second one; the agent without the skill never does
    assert router.next_matches(now=1.0 + 89.0) == []
    assert [m.agent_id for m in router.next_matches(now=1.001 + 90.0)] == [junior]


def test_skills_least_load_among_eligible_and_optionally_higher_level_first() -> None:
    l6, l9 = ids(2)
    for prefer, expected in ((False, l6), (True, l9)):
        router = Router()
        router.set_queue(
            QueueRules(Q, RoutingStrategy.SKILLS, skill_id=CHINESE, min_skill_level=5, prefer_higher_level=prefer)
        )
        router.set_agent(l6, capacity=5, departments=frozenset(), skills={CHINESE: 6}, now=0.0)
        router.set_agent(l9, capacity=5, departments=frozenset(), skills={CHINESE: 9}, now=0.0)
        router.set_available(l6, True, now=0.0)
        router.set_available(l9, True, now=0.5)  # l6 idle longer
        router.enqueue(uuid.uuid4(), Q, waiting_since=1.0)
        assert [m.agent_id for m in router.next_matches(now=1.0)] == [expected]


# -- priority -------------------------------------------------------------------------


def test_priority_serves_higher_customer_level_first_then_fifo() -> None:
    agent = uuid.UUID(int=7)
    router = Router()
    router.set_queue(QueueRules(Q, RoutingStrategy.PRIORITY))
    router.set_agent(agent, capacity=1, departments=frozenset(), skills={}, now=0.0)
    early0, early0b, vip, gold = ids(4, 5000)
    router.enqueue(early0, Q, customer_level=0, waiting_since=1.0)
    router.enqueue(early0b, Q, customer_level=0, waiting_since=2.0)
    router.enqueue(gold, Q, customer_level=1, waiting_since=3.0)
    router.enqueue(vip, Q, customer_level=3, waiting_since=4.0)
    assert [router.position(c) for c in (vip, gold, early0, early0b)] == [1, 2, 3, 4]
    assert router.longest_waiting(Q, now=10.0) == pytest.approx(9.0)  # early0, although it is last in line
    router.set_available(agent, True, now=5.0)
    served = []
    for t in range(6, 10):
        served += [m.conversation_id for m in router.next_matches(now=float(t))]
        router.release(agent, now=float(t))
    assert served == [vip, gold, early0, early0b]


# -- scoping, exclusions, overflow, positions ---------------------------------------------


def test_department_scoping() -> None:
    sales_agent, support_agent, both = ids(3)
    sales_q, support_q = ids(2, 10)
    router = Router()
    router.set_queue(QueueRules(sales_q, RoutingStrategy.LEAST_LOAD, department_id=SALES))
    router.set_queue(QueueRules(support_q, RoutingStrategy.LEAST_LOAD, department_id=SUPPORT))
    router.set_agent(sales_agent, capacity=1, departments=frozenset({SALES}), skills={}, now=0.0)
    router.set_agent(support_agent, capacity=1, departments=frozenset({SUPPORT}), skills={}, now=0.0)
    router.set_agent(both, capacity=1, departments=frozenset({SALES, SUPPORT}), skills={}, now=0.0)
    router.set_available(sales_agent, True, now=0.0)
    router.set_available(support_agent, True, now=0.0)
    assert router.available_agents(sales_q) == 1
    assert router.queue_ids_of_agent(both) == {sales_q, support_q}
    enqueue_many(router, ids(3, 5000), queue=support_q)
    assert {m.agent_id for m in router.next_matches(now=1.0)} == {support_agent}
    assert router.waiting(support_q) == 2
    router.set_available(both, True, now=2.0)
    assert [m.agent_id for m in router.next_matches(now=2.0)] == [both]
    assert router.waiting(support_q) == 1
    assert router.load(sales_agent) == 0


def test_unavailable_agents_get_nothing_but_keep_their_load() -> None:
    a, b = ids(2)
    router = router_with(RoutingStrategy.LEAST_LOAD, [a, b], capacity=3)
    router.set_available(a, False, now=1.0)
    enqueue_many(router, ids(5, 5000), at=1.0)
    assert {m.agent_id for m in router.next_matches(now=1.0)} == {b}
    assert router.waiting(Q) == 2
    assert router.available_agents(Q) == 1
    router.set_available(b, False, now=2.0)
    router.release(b, now=2.0)
    assert router.load(b) == 2
    assert router.next_matches(now=2.0) == []
    assert router.available_agents(Q) == 0


def test_exclusions_are_skipped_until_they_cover_every_available_agent() -> None:
    a, b = ids(2)
    router = router_with(RoutingStrategy.LEAST_LOAD, [a, b], capacity=1)
    router.occupy(b, now=0.5)  # b is busy, a is free
    declined, other = ids(2, 5000)
    router.enqueue(declined, Q, waiting_since=1.0, exclude=frozenset({a}))
    router.enqueue(other, Q, waiting_since=2.0)
    # a declined the first one: it takes the second instead, the first waits for b
    assert router.next_matches(now=3.0) == [Match(other, Q, a)]
    router.release(b, now=4.0)
    assert router.next_matches(now=4.0) == [Match(declined, Q, b)]
    # when every available agent declined, the exclusion is forgotten
    again = uuid.uuid4()
    router.release(a, now=5.0)
    router.enqueue(again, Q, waiting_since=1.0, exclude=frozenset({a, b}))
    assert router.next_matches(now=5.0) == [Match(again, Q, a)]


@pytest.mark.parametrize("strategy", [RoutingStrategy.LONGEST_IDLE, RoutingStrategy.ROUND_ROBIN])
def test_exclusions_with_heap_strategies(strategy: RoutingStrategy) -> None:
    a, b, c = ids(3)
    router = router_with(strategy, [a, b, c], capacity=5)
    conversation = uuid.uuid4()
    router.enqueue(conversation, Q, waiting_since=1.0, exclude=frozenset({a, b}))
    assert router.next_matches(now=1.0) == [Match(conversation, Q, c)]
    router.enqueue(uuid.uuid4(), Q, waiting_since=2.0)
    assert [m.agent_id for m in router.next_matches(now=2.0)] == [a]


def test_overflow_move_keeps_waiting_since_and_place() -> None:
    main, overflow = ids(2, 10)
    router = Router()
    router.set_queue(QueueRules(main, RoutingStrategy.LEAST_LOAD))
    router.set_queue(QueueRules(overflow, RoutingStrategy.LEAST_LOAD))
    old, newer = ids(2, 5000)
    router.enqueue(newer, overflow, waiting_since=50.0)
    router.enqueue(old, main, waiting_since=10.0)
    router.move(old, overflow)
    assert router.waiting(main) == 0
    assert router.waiting(overflow) == 2
    assert router.waiting_since(old) == 10.0
    assert router.position(old) == 1
    assert router.position(newer) == 2
    assert router.longest_waiting(overflow, now=60.0) == pytest.approx(50.0)
    assert router.longest_waiting(main, now=60.0) == 0.0


def test_positions_withdraw_and_requeue_keeps_the_place() -> None:
    router = Router()
    router.set_queue(QueueRules(Q, RoutingStrategy.LEAST_LOAD))
    conversations = ids(5, 5000)
    enqueue_many(router, conversations)
    assert [router.position(c) for c in conversations] == [1, 2, 3, 4, 5]
    assert router.withdraw(conversations[1])
    assert not router.withdraw(conversations[1])
    assert router.position(conversations[1]) is None
    assert [router.position(c) for c in conversations[2:]] == [2, 3, 4]
    # a declined offer comes back with its original waiting_since: second again, not last
    router.enqueue(conversations[1], Q, waiting_since=0.001)
    assert [router.position(c) for c in conversations] == [1, 2, 3, 4, 5]
    assert router.remove_queue(Q) == conversations
    assert router.waiting_since(conversations[0]) is None


def test_queues_compete_oldest_head_first() -> None:
    agent = uuid.UUID(int=7)
    first, second = ids(2, 10)
    router = Router()
    router.set_queue(QueueRules(first, RoutingStrategy.LEAST_LOAD))
    router.set_queue(QueueRules(second, RoutingStrategy.LEAST_LOAD))
    router.set_agent(agent, capacity=1, departments=frozenset(), skills={}, now=0.0)
    router.set_available(agent, True, now=0.0)
    young, old = ids(2, 5000)
    router.enqueue(young, first, waiting_since=5.0)
    router.enqueue(old, second, waiting_since=1.0)
    assert router.next_matches(now=6.0) == [Match(old, second, agent)]


def test_limit_leaves_the_rest_for_the_next_call() -> None:
    router = router_with(RoutingStrategy.LEAST_LOAD, ids(5))
    enqueue_many(router, ids(8, 5000))
    assert len(router.next_matches(now=1.0, limit=3)) == 3
    assert len(router.next_matches(now=1.0)) == 5


def test_rules_are_checked() -> None:
    with pytest.raises(ValueError):
        QueueRules(Q, RoutingStrategy.SKILLS)
    with pytest.raises(ValueError):
        QueueRules(Q, RoutingStrategy.LEAST_LOAD, min_skill_level=11)
    assert QueueRules(Q, "priority").strategy is RoutingStrategy.PRIORITY  # type: ignore[arg-type]
    router = Router()
    with pytest.raises(KeyError):
        router.enqueue(uuid.uuid4(), Q, waiting_since=0.0)


# -- stateful: the invariants under random interleavings ----------------------------------

AGENTS = ids(5)
QUEUES = ids(4, 10)
DEPARTMENTS = [SALES, SUPPORT]
SKILL_RULES = QueueRules(QUEUES[3], RoutingStrategy.SKILLS, skill_id=CHINESE, min_skill_level=4, widen_after_seconds=5)
RULES = [
    QueueRules(QUEUES[0], RoutingStrategy.LEAST_LOAD),
    QueueRules(QUEUES[1], RoutingStrategy.ROUND_ROBIN, department_id=SALES),
    QueueRules(QUEUES[2], RoutingStrategy.PRIORITY, department_id=SUPPORT),
    SKILL_RULES,
]
ALT_RULES = [
    QueueRules(QUEUES[0], RoutingStrategy.LONGEST_IDLE, department_id=SUPPORT),
    QueueRules(QUEUES[1], RoutingStrategy.LEAST_LOAD, department_id=SALES, skill_id=CHINESE),
    QueueRules(QUEUES[2], RoutingStrategy.ROUND_ROBIN),
    QueueRules(QUEUES[3], RoutingStrategy.SKILLS, skill_id=CHINESE, min_skill_level=2, prefer_higher_level=True),
]


class RouterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.router = Router()
        self.now = 0.0
        self.queue_rules = {r.queue_id: r for r in RULES}
        for r in RULES:
            self.router.set_queue(r)
        self.profiles: dict[UUID, tuple[int, frozenset[UUID], dict[UUID, int]]] = {}
        self.available: set[UUID] = set()
        self.load: Counter[UUID] = Counter()
        self.waiting: dict[UUID, tuple[UUID, float, frozenset[UUID]]] = {}  # conversation -> queue, since, exclude
        self.active: list[tuple[UUID, UUID]] = []  # (conversation, agent)
        self.matched: set[UUID] = set()
        self.withdrawn: set[UUID] = set()
        self.counter = 0

    def eligible(self, agent: UUID, rules: QueueRules) -> bool:
        _, departments, skills = self.profiles[agent]
        return (rules.department_id is None or rules.department_id in departments) and (
            rules.skill_id is None or rules.skill_id in skills
        )

    @rule(
        agent=st.sampled_from(AGENTS),
        capacity=st.integers(0, 3),
        departments=st.sets(st.sampled_from(DEPARTMENTS)),
        level=st.none() | st.integers(1, 10),
    )
    def set_agent(self, agent: UUID, capacity: int, departments: set[UUID], level: int | None) -> None:
        skills = {} if level is None else {CHINESE: level}
        self.profiles[agent] = (capacity, frozenset(departments), skills)
        self.router.set_agent(agent, capacity=capacity, departments=frozenset(departments), skills=skills, now=self.now)

    @precondition(lambda self: self.profiles)
    @rule(data=st.data(), available=st.booleans())
    def set_available(self, data: st.DataObject, available: bool) -> None:
        agent = data.draw(st.sampled_from(sorted(self.profiles)))
        self.router.set_available(agent, available, self.now)
        (self.available.add if available else self.available.discard)(agent)

    @rule(
        queue=st.sampled_from(QUEUES),
        level=st.integers(0, 3),
        back=st.floats(0, 20),
        exclude=st.sets(st.sampled_from(AGENTS), max_size=2),
    )
    def enqueue(self, queue: UUID, level: int, back: float, exclude: set[UUID]) -> None:
        self.counter += 1
        conversation = uuid.UUID(int=10_000 + self.counter)
        since = self.now - back
        self.router.enqueue(conversation, queue, customer_level=level, waiting_since=since, exclude=frozenset(exclude))
        self.waiting[conversation] = (queue, since, frozenset(exclude))

    @precondition(lambda self: self.waiting)
    @rule(data=st.data())
    def withdraw(self, data: st.DataObject) -> None:
        conversation = data.draw(st.sampled_from(sorted(self.waiting)))
        assert self.router.withdraw(conversation)
        del self.waiting[conversation]
        self.withdrawn.add(conversation)

    @precondition(lambda self: self.waiting)
    @rule(data=st.data(), to=st.sampled_from(QUEUES))
    def move(self, data: st.DataObject, to: UUID) -> None:
        conversation = data.draw(st.sampled_from(sorted(self.waiting)))
        _, since, exclude = self.waiting[conversation]
        self.router.move(conversation, to)
        self.waiting[conversation] = (to, since, exclude)
        assert self.router.waiting_since(conversation) == since

    @precondition(lambda self: self.active)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        index = data.draw(st.integers(0, len(self.active) - 1))
        _, agent = self.active.pop(index)
        self.load[agent] -= 1
        self.router.release(agent, self.now)

    @rule(seconds=st.floats(0, 4))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds

    @rule(swap=st.integers(0, 3))
    def change_queue_rules(self, swap: int) -> None:
        rules = ALT_RULES[swap] if self.queue_rules[QUEUES[swap]] == RULES[swap] else RULES[swap]
        self.queue_rules[rules.queue_id] = rules
        self.router.set_queue(rules)

    @rule(limit=st.none() | st.integers(1, 3))
    def next_matches(self, limit: int | None) -> None:
        matches = self.router.next_matches(self.now, limit)
        if limit is not None:
            assert len(matches) <= limit
        given: Counter[UUID] = Counter()
        for match in matches:
            assert match.conversation_id in self.waiting, "matched a conversation that was not waiting"
            assert match.conversation_id not in self.matched, "matched twice"
            queue, _, _ = self.waiting.pop(match.conversation_id)
            assert match.queue_id == queue
            assert match.agent_id in self.available, "offered to an unavailable agent"
            assert self.eligible(match.agent_id, self.queue_rules[queue])
            given[match.agent_id] += 1
            self.matched.add(match.conversation_id)
            self.active.append((match.conversation_id, match.agent_id))
        for agent, n in given.items():
            assert self.load[agent] + n <= self.profiles[agent][0], "over capacity"
            self.load[agent] += n
        if limit is None:
            self.check_no_idle_agent_while_customers_wait()

    def check_no_idle_agent_while_customers_wait(self) -> None:
        for queue, rules in self.queue_rules.items():
            waiting = [(since, ex) for q, since, ex in self.waiting.values() if q == queue]
            if not waiting or any(ex for _, ex in waiting):
                continue
            level = 1
            if rules.strategy is RoutingStrategy.SKILLS:
                waited = self.now - min(since for since, _ in waiting)
                level = max(1, rules.min_skill_level - int(waited // rules.widen_after_seconds))
            for agent in self.available:
                capacity, _, skills = self.profiles[agent]
                if self.eligible(agent, rules) and self.load[agent] < capacity:
                    if rules.strategy is RoutingStrategy.SKILLS and skills[CHINESE] < level:
                        continue
                    raise AssertionError(f"agent {agent} is free while {len(waiting)} wait in {rules.strategy}")

    @invariant()
    def bookkeeping_agrees(self) -> None:
        for agent in self.profiles:
            assert self.router.load(agent) == self.load[agent]
        for conversation, (queue, since, _) in self.waiting.items():
            assert self.router.waiting_since(conversation) == since
            assert self.router.queue_of(conversation) == queue
        for queue in QUEUES:
            n = sum(1 for q, _, _ in self.waiting.values() if q == queue)
            assert self.router.waiting(queue) == n
            positions = [self.router.position(c) for c, (q, _, _) in self.waiting.items() if q == queue]
            assert sorted(p or 0 for p in positions) == list(range(1, n + 1))
            eligible_online = sum(1 for a in self.available if self.eligible(a, self.queue_rules[queue]))
            assert self.router.available_agents(queue) == eligible_online
        for conversation in self.matched | self.withdrawn:
            assert self.router.waiting_since(conversation) is None


RouterMachine.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestRouterStateful = RouterMachine.TestCase
