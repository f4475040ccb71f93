"""Canned responses: reusable replies agents insert by a shortcut.

An account-wide response (no owner) is shared by every user of the account and only admins
change it; a personal one belongs to one user, and to everybody else it does not exist: a change
of someone else's is answered 404, as for an unknown id, and written to the audit log as
`denied:canned_response.update` / `denied:canned_response.delete`.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from kefu.server import audit as audit_log
from kefu.server.auth import SignedInUser
from kefu.server.database import Database
from kefu.server.directory import Conflict, InvalidInput, NotFound

MAX_SHORTCUT_CHARS = 50
MAX_TITLE_CHARS = 200
MAX_BODY_CHARS = 8000
MAX_QUERY_CHARS = 200
SCOPES = ("account", "personal")

_COLUMNS = "id, owner_user_id, shortcut, title, body, created_at, updated_at"


class Forbidden(Exception):
    """The caller may see this response but not change it (an account-wide one, not an admin)."""


def canned_json(row: asyncpg.Record) -> dict[str, Any]:
    owner = row["owner_user_id"]
    return {
        "id": str(row["id"]),
        "scope": "account" if owner is None else "personal",
        "owner_user_id": None if owner is None else str(owner),
        "shortcut": row["shortcut"],
        "title": row["title"],
        "body": row["body"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def _text(body: dict[str, Any], field: str, max_chars: int) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= max_chars:
        raise InvalidInput(f"{field} must be a string of 1 to {max_chars} characters")
    return value.strip()


def _shortcut(body: dict[str, Any]) -> str:
    value = _text(body, "shortcut", MAX_SHORTCUT_CHARS)
    if any(c.isspace() for c in value):
        raise InvalidInput("shortcut must not contain spaces")
    return value


def _fields(body: Any, known: set[str]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput("expected a JSON object")
    unknown = sorted(set(body) - known)
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]}")
    return body


def scope_of(body: Any) -> str:
    """The scope a create body asks for (checked before the caller's role is)."""
    scope = body.get("scope") if isinstance(body, dict) else None
    if scope not in SCOPES:
        raise InvalidInput("scope must be account or personal")
    return str(scope)


async def list_canned(database: Database, user: SignedInUser, query: str | None) -> list[dict[str, Any]]:
    """The account-wide responses and the caller's own, optionally filtered by `query`."""
    if query is not None and len(query) > MAX_QUERY_CHARS:
        raise InvalidInput(f"q must have at most {MAX_QUERY_CHARS} characters")
    q = (query or "").strip().lower() or None
    rows = await database.fetch(
        f"""SELECT {_COLUMNS} FROM canned_responses
            WHERE account_id = $1 AND (owner_user_id IS NULL OR owner_user_id = $2)
              AND ($3::text IS NULL OR starts_with(lower(shortcut), $3) OR strpos(lower(title), $3) > 0)
            ORDER BY lower(shortcut), owner_user_id NULLS FIRST, id""",
        user.account_id,
        user.user_id,
        q,
    )
    return [canned_json(r) for r in rows]


async def create_canned(database: Database, user: SignedInUser, body: Any, *, audit: Any = None) -> dict[str, Any]:
    body = _fields(body, {"scope", "shortcut", "title", "body"})
    scope = scope_of(body)
    if scope == "account" and user.role != "admin":
        raise Forbidden("only admins manage account-wide canned responses")
    shortcut = _shortcut(body)
    title = _text(body, "title", MAX_TITLE_CHARS)
    text = _text(body, "body", MAX_BODY_CHARS)

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        async with conn.transaction():
            try:
                row = await conn.fetchrow(
                    f"""INSERT INTO canned_responses (account_id, owner_user_id, shortcut, title, body)
                        VALUES ($1, $2, $3, $4, $5) RETURNING {_COLUMNS}""",
                    user.account_id,
                    user.user_id if scope == "personal" else None,
                    shortcut,
                    title,
                    text,
                )
            except asyncpg.UniqueViolationError:
                raise Conflict(f"the shortcut {shortcut!r} is already used") from None
            assert row is not None
            canned = canned_json(row)
            if audit is not None and scope == "account":
                await audit(conn, canned)
            return canned

    return await database.run(work)


async def _visible(conn: asyncpg.Connection, user: SignedInUser, canned_id: UUID) -> asyncpg.Record:
    """The response locked for a change, when the caller may change it."""
    row = await conn.fetchrow(
        f"""SELECT {_COLUMNS} FROM canned_responses
            WHERE account_id = $1 AND id = $2 AND (owner_user_id IS NULL OR owner_user_id = $3) FOR UPDATE""",
        user.account_id,
        canned_id,
        user.user_id,
    )
    if row is None:
        raise NotFound("no such canned response")
    if row["owner_user_id"] is None and user.role != "admin":
        raise Forbidden("only admins manage account-wide canned responses")
    return row


async def _audit_not_found(database: Database, user: SignedInUser, attempted: str, canned_id: UUID) -> None:
    """A change of a response the caller may not see (someone else's personal one, another
    account's, or none): the 404 is audited outside the change's rolled-back transaction."""
    await audit_log.record_denial(
        database,
        user.account_id,
        user.role,
        user.user_id,
        attempted,
        "canned_response",
        canned_id,
        {"status": 404},
    )


async def update_canned(
    database: Database, user: SignedInUser, canned_id: UUID, body: Any, *, audit: Any = None
) -> dict[str, Any]:
    body = _fields(body, {"shortcut", "title", "body"})
    shortcut = _shortcut(body) if "shortcut" in body else None
    title = _text(body, "title", MAX_TITLE_CHARS) if "title" in body else None
    text = _text(body, "body", MAX_BODY_CHARS) if "body" in body else None

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        async with conn.transaction():
            await _visible(conn, user, canned_id)
            try:
                row = await conn.fetchrow(
                    f"""UPDATE canned_responses SET shortcut = COALESCE($3, shortcut), title = COALESCE($4, title),
                               body = COALESCE($5, body), updated_at = now()
                        WHERE account_id = $1 AND id = $2 RETURNING {_COLUMNS}""",
                    user.account_id,
                    canned_id,
                    shortcut,
                    title,
                    text,
                )
            except asyncpg.UniqueViolationError:
                raise Conflict(f"the shortcut {shortcut!r} is already used") from None
            assert row is not None
            canned = canned_json(row)
            if audit is not None and canned["scope"] == "account":
                await audit(conn, canned, sorted(body))
            return canned

    try:
        return await database.run(work)
    except NotFound:
        await _audit_not_found(database, user, "canned_response.update", canned_id)
        raise


async def delete_canned(database: Database, user: SignedInUser, canned_id: UUID, *, audit: Any = None) -> None:
    async def work(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            row = await _visible(conn, user, canned_id)
            await conn.execute(
                "DELETE FROM canned_responses WHERE account_id = $1 AND id = $2", user.account_id, canned_id
            )
            if audit is not None and row["owner_user_id"] is None:
                await audit(conn, canned_json(row))

    try:
        await database.run(work)
    except NotFound:
        await _audit_not_found(database, user, "canned_response.delete", canned_id)
        raise
