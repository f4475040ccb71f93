"""The audit log: who changed what in an account, and who was refused.

`audit_log` is append-only (a trigger refuses UPDATE, DELETE and TRUNCATE; only deleting the
whole account takes its log with it). `record` writes one row, either on its own or inside the
caller's transaction when given the transaction's connection; `record_denial` writes a refusal
(`denied:<attempted>`, outcome `denied`). Users with `audit.read` read their account's log with
`GET /api/v1/audit-log`: newest first, filtered, in keyset pages.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import asyncpg
import msgspec
from msgspec import Meta

from kefu.server.database import Database

_INSERT = """INSERT INTO audit_log (account_id, actor_role, actor_id, action, target_type, target_id, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7)"""

PAGE_DEFAULT = 50
PAGE_MAX = 500
"""Most entries one `GET /api/v1/audit-log` page returns (`limit`); larger asks are refused with 400."""
MAX_FILTER_CHARS = 100

_DENIED = "(action = 'forbidden' OR action LIKE 'denied:%' OR detail->>'outcome' = 'denied')"
"""An entry is a refusal when it is a role refusal (`forbidden`), a scoping one (`denied:…`), or says so."""


async def record(
    database_or_connection: Database | asyncpg.Connection,
    account_id: UUID,
    actor_role: str,
    actor_id: UUID | str | None,
    action: str,
    target_type: str,
    target_id: UUID | str | None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one entry. With a connection (inside `Database.run`), it joins that transaction."""
    args = (
        account_id,
        actor_role,
        None if actor_id is None else str(actor_id),
        action,
        target_type,
        None if target_id is None else str(target_id),
        detail or {},
    )
    if isinstance(database_or_connection, Database):
        await database_or_connection.execute(_INSERT, *args)
    else:
        await database_or_connection.execute(_INSERT, *args)


async def record_denial(
    database: Database,
    account_id: UUID,
    actor_role: str,
    actor_id: UUID | str,
    attempted: str,
    target_type: str,
    target_id: UUID | str | None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append a scoped refusal (answered 403 or 404) as `denied:<attempted>`, in the actor's account."""
    await record(
        database,
        account_id,
        actor_role,
        actor_id,
        f"denied:{attempted}",
        target_type,
        target_id,
        {"outcome": "denied", **(detail or {})},
    )


async def entries(database: Database, account_id: UUID) -> list[dict[str, Any]]:
    """The account's log, oldest first (for tests)."""
    rows = await database.fetch("SELECT * FROM audit_log WHERE account_id = $1 ORDER BY id", account_id)
    return [dict(r) for r in rows]


# -- reading the log over REST -----------------------------------------------------------------------

Outcome = Literal["done", "denied"]
EntryId = Annotated[int, Meta(ge=1, le=2**63 - 1)]
Moment = Annotated[
    datetime, Meta(tz=True, extra={"must": "an ISO 8601 time with its UTC offset, e.g. 2026-01-31T08:00:00+00:00"})
]


class AuditLogQuery(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The filters of `GET /api/v1/audit-log`."""

    actor: Annotated[UUID, Meta(description="only entries of this user (or customer) id")] | None = None
    action: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=MAX_FILTER_CHARS,
                description="only this action, e.g. `agent.update`, `forbidden`, `denied:message.send`",
            ),
        ]
        | None
    ) = None
    outcome: Outcome | None = None
    since: Annotated[Moment, Meta(description="entries at or after this time (with its UTC offset)")] | None = None
    until: Annotated[Moment, Meta(description="entries before this time (with its UTC offset)")] | None = None
    before: (
        Annotated[EntryId, Meta(description="entries with a smaller id: the previous page's `next_before`")] | None
    ) = None
    limit: Annotated[int, Meta(ge=1, le=PAGE_MAX)] = PAGE_DEFAULT


class AuditEntry(msgspec.Struct):
    """One entry of the audit log."""

    id: int
    at: datetime
    actor_role: str
    actor_id: str | None
    action: str
    target_type: str
    target_id: str | None
    outcome: Outcome
    detail: dict[str, Any]


class AuditLogPage(msgspec.Struct):
    """next_before is null on the last page; pass it as `before` for the next one."""

    entries: list[AuditEntry]
    next_before: int | None


def _entry(row: asyncpg.Record) -> AuditEntry:
    return AuditEntry(
        id=row["id"],
        at=row["at"],
        actor_role=row["actor_role"],
        actor_id=row["actor_id"],
        action=row["action"],
        target_type=row["target_type"],
        target_id=row["target_id"],
        outcome="denied" if row["denied"] else "done",
        detail=row["detail"],
    )


async def read_log(database: Database, account_id: UUID, f: AuditLogQuery) -> AuditLogPage:
    """One page of the account's log, newest first; `next_before` continues it (None at the end).

    Pages are keyed by entry id (`before`), so entries written while a client pages through
    never shift or repeat a page: they have larger ids and appear only on a new first page."""
    rows = await database.fetch(
        f"""SELECT id, at, actor_role, actor_id, action, target_type, target_id, detail, {_DENIED} AS denied
            FROM audit_log
            WHERE account_id = $1
              AND ($2::bigint IS NULL OR id < $2)
              AND ($3::text IS NULL OR actor_id = $3)
              AND ($4::text IS NULL OR action = $4)
              AND ($5::text IS NULL OR {_DENIED} = ($5 = 'denied'))
              AND ($6::timestamptz IS NULL OR at >= $6)
              AND ($7::timestamptz IS NULL OR at < $7)
            ORDER BY id DESC
            LIMIT $8""",
        account_id,
        f.before,
        None if f.actor is None else str(f.actor),
        f.action,
        f.outcome,
        f.since,
        f.until,
        f.limit + 1,
    )
    page = rows[: f.limit]
    return AuditLogPage([_entry(r) for r in page], page[-1]["id"] if len(rows) > f.limit else None)
