"""Web-chat visitors and the customer records behind them.

A visitor is a customer of the `webchat` channel who holds a token: `kv_` followed by
`secrets.token_urlsafe(32)`. The widget keeps it (localStorage), so a page reload is the same
visitor. Only the token's SHA-256 is stored, in `customers.visitor_token_hash`.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from kefu.server.auth import token_hash
from kefu.server.database import Database
from kefu.server.directory import InvalidInput, NotFound

VISITOR_TOKEN_PREFIX = "kv_"
MAX_VISITOR_TOKEN_CHARS = 256
MAX_DISPLAY_NAME_CHARS = 200
MIN_CUSTOMER_LEVEL, MAX_CUSTOMER_LEVEL = 0, 10
MAX_SLUG_CHARS = 63


@dataclass(frozen=True, slots=True)
class Visitor:
    account_id: UUID
    customer_id: UUID
    display_name: str | None
    level: int

    def json(self) -> dict[str, Any]:
        return {
            "customer_id": str(self.customer_id),
            "display_name": self.display_name,
            "account_id": str(self.account_id),
        }


def new_visitor_token() -> str:
    return VISITOR_TOKEN_PREFIX + secrets.token_urlsafe(32)


def is_visitor_token(token: str | None) -> bool:
    return token is not None and token.startswith(VISITOR_TOKEN_PREFIX)


def _display_name(body: dict[str, Any], *, required: bool = False) -> str | None:
    value = body.get("display_name")
    if value is None and not required:
        return None
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= MAX_DISPLAY_NAME_CHARS:
        raise InvalidInput(f"display_name must be a string of 1 to {MAX_DISPLAY_NAME_CHARS} characters or null")
    return value.strip()


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput("expected a JSON object")
    return body


def _check_fields(body: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(body) - known)
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]}")


async def create_visitor(database: Database, body: Any) -> tuple[str, Visitor]:
    """A new visitor of the account named by `body["account"]` (its slug); returns its token."""
    body = _object(body)
    _check_fields(body, {"account", "display_name"})
    slug = body.get("account")
    if not isinstance(slug, str) or not 1 <= len(slug) <= MAX_SLUG_CHARS:
        raise InvalidInput("account must be the account's name in URLs (its slug)")
    display_name = _display_name(body)
    token = new_visitor_token()
    row = await database.fetchrow(
        """INSERT INTO customers (account_id, display_name, channel, visitor_token_hash, last_seen_at)
           SELECT id, $2, 'webchat', $3, now() FROM accounts WHERE slug = $1
           RETURNING account_id, id, display_name, level""",
        slug.strip().lower(),
        display_name,
        token_hash(token),
    )
    if row is None:
        raise NotFound("no such account")
    return token, Visitor(row["account_id"], row["id"], row["display_name"], row["level"])


async def authenticate_visitor(database: Database, token: str) -> Visitor | None:
    """The visitor a `kv_…` token belongs to, or None; a hit records `last_seen_at`."""
    if not is_visitor_token(token) or len(token) > MAX_VISITOR_TOKEN_CHARS:
        return None
    row = await database.fetchrow(
        """UPDATE customers SET last_seen_at = now() WHERE visitor_token_hash = $1
           RETURNING account_id, id, display_name, level""",
        token_hash(token),
    )
    if row is None:
        return None
    return Visitor(row["account_id"], row["id"], row["display_name"], row["level"])


async def rename_visitor(database: Database, visitor: Visitor, body: Any) -> Visitor:
    body = _object(body)
    _check_fields(body, {"display_name"})
    if "display_name" not in body:
        raise InvalidInput("display_name is required")
    display_name = _display_name(body)
    row = await database.fetchrow(
        """UPDATE customers SET display_name = $3 WHERE account_id = $1 AND id = $2
           RETURNING account_id, id, display_name, level""",
        visitor.account_id,
        visitor.customer_id,
        display_name,
    )
    if row is None:
        raise NotFound("no such visitor")
    return Visitor(row["account_id"], row["id"], row["display_name"], row["level"])


# -- customers as staff see them ----------------------------------------------------------------


def _customer_json(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "display_name": row["display_name"],
        "level": row["level"],
        "channel": row["channel"],
        "created_at": row["created_at"].isoformat(),
        "last_seen_at": row["last_seen_at"].isoformat() if row["last_seen_at"] else None,
    }


_CUSTOMER_COLUMNS = "id, display_name, level, channel, created_at, last_seen_at"


async def get_customer(database: Database, account_id: UUID, customer_id: UUID) -> dict[str, Any]:
    row = await database.fetchrow(
        f"SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE account_id = $1 AND id = $2", account_id, customer_id
    )
    if row is None:
        raise NotFound("no such customer")
    return _customer_json(row)


async def update_customer(
    database: Database, account_id: UUID, customer_id: UUID, body: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Change a customer's display name and/or level; returns the customer and what changed."""
    body = _object(body)
    _check_fields(body, {"display_name", "level"})
    changes: dict[str, Any] = {}
    if "display_name" in body:
        changes["display_name"] = _display_name(body)
    if "level" in body:
        level = body["level"]
        if (
            isinstance(level, bool)
            or not isinstance(level, int)
            or not MIN_CUSTOMER_LEVEL <= level <= MAX_CUSTOMER_LEVEL
        ):
            raise InvalidInput(f"level must be an integer from {MIN_CUSTOMER_LEVEL} to {MAX_CUSTOMER_LEVEL}")
        changes["level"] = level
    row = await database.fetchrow(
        f"""UPDATE customers SET
                display_name = CASE WHEN $3 THEN $4 ELSE display_name END,
                level = COALESCE($5, level)
            WHERE account_id = $1 AND id = $2
            RETURNING {_CUSTOMER_COLUMNS}""",
        account_id,
        customer_id,
        "display_name" in changes,
        changes.get("display_name"),
        changes.get("level"),
    )
    if row is None:
        raise NotFound("no such customer")
    return _customer_json(row), changes
