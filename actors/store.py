"""The store actor: durable appends to the conversation event log, with group commit.

Theory of operation
-------------------
Callers `ask` the store to append one event. The store takes the first waiting append,
then everything else already in its mailbox (up to `batch_max`), and commits them all
in ONE transaction through its `EventLog`. While that COMMIT is in flight, new appends
pile up in the mailbox and form the next batch, so under load each transaction carries
many appends and durability costs one fsync per batch instead of one per message.

Rules
-----
1. An append is answered only after the COMMIT that holds it returned: `Appended`
   means durable. (The store refuses to start when the database would acknowledge
   commits before they are durable; see `Database.check_durability`.)
2. An append that failed is answered as failed, never silently dropped:
   `AppendRejected` (permanent: the request itself is wrong, e.g. its seq is taken) or
   `StoreUnavailable` (retryable: the database could not be reached, nothing committed).
3. One bad append does not fail its batch: the `EventLog` isolates it and commits the
   others.
4. A retried append (same conversation, same sender and client_id) is answered with the
   original `Appended` marked `duplicate=True` and is not stored twice. A client id is
   unique per sender (sender_role, sender_id): another sender's equal id is another event.
5. On a graceful stop the store commits what is already in its mailbox before it exits.

The event log's SQL lives in `kefu.server.event_log`; this module knows only the
`EventLog` protocol, so the actor layer imports no database driver.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import trio

from kefu.actors.runtime import Actor, ActorRef, ActorStatistics, Mailbox, Reply

log = logging.getLogger("kefu.store")

STORE_MAILBOX_CAPACITY = 20_000
"""Appends waiting for the store. Full: `tell` waits (back-pressure), `tell_nowait` refuses."""

DEFAULT_BATCH_MAX = 2000
"""Most appends committed in one transaction."""


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One event of a conversation, as it is stored."""

    account_id: UUID
    conversation_id: UUID
    seq: int
    client_id: str | None
    kind: str
    sender_role: str
    sender_id: str | None
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Appended:
    """The event is durable. `duplicate`: the same sender stored it earlier under the same client_id."""

    conversation_id: UUID
    seq: int
    created_at: datetime
    duplicate: bool = False


class AppendRejected(Exception):
    """The append can never succeed as sent (`code` says why); nothing was stored."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = False


class StoreUnavailable(Exception):
    """The database could not commit now; nothing was stored; retry later."""

    retryable = True


class EventLog(Protocol):
    async def append_batch(
        self, records: Sequence[EventRecord], created_at: datetime
    ) -> list[Appended | AppendRejected]:
        """Commit the records that can be committed, in one transaction when possible.

        Returns one outcome per record, in order. Raises `StoreUnavailable` when nothing
        could be committed because the database is unreachable.
        """
        ...


@dataclass(frozen=True, slots=True)
class Append:
    record: EventRecord
    reply: Reply[Appended]


StoreMessage = Append


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    actor: ActorStatistics
    """The store's mailbox and restarts."""
    transactions: int
    """Transactions committed (or attempted) for appends."""
    appends_committed: int
    """Appends answered with `Appended` (duplicates included)."""
    appends_failed: int
    """Appends answered with `AppendRejected` or `StoreUnavailable`."""
    largest_batch: int
    """Most appends carried by one transaction."""
    last_commit_seconds: float
    """How long the latest transaction took, from its first statement to COMMIT returning."""


DEFAULT_WRITERS = 2
"""Transactions in flight at once. Each conversation always goes to the same writer, so
its appends commit in the order they were sent; two writers let one batch form (and its
rows be encoded) while the other's COMMIT waits for the disk."""


class Store(Actor[StoreMessage]):
    def __init__(
        self,
        mailbox: Mailbox[StoreMessage],
        event_log: EventLog,
        *,
        batch_max: int = DEFAULT_BATCH_MAX,
        writers: int = DEFAULT_WRITERS,
    ) -> None:
        super().__init__(mailbox)
        if writers < 1 or batch_max < 1:
            raise ValueError("a store needs at least one writer and batches of at least one append")
        self.event_log = event_log
        self.batch_max = batch_max
        self.writers = writers
        # Appends taken from the mailbox, waiting for their writer. Bounded: when a
        # writer's queue holds `2 * batch_max`, `handle` waits, so the mailbox fills and
        # back-pressure reaches the senders.
        self._queued: list[deque[Append]] = [deque() for _ in range(writers)]
        self._work: list[trio.Event] = [trio.Event() for _ in range(writers)]
        self._room = trio.Event()
        self._closing = False
        self.transactions = 0
        self.appends_committed = 0
        self.appends_failed = 0
        self.largest_batch = 0
        self.last_commit_seconds = 0.0

    async def run(self, stop_requested: trio.Event, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                for writer in range(self.writers):
                    nursery.start_soon(self._write, writer)
                task_status.started(self.ref)
                await self.message_loop(stop_requested)
                # graceful stop: what is already in the mailbox is committed too
                await self._take_waiting()
                self._closing = True
                for work in self._work:
                    work.set()
        except BaseException:
            self._fail_queued(StoreUnavailable("the store stopped before committing this append; retry"))
            raise

    async def handle(self, message: StoreMessage) -> None:
        self._enqueue(message)
        await self._take_waiting()

    async def _take_waiting(self) -> None:
        """Move everything waiting in the mailbox to the writers' queues."""
        receive_nowait = self.mailbox.receive_nowait
        while True:
            try:
                message = receive_nowait()
            except trio.WouldBlock:
                return
            self.mailbox.mark_handled()
            self._enqueue(message)
            while any(len(queue) >= 2 * self.batch_max for queue in self._queued):
                self._room = trio.Event()
                await self._room.wait()

    def _enqueue(self, message: Append) -> None:
        writer = hash(message.record.conversation_id) % self.writers if self.writers > 1 else 0
        self._queued[writer].append(message)
        self._work[writer].set()

    async def _write(self, writer: int) -> None:
        queue = self._queued[writer]
        while True:
            while not queue:
                if self._closing:
                    return
                self._work[writer] = trio.Event()
                await self._work[writer].wait()
            batch = [queue.popleft() for _ in range(min(len(queue), self.batch_max))]
            self._room.set()
            await self.commit(batch)

    def _fail_queued(self, error: Exception) -> None:
        for queue in self._queued:
            if queue:
                self._fail_all(list(queue), error)
                queue.clear()

    async def commit(self, batch: list[Append]) -> None:
        records = [append.record for append in batch]
        started = trio.current_time()
        try:
            outcomes = await self.event_log.append_batch(records, datetime.now(UTC))
        except StoreUnavailable as error:
            self._fail_all(batch, error)
            return
        except BaseException as error:
            # a bug or a cancellation: answer everyone before the crash propagates
            self._fail_all(batch, StoreUnavailable(f"store failed: {error!r}"))
            raise
        finally:
            self.transactions += 1
            self.last_commit_seconds = trio.current_time() - started
            if len(batch) > self.largest_batch:
                self.largest_batch = len(batch)
        for append, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, Appended):
                self.appends_committed += 1
                append.reply.set(outcome)
            else:
                self.appends_failed += 1
                append.reply.fail(outcome)

    def _fail_all(self, batch: list[Append], error: Exception) -> None:
        self.appends_failed += len(batch)
        log.warning("append batch failed", extra={"appends": len(batch), "error": str(error)})
        for append in batch:
            append.reply.fail(error)

    def store_statistics(self) -> StoreStatistics:
        return StoreStatistics(
            actor=self.statistics(),
            transactions=self.transactions,
            appends_committed=self.appends_committed,
            appends_failed=self.appends_failed,
            largest_batch=self.largest_batch,
            last_commit_seconds=self.last_commit_seconds,
        )


async def append(store: ActorRef[StoreMessage], record: EventRecord, *, timeout: float = 10.0) -> Appended:
    """Append `record` durably; raises AppendRejected, StoreUnavailable or AskTimeout."""
    return await store.ask(lambda reply: Append(record, reply), timeout=timeout)
