"""Sign-in of users (agents, supervisors, admins) with expiring session tokens, and the gate that
requests nobody has authenticated yet pass through.

A session token is `secrets.token_urlsafe(32)`, handed to the client once; only its SHA-256
is stored. Every bad credential fails the same way, and the password check costs the same
whether or not the user exists, so neither the answer nor its timing says which part was wrong.

Rules of a sign-in, in order (docs/security.md, "Sign-in"):

1. Rate limits first: per client address and per account and e-mail (`Gate`, token buckets of
   `protocol/throttle.py`). Over either: 429 `rate_limited` with `Retry-After`; nothing is
   hashed, read or written.
2. A locked-out user is refused with 429 `locked_out` and `Retry-After`, the right password
   included, without hashing. The lock is in the users table (it survives restarts and
   `kefu account unlock` lifts it from another process). An unknown user (or account) is locked
   the same way after as many failures, in memory, so the answers never say whether it exists.
3. Password hashes run in a fixed pool (`password_hashes_at_once` worker slots). At most
   `MAX_WAITING_SIGN_INS` sign-ins wait for a slot; one more is refused 503 `busy` with
   `Retry-After` without waiting for a slot (overflow policy: refuse the newest), so a flood
   holds bounded memory and threads and never slows a neighbour's messages by more than that
   pool's CPU. Every refusal is answered after `refusal_delay_seconds` (`Gate.hold_refusal`).
4. A wrong password counts one failure; `sign_in_lockout_failures` in a row lock the user for
   `sign_in_lockout_minutes`. Failures and lockouts are audited (`sign_in.failed`,
   `sign_in.locked_out`), with the client address and never the e-mail typed or the password.
5. A right password resets the count, and a hash made with older argon2 parameters is replaced.

A signed-in user's permissions are read with the user, at sign-in and at every `authenticate`
(each REST request, each socket handshake): their role's (a custom role's joined in the same
query, `server/roles.py`) and `contacts.view_unmasked` when granted to them alone. A socket
keeps those of its handshake: a role change, or a change of a custom role's permissions,
revokes its holders' sessions, and the edge closes their sockets (docs/security.md).
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID

import asyncpg
import trio

from kefu.protocol.permissions import Permission, permissions_of
from kefu.protocol.throttle import FailureCount, Rate, Throttle, ThrottleStatistics, admit
from kefu.server import audit
from kefu.server.accounts import hash_password, verify_and_rehash
from kefu.server.config import Config
from kefu.server.database import Database
from kefu.server.roles import known_permissions

MAX_TOKEN_CHARS = 256
"""Longer bearer tokens are refused before they are hashed or looked up."""

MAX_WAITING_SIGN_INS = 16
"""Sign-ins that may wait for a hashing slot; one more is refused with 503 `busy` (rule 3)."""

BUSY_RETRY_AFTER_SECONDS = 1
MAX_HELD_REFUSALS = 256
"""Refusals held back at once for `refusal_delay_seconds` (`Gate.hold_refusal`); beyond, a
refusal is answered at once (overflow policy: never more than this many waiting tasks, whatever
arrives; an open-loop flood that does not wait for answers is met by the per-address limits and
the connection limits instead)."""
"""`Retry-After` of a `busy` answer: a hash takes tens of milliseconds, the line clears fast."""

_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
"""Verified against when the user is unknown, so that case costs as much as a wrong password."""

T = TypeVar("T")


class InvalidCredentials(Exception):
    """The account, e-mail or password is wrong, or the user is disabled (deliberately not said which)."""


class SignInRefused(Exception):
    """Refused before the password was checked: `code` is `rate_limited`, `locked_out` or `busy`."""

    def __init__(self, code: str, retry_after: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class HashingStatistics:
    slots: int
    """Hashes computed at once at most (`password_hashes_at_once`)."""
    running: int
    """Hashes being computed now, counted in the worker threads themselves."""
    most_running: int
    """The most hashes ever computed at once (measured in the threads: a probe of rule 3)."""
    waiting: int
    """Sign-ins waiting for a slot now (at most `MAX_WAITING_SIGN_INS`)."""
    refused_busy: int
    """Sign-ins answered `busy` because the line was full."""
    hashed: int
    """Hashes computed (verifications, with a rehash counted once with its verification)."""


class Gate:
    """Limits for requests nobody has authenticated yet: sign-in (rules 1-3), web-chat visitor
    creation and uploads (per client address). One per app; `clock` gives the throttles' time and
    is replaced by tests."""

    def __init__(self, config: Config, *, clock: Callable[[], float] = trio.current_time) -> None:
        self.clock = clock
        self.sign_ins_by_address = Throttle(Rate(config.sign_ins_per_address_per_minute, 60))
        self.sign_ins_by_user = Throttle(Rate(config.sign_ins_per_user_per_minute, 60))
        self.visitors_by_address = Throttle(Rate(config.visitors_per_address_per_minute, 60))
        self.uploads_by_address = Throttle(Rate(config.uploads_per_address_per_minute, 60))
        self.lockout_failures = config.sign_in_lockout_failures
        self.lockout = timedelta(minutes=config.sign_in_lockout_minutes)
        self.unknown_users = FailureCount(config.sign_in_lockout_failures, self.lockout.total_seconds())
        """Failures of account and e-mail pairs that match no user (rule 2)."""
        self.hashing_slots = trio.CapacityLimiter(config.password_hashes_at_once)
        self.refusal_delay = config.refusal_delay_seconds
        self.held_refusals = 0
        """Refused requests waiting out `refusal_delay` now (at most `MAX_HELD_REFUSALS`)."""
        self._waiting = 0
        self._refused_busy = 0
        self._lock = threading.Lock()
        self._running = 0
        self._most_running = 0
        self._hashed = 0

    def admit(self, throttle: Throttle, address: str) -> int:
        """0 when `address` may make one more request counted by `throttle`; else `Retry-After`."""
        return admit(self.clock(), (throttle, address))

    async def hold_refusal(self) -> None:
        """Wait `refusal_delay_seconds` before a refusal is answered, unless `MAX_HELD_REFUSALS`
        already wait. A flooding client that waits for its answers (most scripts do) then sends
        one request a second per connection instead of as many as kefu can refuse, each of which
        costs the event loop that neighbours' messages run on."""
        if self.refusal_delay <= 0 or self.held_refusals >= MAX_HELD_REFUSALS:
            return
        self.held_refusals += 1
        try:
            await trio.sleep(self.refusal_delay)
        finally:
            self.held_refusals -= 1

    async def hash(self, work: Callable[..., T], *args: Any) -> T:
        """Run a password hash in a worker thread when a slot is free (rule 3)."""
        if self._waiting >= MAX_WAITING_SIGN_INS:
            self._refused_busy += 1
            raise SignInRefused("busy", BUSY_RETRY_AFTER_SECONDS, "too many sign-ins at once; try again")
        self._waiting += 1
        try:
            await self.hashing_slots.acquire()
        finally:
            self._waiting -= 1
        try:
            return await trio.to_thread.run_sync(self._counted, work, *args)
        finally:
            self.hashing_slots.release()

    def _counted(self, work: Callable[..., T], *args: Any) -> T:
        with self._lock:
            self._running += 1
            self._hashed += 1
            self._most_running = max(self._most_running, self._running)
        try:
            return work(*args)
        finally:
            with self._lock:
                self._running -= 1

    def hashing_statistics(self) -> HashingStatistics:
        with self._lock:
            running, most, hashed = self._running, self._most_running, self._hashed
        slots = int(self.hashing_slots.total_tokens)
        return HashingStatistics(slots, running, most, self._waiting, self._refused_busy, hashed)

    def throttle_statistics(self) -> dict[str, ThrottleStatistics]:
        return {
            "sign_in_address": self.sign_ins_by_address.statistics(),
            "sign_in_user": self.sign_ins_by_user.statistics(),
            "visitor_address": self.visitors_by_address.statistics(),
            "upload_address": self.uploads_by_address.statistics(),
        }


@dataclass(frozen=True, slots=True)
class SignedInUser:
    account_id: UUID
    user_id: UUID
    email: str
    display_name: str
    role: str
    session_id: UUID
    expires_at: datetime
    permissions: frozenset[Permission] = frozenset()
    """What the user may do: their role's permissions (`kefu.protocol.permissions`), plus
    `contacts.view_unmasked` when it was granted to them on their own."""

    def may(self, permission: Permission) -> bool:
        return permission in self.permissions


def _permissions(row: asyncpg.Record) -> frozenset[Permission]:
    """A user row's permissions: its role's (a custom role's come from the same query, as
    `role_permissions`: no second round trip), and `contacts.view_unmasked` if granted alone."""
    stored = row["role_permissions"]
    custom = None if stored is None else {row["role"]: known_permissions(stored)}
    return permissions_of(row["role"], custom, may_view_contact_details=row["may_view_contact_details"])


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _locked_out(retry_after: int) -> SignInRefused:
    return SignInRefused("locked_out", retry_after, "too many failed sign-ins: this sign-in is locked for a while")


async def sign_in(
    database: Database,
    gate: Gate,
    account_slug: str,
    email: str,
    password: str,
    ttl: timedelta,
    *,
    address: str,
    user_agent: str | None = None,
) -> tuple[str, SignedInUser]:
    """Check the credentials and open a session; returns the token and who it signs in.

    Raises `SignInRefused` (rules 1-3) or `InvalidCredentials`; see the module's rules."""
    slug, typed_email = account_slug.strip().lower(), email.strip()
    user_key = (slug, typed_email.lower())
    now = gate.clock()
    wait = admit(now, (gate.sign_ins_by_address, address), (gate.sign_ins_by_user, user_key))
    if wait:
        raise SignInRefused("rate_limited", wait, "too many sign-in attempts; try again later")
    row = await database.fetchrow(
        """SELECT a.id AS account_id, u.id, u.email, u.display_name, u.role, u.password_hash, u.disabled_at,
                  u.may_view_contact_details, r.permissions AS role_permissions,
                  ceil(extract(epoch FROM u.locked_until - now()))::bigint AS locked_seconds
           FROM accounts a LEFT JOIN users u ON u.account_id = a.id AND lower(u.email) = lower($2)
                LEFT JOIN roles r ON r.account_id = u.account_id AND r.name = u.role
           WHERE a.slug = $1""",
        slug,
        typed_email,
    )
    known = row is not None and row["id"] is not None
    if known:
        assert row is not None
        if row["locked_seconds"] is not None and row["locked_seconds"] > 0:
            await _audit_failure(database, row["account_id"], row["id"], address, "locked")
            raise _locked_out(int(row["locked_seconds"]))
    elif locked := gate.unknown_users.locked_for(user_key, now):
        raise _locked_out(locked)

    stored_hash = row["password_hash"] if known else _DUMMY_HASH  # type: ignore[index]
    password_ok, new_hash = await gate.hash(verify_and_rehash, stored_hash, password)
    if not known:
        gate.unknown_users.failed(user_key, gate.clock())
        if row is not None:  # the account exists: its log says someone tried an unknown e-mail
            await _audit_failure(database, row["account_id"], None, address, "unknown_user")
        raise InvalidCredentials("invalid account, e-mail or password")
    assert row is not None
    if not password_ok:
        await _count_failure(database, gate, row["account_id"], row["id"], address)
        raise InvalidCredentials("invalid account, e-mail or password")
    if row["disabled_at"] is not None:
        raise InvalidCredentials("invalid account, e-mail or password")

    token = secrets.token_urlsafe(32)

    async def open_session(conn: asyncpg.Connection) -> asyncpg.Record:
        async with conn.transaction():
            await conn.execute(
                """UPDATE users SET failed_sign_ins = 0, locked_until = NULL,
                                    password_hash = COALESCE($3, password_hash)
                   WHERE account_id = $1 AND id = $2""",
                row["account_id"],
                row["id"],
                new_hash,
            )
            session = await conn.fetchrow(
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
        return session

    session = await database.run(open_session)
    user = SignedInUser(
        account_id=row["account_id"],
        user_id=row["id"],
        email=row["email"],
        display_name=row["display_name"],
        role=row["role"],
        session_id=session["id"],
        expires_at=session["expires_at"],
        permissions=_permissions(row),
    )
    return token, user


async def _audit_failure(database: Database, account_id: UUID, user_id: UUID | None, address: str, reason: str) -> None:
    detail = {"reason": reason, "address": address}
    await audit.record(database, account_id, "anonymous", None, "sign_in.failed", "user", user_id, detail)


async def _count_failure(database: Database, gate: Gate, account_id: UUID, user_id: UUID, address: str) -> None:
    """One more wrong password (rule 4): counted, locked at the limit, audited in one transaction."""

    async def work(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            counted = await conn.fetchrow(
                """UPDATE users SET
                       failed_sign_ins = CASE WHEN failed_sign_ins + 1 >= $3 THEN 0 ELSE failed_sign_ins + 1 END,
                       locked_until = CASE WHEN failed_sign_ins + 1 >= $3 THEN now() + $4::interval
                                      ELSE locked_until END
                   WHERE account_id = $1 AND id = $2
                   RETURNING failed_sign_ins = 0 AS locked_now, locked_until""",
                account_id,
                user_id,
                gate.lockout_failures,
                gate.lockout,
            )
            assert counted is not None
            await audit.record(
                conn,
                account_id,
                "anonymous",
                None,
                "sign_in.failed",
                "user",
                user_id,
                {"reason": "wrong_password", "address": address},
            )
            if counted["locked_now"]:
                await audit.record(
                    conn,
                    account_id,
                    "system",
                    None,
                    "sign_in.locked_out",
                    "user",
                    user_id,
                    {
                        "failures": gate.lockout_failures,
                        "until": counted["locked_until"].isoformat(),
                        "address": address,
                    },
                )

    await database.run(work)


async def unlock(
    database: Database, account_slug: str, email: str, *, actor_role: str, actor_id: UUID | str | None
) -> bool | None:
    """Lift a user's sign-in lockout and reset its failure count, audited as `sign_in.unlocked`
    (`kefu account unlock`). None when there is no such user; else whether it was locked."""
    return await _unlock(
        database,
        "u.account_id = (SELECT id FROM accounts WHERE slug = $1) AND lower(u.email) = lower($2)",
        (account_slug.strip().lower(), email.strip()),
        actor_role,
        actor_id,
    )


async def unlock_user(
    database: Database, account_id: UUID, user_id: UUID, *, actor_role: str, actor_id: UUID | str | None
) -> bool | None:
    """`unlock` by the user's id (an admin's `POST /api/v1/agents/<id>/unlock`)."""
    return await _unlock(database, "u.account_id = $1 AND u.id = $2", (account_id, user_id), actor_role, actor_id)


async def _unlock(
    database: Database, where: str, args: tuple[Any, ...], actor_role: str, actor_id: UUID | str | None
) -> bool | None:
    async def work(conn: asyncpg.Connection) -> bool | None:
        async with conn.transaction():
            row = await conn.fetchrow(
                f"""UPDATE users u SET failed_sign_ins = 0, locked_until = NULL
                    FROM users old
                    WHERE {where} AND old.account_id = u.account_id AND old.id = u.id
                    RETURNING u.account_id, u.id, coalesce(old.locked_until > now(), false) AS was_locked""",
                *args,
            )
            if row is None:
                return None
            was_locked = bool(row["was_locked"])
            await audit.record(
                conn,
                row["account_id"],
                actor_role,
                actor_id,
                "sign_in.unlocked",
                "user",
                row["id"],
                {"was_locked": was_locked},
            )
            return was_locked

    return await database.run(work)


async def authenticate(database: Database, token: str) -> SignedInUser | None:
    """The user a token signs in: None when it is unknown, revoked, expired or its user disabled."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        return None
    row = await database.fetchrow(
        """SELECT s.id AS session_id, s.expires_at, u.account_id, u.id AS user_id, u.email,
                  u.display_name, u.role, u.may_view_contact_details, r.permissions AS role_permissions
           FROM user_sessions s
           JOIN users u ON u.account_id = s.account_id AND u.id = s.user_id
           LEFT JOIN roles r ON r.account_id = u.account_id AND r.name = u.role
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
        permissions=_permissions(row),
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
