"""Canned responses: reusable replies agents insert by a shortcut.

An account-wide response (no owner) is shared by every user of the account and only users with
`canned.manage_shared` change it; a personal one belongs to one user, and to everybody else it does not exist: a change
of someone else's is answered 404, as for an unknown id, and written to the audit log as
`denied:canned_response.update` / `denied:canned_response.delete`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import asyncpg
import msgspec
from msgspec import UNSET, Meta, UnsetType

from kefu.protocol.permissions import Permission
from kefu.server import audit as audit_log
from kefu.server.api.structs import check_text, given
from kefu.server.auth import SignedInUser
from kefu.server.database import Database
from kefu.server.directory import Conflict, NotFound

MAX_SHORTCUT_CHARS = 50
MAX_TITLE_CHARS = 200
MAX_BODY_CHARS = 8000
MAX_QUERY_CHARS = 200
Scope = Literal["account", "personal"]

_COLUMNS = "id, owner_user_id, shortcut, title, body, created_at, updated_at"

Shortcut = Annotated[str, Meta(min_length=1, max_length=MAX_SHORTCUT_CHARS, description="no spaces")]
Title = Annotated[str, Meta(min_length=1, max_length=MAX_TITLE_CHARS)]
Body = Annotated[str, Meta(min_length=1, max_length=MAX_BODY_CHARS)]


class Forbidden(Exception):
    """The caller may see this response but not change it (a shared one, without `canned.manage_shared`)."""


class CannedResponse(msgspec.Struct, kw_only=True):
    """A canned response: account-wide (shared) or one user's own."""

    id: UUID
    scope: Scope
    owner_user_id: UUID | None
    shortcut: Shortcut
    title: Title
    body: Body
    created_at: datetime
    updated_at: datetime


class CannedResponses(msgspec.Struct):
    canned_responses: list[CannedResponse]


class CannedQuery(msgspec.Struct, forbid_unknown_fields=True):
    q: (
        Annotated[
            str,
            Meta(
                max_length=MAX_QUERY_CHARS, description="case-insensitive prefix of the shortcut or part of the title"
            ),
        ]
        | None
    ) = None


class _CannedFields(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    shortcut: Shortcut | UnsetType = UNSET

    def __post_init__(self) -> None:
        for name in ("shortcut", "title", "body"):
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, check_text(value, name, type(self)))
        if isinstance(self.shortcut, str) and any(c.isspace() for c in self.shortcut):
            raise ValueError("shortcut must not contain spaces")


class CannedCreate(_CannedFields, kw_only=True):
    """A new canned response (account scope: `canned.manage_shared`)."""

    scope: Scope
    shortcut: Shortcut
    title: Title
    body: Body


class CannedChange(_CannedFields, kw_only=True):
    """The fields to change; absent ones stay."""

    shortcut: Shortcut | UnsetType = UNSET
    title: Title | UnsetType = UNSET
    body: Body | UnsetType = UNSET


def canned_of(row: asyncpg.Record) -> CannedResponse:
    owner = row["owner_user_id"]
    return CannedResponse(
        id=row["id"],
        scope="account" if owner is None else "personal",
        owner_user_id=owner,
        shortcut=row["shortcut"],
        title=row["title"],
        body=row["body"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _may_manage(user: SignedInUser, owner: UUID | None) -> None:
    if owner is None and not user.may(Permission.CANNED_MANAGE_SHARED):
        raise Forbidden("account-wide canned responses need canned.manage_shared")


async def list_canned(database: Database, user: SignedInUser, query: str | None) -> list[CannedResponse]:
    """The account-wide responses and the caller's own, optionally filtered by `query`."""
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
    return [canned_of(r) for r in rows]


async def create_canned(
    database: Database, user: SignedInUser, body: CannedCreate, *, audit: Any = None
) -> CannedResponse:
    scope = body.scope
    _may_manage(user, None if scope == "account" else user.user_id)
    shortcut, title, text = body.shortcut, body.title, body.body

    async def work(conn: asyncpg.Connection) -> CannedResponse:
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
            canned = canned_of(row)
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
    _may_manage(user, row["owner_user_id"])
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
    database: Database, user: SignedInUser, canned_id: UUID, body: CannedChange, *, audit: Any = None
) -> CannedResponse:
    changes = given(body)
    shortcut, title, text = changes.get("shortcut"), changes.get("title"), changes.get("body")

    async def work(conn: asyncpg.Connection) -> CannedResponse:
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
            canned = canned_of(row)
            if audit is not None and canned.scope == "account":
                await audit(conn, canned, sorted(changes))
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
                await audit(conn, canned_of(row))

    try:
        await database.run(work)
    except NotFound:
        await _audit_not_found(database, user, "canned_response.delete", canned_id)
        raise
