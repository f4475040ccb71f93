"""Identities: one person named by several channels is one customer (server/identities.py)."""

from __future__ import annotations

import base64

import trio

from kefu.server.identities import IdentityClaim, IdentityKind, open_identity, resolve_customer
from kefu.server.privacy import DataKeys, Privacy
from tests.conftest import new_account, open_database

PRIVACY = Privacy(DataKeys.from_key(base64.b64decode(base64.b64encode(b"i" * 32))), "CN")


async def test_verified_identities_link_to_one_customer_and_values_are_sealed(database_dsn: str) -> None:
    async with open_database(database_dsn) as database:
        account = await new_account(database)
        app_user = IdentityClaim(IdentityKind.APP_USER, "user-4711")
        first = await resolve_customer(database, PRIVACY, account, [app_user], channel="app", display_name="Li Lei")
        assert first.created and first.linked == (IdentityKind.APP_USER,)
        # The same person over the API with a verified phone: the app user decides, the phone is linked.
        phone = IdentityClaim(IdentityKind.PHONE, "138 1234 5678")
        second = await resolve_customer(database, PRIVACY, account, [phone, app_user], channel="api")
        assert second.customer_id == first.customer_id and not second.created
        assert second.linked == (IdentityKind.PHONE,)
        # Now the phone alone finds the customer, in another writing.
        third = await resolve_customer(
            database, PRIVACY, account, [IdentityClaim(IdentityKind.PHONE, "+8613812345678")], channel="api"
        )
        assert third.customer_id == first.customer_id
        rows = await database.fetch(
            "SELECT id, kind, value_enc FROM customer_identities WHERE customer_id = $1 ORDER BY kind",
            first.customer_id,
        )
        assert [row["kind"] for row in rows] == ["app_user", "phone"]
        stored = b"".join(bytes(row["value_enc"]) for row in rows)
        assert b"4711" not in stored and b"5678" not in stored
        values = [open_identity(PRIVACY, account, row["id"], row["kind"], row["value_enc"]) for row in rows]
        assert values == ["user-4711", "+8613812345678"]


async def test_unverified_and_foreign_claims_are_not_linked(database_dsn: str) -> None:
    async with open_database(database_dsn) as database:
        account = await new_account(database)
        alice = await resolve_customer(
            database, PRIVACY, account, [IdentityClaim(IdentityKind.EXTERNAL, "alice")], channel="api"
        )
        bob = await resolve_customer(
            database, PRIVACY, account, [IdentityClaim(IdentityKind.EXTERNAL, "bob")], channel="api"
        )
        claims = [
            IdentityClaim(IdentityKind.EXTERNAL, "bob"),
            IdentityClaim(IdentityKind.EXTERNAL, "alice"),
            IdentityClaim(IdentityKind.EMAIL, "bob@example.com", verified=False),
        ]
        resolved = await resolve_customer(database, PRIVACY, account, claims, channel="api")
        assert resolved.customer_id == bob.customer_id and resolved.linked == ()
        assert {claim.value for claim in resolved.ignored} == {"alice", "bob@example.com"}
        owner = await database.fetchval(
            "SELECT customer_id FROM customer_identities WHERE account_id = $1 AND kind = 'external'"
            " AND customer_id = $2",
            account,
            alice.customer_id,
        )
        assert owner == alice.customer_id


async def test_two_first_contacts_at_once_make_one_customer(database_dsn: str) -> None:
    async with open_database(database_dsn, pool_size=8) as database:
        account = await new_account(database)
        found = []

        async def first_contact() -> None:
            claim = IdentityClaim(IdentityKind.WECHAT_OPENID, "o6_bmjrPTlm6_2sgVt7hMZOPfL2M")
            found.append((await resolve_customer(database, PRIVACY, account, [claim], channel="api")).customer_id)

        async with trio.open_nursery() as nursery:
            for _ in range(6):
                nursery.start_soon(first_contact)
        assert len(set(found)) == 1
        customers = await database.fetchval("SELECT count(*) FROM customers WHERE account_id = $1", account)
        assert customers == 1
