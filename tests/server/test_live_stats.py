"""The aggregator's day survives a restart: counters saved to and loaded from PostgreSQL, waiting
lines rebuilt from the event log (actors/aggregator.py rule 7, server/live_stats.py)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import trio
import trio.testing

from kefu.actors.aggregator import (
    Aggregator,
    AggregatorMessage,
    ConversationAnswered,
    ConversationEnded,
    ConversationOffered,
    ConversationQueued,
    QueueDescribed,
    Snapshot,
    WatchEnded,
    WatchStarted,
)
from kefu.actors.runtime import ActorRef, Mailbox
from kefu.protocol.errors import CLOSE_SLOW_CONSUMER
from kefu.protocol.server import LiveStats
from kefu.server.database import Database
from kefu.server.live_stats import PostgresDayStore
from kefu.server.sockets import SupervisorFeeds
from tests.actors.fakes import FakeOutbox
from tests.conftest import new_account, open_database


class Crash:
    """Fault injection: the message that makes `CrashingAggregator.handle` raise."""


class CrashingAggregator(Aggregator):
    async def handle(self, message: Any) -> None:
        if isinstance(message, Crash):
            raise RuntimeError("injected aggregator crash")
        await super().handle(message)


@asynccontextmanager
async def running(database: Database, *, crashing: bool = False) -> AsyncIterator[ActorRef[AggregatorMessage]]:
    mailbox: Mailbox[AggregatorMessage] = Mailbox("aggregator", capacity=1000)
    kind = CrashingAggregator if crashing else Aggregator
    aggregator = kind(mailbox, feeds=SupervisorFeeds(), store=PostgresDayStore(database))
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(aggregator.run, stop)
        yield ref
        stop.set()


async def _snapshot(ref: ActorRef[AggregatorMessage], account_id: UUID) -> LiveStats:
    return await ref.ask(lambda reply: Snapshot(account_id, reply), timeout=10)


async def _waiting_conversation(database: Database, account_id: UUID, queue_id: UUID, since: datetime) -> UUID:
    conversation_id: UUID = await database.fetchval(
        "INSERT INTO conversations (account_id, channel, status, queue_id) VALUES ($1, 'webchat', 'queued', $2)"
        " RETURNING id",
        account_id,
        queue_id,
    )
    await database.execute(
        "INSERT INTO conversation_events (account_id, conversation_id, seq, kind, sender_role, body, created_at)"
        " VALUES ($1, $2, 1, 'queued', 'system', jsonb_build_object('queue_id', $3::text), $4)",
        account_id,
        conversation_id,
        str(queue_id),
        since,
    )
    return conversation_id


async def test_the_days_counters_and_waiting_lines_survive_a_restart_and_a_crash(database_dsn: str) -> None:
    async with open_database(database_dsn) as database:
        account = await new_account(database)
        queue: UUID = await database.fetchval(
            "INSERT INTO queues (account_id, name) VALUES ($1, 'Sales') RETURNING id", account
        )
        agent = uuid.uuid4()
        # A conversation that has waited 3 minutes when the aggregator starts.
        waiting = await _waiting_conversation(database, account, queue, datetime.now(UTC) - timedelta(minutes=3))

        async with running(database) as ref:
            for _ in range(4):
                conversation = uuid.uuid4()
                now = trio.current_time()
                await ref.tell(ConversationQueued(account, conversation, queue, now))
                await ref.tell(ConversationOffered(account, conversation, queue, agent, now))
            await ref.tell(ConversationAnswered(account, conversation, queue, agent, 2.0, trio.current_time()))
            await ref.tell(ConversationEnded(account, conversation, agent, trio.current_time()))
            (before,) = (await _snapshot(ref, account)).queues
        assert (before.name, before.offered, before.answered) == ("Sales", 4, 1)
        assert before.waiting == 4 and before.longest_wait_seconds >= 180  # 3 of them only in memory

        # Restarted (a graceful stop saved the day): the same figures, and the 3-minute wait.
        crashed = False
        try:
            async with running(database, crashing=True) as ref:
                (after,) = (await _snapshot(ref, account)).queues
                assert (after.name, after.offered, after.answered, after.abandoned) == ("Sales", 4, 1, 0)
                # Waiting lines come from the store: the stored conversation, still 3 minutes and more.
                assert after.waiting == 1 and after.longest_wait_seconds >= 180
                assert after.average_speed_of_answer_seconds == 2.0
                # Two more offers, then a crash before any tick saved them.
                for _ in range(2):
                    await ref.tell(ConversationOffered(account, uuid.uuid4(), queue, agent, trio.current_time()))
                await ref.tell(Crash())  # type: ignore[arg-type]
                await trio.sleep_forever()
        except* RuntimeError:
            crashed = True
        assert crashed
        rows = await database.fetch(
            "SELECT offered, answered FROM queue_day_counters WHERE account_id = $1 AND queue_id = $2", account, queue
        )
        assert [tuple(r) for r in rows] == [(6, 1)]
        handled = await database.fetchval("SELECT handled FROM agent_day_counters WHERE agent_id = $1", agent)
        assert handled == 1

        async with running(database) as ref:
            (again,) = (await _snapshot(ref, account)).queues
            assert (again.offered, again.answered) == (6, 1)
            # The waiting line comes from the store, not from the events this incarnation saw.
            await database.execute("UPDATE conversations SET status = 'assigned' WHERE id = $1", waiting)
        async with running(database) as ref:
            (last,) = (await _snapshot(ref, account)).queues
            assert (last.waiting, last.longest_wait_seconds, last.offered) == (0, 0, 6)


async def test_a_restarted_node_shows_the_days_figures_and_no_supervisor_as_an_agent(
    database_dsn: str, tmp_path: Path
) -> None:
    from contextlib import AsyncExitStack

    from tests.server.live import Client, connect, live_center
    from tests.server.test_live_behaviour import _assigned, _online

    offered = 3
    async with live_center(database_dsn, tmp_path) as center:
        anna = await center.add_agent("Anna", capacity=offered)
        boss = await center.add_agent("Boss", role="supervisor")

        async def watch(stack: AsyncExitStack, nursery: trio.Nursery) -> Client:
            client = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={boss.token}"))
            await client.wait_for("welcome")
            return client

        async def stats_where(supervisor: Client, condition: Any) -> Any:
            with trio.fail_after(15):
                while not (supervisor.of("stats") and condition(supervisor.of("stats")[-1])):
                    await supervisor.wait_for("stats", len(supervisor.of("stats")) + 1)
            return supervisor.of("stats")[-1]

        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            supervisor = await watch(stack, nursery)
            agent = await _online(stack, nursery, center, anna)
            for _ in range(offered):
                await _assigned(stack, nursery, center, agent)
            frame = await stats_where(supervisor, lambda f: f.queues and f.queues[0].answered == offered)
            assert [a.display_name for a in frame.agents] == ["Anna"]  # the watching supervisor is not listed
            nursery.cancel_scope.cancel()

        await center.restart()
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            supervisor = await watch(stack, nursery)
            frame = await stats_where(supervisor, lambda f: bool(f.queues))
            (queue,) = frame.queues
            assert (queue.offered, queue.answered, queue.abandoned) == (offered, offered, 0)
            assert "Boss" not in [a.display_name for a in frame.agents]
            nursery.cancel_scope.cancel()


async def test_supervisor_feeds_drop_a_socket_that_cannot_take_a_snapshot_and_an_account_nobody_watches(
    autojump_clock: trio.testing.MockClock,
) -> None:
    feeds = SupervisorFeeds()
    mailbox: Mailbox[AggregatorMessage] = Mailbox("aggregator", capacity=10)
    reading, slow = FakeOutbox("agent"), FakeOutbox("agent", capacity=1)
    account, queue = uuid.uuid4(), uuid.uuid4()
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        ref = await nursery.start(Aggregator(mailbox, feeds=feeds, interval=1.0).run, stop)
        await ref.tell(WatchStarted(account, reading))
        await ref.tell(WatchStarted(account, slow))
        await ref.tell(QueueDescribed(account, queue, "Sales"))
        await trio.sleep(1.5)  # one snapshot: both take it; the slow one's buffer is now full
        assert [frame["type"] for frame in reading.read()] == ["stats"]
        await trio.sleep(1.0)  # the next one does not fit: the slow socket is cut off and unwatched
        assert slow.close_code == CLOSE_SLOW_CONSUMER
        assert feeds.by_account == {account: {reading}}
        await ref.tell(WatchEnded(account, reading))
        await _snapshot(ref, account)  # handled in order: the watch has ended
        assert feeds.by_account == {} and not feeds.wants(account)
        stop.set()


async def test_a_restarted_aggregator_still_publishes_to_the_supervisors_watching_before(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The node keeps the mailbox and the feeds across incarnations (server/node.py).
    feeds = SupervisorFeeds()
    mailbox: Mailbox[AggregatorMessage] = Mailbox("aggregator", capacity=10)
    supervisor, account = FakeOutbox("agent"), uuid.uuid4()
    for incarnation in range(2):
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            ref = await nursery.start(Aggregator(mailbox, feeds=feeds, interval=1.0).run, stop)
            if incarnation == 0:
                await ref.tell(WatchStarted(account, supervisor))
            else:
                await ref.tell(QueueDescribed(account, uuid.uuid4(), "Sales"))
                await trio.sleep(1.5)
            await _snapshot(ref, account)
            stop.set()
    (frame,) = supervisor.read()
    assert frame["type"] == "stats" and [queue["name"] for queue in frame["queues"]] == ["Sales"]
