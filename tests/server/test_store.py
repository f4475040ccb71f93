"""The store actor with the PostgreSQL event log, against a real (embedded) PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
import trio

from kefu.actors.runtime import Mailbox
from kefu.actors.store import (
    Append,
    Appended,
    AppendRejected,
    EventRecord,
    Store,
    StoreMessage,
    StoreUnavailable,
    append,
)
from kefu.actors.supervisor import Supervisor, actor_child
from kefu.server.database import Database
from kefu.server.event_log import COPY_FROM_ROWS, PostgresEventLog
from tests.conftest import new_account, new_conversation, open_database


def record(account_id: uuid.UUID, conversation_id: uuid.UUID, seq: int, client_id: str | None = None) -> EventRecord:
    return EventRecord(
        account_id=account_id,
        conversation_id=conversation_id,
        seq=seq,
        client_id=client_id if client_id is not None else f"c-{seq}",
        kind="message",
        sender_role="customer",
        sender_id="visitor-1",
        body={"text": f"message {seq} 你好"},
    )


@asynccontextmanager
async def running_store(
    database: Database, *, batch_max: int = 2000, writers: int = 2
) -> AsyncIterator[tuple[Store, Mailbox[StoreMessage]]]:
    mailbox: Mailbox[StoreMessage] = Mailbox("store", 20_000)
    stores: list[Store] = []

    def factory(mb: Mailbox[StoreMessage]) -> Store:
        stores.append(Store(mb, PostgresEventLog(database), batch_max=batch_max, writers=writers))
        return stores[-1]

    supervisor = Supervisor("test", [actor_child(factory, mailbox)])
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(supervisor.run, stop)
        yield stores[-1], mailbox
        stop.set()


async def stored_seqs(database: Database, conversation_id: uuid.UUID) -> list[int]:
    rows = await database.fetch(
        "SELECT seq FROM conversation_events WHERE conversation_id = $1 ORDER BY seq", conversation_id
    )
    return [r["seq"] for r in rows]


async def test_concurrent_appends_share_transactions_and_all_become_durable(database_dsn: str) -> None:
    async with open_database(database_dsn) as database:
        account = await new_account(database)
        conversations = [await new_conversation(database, account) for _ in range(20)]
        results: list[Appended] = []
        async with running_store(database) as (store, mailbox):

            async def one_conversation(conversation_id: uuid.UUID) -> None:
                async with trio.open_nursery() as nursery:
                    for seq in range(50):
                        nursery.start_soon(send_one, conversation_id, seq)

            async def send_one(conversation_id: uuid.UUID, seq: int) -> None:
                results.append(await append(mailbox.ref, record(account, conversation_id, seq)))

            async with trio.open_nursery() as nursery:
                for conversation_id in conversations:
                    nursery.start_soon(one_conversation, conversation_id)

            stats = store.store_statistics()
        assert len(results) == 1000
        assert all(not r.duplicate for r in results)
        assert stats.appends_committed == 1000
        # group commit: many appends rode in each transaction
        assert stats.transactions < 1000 / 5, stats
        assert stats.largest_batch > 5
        for conversation_id in conversations:
            assert await stored_seqs(database, conversation_id) == list(range(50))


async def test_a_retried_append_gets_the_original_ack_and_is_stored_once(database_dsn: str) -> None:
    async with open_database(database_dsn) as database:
        account = await new_account(database)
        conversation = await new_conversation(database, account)
        async with running_store(database) as (_store, mailbox):
            first = await append(mailbox.ref, record(account, conversation, 0, client_id="client-abc"))
            # the client did not see the ack and sends the same message again; a buggy
            # owner even gave it a new seq: the store answers with the original
            again = await append(mailbox.ref, record(account, conversation, 1, client_id="client-abc"))
        assert first.duplicate is False
        assert again.duplicate is True
        assert again.seq == first.seq == 0
        assert again.created_at == first.created_at
        assert await stored_seqs(database, conversation) == [0]


@pytest.mark.parametrize("written_by", ["insert", "copy"])
async def test_one_bad_append_fails_alone_and_its_batch_still_commits(database_dsn: str, written_by: str) -> None:
    """Either way a batch is written (one INSERT for a small batch, COPY for a large one)."""
    async with open_database(database_dsn) as database:
        account = await new_account(database)
        conversation = await new_conversation(database, account)
        neighbour = await new_conversation(database, account)
        padding = COPY_FROM_ROWS if written_by == "copy" else 0
        unknown_conversation = uuid.uuid4()
        async with running_store(database, writers=1) as (store, mailbox):
            await append(mailbox.ref, record(account, conversation, 0))
            outcomes: dict[str, object] = {}

            async def send(name: str, rec: EventRecord) -> None:
                try:
                    outcomes[name] = await append(mailbox.ref, rec)
                except AppendRejected as error:
                    outcomes[name] = error

            # queue them all before the store runs, so they form one batch
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send, "good-1", record(account, conversation, 1))
                nursery.start_soon(send, "seq-taken", record(account, conversation, 0, client_id="other"))
                nursery.start_soon(send, "no-such-conversation", record(account, unknown_conversation, 0))
                nursery.start_soon(send, "good-2", record(account, conversation, 2))
                for seq in range(padding):
                    nursery.start_soon(send, f"neighbour-{seq}", record(account, neighbour, seq))
            assert store.largest_batch >= padding + 4
        assert isinstance(outcomes["good-1"], Appended)
        assert isinstance(outcomes["good-2"], Appended)
        seq_taken = outcomes["seq-taken"]
        assert isinstance(seq_taken, AppendRejected) and seq_taken.code == "seq_conflict"
        unknown = outcomes["no-such-conversation"]
        assert isinstance(unknown, AppendRejected) and unknown.code == "unknown_conversation"
        assert await stored_seqs(database, conversation) == [0, 1, 2]
        assert await stored_seqs(database, neighbour) == list(range(padding))
        assert store.appends_failed == 2


@pytest.mark.parametrize("size", [3, COPY_FROM_ROWS + 1])
async def test_a_batch_is_stored_exactly_as_sent_whichever_way_it_is_written(database_dsn: str, size: int) -> None:
    async with open_database(database_dsn) as database:
        account = await new_account(database)
        conversation = await new_conversation(database, account)
        records = [
            EventRecord(
                account_id=account,
                conversation_id=conversation,
                seq=seq,
                client_id=None if seq % 2 else f"c-{seq}",
                kind="message",
                sender_role="agent" if seq % 3 else "customer",
                sender_id=None if seq % 5 == 0 else f"sender-{seq}",
                body={"text": f'第 {seq} 条 "quoted" \\ tab\t', "n": seq, "nested": {"ok": [1, None]}},
            )
            for seq in range(size)
        ]
        created_at = datetime(2026, 11, 24, 9, 30, 1, 123456, tzinfo=UTC)
        outcomes = await PostgresEventLog(database).append_batch(records, created_at)
        assert outcomes == [Appended(conversation, seq, created_at) for seq in range(size)]
        rows = await database.fetch(
            "SELECT account_id, conversation_id, seq, client_id, kind, sender_role, sender_id, body, created_at"
            " FROM conversation_events WHERE conversation_id = $1 ORDER BY seq",
            conversation,
        )
        assert [EventRecord(**{k: r[k] for k in r.keys() if k != "created_at"}) for r in rows] == records
        assert {r["created_at"] for r in rows} == {created_at}


async def test_appends_fail_with_a_retryable_error_when_the_database_is_gone(database_dsn: str) -> None:
    async with open_database(database_dsn) as database:
        account = await new_account(database)
        conversation = await new_conversation(database, account)
        async with running_store(database) as (store, mailbox):
            await append(mailbox.ref, record(account, conversation, 0))
            database.pool.terminate()
            with pytest.raises(StoreUnavailable) as failure:
                await append(mailbox.ref, record(account, conversation, 1))
            assert failure.value.retryable is True
            # the store itself is still up and answering
            with pytest.raises(StoreUnavailable):
                await append(mailbox.ref, record(account, conversation, 2))
            assert store.appends_failed == 2
    async with open_database(database_dsn) as database:
        assert await stored_seqs(database, conversation) == [0]


async def test_a_graceful_stop_commits_what_is_still_in_the_mailbox(database_dsn: str) -> None:
    async with open_database(database_dsn) as database:
        account = await new_account(database)
        conversation = await new_conversation(database, account)
        replies = []
        from kefu.actors.runtime import Reply

        async with running_store(database, batch_max=10) as (_store, mailbox):
            for seq in range(100):
                reply: Reply[Appended] = Reply()
                replies.append(reply)
                mailbox.ref.tell_nowait(Append(record(account, conversation, seq), reply))
            # leaving the block asks the store to stop while most appends still wait
        assert all(r.done for r in replies)
        assert [(await r.wait()).seq for r in replies] == list(range(100))
        assert await stored_seqs(database, conversation) == list(range(100))
