"""The dispatcher's buffers are bounded: the backlog of what sessions could not take yet, and
the tasks that start sessions to give them a decision (actors/dispatcher.py, "Bounds and overflow")."""

from __future__ import annotations

import uuid
from pathlib import Path

import trio

from kefu.actors import messages as m
from kefu.actors.dispatcher import BACKLOG_KINDS, DISPATCHER_MAILBOX_CAPACITY, WAKE_CONCURRENCY
from kefu.actors.ports import SessionHandle
from kefu.actors.runtime import Mailbox, MailboxFull
from kefu.server import queues
from tests.conftest import open_database
from tests.server.live import live_center


async def test_a_stuck_session_holds_at_most_one_message_a_kind_and_gets_the_newest_in_order(
    database_dsn: str, tmp_path: Path
) -> None:
    async with live_center(database_dsn, tmp_path) as center:
        node = center.node
        dispatcher = node.dispatcher
        assert dispatcher is not None
        assert node.dispatcher_mailbox.capacity == DISPATCHER_MAILBOX_CAPACITY
        account_id, conversation_id, agent_id = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
        # a session that takes nothing: its one-message mailbox is full
        stuck = SessionHandle(account_id, conversation_id, Mailbox(f"session:{conversation_id}", 1))
        node.center.sessions[conversation_id] = stuck
        stuck.ref.tell_nowait(m.IdleStop())
        try:
            # (no checkpoint from here on: the dispatcher's own task does not run in between)
            for position in range(1, 10_001):
                dispatcher._tell_session(account_id, conversation_id, m.QueueStatus(position, position))
                lapse = m.OfferLapsed() if position % 2 == 0 else m.Offered(agent_id)
                dispatcher._tell_session(account_id, conversation_id, lapse)
            dispatcher._tell_session(account_id, conversation_id, m.Assign(agent_id, "Ada"))
            statistics = dispatcher.statistics_of_buffers()
            assert (statistics.backlog_conversations, statistics.backlog_messages) == (1, 3)
            assert statistics.backlog_messages <= len(set(BACKLOG_KINDS.values()))
            # the session takes its messages again, one at a time: the newest of each kind, in order
            received = []
            while len(received) < 4:
                received.append(stuck.mailbox.receive_nowait())
                dispatcher._retry_backlog()
            assert received == [m.IdleStop(), m.QueueStatus(10_000, 10_000), m.OfferLapsed(), m.Assign(agent_id, "Ada")]
            assert dispatcher.statistics_of_buffers().backlog_messages == 0
            assert conversation_id not in dispatcher.backlog
        finally:
            node.center.sessions.pop(conversation_id, None)


async def test_decisions_for_sessions_not_running_start_them_a_few_at_a_time(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center:
        node = center.node
        dispatcher = node.dispatcher
        assert dispatcher is not None and dispatcher._nursery is not None
        tasks_before = len(dispatcher._nursery.child_tasks)
        account_id = uuid.uuid4()
        gone = [uuid.uuid4() for _ in range(5 * WAKE_CONCURRENCY)]
        for conversation_id in gone:
            # conversations whose session is not running (here: that do not exist, so starting fails)
            dispatcher._tell_session(account_id, conversation_id, m.NoAgents("busy"))
        assert len(dispatcher._nursery.child_tasks) == tasks_before, "no task per message"
        assert dispatcher.statistics_of_buffers().backlog_conversations == len(gone)
        peak = 0
        with trio.fail_after(20):
            while dispatcher.backlog:
                peak = max(peak, dispatcher.statistics_of_buffers().waking)
                await trio.sleep(0)
        assert 1 <= peak <= WAKE_CONCURRENCY
        assert len(dispatcher._nursery.child_tasks) == tasks_before


async def test_a_queue_change_that_finds_the_mailbox_full_is_applied_at_the_next_tick(
    database_dsn: str, tmp_path: Path
) -> None:
    async with live_center(database_dsn, tmp_path) as center:
        node = center.node
        dispatcher = node.dispatcher
        assert dispatcher is not None
        (row,) = await center.fetch("SELECT id FROM accounts WHERE slug = $1", center.slug)
        account_id = row["id"]
        node.queues_changed(account_id)
        await node.dispatcher_mailbox.ref.ask(lambda reply: m.RouteProbe(reply), timeout=10)
        assert account_id in dispatcher.routers
        async with open_database(center.dsn) as database:
            created = await queues.create_queue(database, account_id, queues.QueueCreate(name="Late"))
        # (no checkpoint from here to the probe: the dispatcher does not run in between)
        ticks = 0
        while True:
            try:
                node.dispatcher_mailbox.ref.tell_nowait(m.Tick())
            except MailboxFull:
                break
            ticks += 1
        assert node.dispatcher_mailbox.size >= DISPATCHER_MAILBOX_CAPACITY  # (one more handed to it)
        node.queues_changed(account_id)  # refused by the full mailbox
        await node.dispatcher_mailbox.ref.ask(lambda reply: m.RouteProbe(reply), timeout=30)
        assert created.id in dispatcher.queues
        assert not node.center.queues_to_reload
