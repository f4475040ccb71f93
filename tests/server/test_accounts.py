"""Accounts: creation with a first admin, argon2 password hashes, refusals with clear errors."""

from __future__ import annotations

import uuid

import pytest

from kefu.server.accounts import AccountError, create_account, generate_password, slug_for, verify_password
from tests.conftest import open_database

PASSWORD = "correct horse battery staple"


def unique_slug() -> str:
    return f"acme-{uuid.uuid4().hex[:8]}"


async def test_create_account_stores_an_argon2_hash_never_the_password(database_dsn: str) -> None:
    slug = unique_slug()
    async with open_database(database_dsn) as database:
        created = await create_account(
            database, name="Acme Support", slug=slug, admin_email="admin@acme.test", admin_password=PASSWORD
        )
        assert created.slug == slug
        assert created.admin_email == "admin@acme.test"
        account = await database.fetchrow("SELECT slug, name FROM accounts WHERE id = $1", created.account_id)
        assert (account["slug"], account["name"]) == (slug, "Acme Support")
        user = await database.fetchrow(
            "SELECT account_id, email, role, display_name, password_hash FROM users WHERE id = $1",
            created.admin_user_id,
        )
    assert user["account_id"] == created.account_id
    assert user["email"] == "admin@acme.test"
    assert user["role"] == "admin"
    assert user["display_name"] == "admin"
    stored = user["password_hash"]
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored
    assert verify_password(stored, PASSWORD)
    assert not verify_password(stored, PASSWORD + "!")
    assert not verify_password(stored, "")
    assert not verify_password("not a hash", PASSWORD)


async def test_slug_defaults_from_the_name(database_dsn: str) -> None:
    name = f"Beta Help Desk {uuid.uuid4().hex[:6]}"
    async with open_database(database_dsn) as database:
        created = await create_account(database, name=name, admin_email="a@beta.test", admin_password=PASSWORD)
    assert created.slug == slug_for(name)
    assert created.slug.startswith("beta-help-desk-")


async def test_duplicate_slug_is_refused_and_changes_nothing(database_dsn: str) -> None:
    slug = unique_slug()
    async with open_database(database_dsn) as database:
        await create_account(database, name="First", slug=slug, admin_email="a@one.test", admin_password=PASSWORD)
        before = await database.fetchval("SELECT count(*) FROM users")
        with pytest.raises(AccountError, match=f"'{slug}' already exists"):
            await create_account(database, name="Second", slug=slug, admin_email="b@two.test", admin_password=PASSWORD)
        assert await database.fetchval("SELECT count(*) FROM users") == before
        assert await database.fetchval("SELECT count(*) FROM accounts WHERE slug = $1", slug) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"admin_password": "short"}, "at least 10 characters"),
        ({"admin_password": ""}, "at least 10 characters"),
        ({"admin_email": "not-an-email"}, "not an e-mail address"),
        ({"admin_email": "two@@ats.test"}, "not an e-mail address"),
        ({"admin_email": "space d@x.test"}, "not an e-mail address"),
        ({"name": "   "}, "1 to 200 characters"),
        ({"name": "x" * 201}, "1 to 200 characters"),
        ({"slug": "Bad Slug"}, "not a valid account slug"),
        ({"slug": "-leading"}, "not a valid account slug"),
    ],
)
async def test_bad_input_is_refused_and_changes_nothing(
    database_dsn: str, kwargs: dict[str, str], message: str
) -> None:
    arguments = {"name": "Gamma", "slug": unique_slug(), "admin_email": "a@gamma.test", "admin_password": PASSWORD}
    arguments |= kwargs
    async with open_database(database_dsn) as database:
        accounts = await database.fetchval("SELECT count(*) FROM accounts")
        with pytest.raises(AccountError, match=message):
            await create_account(database, **arguments)  # type: ignore[arg-type]
        assert await database.fetchval("SELECT count(*) FROM accounts") == accounts


def test_generated_passwords_are_long_enough_and_differ() -> None:
    passwords = {generate_password() for _ in range(20)}
    assert len(passwords) == 20
    assert all(len(p) >= 10 for p in passwords)
