"""The conversation event log in PostgreSQL: the store actor's `EventLog`.

A small batch (the usual case when the node is not saturated: one or a few appends) is
written with ONE statement, an `INSERT … SELECT FROM unnest(…)` of all its rows, which is
a transaction of its own: one round trip to the server. A large batch is written with one
COPY in one transaction (BEGIN, COPY, COMMIT: more round trips, but far less work per row).
If either fails because one record conflicts or is invalid, the same batch is written
again row by row, each row in its own savepoint of one transaction, so the good rows still
commit together and each bad row gets its own answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from kefu.actors.store import Appended, AppendRejected, EventRecord, StoreUnavailable
from kefu.server.database import Database, DatabaseUnavailable

COLUMNS = (
    "account_id",
    "conversation_id",
    "seq",
    "client_id",
    "kind",
    "sender_role",
    "sender_id",
    "body",
    "created_at",
)

INSERT_ONE = f"INSERT INTO conversation_events ({', '.join(COLUMNS)}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"

INSERT_UNNEST = (
    f"INSERT INTO conversation_events ({', '.join(COLUMNS)}) SELECT * FROM unnest("
    "$1::uuid[], $2::uuid[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[], "
    "$9::timestamptz[])"
)

COPY_FROM_ROWS = 64
"""Batches of this many appends or more go by COPY; smaller ones by one INSERT statement."""

FIND_BY_CLIENT_ID = """SELECT seq, created_at FROM conversation_events
                       WHERE conversation_id = $1 AND sender_role = $2 AND coalesce(sender_id, '') = coalesce($3, '')
                         AND client_id = $4"""
"""The event a sender stored earlier under a client id: a client id is unique per sender
(sender_role, sender_id), as the unique index `conversation_events_sender_client_id` says."""

# Errors in one record (not in the database as a whole): isolate the record, keep going.
RECORD_ERRORS = (asyncpg.IntegrityConstraintViolationError, asyncpg.DataError)


def _row(record: EventRecord, created_at: datetime) -> tuple[object, ...]:
    return (
        record.account_id,
        record.conversation_id,
        record.seq,
        record.client_id,
        record.kind,
        record.sender_role,
        record.sender_id,
        record.body,
        created_at,
    )


async def _write_batch(conn: asyncpg.Connection, rows: list[tuple[object, ...]]) -> None:
    if len(rows) < COPY_FROM_ROWS:
        # one statement is one transaction: the rows commit together or not at all
        await conn.execute(INSERT_UNNEST, *(list(column) for column in zip(*rows, strict=True)))
        return
    async with conn.transaction():
        await conn.copy_records_to_table("conversation_events", records=rows, columns=COLUMNS)


async def _insert_one_by_one(
    conn: asyncpg.Connection, records: Sequence[EventRecord], created_at: datetime
) -> list[Appended | AppendRejected]:
    outcomes: list[Appended | AppendRejected] = []
    async with conn.transaction():
        for record in records:
            try:
                async with conn.transaction():  # a savepoint
                    await conn.execute(INSERT_ONE, *_row(record, created_at))
                outcomes.append(Appended(record.conversation_id, record.seq, created_at))
            except asyncpg.UniqueViolationError as error:
                outcomes.append(await _explain_unique_violation(conn, record, error))
            except asyncpg.ForeignKeyViolationError:
                outcomes.append(
                    AppendRejected(
                        "unknown_conversation", f"conversation {record.conversation_id} does not exist in this account"
                    )
                )
            except RECORD_ERRORS as error:
                outcomes.append(
                    AppendRejected("invalid_event", f"event rejected by the database: {error.__class__.__name__}")
                )
    return outcomes


async def _explain_unique_violation(
    conn: asyncpg.Connection, record: EventRecord, error: asyncpg.UniqueViolationError
) -> Appended | AppendRejected:
    if record.client_id is not None:
        earlier = await conn.fetchrow(
            FIND_BY_CLIENT_ID, record.conversation_id, record.sender_role, record.sender_id, record.client_id
        )
        if earlier is not None:
            # the same sender's frame sent again: answer with the original acknowledgement
            return Appended(record.conversation_id, earlier["seq"], earlier["created_at"], duplicate=True)
    return AppendRejected("seq_conflict", f"sequence number {record.seq} is already taken in this conversation")


class PostgresEventLog:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def append_batch(
        self, records: Sequence[EventRecord], created_at: datetime
    ) -> list[Appended | AppendRejected]:
        rows = [_row(record, created_at) for record in records]

        async def work(conn: asyncpg.Connection) -> list[Appended | AppendRejected]:
            try:
                await _write_batch(conn, rows)
            except RECORD_ERRORS:
                return await _insert_one_by_one(conn, records, created_at)
            return [Appended(record.conversation_id, record.seq, created_at) for record in records]

        try:
            return await self.database.run(work)
        except DatabaseUnavailable as error:
            raise StoreUnavailable(f"database unavailable: {error}") from error
        except asyncpg.PostgresError as error:
            # e.g. the server is shutting down or in recovery: nothing was committed
            raise StoreUnavailable(f"database error: {error.__class__.__name__}") from error
