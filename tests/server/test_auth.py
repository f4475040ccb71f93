"""Sign-in, session tokens and sign-out, through the HTTP edge on a real database."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx

from kefu.server.accounts import CreatedAccount, create_account
from kefu.server.database import Database
from tests.conftest import open_database
from tests.server.test_app import running_node

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
