"""Sign-in of users (agents, supervisors, admins) with expiring session tokens.

A session token is `secrets.token_urlsafe(32)`, handed to the client once; only its SHA-256
is stored. Every bad credential fails the same way, and the password check costs the same
whether or not the user exists, so neither the answer nor its timing says which part was wrong.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import trio

from kefu.server.accounts import hash_password, verify_password
from kefu.server.database import Database

MAX_TOKEN_CHARS = 256
"""Longer bearer tokens are refused before they are hashed or looked up."""

_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
"""Verified against when the user is unknown, so that case costs as much as a wrong password."""


class InvalidCredentials(Exception):
    """The account, e-mail or password is wrong, or the user is disabled (deliberately not said which)."""


@dataclass(frozen=True, slots=True)
class SignedInUser:
    account_id: UUID
    user_id: UUID
    email: str
    display_name: str
    role: str
    session_id: UUID
    expires_at: datetime


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def sign_in(
    database: Database,
    account_slug: str,
    email: str,
    password: str,
    ttl: timedelta,
    *,
    user_agent: str | None = None,
) -> tuple[str, SignedInUser]:
    """Check the credentials and open a session; returns the token and who it signs in."""
    row = await database.fetchrow(
        """SELECT u.account_id, u.id, u.email, u.display_name, u.role, u.password_hash, u.disabled_at
           FROM users u JOIN accounts a ON a.id = u.account_id
           WHERE a.slug = $1 AND lower(u.email) = lower($2)""",
        account_slug.strip().lower(),
        email.strip(),
    )
    stored_hash = row["password_hash"] if row is not None else _DUMMY_HASH
    password_ok = await trio.to_thread.run_sync(verify_password, stored_hash, password)
    if row is None or not password_ok or row["disabled_at"] is not None:
        raise InvalidCredentials("invalid account, e-mail or password")

    token = secrets.token_urlsafe(32)
    session = await database.fetchrow(
        """INSERT INTO user_sessions (account_id, user_id, token_hash, expires_at, user_agent)
           VALUES ($1, $2, $3, now() + $4::interval, $5)
           RETURNING id, expires_at""",
        row["account_id"],
        row["id"],
        token_hash(token),
        ttl,
        user_agent[:500] if user_agent else None,
    )
    assert session is not None
    user = SignedInUser(
        account_id=row["account_id"],
        user_id=row["id"],
        email=row["email"],
        display_name=row["display_name"],
        role=row["role"],
        session_id=session["id"],
        expires_at=session["expires_at"],
    )
    return token, user


async def authenticate(database: Database, token: str) -> SignedInUser | None:
    """The user a token signs in: None when it is unknown, revoked, expired or its user disabled."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    row = await database.fetchrow(
        """SELECT s.id AS session_id, s.expires_at, u.account_id, u.id AS user_id, u.email,
                  u.display_name, u.role
           FROM user_sessions s
           JOIN users u ON u.account_id = s.account_id AND u.id = s.user_id
           WHERE s.token_hash = $1 AND s.revoked_at IS NULL AND s.expires_at > now()
                 AND u.disabled_at IS NULL""",
        token_hash(token),
    )
    if row is None:
        return None
    return SignedInUser(
        account_id=row["account_id"],
        user_id=row["user_id"],
        email=row["email"],
        display_name=row["display_name"],
        role=row["role"],
        session_id=row["session_id"],
        expires_at=row["expires_at"],
    )


async def sign_out(database: Database, token: str) -> bool:
    """Revoke the session of `token`; True when a live session was revoked now."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return False
    status = await database.execute(
        "UPDATE user_sessions SET revoked_at = now()"
        " WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now()",
        token_hash(token),
    )
    return status == "UPDATE 1"
