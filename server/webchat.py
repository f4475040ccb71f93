"""Web-chat visitors and the customer records behind them.

A visitor is a customer of the `webchat` channel who holds a token: `kv_` followed by
`secrets.token_urlsafe(32)`. The widget keeps it (localStorage), so a page reload is the same
visitor. Only the token's SHA-256 is stored, in `customers.visitor_token_hash`. A customer's
display name, phone and e-mail are stored encrypted (server/privacy.py).
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg

from kefu.server.auth import token_hash
from kefu.server.database import Database
from kefu.server.directory import InvalidInput, NotFound
from kefu.server.privacy import PERSONAL_FIELDS, Privacy

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


async def create_visitor(database: Database, privacy: Privacy, body: Any) -> tuple[str, Visitor]:
    """A new visitor of the account named by `body["account"]` (its slug); returns its token.

    The visitor may leave a `phone` and an `email`; they are stored encrypted (server/privacy.py).
    """
    body = _object(body)
    _check_fields(body, {"account", "display_name", *PERSONAL_FIELDS})
    slug = body.get("account")
    if not isinstance(slug, str) or not 1 <= len(slug) <= MAX_SLUG_CHARS:
        raise InvalidInput("account must be the account's name in URLs (its slug)")
    display_name = _display_name(body)
    contact = {field: privacy.normalize(field, body.get(field)) for field in PERSONAL_FIELDS}
    account_id = await database.fetchval("SELECT id FROM accounts WHERE slug = $1", slug.strip().lower())
    if account_id is None:
        raise NotFound("no such account")
    customer_id = uuid.uuid4()
    phone = privacy.sealed(account_id, customer_id, "phone", contact["phone"])
    email = privacy.sealed(account_id, customer_id, "email", contact["email"])
    token = new_visitor_token()
    row = await database.fetchrow(
        f"""INSERT INTO customers (account_id, id, display_name_enc, channel, visitor_token_hash, last_seen_at,
                                   phone_enc, phone_index, email_enc, email_index)
            VALUES ($1, $2, $3, 'webchat', $4, now(), $5, $6, $7, $8)
            RETURNING {_VISITOR_COLUMNS}""",
        account_id,
        customer_id,
        privacy.seal_name(account_id, customer_id, display_name),
        token_hash(token),
        *phone,
        *email,
    )
    assert row is not None  # INSERT … RETURNING returns its row
    return token, _visitor(privacy, row)


_VISITOR_COLUMNS = "account_id, id, display_name, display_name_enc, level"


def _visitor(privacy: Privacy, row: asyncpg.Record) -> Visitor:
    name = privacy.name(row["account_id"], row["id"], row["display_name_enc"], row["display_name"])
    return Visitor(row["account_id"], row["id"], name, row["level"])


DEFAULT_VISITOR_TTL_DAYS = 90.0
"""Days a visitor token stays valid after its last use (setting `visitor_ttl_days`)."""


async def authenticate_visitor(
    database: Database, token: str, privacy: Privacy, *, ttl_days: float = DEFAULT_VISITOR_TTL_DAYS
) -> Visitor | None:
    """The visitor a `kv_…` token belongs to, or None; a hit records `last_seen_at`.

    A token not used for `ttl_days` has expired (sliding: every use renews it); the widget then
    makes a new visitor, as on a first visit.
    """
    if not is_visitor_token(token) or len(token) > MAX_VISITOR_TOKEN_CHARS:
        return None
    row = await database.fetchrow(
        f"""UPDATE customers SET last_seen_at = now()
             WHERE visitor_token_hash = $1
               AND coalesce(last_seen_at, created_at) > now() - make_interval(secs => $2)
            RETURNING {_VISITOR_COLUMNS}""",
        token_hash(token),
        ttl_days * 86400.0,
    )
    if row is None:
        return None
    return _visitor(privacy, row)


async def rename_visitor(database: Database, privacy: Privacy, visitor: Visitor, body: Any) -> Visitor:
    """A visitor changes its display name and/or leaves (or clears, with null) a phone or e-mail."""
    body = _object(body)
    _check_fields(body, {"display_name", *PERSONAL_FIELDS})
    if not {"display_name", *PERSONAL_FIELDS} & set(body):
        raise InvalidInput("display_name, phone or email is required")
    display_name = _display_name(body)
    sealed = _sealed_changes(privacy, visitor.account_id, visitor.customer_id, body)
    row = await database.fetchrow(
        f"""UPDATE customers SET {_SET_NAME}{_SET_PERSONAL}
           WHERE account_id = $1 AND id = $2
           RETURNING {_VISITOR_COLUMNS}""",
        visitor.account_id,
        visitor.customer_id,
        "display_name" in body,
        privacy.seal_name(visitor.account_id, visitor.customer_id, display_name),
        *sealed,
    )
    if row is None:
        raise NotFound("no such visitor")
    return _visitor(privacy, row)


# -- customers as staff see them ----------------------------------------------------------------


_SET_NAME = """display_name = CASE WHEN $3 THEN NULL ELSE display_name END,
                display_name_enc = CASE WHEN $3 THEN $4 ELSE display_name_enc END"""
"""Sets the encrypted display name from parameters $3 (change it?) and $4."""
_SET_PERSONAL = """,
                phone_enc = CASE WHEN $5 THEN $6 ELSE phone_enc END,
                phone_index = CASE WHEN $5 THEN $7 ELSE phone_index END,
                email_enc = CASE WHEN $8 THEN $9 ELSE email_enc END,
                email_index = CASE WHEN $8 THEN $10 ELSE email_index END"""
"""Sets phone and e-mail from parameters $5 to $10 (see `_sealed_changes`)."""


def _sealed_changes(privacy: Privacy, account_id: UUID, customer_id: UUID, body: dict[str, Any]) -> list[Any]:
    """For each of phone and e-mail: (changed?, ciphertext, blind index), flattened."""
    values: list[Any] = []
    for field in PERSONAL_FIELDS:
        normalized = privacy.normalize(field, body.get(field))
        values.extend((field in body, *privacy.sealed(account_id, customer_id, field, normalized)))
    return values


def _customer_json(privacy: Privacy, row: asyncpg.Record, *, full: bool) -> dict[str, Any]:
    """A customer as staff see it: phone and e-mail in full only when `full` (else masked)."""
    return {
        "id": str(row["id"]),
        "display_name": privacy.name(row["account_id"], row["id"], row["display_name_enc"], row["display_name"]),
        "level": row["level"],
        "channel": row["channel"],
        **privacy.contact_json(row, full=full),
        "created_at": row["created_at"].isoformat(),
        "last_seen_at": row["last_seen_at"].isoformat() if row["last_seen_at"] else None,
        "erased": row["erased_at"] is not None,
    }


_CUSTOMER_COLUMNS = (
    "account_id, id, display_name, display_name_enc, level, channel, created_at, last_seen_at,"
    " phone_enc, email_enc, erased_at"
)
MAX_FOUND_CUSTOMERS = 50


async def get_customer(
    database: Database, privacy: Privacy, account_id: UUID, customer_id: UUID, *, full: bool
) -> dict[str, Any]:
    row = await database.fetchrow(
        f"SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE account_id = $1 AND id = $2", account_id, customer_id
    )
    if row is None:
        raise NotFound("no such customer")
    return _customer_json(privacy, row, full=full)


async def find_customers(
    database: Database, privacy: Privacy, account_id: UUID, *, field: str, value: str, full: bool
) -> list[dict[str, Any]]:
    """Customers whose phone (any usual writing) or e-mail is `value`, by the blind index."""
    index = privacy.keys.blind_index(account_id, field, privacy.normalize(field, value))  # type: ignore[arg-type]
    rows = await database.fetch(
        f"""SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE account_id = $1 AND {field}_index = $2
            ORDER BY last_seen_at DESC NULLS LAST, id LIMIT {MAX_FOUND_CUSTOMERS}""",
        account_id,
        index,
    )
    return [_customer_json(privacy, row, full=full) for row in rows]


async def update_customer(
    database: Database, privacy: Privacy, account_id: UUID, customer_id: UUID, body: Any, *, full: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Change a customer's display name, level, phone or e-mail; returns the customer and, for
    the audit log, what changed: the new level, and only the names of changed personal fields."""
    body = _object(body)
    _check_fields(body, {"display_name", "level", *PERSONAL_FIELDS})
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
    sealed = _sealed_changes(privacy, account_id, customer_id, body)
    row = await database.fetchrow(
        f"""UPDATE customers SET {_SET_NAME}{_SET_PERSONAL},
                level = COALESCE($11, level)
            WHERE account_id = $1 AND id = $2
            RETURNING {_CUSTOMER_COLUMNS}""",
        account_id,
        customer_id,
        "display_name" in changes,
        privacy.seal_name(account_id, customer_id, changes.get("display_name")),
        *sealed,
        changes.get("level"),
    )
    if row is None:
        raise NotFound("no such customer")
    audited: dict[str, Any] = {"fields": sorted(set(body) & {"display_name", "level", *PERSONAL_FIELDS})}
    if "level" in changes:
        audited["level"] = changes["level"]
    return _customer_json(privacy, row, full=full), audited
