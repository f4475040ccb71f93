"""Customers with many identities, and how a channel finds the customer it talks to.

A channel names the person it talks to by one or more identities (`IdentityClaim`): the app's
user id, the business's external id, a phone number, an e-mail address, a WeChat openid, ...
`resolve_customer` finds the customer those identities belong to, or makes one:

1. Only verified claims count (the channel vouches for them: a signed app user id, a caller id, a
   WeChat openid from WeChat's servers). Unverified ones are returned unused.
2. The first claim, in the order given, that already belongs to a customer decides the customer.
   Claims that belong to nobody are linked to it (automatic linking). Claims that belong to
   another customer stay where they are: joining two customers is a merge, a person's decision.
3. With no claim known, a new customer is made (its first channel `channel`) and every claim is
   linked to it.

The work is one transaction under advisory locks on the claims, so two first messages of the
same person at once make one customer, never two.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

import asyncpg

from kefu.server.database import Database
from kefu.server.directory import InvalidInput
from kefu.server.privacy import Privacy

MAX_IDENTITY_CHARS = 256


class IdentityKind(StrEnum):
    VISITOR = "visitor"
    """A web-chat or app visitor token (`kv_…`): stored as the token's SHA-256 only."""
    APP_USER = "app_user"
    """The business's own user id, signed by its backend (app channel, and the widget's identify)."""
    EXTERNAL = "external"
    """An id the business's system gives the person over the HTTP API channel."""
    PHONE = "phone"
    EMAIL = "email"
    WECHAT_OPENID = "wechat_openid"
    WECHAT_UNIONID = "wechat_unionid"
    QQ_OPENID = "qq_openid"


@dataclass(frozen=True, slots=True)
class IdentityClaim:
    """An identity a channel names the customer by, and whether the channel vouches for it."""

    kind: IdentityKind
    value: str
    verified: bool = True


@dataclass(frozen=True, slots=True)
class ResolvedCustomer:
    customer_id: UUID
    created: bool
    """A new customer was made for these claims."""
    linked: tuple[IdentityKind, ...]
    """The kinds of the claims linked to the customer now (new identities)."""
    ignored: tuple[IdentityClaim, ...]
    """Claims not linked: unverified, or belonging to another customer."""


def normalize_identity(privacy: Privacy, kind: IdentityKind, value: str) -> str:
    """The one writing of an identity's value: E.164 phone numbers, lower-case e-mail addresses,
    other ids as given (trimmed). Raises InvalidInput."""
    if kind is IdentityKind.PHONE or kind is IdentityKind.EMAIL:
        normalized = privacy.normalize(kind.value, value)
        assert normalized is not None
        return normalized
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= MAX_IDENTITY_CHARS:
        raise InvalidInput(f"a {kind} identity is a string of 1 to {MAX_IDENTITY_CHARS} characters")
    return value.strip()


def identity_index(privacy: Privacy, account_id: UUID, kind: IdentityKind, normalized: str) -> bytes:
    """The blind index an identity is found by (a visitor token: its SHA-256, as before)."""
    if kind is IdentityKind.VISITOR:
        return hashlib.sha256(normalized.encode()).digest()
    return privacy.keys.blind_index(account_id, kind.value, normalized)


def seal_identity(
    privacy: Privacy, account_id: UUID, identity_id: UUID, kind: IdentityKind, normalized: str
) -> bytes | None:
    """The stored (encrypted) value of an identity, bound to the identity's own id."""
    if kind is IdentityKind.VISITOR:
        return None
    return privacy.keys.encrypt(account_id, identity_id, "identity:" + kind.value, normalized)


def open_identity(privacy: Privacy, account_id: UUID, identity_id: UUID, kind: str, sealed: bytes | None) -> str | None:
    if sealed is None:
        return None
    return privacy.keys.decrypt(account_id, identity_id, "identity:" + kind, sealed)


def _lock_key(account_id: UUID, kind: IdentityKind, index: bytes) -> int:
    digest = hashlib.sha256(account_id.bytes + kind.value.encode() + index).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


async def link_identity(
    conn: asyncpg.Connection,
    privacy: Privacy,
    account_id: UUID,
    customer_id: UUID,
    kind: IdentityKind,
    normalized: str,
    *,
    channel: str | None = None,
    verified: bool = True,
) -> bool:
    """Give `customer_id` the identity (inside the caller's transaction); False when it already
    belongs to a customer (this one or another)."""
    identity_id = uuid.uuid4()
    inserted: Any = await conn.fetchval(
        """INSERT INTO customer_identities (account_id, id, customer_id, kind, value_index, value_enc, channel,
                                            verified, last_seen_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now())
           ON CONFLICT (account_id, kind, value_index) DO NOTHING RETURNING id""",
        account_id,
        identity_id,
        customer_id,
        kind.value,
        identity_index(privacy, account_id, kind, normalized),
        seal_identity(privacy, account_id, identity_id, kind, normalized),
        channel,
        verified,
    )
    return inserted is not None


async def resolve_customer(
    database: Database,
    privacy: Privacy,
    account_id: UUID,
    claims: Sequence[IdentityClaim],
    *,
    channel: str,
    display_name: str | None = None,
) -> ResolvedCustomer:
    """The customer `claims` name (see the module's rules); raises InvalidInput for a value that
    is not an identity of its kind, and ValueError when no claim is verified."""
    normalized = [(claim, normalize_identity(privacy, claim.kind, claim.value)) for claim in claims]
    verified = [(claim, value) for claim, value in normalized if claim.verified]
    if not verified:
        raise ValueError("at least one verified identity is needed to find or make a customer")
    indexed = [(claim, value, identity_index(privacy, account_id, claim.kind, value)) for claim, value in verified]

    async def work(conn: asyncpg.Connection) -> ResolvedCustomer:
        async with conn.transaction():
            for key in sorted({_lock_key(account_id, claim.kind, index) for claim, _, index in indexed}):
                await conn.execute("SELECT pg_advisory_xact_lock($1)", key)
            rows = await conn.fetch(
                """SELECT kind, value_index, customer_id FROM customer_identities
                   WHERE account_id = $1 AND (kind, value_index) IN (SELECT * FROM unnest($2::text[], $3::bytea[]))""",
                account_id,
                [claim.kind.value for claim, _, _ in indexed],
                [index for _, _, index in indexed],
            )
            owners = {(row["kind"], bytes(row["value_index"])): row["customer_id"] for row in rows}
            customer_id: UUID | None = None
            for claim, _, index in indexed:
                customer_id = owners.get((claim.kind.value, index))
                if customer_id is not None:
                    break
            created = customer_id is None
            if customer_id is None:
                customer_id = uuid.uuid4()
                await conn.execute(
                    """INSERT INTO customers (account_id, id, display_name_enc, channel, last_seen_at)
                       VALUES ($1, $2, $3, $4, now())""",
                    account_id,
                    customer_id,
                    privacy.seal_name(account_id, customer_id, display_name),
                    channel,
                )
            else:
                await conn.execute(
                    "UPDATE customers SET last_seen_at = now() WHERE account_id = $1 AND id = $2",
                    account_id,
                    customer_id,
                )
            linked: list[IdentityKind] = []
            ignored = [claim for claim, _ in normalized if not claim.verified]
            for claim, value, index in indexed:
                owner = owners.get((claim.kind.value, index))
                if owner is None:
                    await link_identity(conn, privacy, account_id, customer_id, claim.kind, value, channel=channel)
                    linked.append(claim.kind)
                elif owner != customer_id:
                    ignored.append(claim)
            return ResolvedCustomer(customer_id, created, tuple(linked), tuple(ignored))

    return await database.run(work)
