"""Accounts (tenants) and their users: creation and password hashing (argon2id)."""

from __future__ import annotations

import ctypes
import ctypes.util
import re
import secrets
from dataclasses import dataclass
from typing import Final
from uuid import UUID

import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from kefu.protocol.permissions import ADMIN, BUILT_IN_ROLES
from kefu.server.database import Database

ROLES: Final = tuple(BUILT_IN_ROLES)
"""The built-in roles' names. An account's custom roles are rows of `roles`: whether a name is
a role a user may hold is `roles.validate_role`."""
DEFAULT_QUEUE_NAME = "Default"
"""The queue a new account starts with: least load, every agent of the account (editable)."""
MIN_PASSWORD_LENGTH = 10

ARGON2_TIME_COST = 2
ARGON2_MEMORY_KIB = 19 * 1024
ARGON2_PARALLELISM = 1
"""argon2id parameters: OWASP's first choice (m=19 MiB, t=2, p=1). One hash holds 19 MiB for
about 25 ms on one core, so the few hashes run at once (`password_hashes_at_once`) fit in a
small node's memory; argon2-cffi's default (RFC 9106's low-memory option, 64 MiB and 4 lanes)
made 40 parallel sign-ins take 2.5 GB. See docs/security.md, "Sign-in". Hashes made with other
parameters still verify, and are rewritten with these at the user's next successful sign-in."""

_hasher = PasswordHasher(time_cost=ARGON2_TIME_COST, memory_cost=ARGON2_MEMORY_KIB, parallelism=ARGON2_PARALLELISM)

HASH_MEMORY_MMAP_THRESHOLD = 4 * 1024 * 1024
"""Allocations from this size on are mapped and unmapped on their own (`return_hash_memory`)."""
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def return_hash_memory() -> bool:
    """Have each hash's 19 MiB go back to the system when the hash is done.

    glibc maps a large allocation on its own and unmaps it when freed, but it raises that
    threshold to the size of each mapped block freed (up to 32 MiB): after the first hash,
    19 MiB blocks come from the hashing thread's malloc arena and stay with the process.
    Measured here, 64 hashes on 8 worker threads kept 156 MiB of resident memory that way;
    with a fixed threshold (which also turns the raising off) they keep none. Python's own
    objects are small and never reach it. Returns whether the C library took the setting
    (glibc only; elsewhere nothing changes)."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, HASH_MEMORY_MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False


class AccountError(ValueError):
    """The account or user cannot be created as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class CreatedAccount:
    account_id: UUID
    slug: str
    admin_user_id: UUID
    admin_email: str


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def verify_and_rehash(password_hash: str, password: str) -> tuple[bool, str | None]:
    """Whether `password` matches, and when it does and the hash was made with other parameters
    than today's, a new hash to store (in the same call, so it runs in the same hashing slot)."""
    if not verify_password(password_hash, password):
        return False, None
    try:
        stale = _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        stale = True
    return True, (_hasher.hash(password) if stale else None)


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def slug_for(name: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:63]
    return slug or "account"


async def create_account(
    database: Database,
    *,
    name: str,
    admin_email: str,
    admin_password: str,
    admin_name: str | None = None,
    slug: str | None = None,
) -> CreatedAccount:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise AccountError("the account name must have 1 to 200 characters")
    email = admin_email.strip()
    if not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
        raise AccountError(f"{email!r} is not an e-mail address")
    if len(admin_password) < MIN_PASSWORD_LENGTH:
        raise AccountError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    slug = slug or slug_for(name)
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", slug):
        raise AccountError(f"{slug!r} is not a valid account slug (lowercase letters, digits, dashes)")
    password_hash = hash_password(admin_password)

    async def work(conn: asyncpg.Connection) -> CreatedAccount:
        async with conn.transaction():
            try:
                account_id = await conn.fetchval(
                    "INSERT INTO accounts (slug, name) VALUES ($1, $2) RETURNING id", slug, name
                )
            except asyncpg.UniqueViolationError:
                raise AccountError(f"an account with the slug {slug!r} already exists") from None
            user_id = await conn.fetchval(
                """INSERT INTO users (account_id, email, display_name, role, password_hash)
                   VALUES ($1, $2, $3, $4, $5) RETURNING id""",
                account_id,
                email,
                admin_name or email.split("@")[0],
                ADMIN,
                password_hash,
            )
            # every account has a real default queue (migration 0011 gave older ones theirs)
            await conn.execute(
                "INSERT INTO queues (account_id, name, is_default) VALUES ($1, $2, true)",
                account_id,
                DEFAULT_QUEUE_NAME,
            )
        return CreatedAccount(account_id, slug, user_id, email)

    return await database.run(work)
