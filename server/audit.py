"""The audit log: who changed what in an account, and who was refused.

`audit_log` is append-only (a trigger refuses UPDATE, DELETE and TRUNCATE; only deleting the
whole account takes its log with it). `record` writes one row, either on its own or inside the
caller's transaction when given the transaction's connection; `record_denial` writes a refusal
(`denied:<attempted>`, outcome `denied`). Admins read their account's log with
`GET /api/v1/audit-log`: newest first, filtered, in keyset pages.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg
from quart import Response, jsonify, request

from kefu.server.database import Database

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from kefu.server.auth import SignedInUser
    from kefu.server.node import Node

ErrorResponse = tuple[Response, int]

_INSERT = """INSERT INTO audit_log (account_id, actor_role, actor_id, action, target_type, target_id, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7)"""

PAGE_DEFAULT = 50
PAGE_MAX = 500
"""Most entries one `GET /api/v1/audit-log` page returns (`limit`); larger asks are refused with 400."""
MAX_FILTER_CHARS = 100
OUTCOMES = ("done", "denied")

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


class BadFilter(ValueError):
    """A query parameter of the audit-log listing is malformed; the message names it."""


def _entry_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": row["id"],
        "at": row["at"].isoformat(),
        "actor_role": row["actor_role"],
        "actor_id": row["actor_id"],
        "action": row["action"],
        "target_type": row["target_type"],
        "target_id": row["target_id"],
        "outcome": "denied" if row["denied"] else "done",
        "detail": row["detail"],
    }


def _moment(args: dict[str, str], name: str) -> datetime | None:
    value = args.get(name)
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise BadFilter(f"{name} must be an ISO 8601 time with its offset, e.g. 2026-01-31T08:00:00+00:00") from None
    if moment.tzinfo is None:
        raise BadFilter(f"{name} must name its UTC offset")
    return moment


def _filters(args: dict[str, str]) -> dict[str, Any]:
    known = {"actor", "action", "outcome", "since", "until", "before", "limit"}
    unknown = sorted(set(args) - known)
    if unknown:
        raise BadFilter(f"unknown parameter {unknown[0]}")
    try:
        limit = int(args.get("limit", PAGE_DEFAULT))
        before = int(args["before"]) if "before" in args else None
    except ValueError:
        raise BadFilter("limit and before must be integers") from None
    if not 1 <= limit <= PAGE_MAX:
        raise BadFilter(f"limit must be between 1 and {PAGE_MAX}")
    if before is not None and not 1 <= before < 2**63:
        raise BadFilter("before must be an entry id")
    actor = args.get("actor")
    if actor is not None:
        try:
            actor = str(UUID(actor))
        except ValueError:
            raise BadFilter("actor must be a user id") from None
    action = args.get("action")
    if action is not None and not 1 <= len(action) <= MAX_FILTER_CHARS:
        raise BadFilter(f"action must have 1 to {MAX_FILTER_CHARS} characters")
    outcome = args.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        raise BadFilter("outcome must be done or denied")
    return {
        "actor": actor,
        "action": action,
        "outcome": outcome,
        "since": _moment(args, "since"),
        "until": _moment(args, "until"),
        "before": before,
        "limit": limit,
    }


async def read_log(database: Database, account_id: UUID, args: dict[str, str]) -> dict[str, Any]:
    """One page of the account's log, newest first; `next_before` continues it (None at the end).

    Pages are keyed by entry id (`before`), so entries written while a client pages through
    never shift or repeat a page: they have larger ids and appear only on a new first page."""
    f = _filters(args)
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
        f["before"],
        f["actor"],
        f["action"],
        f["outcome"],
        f["since"],
        f["until"],
        f["limit"] + 1,
    )
    page = rows[: f["limit"]]
    return {
        "entries": [_entry_json(r) for r in page],
        "next_before": page[-1]["id"] if len(rows) > f["limit"] else None,
    }


def register(
    app: QuartTrio,
    node: Node,
    current_user: Callable[[], Awaitable[SignedInUser | None]],
    error_response: Callable[[str, str, int], ErrorResponse],
    unauthenticated: Callable[[], ErrorResponse],
) -> None:
    """GET /api/v1/audit-log on `app`: admins only; anyone else gets a 403 that is itself audited."""

    @app.get("/api/v1/audit-log")
    async def read_audit_log() -> ErrorResponse:
        user = await current_user()
        if user is None:
            return unauthenticated()
        if user.role != "admin":
            await record(
                node.database,
                user.account_id,
                user.role,
                user.user_id,
                "forbidden",
                "audit_log",
                None,
                {"attempted": "audit_log.read", "method": request.method, "path": request.path},
            )
            return error_response("forbidden", "your role may not do this", 403)
        try:
            page = await read_log(node.database, user.account_id, request.args.to_dict())
        except BadFilter as error:
            return error_response("invalid_request", str(error), 400)
        return jsonify(page), 200
