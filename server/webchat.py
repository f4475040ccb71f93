"""Web-chat visitors and the customer records behind them.

A visitor is a customer of the `webchat` channel who holds a token: `kv_` followed by
`secrets.token_urlsafe(32)`. The widget keeps it (localStorage), so a page reload is the same
visitor. Only the token's SHA-256 is stored, in `customers.visitor_token_hash`. A customer's
display name, phone and e-mail are stored encrypted (server/privacy.py).

The bodies and answers below are the one description of these resources: the REST edge
decodes into them, these functions take them, and the OpenAPI document is generated from them.
What their types cannot say is checked in their `__post_init__`; a phone number's validity
depends on the account's region, so `Privacy.normalize` checks it when it is stored.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import msgspec
from msgspec import UNSET, Meta, UnsetType

from kefu.server.api.structs import check_text, given
from kefu.server.auth import token_hash
from kefu.server.database import Database
from kefu.server.directory import NotFound
from kefu.server.privacy import MAX_EMAIL_CHARS, MAX_PHONE_CHARS, PERSONAL_FIELDS, Privacy

VISITOR_TOKEN_PREFIX = "kv_"
MAX_VISITOR_TOKEN_CHARS = 256
MAX_DISPLAY_NAME_CHARS = 200
MIN_CUSTOMER_LEVEL, MAX_CUSTOMER_LEVEL = 0, 10
MAX_SLUG_CHARS = 63
MAX_FOUND_CUSTOMERS = 50

DisplayName = Annotated[str, Meta(min_length=1, max_length=MAX_DISPLAY_NAME_CHARS)]
Phone = Annotated[
    str, Meta(min_length=1, max_length=MAX_PHONE_CHARS, description="any usual writing; stored as E.164, encrypted")
]
Email = Annotated[str, Meta(min_length=1, max_length=MAX_EMAIL_CHARS, extra_json_schema={"format": "email"})]
Level = Annotated[int, Meta(ge=MIN_CUSTOMER_LEVEL, le=MAX_CUSTOMER_LEVEL)]
Slug = Annotated[
    str, Meta(min_length=1, max_length=MAX_SLUG_CHARS, description="the account's name in URLs (its slug)")
]


# -- bodies ---------------------------------------------------------------------------------------


def _trim_name(fields: VisitorStart | VisitorChange | CustomerChange) -> None:
    """What the declared types cannot say: a display name is trimmed, and not blank."""
    if isinstance(fields.display_name, str):
        fields.display_name = check_text(fields.display_name, "display_name", type(fields))


class VisitorStart(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A new web-chat visitor of an account; phone and e-mail are stored encrypted."""

    account: Slug
    display_name: DisplayName | None = None
    phone: Phone | None = None
    email: Email | None = None

    def __post_init__(self) -> None:
        _trim_name(self)


class VisitorChange(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The visitor's display name, phone or e-mail (null clears it); at least one."""

    display_name: DisplayName | UnsetType | None = UNSET
    phone: Phone | UnsetType | None = UNSET
    email: Email | UnsetType | None = UNSET

    def __post_init__(self) -> None:
        _trim_name(self)
        if not given(self):
            raise ValueError("display_name, phone or email is required")


class CustomerChange(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A customer's display name, level, phone or e-mail to change."""

    display_name: DisplayName | UnsetType | None = UNSET
    level: Level | UnsetType = UNSET
    phone: Phone | UnsetType | None = UNSET
    email: Email | UnsetType | None = UNSET

    def __post_init__(self) -> None:
        _trim_name(self)


class CustomerLookup(msgspec.Struct, kw_only=True):
    """Exactly one of phone (any usual writing, e.g. 138 1234 5678) and email."""

    phone: Phone | None = None
    email: Email | None = None

    def __post_init__(self) -> None:
        if (self.phone is None) == (self.email is None):
            raise ValueError("give exactly one of ?phone= and ?email=")

    def looked_up(self) -> tuple[str, str]:
        """The one field looked up and its value."""
        if self.phone is not None:
            return "phone", self.phone
        assert self.email is not None  # __post_init__: exactly one is given
        return "email", self.email


# -- answers --------------------------------------------------------------------------------------


class Visitor(msgspec.Struct, frozen=True, kw_only=True):
    """A web-chat visitor: the customer a `kv_` token belongs to."""

    customer_id: UUID
    display_name: DisplayName | None
    account_id: UUID


class StartedVisitor(Visitor, frozen=True, kw_only=True):
    """The visitor and its token (shown once; the widget keeps it in localStorage)."""

    token: Annotated[str, Meta(pattern="^kv_")]


class Customer(msgspec.Struct, kw_only=True):
    id: UUID
    display_name: DisplayName | None
    level: Level
    channel: str
    phone: Annotated[str, Meta(description="international format (+86 138 1234 5678), or masked (138****5678)")] | None
    email: Annotated[str, Meta(description="in full, or masked (a***@example.com)")] | None
    contact_details_masked: Annotated[
        bool, Meta(description="phone and email are masked: the caller lacks contacts.view_unmasked")
    ]
    created_at: datetime
    last_seen_at: datetime | None
    erased: Annotated[bool, Meta(description="the customer's personal data was erased")]


class Customers(msgspec.Struct):
    customers: Annotated[list[Customer], Meta(max_length=MAX_FOUND_CUSTOMERS)]


# -- visitors -------------------------------------------------------------------------------------


def new_visitor_token() -> str:
    return VISITOR_TOKEN_PREFIX + secrets.token_urlsafe(32)


def is_visitor_token(token: str | None) -> bool:
    return token is not None and token.startswith(VISITOR_TOKEN_PREFIX)


async def create_visitor(database: Database, privacy: Privacy, start: VisitorStart) -> StartedVisitor:
    """A new visitor of the account named by `start.account` (its slug), with its token.

    The visitor may leave a `phone` and an `email`; they are stored encrypted (server/privacy.py).
    """
    contact = {field: privacy.normalize(field, getattr(start, field)) for field in PERSONAL_FIELDS}
    account_id = await database.fetchval("SELECT id FROM accounts WHERE slug = $1", start.account.strip().lower())
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
        privacy.seal_name(account_id, customer_id, start.display_name),
        token_hash(token),
        *phone,
        *email,
    )
    assert row is not None  # INSERT … RETURNING returns its row
    visitor = _visitor(privacy, row)
    return StartedVisitor(
        customer_id=visitor.customer_id, display_name=visitor.display_name, account_id=visitor.account_id, token=token
    )


_VISITOR_COLUMNS = "account_id, id, display_name, display_name_enc"


def _visitor(privacy: Privacy, row: asyncpg.Record) -> Visitor:
    name = privacy.name(row["account_id"], row["id"], row["display_name_enc"], row["display_name"])
    return Visitor(customer_id=row["id"], display_name=name, account_id=row["account_id"])


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


async def rename_visitor(database: Database, privacy: Privacy, visitor: Visitor, change: VisitorChange) -> Visitor:
    """A visitor changes its display name and/or leaves (or clears, with null) a phone or e-mail."""
    row = await database.fetchrow(
        f"""UPDATE customers SET {_SET_NAME}{_SET_PERSONAL}
           WHERE account_id = $1 AND id = $2
           RETURNING {_VISITOR_COLUMNS}""",
        visitor.account_id,
        visitor.customer_id,
        *_sealed_changes(privacy, visitor.account_id, visitor.customer_id, change),
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


def _sealed_changes(
    privacy: Privacy, account_id: UUID, customer_id: UUID, change: VisitorChange | CustomerChange
) -> list[Any]:
    """Parameters $3 to $10 of `_SET_NAME` and `_SET_PERSONAL`: for the display name, (changed?,
    ciphertext); for each of phone and e-mail, (changed?, ciphertext, blind index)."""
    name = None if change.display_name is UNSET else change.display_name
    values: list[Any] = [change.display_name is not UNSET, privacy.seal_name(account_id, customer_id, name)]
    for field in PERSONAL_FIELDS:
        value = getattr(change, field)
        normalized = None if value is UNSET else privacy.normalize(field, value)
        values.extend((value is not UNSET, *privacy.sealed(account_id, customer_id, field, normalized)))
    return values


def _customer(privacy: Privacy, row: asyncpg.Record, *, full: bool) -> Customer:
    """A customer as staff see it: phone and e-mail in full only when `full` (else masked)."""
    return Customer(
        id=row["id"],
        display_name=privacy.name(row["account_id"], row["id"], row["display_name_enc"], row["display_name"]),
        level=row["level"],
        channel=row["channel"],
        **privacy.contact_json(row, full=full),
        created_at=row["created_at"],
        last_seen_at=row["last_seen_at"],
        erased=row["erased_at"] is not None,
    )


_CUSTOMER_COLUMNS = (
    "account_id, id, display_name, display_name_enc, level, channel, created_at, last_seen_at,"
    " phone_enc, email_enc, erased_at"
)


async def get_customer(
    database: Database, privacy: Privacy, account_id: UUID, customer_id: UUID, *, full: bool
) -> Customer:
    row = await database.fetchrow(
        f"SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE account_id = $1 AND id = $2", account_id, customer_id
    )
    if row is None:
        raise NotFound("no such customer")
    return _customer(privacy, row, full=full)


async def find_customers(
    database: Database, privacy: Privacy, account_id: UUID, lookup: CustomerLookup, *, full: bool
) -> list[Customer]:
    """Customers whose phone (any usual writing) or e-mail is the one looked up, by the blind index."""
    field, value = lookup.looked_up()
    index = privacy.keys.blind_index(account_id, field, privacy.normalize(field, value))  # type: ignore[arg-type]
    rows = await database.fetch(
        f"""SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE account_id = $1 AND {field}_index = $2
            ORDER BY last_seen_at DESC NULLS LAST, id LIMIT {MAX_FOUND_CUSTOMERS}""",
        account_id,
        index,
    )
    return [_customer(privacy, row, full=full) for row in rows]


async def update_customer(
    database: Database, privacy: Privacy, account_id: UUID, customer_id: UUID, change: CustomerChange, *, full: bool
) -> tuple[Customer, dict[str, Any]]:
    """Change a customer's display name, level, phone or e-mail; returns the customer and, for
    the audit log, what changed: the new level, and only the names of changed personal fields."""
    level = None if change.level is UNSET else change.level
    row = await database.fetchrow(
        f"""UPDATE customers SET {_SET_NAME}{_SET_PERSONAL},
                level = COALESCE($11, level)
            WHERE account_id = $1 AND id = $2
            RETURNING {_CUSTOMER_COLUMNS}""",
        account_id,
        customer_id,
        *_sealed_changes(privacy, account_id, customer_id, change),
        level,
    )
    if row is None:
        raise NotFound("no such customer")
    audited: dict[str, Any] = {"fields": sorted(given(change))}
    if level is not None:
        audited["level"] = level
    return _customer(privacy, row, full=full), audited
