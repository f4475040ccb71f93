"""Tests for `kefu.actors.aggregator`: folding routing events into live statistics."""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
import trio
import trio.testing

from kefu.actors.aggregator import (
    AgentChanged,
    AgentGone,
    Aggregator,
    AggregatorMessage,
    ConversationAbandoned,
    ConversationAnswered,
    ConversationEnded,
    ConversationMoved,
    ConversationOffered,
    ConversationQueued,
    Folds,
    QueueAvailability,
    QueueDescribed,
    QueueRemoved,
    Snapshot,
    WatchEnded,
    WatchStarted,
    _WaitingLine,
)
from kefu.actors.ports import Outbox
from kefu.actors.runtime import ActorRef, Mailbox
from kefu.protocol import decode_server_frame, encode_frame
from kefu.protocol.permissions import ADMIN, SUPERVISOR, permissions_of
from kefu.protocol.server import AgentLoad, LiveStats, QueueStats
from tests.actors.fakes import FakeOutbox

pytestmark = pytest.mark.trio

ACME, GLOBEX = uuid4(), uuid4()
SALES, BILLING = uuid4(), uuid4()


class Clocks:
    """A monotonic clock and a wall clock the test moves by hand, together."""

    def __init__(self, wall: datetime = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)) -> None:
        self.now = 1000.0
        self.wall = wall

    def clock(self) -> float:
        return self.now

    def wall_clock(self) -> datetime:
        return self.wall

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self.wall += timedelta(seconds=seconds)


Published = list[tuple[float, UUID, LiveStats]]


class Feeds:
    """A `LiveFeeds` that hands snapshots to `publish` and asks `wants`, and keeps the watchers
    like the server's `SupervisorFeeds` does (an account's set goes with its last watcher)."""

    def __init__(
        self,
        publish: Callable[[UUID, LiveStats], None] | None = None,
        wants: Callable[[UUID], bool] = lambda _account: True,
    ) -> None:
        self.published = publish or (lambda _account, _frame: None)
        self.wanted = wants
        self.watchers: dict[UUID, set[Outbox]] = {}

    def watch(self, account_id: UUID, connection: Outbox) -> None:
        self.watchers.setdefault(account_id, set()).add(connection)

    def unwatch(self, account_id: UUID, connection: Outbox) -> None:
        connections = self.watchers.get(account_id, set())
        connections.discard(connection)
        if not connections:
            self.watchers.pop(account_id, None)

    def wants(self, account_id: UUID) -> bool:
        return self.wanted(account_id)

    def publish(self, account_id: UUID, frame: LiveStats) -> None:
        self.published(account_id, frame)


def make_aggregator(
    clocks: Clocks | None = None,
    *,
    publish: Callable[[UUID, LiveStats], None] | None = None,
    wants: Callable[[UUID], bool] = lambda _account: True,
    **kwargs: Any,
) -> Aggregator:
    mailbox: Mailbox[AggregatorMessage] = Mailbox("aggregator", capacity=1000)
    if clocks is not None:
        kwargs.update(clock=clocks.clock, wall_clock=clocks.wall_clock)
    return Aggregator(mailbox, feeds=Feeds(publish, wants), **kwargs)


@asynccontextmanager
async def running(aggregator: Aggregator) -> AsyncIterator[ActorRef[AggregatorMessage]]:
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(aggregator.run, stop)
        yield ref
        stop.set()


async def snapshot(ref: ActorRef[AggregatorMessage], account_id: UUID = ACME) -> LiveStats:
    return await ref.ask(lambda reply: Snapshot(account_id, reply), timeout=5)


def queue_named(frame: LiveStats, name: str) -> QueueStats:
    (queue,) = [queue for queue in frame.queues if queue.name == name]
    return queue


# -- the figures -----------------------------------------------------------------------------


async def test_a_scripted_day_gives_counts_service_level_and_speed_of_answer() -> None:
    clocks = Clocks()
    aggregator = make_aggregator(clocks, service_level_seconds=20)
    agent = uuid4()
    c1, c2, c3, c4, c5 = (uuid4() for _ in range(5))
    async with running(aggregator) as ref:
        script: list[AggregatorMessage] = [
            QueueDescribed(ACME, SALES, "Sales"),
            QueueDescribed(ACME, BILLING, "Billing"),
            QueueAvailability(ACME, SALES, 1),
            *(ConversationQueued(ACME, c, SALES, clocks.now) for c in (c1, c2, c3, c4, c5)),
            ConversationOffered(ACME, c1, SALES, agent, clocks.now),
            ConversationOffered(ACME, c1, SALES, agent, clocks.now),  # declined, offered again
            ConversationOffered(ACME, c2, SALES, agent, clocks.now),
            ConversationOffered(ACME, c3, SALES, agent, clocks.now),
            ConversationAnswered(ACME, c1, SALES, agent, 5, clocks.now),  # in time
            ConversationAnswered(ACME, c2, SALES, agent, 20, clocks.now),  # exactly at the threshold: in time
            ConversationAnswered(ACME, c3, SALES, agent, 40, clocks.now),  # late
            ConversationAbandoned(ACME, c4, SALES, 10, clocks.now),  # short abandon: left out of SL
            ConversationAbandoned(ACME, c5, SALES, 30, clocks.now),  # abandoned after the threshold
            QueueAvailability(ACME, SALES, 3),
            ConversationEnded(ACME, c1, agent, clocks.now),
            ConversationEnded(ACME, c2, agent, clocks.now),
        ]
        for message in script:
            await ref.tell(message)
        frame = await snapshot(ref)
    assert [queue.name for queue in frame.queues] == ["Billing", "Sales"]
    assert queue_named(frame, "Sales") == QueueStats(
        queue_id=str(SALES),
        name="Sales",
        waiting=0,
        longest_wait_seconds=0,
        offered=4,
        answered=3,
        abandoned=2,
        agents_available=3,
        service_level=2 / (3 + 1),
        average_speed_of_answer_seconds=(5 + 20 + 40) / 3,
    )
    billing = queue_named(frame, "Billing")
    assert (billing.answered, billing.service_level, billing.average_speed_of_answer_seconds) == (0, None, None)
    assert aggregator.handled_today(ACME) == {agent: 2}
    stats = aggregator.aggregator_statistics()
    assert (stats.accounts, stats.queues, stats.waiting, stats.events_folded) == (1, 2, 0, 20)


async def test_service_level_uses_the_threshold_it_is_given() -> None:
    aggregator = make_aggregator(Clocks(), service_level_seconds=10)
    agent = uuid4()
    async with running(aggregator) as ref:
        await ref.tell(ConversationAnswered(ACME, uuid4(), SALES, agent, 15, 0.0))
        await ref.tell(ConversationAbandoned(ACME, uuid4(), SALES, 12, 0.0))
        (queue,) = (await snapshot(ref)).queues
    assert queue.service_level == 0.0  # 15 s is late at 10 s, and the 12 s abandon counts
    assert queue.name == str(SALES)  # never described: named by its id


async def test_longest_wait_follows_the_oldest_waiting_conversation() -> None:
    clocks = Clocks()
    aggregator = make_aggregator(clocks)
    agent = uuid4()
    c1, c2, c3 = uuid4(), uuid4(), uuid4()
    async with running(aggregator) as ref:
        await ref.tell(QueueDescribed(ACME, SALES, "Sales"))
        for conversation in (c1, c2, c3):
            await ref.tell(ConversationQueued(ACME, conversation, SALES, clocks.now))
            clocks.advance(10)
        clocks.advance(20.7)  # c1 has waited 50.7 s, c2 40.7 s, c3 30.7 s
        (queue,) = (await snapshot(ref)).queues
        assert (queue.waiting, queue.longest_wait_seconds) == (3, 50)
        await ref.tell(ConversationAnswered(ACME, c1, SALES, agent, 50.7, clocks.now))
        (queue,) = (await snapshot(ref)).queues
        assert (queue.waiting, queue.longest_wait_seconds) == (2, 40)
        # answering a younger one leaves the oldest where it is
        await ref.tell(ConversationAnswered(ACME, c3, SALES, agent, 30.7, clocks.now))
        (queue,) = (await snapshot(ref)).queues
        assert (queue.waiting, queue.longest_wait_seconds) == (1, 40)
        await ref.tell(ConversationAbandoned(ACME, c2, SALES, 40.7, clocks.now))
        (queue,) = (await snapshot(ref)).queues
        assert (queue.waiting, queue.longest_wait_seconds) == (0, 0)


async def test_a_moved_conversation_leaves_the_source_queue_and_keeps_its_wait_start() -> None:
    clocks = Clocks()
    aggregator = make_aggregator(clocks)
    agent = uuid4()
    old, young = uuid4(), uuid4()
    async with running(aggregator) as ref:
        await ref.tell(QueueDescribed(ACME, SALES, "Sales"))
        await ref.tell(QueueDescribed(ACME, BILLING, "Billing"))
        await ref.tell(ConversationQueued(ACME, old, SALES, clocks.now))
        clocks.advance(30)
        await ref.tell(ConversationQueued(ACME, young, BILLING, clocks.now))
        clocks.advance(30)
        await ref.tell(ConversationMoved(ACME, old, SALES, BILLING, clocks.now))  # overflow after 60 s
        frame = await snapshot(ref)
        sales, billing = queue_named(frame, "Sales"), queue_named(frame, "Billing")
        assert (sales.waiting, sales.longest_wait_seconds) == (0, 0)
        assert (billing.waiting, billing.longest_wait_seconds) == (2, 60)
        await ref.tell(ConversationAnswered(ACME, old, BILLING, agent, 60, clocks.now))
        billing = queue_named(await snapshot(ref), "Billing")
        assert (billing.waiting, billing.longest_wait_seconds, billing.answered) == (1, 30, 1)
        # moving back and forth never counts a conversation twice
        await ref.tell(ConversationMoved(ACME, young, BILLING, SALES, clocks.now))
        await ref.tell(ConversationMoved(ACME, young, SALES, BILLING, clocks.now))
        frame = await snapshot(ref)
        assert (queue_named(frame, "Sales").waiting, queue_named(frame, "Billing").waiting) == (0, 1)
        assert aggregator.aggregator_statistics().waiting == 1


async def test_midnight_resets_the_counters_but_not_who_is_waiting() -> None:
    clocks = Clocks(wall=datetime(2024, 5, 1, 23, 59, 0, tzinfo=UTC))
    aggregator = make_aggregator(clocks)
    agent = uuid4()
    waiting = uuid4()
    async with running(aggregator) as ref:
        await ref.tell(QueueDescribed(ACME, SALES, "Sales"))
        await ref.tell(QueueAvailability(ACME, SALES, 2))
        await ref.tell(AgentChanged(ACME, agent, "Anna", "online", None, 1, 5, clocks.now))
        answered = uuid4()
        await ref.tell(ConversationQueued(ACME, answered, SALES, clocks.now))
        await ref.tell(ConversationOffered(ACME, answered, SALES, agent, clocks.now))
        await ref.tell(ConversationAnswered(ACME, answered, SALES, agent, 3, clocks.now))
        await ref.tell(ConversationAbandoned(ACME, uuid4(), SALES, 40, clocks.now))
        await ref.tell(ConversationEnded(ACME, answered, agent, clocks.now))
        await ref.tell(ConversationQueued(ACME, waiting, SALES, clocks.now))
        clocks.advance(50)  # 23:59:50, same day
        (queue,) = (await snapshot(ref)).queues
        assert (queue.offered, queue.answered, queue.abandoned, queue.waiting) == (1, 1, 1, 1)
        assert aggregator.handled_today(ACME) == {agent: 1}

        clocks.advance(20)  # 00:00:10 the next day
        frame = await snapshot(ref)
    (queue,) = frame.queues
    assert frame.at == "2024-05-02T00:00:10.000Z"
    assert (queue.offered, queue.answered, queue.abandoned) == (0, 0, 0)
    assert (queue.service_level, queue.average_speed_of_answer_seconds) == (None, None)
    assert (queue.waiting, queue.longest_wait_seconds, queue.agents_available) == (1, 70, 2)
    assert [a.display_name for a in frame.agents] == ["Anna"]
    assert aggregator.handled_today(ACME) == {}


async def test_accounts_never_see_each_others_queues_or_agents() -> None:
    clocks = Clocks()
    published: Published = []
    aggregator = make_aggregator(clocks, publish=lambda account, frame: published.append((0.0, account, frame)))
    acme_agent, globex_agent = uuid4(), uuid4()
    async with running(aggregator) as ref:
        # the same queue id under two accounts (ids are UUIDs; this only proves the keying)
        await ref.tell(QueueDescribed(ACME, SALES, "Acme sales"))
        await ref.tell(QueueDescribed(GLOBEX, SALES, "Globex sales"))
        await ref.tell(ConversationQueued(ACME, uuid4(), SALES, clocks.now))
        await ref.tell(ConversationOffered(GLOBEX, uuid4(), SALES, globex_agent, clocks.now))
        await ref.tell(AgentChanged(ACME, acme_agent, "Anna", "online", None, 0, 3, clocks.now))
        await ref.tell(AgentChanged(GLOBEX, globex_agent, "Gus", "break", "lunch", 0, 3, clocks.now))
        acme, globex = await snapshot(ref, ACME), await snapshot(ref, GLOBEX)
        assert await snapshot(ref, uuid4()) == LiveStats(acme.at, (), ())
        aggregator.publish_snapshots()
    assert [(q.name, q.waiting, q.offered) for q in acme.queues] == [("Acme sales", 1, 0)]
    assert [(q.name, q.waiting, q.offered) for q in globex.queues] == [("Globex sales", 0, 1)]
    assert acme.agents == (AgentLoad(str(acme_agent), "Anna", "online", 0, 3),)
    assert globex.agents == (AgentLoad(str(globex_agent), "Gus", "break", 0, 3, "lunch"),)
    assert {account: frame for _, account, frame in published} == {ACME: acme, GLOBEX: globex}


async def test_agents_are_sorted_by_name_updated_in_place_and_leave_when_gone() -> None:
    aggregator = make_aggregator(Clocks())
    bo, anna, chen = uuid4(), uuid4(), uuid4()
    async with running(aggregator) as ref:
        await ref.tell(AgentChanged(ACME, bo, "Bo", "online", None, 0, 2, 0.0))
        await ref.tell(AgentChanged(ACME, chen, "chen", "online", None, 0, 2, 0.0))
        await ref.tell(AgentChanged(ACME, anna, "Anna", "online", None, 0, 2, 0.0))
        await ref.tell(AgentChanged(ACME, bo, "Bo", "wrap_up", None, 2, 2, 1.0))
        await ref.tell(AgentChanged(ACME, anna, "Anna", "sleeping", None, 0, 2, 1.0))  # malformed: ignored
        frame = await snapshot(ref)
        assert [(a.display_name, a.status, a.load) for a in frame.agents] == [
            ("Anna", "online", 0),
            ("Bo", "wrap_up", 2),
            ("chen", "online", 0),
        ]
        await ref.tell(AgentGone(ACME, bo))
        await ref.tell(AgentGone(ACME, chen))
        assert [a.display_name for a in (await snapshot(ref)).agents] == ["Anna"]
        await ref.tell(AgentGone(ACME, anna))
        assert (await snapshot(ref)).agents == ()
    stats = aggregator.aggregator_statistics()
    assert (stats.accounts, stats.events_ignored) == (0, 1)


async def test_queues_appear_on_first_mention_and_removal_forgets_their_waiting() -> None:
    clocks = Clocks()
    aggregator = make_aggregator(clocks)
    conversation = uuid4()
    async with running(aggregator) as ref:
        await ref.tell(ConversationQueued(ACME, conversation, SALES, clocks.now))
        (queue,) = (await snapshot(ref)).queues
        assert (queue.name, queue.waiting) == (str(SALES), 1)
        await ref.tell(QueueDescribed(ACME, SALES, "Sales"))
        await ref.tell(QueueDescribed(ACME, SALES, "Sales & Returns"))
        (queue,) = (await snapshot(ref)).queues
        assert (queue.name, queue.waiting) == ("Sales & Returns", 1)
        await ref.tell(QueueRemoved(ACME, SALES))
        assert (await snapshot(ref)).queues == ()
        assert aggregator.aggregator_statistics().waiting == 0
        # a late event for the forgotten conversation is still harmless
        await ref.tell(ConversationAbandoned(ACME, conversation, BILLING, 5, clocks.now))
        (queue,) = (await snapshot(ref)).queues
        assert (queue.name, queue.waiting, queue.abandoned) == (str(BILLING), 0, 1)


async def test_an_event_that_cannot_be_folded_is_ignored_and_the_figures_stay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    aggregator = make_aggregator(Clocks())
    agent = uuid4()
    caplog.set_level(logging.ERROR, logger="kefu.aggregator")
    async with running(aggregator) as ref:
        await ref.tell(ConversationAnswered(ACME, uuid4(), SALES, agent, 4, 0.0))
        await ref.tell(ConversationAnswered(ACME, uuid4(), SALES, agent, "soon", 0.0))  # type: ignore[arg-type]
        await ref.tell("not an event")  # type: ignore[arg-type]
        await ref.tell(AgentChanged(ACME, agent, "Ann", "online", None, "one", 2, 0.0))  # type: ignore[arg-type]
        frame = await snapshot(ref)
    (queue,) = frame.queues
    assert (queue.answered, queue.average_speed_of_answer_seconds) == (1, 4.0)
    assert frame.agents == ()
    stats = aggregator.aggregator_statistics()
    assert (stats.events_folded, stats.events_ignored, stats.actor.crashes) == (1, 3, 0)
    assert any("could not fold" in record.message for record in caplog.records)


async def test_a_batch_is_folded_event_by_event_and_a_bad_event_in_it_alone_is_ignored(
    caplog: pytest.LogCaptureFixture,
) -> None:
    aggregator = make_aggregator(Clocks())
    conversation, agent = uuid4(), uuid4()
    caplog.set_level(logging.ERROR, logger="kefu.aggregator")
    events: tuple[Any, ...] = (
        ConversationQueued(ACME, conversation, SALES, 0.0),
        ConversationAnswered(ACME, uuid4(), SALES, agent, "soon", 0.0),  # type: ignore[arg-type]
        Folds(()),  # not a routing event: `assert_never` refuses it
        ConversationOffered(ACME, conversation, SALES, agent, 0.0),
    )
    async with running(aggregator) as ref:
        await ref.tell(Folds(events))
        (queue,) = (await snapshot(ref)).queues
    assert (queue.waiting, queue.offered, queue.answered) == (1, 1, 0)
    stats = aggregator.aggregator_statistics()
    assert (stats.events_folded, stats.events_ignored, stats.actor.crashes) == (2, 2, 0)


async def test_supervisors_start_and_stop_watching_through_the_mailbox() -> None:
    feeds = Feeds()
    aggregator = Aggregator(Mailbox("aggregator", capacity=10), feeds=feeds)
    supervisor, another = FakeOutbox("agent"), FakeOutbox("agent")
    async with running(aggregator) as ref:
        await ref.tell(WatchStarted(ACME, supervisor))
        await ref.tell(WatchStarted(ACME, another))
        await ref.tell(WatchStarted(GLOBEX, another))
        await snapshot(ref)  # everything told before is handled
        assert feeds.watchers == {ACME: {supervisor, another}, GLOBEX: {another}}
        await ref.tell(WatchEnded(ACME, supervisor))
        await ref.tell(WatchEnded(GLOBEX, another))
        await ref.tell(WatchEnded(GLOBEX, another))  # twice: harmless
        await snapshot(ref)
        assert feeds.watchers == {ACME: {another}}


class Broken(Aggregator):
    async def handle(self, message: AggregatorMessage) -> None:
        raise ValueError("a bug")


async def test_a_crash_reaches_the_supervisor_bare_and_stops_the_publisher(
    autojump_clock: trio.testing.MockClock,
) -> None:
    mailbox: Mailbox[AggregatorMessage] = Mailbox("aggregator", capacity=10)
    aggregator = Broken(mailbox, feeds=Feeds())
    mailbox.ref.tell_nowait(QueueDescribed(ACME, SALES, "Sales"))
    with pytest.raises(ValueError, match="a bug"):  # not wrapped in an ExceptionGroup
        await aggregator.run(trio.Event())
    # returning at all proves the publisher task was cancelled with the message loop


# -- publishing ------------------------------------------------------------------------------


async def test_publishes_a_fresh_snapshot_every_interval_while_events_keep_arriving(
    autojump_clock: trio.testing.MockClock,
) -> None:
    start_wall = datetime(2024, 5, 1, 9, 0, tzinfo=UTC)
    published: Published = []
    aggregator = make_aggregator(
        publish=lambda account, frame: published.append((trio.current_time(), account, frame)),
        wants=lambda account: account == ACME,  # nobody watches Globex
        clock=trio.current_time,
        wall_clock=lambda: start_wall + timedelta(seconds=trio.current_time()),
    )
    t0 = trio.current_time()
    async with running(aggregator) as ref:
        await ref.tell(AgentChanged(GLOBEX, uuid4(), "Gus", "online", None, 0, 1, t0))
        await trio.sleep(0.1)
        for _ in range(4 * 5):  # a conversation every 0.25 s, never on a tick
            await ref.tell(ConversationQueued(ACME, uuid4(), SALES, trio.current_time()))
            await trio.sleep(0.25)
        await trio.sleep(0.3)  # t = 5.4
    assert [account for _, account, _ in published] == [ACME] * 5
    assert [round(when - t0, 6) for when, _, _ in published] == [1, 2, 3, 4, 5]
    for tick, (_, _, frame) in enumerate(published, start=1):
        (queue,) = frame.queues
        assert queue.waiting == 4 * tick  # everything told before the tick is in it
        assert queue.longest_wait_seconds == int(tick - 0.1)
        assert frame.at == f"2024-05-01T09:00:0{tick}.000Z"
    assert aggregator.aggregator_statistics().snapshots_published == 5


async def test_a_failing_publish_is_logged_and_the_aggregator_goes_on(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[UUID] = []

    def publish(account: UUID, frame: LiveStats) -> None:
        calls.append(account)
        if account == GLOBEX or len(calls) <= 2:
            raise RuntimeError("send buffer gone")

    def wants(account: UUID) -> bool:
        if account == uuid_of_a_broken_wants:
            raise KeyError(account)
        return True

    uuid_of_a_broken_wants = uuid4()
    aggregator = make_aggregator(publish=publish, wants=wants, clock=trio.current_time)
    caplog.set_level(logging.ERROR, logger="kefu.aggregator")
    async with running(aggregator) as ref:
        for account in (ACME, GLOBEX, uuid_of_a_broken_wants):
            await ref.tell(QueueDescribed(account, SALES, "Sales"))
        await trio.sleep(3.5)
        assert (await snapshot(ref)).queues[0].name == "Sales"  # still answering
    assert calls.count(ACME) == 3 and calls.count(GLOBEX) == 3
    stats = aggregator.aggregator_statistics()
    # every tick: Globex and the broken wants fail; Acme fails on the first tick only
    assert (stats.snapshots_published, stats.publish_failures, stats.actor.crashes) == (2, 7, 0)
    assert sum("publishing live statistics failed" in record.message for record in caplog.records) == 7


async def test_a_snapshot_round_trips_through_the_wire_codec() -> None:
    clocks = Clocks()
    aggregator = make_aggregator(clocks)
    agent = uuid4()
    async with running(aggregator) as ref:
        await ref.tell(QueueDescribed(ACME, SALES, "售前咨询"))
        await ref.tell(QueueDescribed(ACME, BILLING, ""))  # an empty name falls back to the id
        await ref.tell(ConversationQueued(ACME, uuid4(), SALES, clocks.now))
        await ref.tell(ConversationAnswered(ACME, uuid4(), SALES, agent, 12.5, clocks.now))
        await ref.tell(AgentChanged(ACME, agent, "李娜" * 150, "break", "午饭", 1, 4, clocks.now))
        clocks.advance(7)
        frame = await snapshot(ref)
    assert len(frame.queues) == 2 and len(frame.agents) == 1
    data = encode_frame(frame, check=True)
    assert decode_server_frame(data) == frame


# -- the waiting line ------------------------------------------------------------------------


async def test_the_waiting_line_always_knows_its_oldest() -> None:
    rng = random.Random(20240501)
    line = _WaitingLine()
    expected: dict[UUID, float] = {}
    now, peak = 0.0, 0
    for _ in range(20_000):
        now += rng.random()
        if expected and rng.random() < 0.5:
            conversation = rng.choice(list(expected))
            assert line.remove(conversation) == expected.pop(conversation)
        else:
            # mostly in order; a third join with an earlier start, as a move does
            start = now - rng.uniform(0, 120) if rng.random() < 0.33 else now
            conversation = uuid4()
            line.add(conversation, start)
            expected[conversation] = start
        assert len(line) == len(expected)
        peak = max(peak, len(expected))
        assert line.oldest() == (min(expected.values()) if expected else None)
    assert len(line._late) <= 2 * peak + 17  # the lazily deleted entries are compacted


# -- issue 11: the sender's clock, and who counts as an agent ----------------------------------------


async def test_longest_wait_is_measured_on_the_clock_the_senders_use(autojump_clock: trio.testing.MockClock) -> None:
    """The dispatcher stamps events with `trio.current_time()`; so must the aggregator read its age."""
    aggregator = make_aggregator()  # the node's defaults: no clock given
    async with running(aggregator) as ref:
        await ref.tell(QueueDescribed(ACME, SALES, "Sales"))
        await ref.tell(ConversationQueued(ACME, uuid4(), SALES, trio.current_time()))
        await trio.sleep(180)
        (queue,) = (await snapshot(ref)).queues
    assert (queue.waiting, queue.longest_wait_seconds) == (1, 180)


async def test_supervisors_and_admins_count_as_agents_only_while_they_take_conversations() -> None:
    clocks = Clocks()
    aggregator = make_aggregator(clocks)
    anna, sue, ada = uuid4(), uuid4(), uuid4()
    async with running(aggregator) as ref:
        await ref.tell(AgentChanged(ACME, anna, "Anna", "offline", None, 0, 5, clocks.now))
        await ref.tell(
            AgentChanged(ACME, sue, "Sue", "offline", None, 0, 5, clocks.now, permissions=permissions_of(SUPERVISOR))
        )
        await ref.tell(
            AgentChanged(ACME, ada, "Ada", "offline", None, 0, 5, clocks.now, permissions=permissions_of(ADMIN))
        )
        assert [a.display_name for a in (await snapshot(ref)).agents] == ["Anna"]
        # A supervisor who goes online takes conversations: then listed, and gone again when offline.
        await ref.tell(
            AgentChanged(ACME, sue, "Sue", "online", None, 0, 5, clocks.now, permissions=permissions_of(SUPERVISOR))
        )
        assert [a.display_name for a in (await snapshot(ref)).agents] == ["Anna", "Sue"]
        await ref.tell(
            AgentChanged(ACME, sue, "Sue", "offline", None, 1, 5, clocks.now, permissions=permissions_of(SUPERVISOR))
        )
        assert [a.display_name for a in (await snapshot(ref)).agents] == ["Anna", "Sue"]  # still holds one
        await ref.tell(
            AgentChanged(ACME, sue, "Sue", "offline", None, 0, 5, clocks.now, permissions=permissions_of(SUPERVISOR))
        )
        assert [a.display_name for a in (await snapshot(ref)).agents] == ["Anna"]
