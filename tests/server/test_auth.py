"""Sign-in, session tokens and sign-out, through the HTTP edge on a real database."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trio
from argon2 import PasswordHasher

from kefu.protocol.permissions import Permission
from kefu.server import auth
from kefu.server.accounts import (
    ARGON2_MEMORY_KIB,
    ARGON2_PARALLELISM,
    ARGON2_TIME_COST,
    CreatedAccount,
    create_account,
)
from kefu.server.auth import MAX_WAITING_SIGN_INS, Gate
from kefu.server.config import Config
from kefu.server.database import Database
from tests.conftest import open_database
from tests.server.live import AGENT_PASSWORD, Center, live_center, poll
from tests.server.test_app import running_node
from tests.server.test_cli import kefu

PASSWORD = "correct horse battery"


@asynccontextmanager
async def node_with_account(
    database_dsn: str, tmp_path: Path
) -> AsyncIterator[tuple[Database, CreatedAccount, httpx.AsyncClient]]:
    # The test's own database handle (its own trio-asyncio loop) sets up rows and looks at
    # them; the node answers over HTTP.
    async with open_database(database_dsn) as database:
        slug = f"acme-{uuid.uuid4().hex[:8]}"
        account = await create_account(
            database, name="Acme", slug=slug, admin_email=f"Admin@{slug}.example", admin_password=PASSWORD
        )
        async with running_node(database_dsn, tmp_path) as (_node, client):
            yield database, account, client


async def sign_in(client: httpx.AsyncClient, created: CreatedAccount, **changes: str) -> httpx.Response:
    body = {"account": created.slug, "email": created.admin_email, "password": PASSWORD, **changes}
    return await client.post("/api/v1/auth/sign-in", json=body)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_sign_in_gives_a_token_that_signs_in_me(database_dsn: str, tmp_path: Path) -> None:
    async with node_with_account(database_dsn, tmp_path) as (_database, account, client):
        # The e-mail is matched without regard to case.
        response = await sign_in(client, account, email=account.admin_email.lower())
        assert response.status_code == 200
        body = response.json()
        user = {
            "id": str(account.admin_user_id),
            "email": account.admin_email,
            "display_name": "Admin",
            "role": "admin",
            "account_id": str(account.account_id),
            "permissions": sorted(p.value for p in Permission),
        }
        assert body["user"] == user
        assert isinstance(body["token"], str) and len(body["token"]) >= 40
        assert body["expires_at"]

        response = await client.get("/api/v1/me", headers=bearer(body["token"]))
        assert response.status_code == 200
        assert response.json() == user


async def test_every_bad_credential_gets_the_same_answer(database_dsn: str, tmp_path: Path) -> None:
    async with node_with_account(database_dsn, tmp_path) as (database, account, client):
        answers = [
            await sign_in(client, account, password="wrong password!"),
            await sign_in(client, account, email="nobody@nowhere.example"),
            await sign_in(client, account, account="no-such-account"),
        ]
        await database.execute("UPDATE users SET disabled_at = now() WHERE id = $1", account.admin_user_id)
        answers.append(await sign_in(client, account))
        assert [a.status_code for a in answers] == [401] * 4
        assert answers[0].json()["error"]["code"] == "invalid_credentials"
        assert all(a.content == answers[0].content for a in answers)
        sessions = await database.fetchval(
            "SELECT count(*) FROM user_sessions WHERE user_id = $1", account.admin_user_id
        )
        assert sessions == 0


async def test_malformed_sign_in_is_a_bad_request(database_dsn: str, tmp_path: Path) -> None:
    async with node_with_account(database_dsn, tmp_path) as (_database, _account, client):
        bodies: list[bytes] = [
            b"not json",
            b"[]",
            b'{"account": "a", "email": "e@x"}',
            b'{"account": "a", "email": "e@x", "password": 12345}',
            b'{"account": "", "email": "e@x", "password": "p"}',
        ]
        for content in bodies:
            response = await client.post(
                "/api/v1/auth/sign-in", content=content, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 400, content
            assert response.headers["content-type"].startswith("application/json")
            assert response.json()["error"]["code"] == "invalid_request"


async def test_me_without_a_valid_token_is_unauthenticated(database_dsn: str, tmp_path: Path) -> None:
    async with node_with_account(database_dsn, tmp_path) as (_database, _account, client):
        for headers in ({}, {"Authorization": "Basic abc"}, bearer("not-a-token"), bearer("x" * 5000)):
            response = await client.get("/api/v1/me", headers=headers)
            assert response.status_code == 401
            assert response.json()["error"]["code"] == "unauthenticated"
        assert (await client.post("/api/v1/auth/sign-out")).status_code == 401


async def test_sign_out_revokes_the_token(database_dsn: str, tmp_path: Path) -> None:
    async with node_with_account(database_dsn, tmp_path) as (_database, account, client):
        token = (await sign_in(client, account)).json()["token"]
        other = (await sign_in(client, account)).json()["token"]
        response = await client.post("/api/v1/auth/sign-out", headers=bearer(token))
        assert response.status_code == 204
        assert response.content == b""
        response = await client.get("/api/v1/me", headers=bearer(token))
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthenticated"
        assert (await client.post("/api/v1/auth/sign-out", headers=bearer(token))).status_code == 401
        # Another session of the same user is untouched.
        assert (await client.get("/api/v1/me", headers=bearer(other))).status_code == 200


async def test_an_expired_session_is_unauthenticated(database_dsn: str, tmp_path: Path) -> None:
    async with node_with_account(database_dsn, tmp_path) as (database, account, client):
        token = (await sign_in(client, account)).json()["token"]
        assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 200
        await database.execute(
            "UPDATE user_sessions SET expires_at = now() - interval '1 second' WHERE token_hash = $1",
            hashlib.sha256(token.encode()).digest(),
        )
        response = await client.get("/api/v1/me", headers=bearer(token))
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthenticated"
        assert (await client.post("/api/v1/auth/sign-out", headers=bearer(token))).status_code == 401


async def test_the_token_is_stored_only_as_its_sha256(database_dsn: str, tmp_path: Path) -> None:
    async with node_with_account(database_dsn, tmp_path) as (database, account, client):
        response = await client.post(
            "/api/v1/auth/sign-in",
            json={"account": account.slug, "email": account.admin_email, "password": PASSWORD},
            headers={"User-Agent": "kefu-test/1"},
        )
        body = response.json()
        token = body["token"]
        rows = await database.fetch("SELECT * FROM user_sessions WHERE user_id = $1", account.admin_user_id)
        assert len(rows) == 1
        row = rows[0]
        assert row["token_hash"] == hashlib.sha256(token.encode()).digest()
        assert row["account_id"] == account.account_id
        assert row["user_agent"] == "kefu-test/1"
        assert row["revoked_at"] is None
        assert row["expires_at"] > row["created_at"]
        for column, value in dict(row).items():
            assert token not in str(value), column
            if isinstance(value, bytes):
                assert token.encode() not in value, column
        # Nor anywhere else in the row's text form.
        text = await database.fetchval("SELECT s::text FROM user_sessions s WHERE id = $1", row["id"])
        assert token not in text


# -- the gate: rate limits, the hashing pool, lockout (docs/security.md, "Sign-in") ----------------


def gate_of(center: Center) -> Gate:
    gate = center.node.app.extensions["kefu.gate"]
    assert isinstance(gate, Gate)
    return gate


def freeze(gate: Gate) -> float:
    """Stop the gate's clock where it is: buckets refill no more while the test runs."""
    now = gate.clock()
    gate.clock = lambda: now
    return now


@asynccontextmanager
async def client_from(center: Center, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client whose connections come from `address` (any 127.x.y.z reaches the node)."""
    transport = httpx.AsyncHTTPTransport(local_address=address)
    async with httpx.AsyncClient(base_url=center.node.urls[0], transport=transport, timeout=10) as client:
        yield client


async def attempt(client: httpx.AsyncClient, center: Center, email: str, password: str) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/sign-in", json={"account": center.slug, "email": email, "password": password}
    )


async def all_at_once(count: int, call: Callable[[], Awaitable[httpx.Response]]) -> list[httpx.Response]:
    answers: list[httpx.Response] = []

    async def one() -> None:
        answers.append(await call())

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one)
    return answers


def admin_email(center: Center) -> str:
    return f"admin@{center.slug}.example"


async def audited(center: Center, *actions: str) -> list[tuple[str, str | None, dict[str, Any]]]:
    rows = await center.fetch(
        "SELECT a.action, a.target_id, a.detail FROM audit_log a JOIN accounts c ON c.id = a.account_id"
        " WHERE c.slug = $1 AND a.action = ANY($2) ORDER BY a.id",
        center.slug,
        list(actions),
    )
    return [
        (r["action"], r["target_id"], orjson.loads(r["detail"]) if isinstance(r["detail"], str) else r["detail"])
        for r in rows
    ]


async def test_a_flood_of_wrong_sign_ins_gets_429_before_any_password_is_hashed(
    database_dsn: str, tmp_path: Path
) -> None:
    async with live_center(database_dsn, tmp_path, sign_ins_per_address_per_minute=5) as center:
        gate = gate_of(center)
        freeze(gate)
        hashed = gate.hashing_statistics().hashed
        async with client_from(center, "127.0.0.2") as flooder:
            answers = await all_at_once(12, lambda: attempt(flooder, center, admin_email(center), "wrong password!"))
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [401] * 5 + [429] * 7
        for refused in (a for a in answers if a.status_code == 429):
            assert refused.headers["Retry-After"] == "12"  # 5 a minute: the next one in 12 s
            assert refused.json()["error"]["code"] == "rate_limited"
        # The seven refused cost no hash; only the five admitted were checked.
        assert gate.hashing_statistics().hashed - hashed == 5
        (row,) = await center.fetch("SELECT id FROM users WHERE email = $1", admin_email(center))
        assert [
            (action, detail["reason"], detail["address"])
            for action, _, detail in await audited(center, "sign_in.failed")
        ] == [("sign_in.failed", "wrong_password", "127.0.0.2")] * 5
        # A neighbour at another address is not affected.
        async with client_from(center, "127.0.0.3") as neighbour:
            assert (await attempt(neighbour, center, admin_email(center), PASSWORD)).status_code == 200
        assert str(row["id"]) == (await audited(center, "sign_in.failed"))[0][1]


async def test_sign_ins_for_one_account_and_email_are_limited_from_every_address(
    database_dsn: str, tmp_path: Path
) -> None:
    async with live_center(database_dsn, tmp_path, sign_ins_per_user_per_minute=3) as center:
        freeze(gate_of(center))
        ann = f"ann@{center.slug}.example"
        body = {"email": ann, "display_name": "Ann", "role": "agent", "password": AGENT_PASSWORD}
        created = await center.http.post("/api/v1/agents", json=body, headers=center.auth(center.admin_token))
        assert created.status_code == 201, created.text
        nobody = f"nobody@{center.slug}.example"
        async with client_from(center, "127.0.0.2") as first, client_from(center, "127.0.0.3") as second:
            for email in (ann, nobody):
                answers = [await attempt(first, center, email, "wrong password!") for _ in range(3)]
                assert [a.status_code for a in answers] == [401] * 3
                # The fourth, from another address and with the right password, waits too.
                refused = await attempt(second, center, email, AGENT_PASSWORD)
                assert (refused.status_code, refused.headers["Retry-After"]) == (429, "20")
                assert refused.json()["error"]["code"] == "rate_limited"
            # Said the same way whether or not the user exists; the admin is not held up.
            assert (await attempt(first, center, admin_email(center), PASSWORD)).status_code == 200


async def test_no_more_passwords_are_hashed_at_once_than_the_pool_has_slots(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(
        database_dsn, tmp_path, password_hashes_at_once=2, sign_ins_per_address_per_minute=1000
    ) as center:
        gate = gate_of(center)
        before = gate.hashing_statistics()
        assert before.slots == 2
        # Hold both slots, so the line fills up and the sign-ins after it are refused.
        holders = [object(), object()]
        for holder in holders:
            await gate.hashing_slots.acquire_on_behalf_of(holder)
        extra = 3
        answers: list[httpx.Response] = []

        async def one(n: int) -> None:
            answers.append(await attempt(center.http, center, f"flood-{n}@{center.slug}.example", "wrong password!"))

        async with trio.open_nursery() as nursery:
            for n in range(MAX_WAITING_SIGN_INS + extra):
                nursery.start_soon(one, n)
            with trio.fail_after(20):  # a probe, not a timer: wait until the line is full and the rest answered
                while gate.hashing_statistics().waiting < MAX_WAITING_SIGN_INS or len(answers) < extra:
                    await trio.sleep(0.01)
            busy = list(answers)
            for holder in holders:
                gate.hashing_slots.release_on_behalf_of(holder)
        assert [(a.status_code, a.headers["Retry-After"], a.json()["error"]["code"]) for a in busy] == [
            (503, "1", "busy")
        ] * extra
        assert sorted(a.status_code for a in answers) == [401] * MAX_WAITING_SIGN_INS + [503] * extra
        after = gate.hashing_statistics()
        assert after.hashed - before.hashed == MAX_WAITING_SIGN_INS
        assert after.refused_busy - before.refused_busy == extra
        # Measured in the worker threads themselves.
        assert 1 <= after.most_running <= 2
        assert (after.running, after.waiting) == (0, 0)


async def test_repeated_failures_lock_the_user_out_across_restarts_until_unlocked(
    database_dsn: str, tmp_path: Path
) -> None:
    async with live_center(database_dsn, tmp_path, sign_in_lockout_failures=3) as center:
        email = admin_email(center)
        wrong = [await attempt(center.http, center, email, "wrong password!") for _ in range(3)]
        assert [a.status_code for a in wrong] == [401] * 3
        locked = await attempt(center.http, center, email, PASSWORD)  # the right password
        assert locked.status_code == 429
        assert locked.json()["error"]["code"] == "locked_out"
        assert 15 * 60 - 5 <= int(locked.headers["Retry-After"]) <= 15 * 60
        # An e-mail nobody has is answered the same way after as many failures.
        nobody = f"nobody@{center.slug}.example"
        assert [(await attempt(center.http, center, nobody, "guess")).status_code for _ in range(3)] == [401] * 3
        unknown = await attempt(center.http, center, nobody, "guess")
        assert (unknown.status_code, unknown.content) == (429, locked.content)

        (row,) = await center.fetch("SELECT id FROM users WHERE email = $1", email)
        admin_id = str(row["id"])
        trail = [
            (action, target, detail.get("reason"))
            for action, target, detail in await audited(center, "sign_in.failed", "sign_in.locked_out")
            if target == admin_id
        ]
        assert trail == [("sign_in.failed", admin_id, "wrong_password")] * 3 + [
            ("sign_in.locked_out", admin_id, None),
            ("sign_in.failed", admin_id, "locked"),
        ]

        await center.restart()
        still = await attempt(center.http, center, email, PASSWORD)
        assert (still.status_code, still.json()["error"]["code"]) == (429, "locked_out")

        result = await trio.to_thread.run_sync(
            partial(
                kefu, "account", "unlock", "--account", center.slug, "--email", email, dsn=center.dsn, tmp_path=tmp_path
            )
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"{email} in {center.slug}: was locked out; unlocked."
        assert (await attempt(center.http, center, email, PASSWORD)).status_code == 200
        unlocked = await audited(center, "sign_in.unlocked")
        assert [(action, target, detail) for action, target, detail in unlocked] == [
            ("sign_in.unlocked", admin_id, {"was_locked": True})
        ]
        (actor,) = await center.fetch(
            "SELECT actor_role FROM audit_log WHERE action = 'sign_in.unlocked' AND target_id = $1", admin_id
        )
        assert actor["actor_role"] == "cli"
        nobody_there = await trio.to_thread.run_sync(
            partial(
                kefu,
                "account",
                "unlock",
                "--account",
                center.slug,
                "--email",
                nobody,
                dsn=center.dsn,
                tmp_path=tmp_path,
            )
        )
        assert nobody_there.returncode == 1 and "no user" in nobody_there.stderr


async def test_a_lockout_ends_when_its_time_has_passed_and_a_success_resets_the_count(
    database_dsn: str, tmp_path: Path
) -> None:
    async with live_center(database_dsn, tmp_path, sign_in_lockout_failures=2) as center:
        email = admin_email(center)
        for _ in range(2):
            assert (await attempt(center.http, center, email, "wrong password!")).status_code == 401
        assert (await attempt(center.http, center, email, PASSWORD)).status_code == 429
        # The lock's time passes (moved in the row: no waiting on the wall clock).
        async with open_database(center.dsn) as database:
            await database.execute(
                "UPDATE users SET locked_until = now() - interval '1 second' WHERE lower(email) = $1", email
            )
        assert (await attempt(center.http, center, email, PASSWORD)).status_code == 200
        # One failure, a success, one failure: never two in a row, never locked.
        for password in ("wrong password!", PASSWORD, "wrong password!", PASSWORD):
            assert (await attempt(center.http, center, email, password)).status_code in (200, 401)
        (row,) = await center.fetch("SELECT failed_sign_ins, locked_until FROM users WHERE email = $1", email)
        assert (row["failed_sign_ins"], row["locked_until"]) == (0, None)


async def test_a_hash_made_with_older_parameters_still_signs_in_and_is_rewritten(
    database_dsn: str, tmp_path: Path
) -> None:
    async with live_center(database_dsn, tmp_path) as center:
        email = admin_email(center)
        old = PasswordHasher().hash(PASSWORD)  # argon2-cffi's default: m=64 MiB, t=3, p=4
        assert old.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
        async with open_database(center.dsn) as database:
            await database.execute("UPDATE users SET password_hash = $2 WHERE email = $1", email, old)
        assert (await attempt(center.http, center, email, PASSWORD)).status_code == 200
        (row,) = await center.fetch("SELECT password_hash FROM users WHERE email = $1", email)
        assert row["password_hash"].startswith(
            f"$argon2id$v=19$m={ARGON2_MEMORY_KIB},t={ARGON2_TIME_COST},p={ARGON2_PARALLELISM}$"
        )
        assert (ARGON2_MEMORY_KIB, ARGON2_TIME_COST, ARGON2_PARALLELISM) == (19 * 1024, 2, 1)
        assert (await attempt(center.http, center, email, PASSWORD)).status_code == 200
        assert (await attempt(center.http, center, email, "wrong password!")).status_code == 401


async def test_an_admin_unlocks_a_locked_out_agent_over_rest(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path, sign_in_lockout_failures=2) as center:
        ann = await center.add_agent("Ann")
        sue = await center.add_agent("Sue", role="supervisor")
        (row,) = await center.fetch("SELECT email FROM users WHERE id = $1", uuid.UUID(ann.id))
        for _ in range(2):
            assert (await attempt(center.http, center, row["email"], "wrong password!")).status_code == 401
        locked = await attempt(center.http, center, row["email"], AGENT_PASSWORD)
        assert (locked.status_code, locked.json()["error"]["code"]) == (429, "locked_out")

        url = f"/api/v1/agents/{ann.id}/unlock"
        refused = await center.http.post(url, headers=center.auth(sue.token))  # a supervisor may not
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "forbidden")
        unlocked = await center.http.post(url, headers=center.auth(center.admin_token))
        assert (unlocked.status_code, unlocked.json()) == (200, {"id": ann.id, "was_locked": True})
        assert (await attempt(center.http, center, row["email"], AGENT_PASSWORD)).status_code == 200
        again = await center.http.post(url, headers=center.auth(center.admin_token))
        assert again.json() == {"id": ann.id, "was_locked": False}
        missing = await center.http.post(
            f"/api/v1/agents/{uuid.uuid4()}/unlock", headers=center.auth(center.admin_token)
        )
        assert missing.status_code == 404
        (admin,) = await center.fetch("SELECT id FROM users WHERE email = $1", admin_email(center))
        rows = await center.fetch(
            "SELECT actor_role, actor_id, target_id FROM audit_log WHERE action = 'sign_in.unlocked'"
            " AND account_id = (SELECT id FROM accounts WHERE slug = $1) ORDER BY id",
            center.slug,
        )
        assert [(r["actor_role"], r["actor_id"], r["target_id"]) for r in rows] == [
            ("admin", str(admin["id"]), ann.id)
        ] * 2


async def test_refusals_are_held_back_so_a_waiting_flooder_slows_down_and_the_hold_is_bounded(
    database_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused sign-in is answered after `refusal_delay_seconds`; at most MAX_HELD_REFUSALS
    wait at once, and one more is answered at once."""
    monkeypatch.setattr(auth, "MAX_HELD_REFUSALS", 2)
    async with live_center(
        database_dsn, tmp_path, sign_ins_per_address_per_minute=1, refusal_delay_seconds=3600
    ) as center:
        gate = gate_of(center)
        freeze(gate)
        async with client_from(center, "127.0.0.4") as flooder:
            first = await attempt(flooder, center, admin_email(center), "wrong password!")
            assert first.status_code == 401  # the one attempt of the minute: checked, answered at once
            async with trio.open_nursery() as nursery:
                held: list[httpx.Response] = []

                async def refused() -> None:
                    held.append(await attempt(flooder, center, admin_email(center), "wrong password!"))

                nursery.start_soon(refused)
                nursery.start_soon(refused)
                await poll(lambda: gate.held_refusals == 2, "two refusals held back")
                # The hold is full: the next refusal is answered at once, while the two still wait.
                beyond = await attempt(flooder, center, admin_email(center), "wrong password!")
                assert beyond.status_code == 429 and beyond.json()["error"]["code"] == "rate_limited"
                assert held == [] and gate.held_refusals == 2
                nursery.cancel_scope.cancel()


async def test_a_custom_roles_permissions_come_with_the_user_in_one_query(database_dsn: str, tmp_path: Path) -> None:
    async with open_database(database_dsn) as database:
        slug = f"roles-{uuid.uuid4().hex[:8]}"
        account = await create_account(
            database, name="Roles", slug=slug, admin_email=f"admin@{slug}.example", admin_password=PASSWORD
        )
        await database.execute(
            "INSERT INTO roles (account_id, name, permissions) VALUES ($1, 'Night shift', $2)",
            account.account_id,
            ["conversations.handle", "reports.view"],
        )
        await database.execute(
            "UPDATE users SET role = 'Night shift', may_view_contact_details = true WHERE id = $1",
            account.admin_user_id,
        )
        gate = Gate(Config(data_dir=tmp_path))
        token, user = await auth.sign_in(
            database, gate, slug, account.admin_email, PASSWORD, timedelta(hours=1), address="127.0.0.1"
        )
        expected = {Permission.CONVERSATIONS_HANDLE, Permission.REPORTS_VIEW, Permission.CONTACTS_VIEW_UNMASKED}
        assert user.permissions == expected

        queries: list[str] = []
        fetchrow = database.fetchrow

        async def counted(query: str, *args: Any) -> Any:
            queries.append(query)
            return await fetchrow(query, *args)

        database.fetchrow = counted  # type: ignore[method-assign]
        authenticated = await auth.authenticate(database, token)
        assert authenticated is not None and authenticated.permissions == expected
        assert len(queries) == 1

        # a role that no longer exists grants nothing (the user still signs in)
        database.fetchrow = fetchrow  # type: ignore[method-assign]
        await database.execute("DELETE FROM roles WHERE account_id = $1", account.account_id)
        authenticated = await auth.authenticate(database, token)
        assert authenticated is not None and authenticated.permissions == {Permission.CONTACTS_VIEW_UNMASKED}
