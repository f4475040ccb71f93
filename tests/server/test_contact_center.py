"""Queues, canned responses, web-chat visitors, customers, the audit log and the OpenAPI
document, over REST on a real database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import trio

from kefu.server import audit, queues
from kefu.server.config import Config
from kefu.server.database import Database
from kefu.server.node import Node, serve
from tests.conftest import TEST_DATA_KEY, open_database
from tests.server.test_auth import bearer
from tests.server.test_directory import _admin_token, _user_token


@asynccontextmanager
async def node_and_database(
    database_dsn: str, tmp_path: Path, **settings: Any
) -> AsyncIterator[tuple[Node, httpx.AsyncClient, Database]]:
    """A running node (with `settings`) and the test's own handle on its database."""
    config = Config(
        port=0,
        database_url=database_dsn,
        data_dir=tmp_path,
        database_pool_size=3,
        shutdown_grace=1.0,
        **{"data_key": TEST_DATA_KEY, **settings},
    )
    async with open_database(database_dsn) as database, trio.open_nursery() as nursery:
        with trio.fail_after(20):
            node: Node = await nursery.start(serve, config)
        async with httpx.AsyncClient(base_url=node.urls[0], timeout=10) as client:
            yield node, client, database
        nursery.cancel_scope.cancel()


async def _account_id(client: httpx.AsyncClient, token: str) -> uuid.UUID:
    return uuid.UUID((await client.get("/api/v1/me", headers=bearer(token))).json()["account_id"])


async def _actions(database: Database, account_id: uuid.UUID) -> list[tuple[str, str, str | None]]:
    return [(e["action"], e["target_type"], e["actor_role"]) for e in await audit.entries(database, account_id)]


# -- queues -------------------------------------------------------------------------------------


async def test_admin_manages_queues_and_the_dispatcher_is_told(database_dsn: str, tmp_path: Path) -> None:
    async with node_and_database(database_dsn, tmp_path) as (node, client, database):
        _slug, admin = await _admin_token(client, database, "queues")
        account_id = await _account_id(client, admin)
        h = bearer(admin)
        department = (await client.post("/api/v1/departments", json={"name": "Sales"}, headers=h)).json()
        skill = (await client.post("/api/v1/skills", json={"name": "French"}, headers=h)).json()

        response = await client.post("/api/v1/queues", json={"name": " General ", "is_default": True}, headers=h)
        assert response.status_code == 201, response.text
        general = response.json()
        assert general["name"] == "General" and general["is_default"] is True
        assert general["strategy"] == "least_load" and general["offer_timeout_seconds"] == 20
        assert general["min_skill_level"] == 1 and general["widen_after_seconds"] == 30
        assert general["auto_accept"] is False and general["overflow_queue_id"] is None
        assert node.queue_changes[account_id] == 1

        body = {
            "name": "French sales",
            "department_id": department["id"],
            "skill_id": skill["id"],
            "strategy": "skills",
            "min_skill_level": 5,
            "widen_after_seconds": 60,
            "offer_timeout_seconds": 15,
            "auto_accept": True,
            "overflow_after_seconds": 120,
            "overflow_queue_id": general["id"],
            "no_agent_message": "Nobody is here; leave a message.",
            "is_default": True,
        }
        response = await client.post("/api/v1/queues", json=body, headers=h)
        assert response.status_code == 201, response.text
        french = response.json()
        assert {k: french[k] for k in body} == body
        assert node.queue_changes[account_id] == 2
        # Only one default queue per account: the new one took it over.
        assert (await client.get(f"/api/v1/queues/{general['id']}", headers=h)).json()["is_default"] is False
        listed = (await client.get("/api/v1/queues", headers=h)).json()["queues"]
        assert [q["name"] for q in listed] == ["Default", "French sales", "General"]  # Default: the account's first

        response = await client.patch(
            f"/api/v1/queues/{general['id']}", json={"is_default": True, "strategy": "round_robin"}, headers=h
        )
        assert response.status_code == 200 and response.json()["strategy"] == "round_robin"
        assert (await client.get(f"/api/v1/queues/{french['id']}", headers=h)).json()["is_default"] is False
        response = await client.patch(f"/api/v1/queues/{french['id']}", json={"no_agent_message": None}, headers=h)
        assert response.json()["no_agent_message"] is None and response.json()["skill_id"] == skill["id"]

        # What the dispatcher loads: every column, native types.
        loaded = await queues.load_queues(database, account_id)
        assert [q["name"] for q in loaded] == ["Default", "French sales", "General"]
        assert loaded[1]["overflow_queue_id"] == uuid.UUID(general["id"])
        assert set(loaded[0]) >= {"account_id", "id", "strategy", "min_skill_level", "created_at", "is_default"}
        assert {q["id"] for q in await queues.load_all_queues(database)} >= {q["id"] for q in loaded}

        # A skill a skills queue routes by cannot be deleted; a department can (the queue loses it).
        response = await client.delete(f"/api/v1/skills/{skill['id']}", headers=h)
        assert response.status_code == 409
        assert (await client.delete(f"/api/v1/departments/{department['id']}", headers=h)).status_code == 204
        assert (await client.get(f"/api/v1/queues/{french['id']}", headers=h)).json()["department_id"] is None

        # The default queue cannot be deleted (409, nothing reloads) until another one is the default.
        changes = node.queue_changes[account_id]
        assert (await client.delete(f"/api/v1/queues/{general['id']}", headers=h)).status_code == 409
        assert node.queue_changes[account_id] == changes
        response = await client.patch(f"/api/v1/queues/{french['id']}", json={"is_default": True}, headers=h)
        assert response.status_code == 200
        # Deleting the overflow target leaves the other queue without overflow.
        changes = node.queue_changes[account_id]
        assert (await client.delete(f"/api/v1/queues/{general['id']}", headers=h)).status_code == 204
        assert node.queue_changes[account_id] == changes + 1
        assert (await client.get(f"/api/v1/queues/{general['id']}", headers=h)).status_code == 404
        assert (await client.get(f"/api/v1/queues/{french['id']}", headers=h)).json()["overflow_queue_id"] is None

        actions = await _actions(database, account_id)
        # (the department and skill changes are audited too, by the directory)
        assert [a for a in actions if a[1] != "queue"] == [
            ("department.create", "department", "admin"),
            ("skill.create", "skill", "admin"),
            ("department.delete", "department", "admin"),
        ]
        assert [a for a in actions if a[1] == "queue"] == [
            ("queue.create", "queue", "admin"),
            ("queue.create", "queue", "admin"),
            ("queue.update", "queue", "admin"),
            ("queue.update", "queue", "admin"),
            ("queue.update", "queue", "admin"),
            ("queue.delete", "queue", "admin"),
        ]
        entries = [e for e in await audit.entries(database, account_id) if e["target_type"] == "queue"]
        assert entries[2]["detail"]["changes"] == {"is_default": True, "strategy": "round_robin"}
        assert entries[0]["actor_id"] == (await client.get("/api/v1/me", headers=h)).json()["id"]


async def test_queue_input_is_checked(database_dsn: str, tmp_path: Path) -> None:
    async with node_and_database(database_dsn, tmp_path) as (node, client, database):
        _slug, admin = await _admin_token(client, database, "queue-checks")
        h = bearer(admin)
        queue = (await client.post("/api/v1/queues", json={"name": "Q"}, headers=h)).json()
        changes = sum(node.queue_changes.values())
        bad = [
            ({}, "name"),
            ({"name": ""}, "name"),
            ({"name": "x" * 101}, "name"),
            ({"name": "S", "strategy": "random"}, "strategy"),
            ({"name": "S", "strategy": "skills"}, "skill_id"),
            ({"name": "S", "min_skill_level": 0}, "min_skill_level"),
            ({"name": "S", "min_skill_level": 11}, "min_skill_level"),
            ({"name": "S", "widen_after_seconds": 3601}, "widen_after_seconds"),
            ({"name": "S", "offer_timeout_seconds": 0}, "offer_timeout_seconds"),
            ({"name": "S", "offer_timeout_seconds": True}, "offer_timeout_seconds"),
            ({"name": "S", "overflow_after_seconds": 86401}, "overflow_after_seconds"),
            ({"name": "S", "auto_accept": "yes"}, "auto_accept"),
            ({"name": "S", "is_default": 1}, "is_default"),
            ({"name": "S", "department_id": "nope"}, "department_id"),
            ({"name": "S", "no_agent_message": "x" * 2001}, "no_agent_message"),
            ({"name": "S", "colour": "red"}, "colour"),
            (["name"], "object"),
        ]
        for body, field in bad:
            response = await client.post("/api/v1/queues", json=body, headers=h)
            assert response.status_code == 400, (body, response.text)
            assert response.json()["error"]["code"] == "invalid_request"
            assert field in response.json()["error"]["message"], (body, response.json())
        response = await client.patch(
            f"/api/v1/queues/{queue['id']}", json={"overflow_queue_id": queue["id"]}, headers=h
        )
        assert response.status_code == 400 and "overflow_queue_id" in response.json()["error"]["message"]
        response = await client.patch(f"/api/v1/queues/{queue['id']}", json={"strategy": "skills"}, headers=h)
        assert response.status_code == 400 and "skill_id" in response.json()["error"]["message"]
        for field in ("department_id", "skill_id", "overflow_queue_id"):
            response = await client.post("/api/v1/queues", json={"name": "S", field: str(uuid.uuid4())}, headers=h)
            assert response.status_code == 404, field
            assert response.json()["error"]["code"] == "not_found" and field in response.json()["error"]["message"]
        response = await client.post("/api/v1/queues", json={"name": "q"}, headers=h)
        assert response.status_code == 409
        for method, url in [
            ("GET", "/api/v1/queues/zzz"),
            ("PATCH", f"/api/v1/queues/{uuid.uuid4()}"),
            ("DELETE", f"/api/v1/queues/{uuid.uuid4()}"),
        ]:
            assert (await client.request(method, url, json={"name": "x"}, headers=h)).status_code == 404
        assert len((await client.get("/api/v1/queues", headers=h)).json()["queues"]) == 2  # and the account's Default
        assert sum(node.queue_changes.values()) == changes  # refused writes change nothing, so nothing reloads


async def test_queue_roles_and_refusals_are_audited(database_dsn: str, tmp_path: Path) -> None:
    async with node_and_database(database_dsn, tmp_path) as (node, client, database):
        slug, admin = await _admin_token(client, database, "queue-roles")
        account_id = await _account_id(client, admin)
        queue = (await client.post("/api/v1/queues", json={"name": "Q"}, headers=bearer(admin))).json()
        _, agent = await _user_token(client, admin, slug, "agent")
        _, supervisor = await _user_token(client, admin, slug, "supervisor")
        for token in (agent, supervisor):
            assert (await client.get("/api/v1/queues", headers=bearer(token))).status_code == 200
            assert (await client.get(f"/api/v1/queues/{queue['id']}", headers=bearer(token))).json() == queue
        changes = sum(node.queue_changes.values())
        writes = [
            ("POST", "/api/v1/queues", {"name": "X"}),
            ("PATCH", f"/api/v1/queues/{queue['id']}", {"name": "X"}),
            ("DELETE", f"/api/v1/queues/{queue['id']}", None),
        ]
        for method, url, body in writes:
            assert (await client.request(method, url, json=body)).status_code == 401
            for token in (agent, supervisor):
                response = await client.request(method, url, json=body, headers=bearer(token))
                assert response.status_code == 403, (method, url)
                assert response.json()["error"]["code"] == "forbidden"
        assert sum(node.queue_changes.values()) == changes
        assert (await client.get(f"/api/v1/queues/{queue['id']}", headers=bearer(admin))).json() == queue
        refusals = [e for e in await audit.entries(database, account_id) if e["action"] == "forbidden"]
        assert len(refusals) == 6
        assert {e["actor_role"] for e in refusals} == {"agent", "supervisor"}
        assert {e["detail"]["attempted"] for e in refusals} == {"queue.create", "queue.update", "queue.delete"}
        assert {e["target_type"] for e in refusals} == {"queue"}
        assert {e["target_id"] for e in refusals if e["detail"]["attempted"] != "queue.create"} == {queue["id"]}
        assert {e["detail"]["path"] for e in refusals} == {"/api/v1/queues", f"/api/v1/queues/{queue['id']}"}


async def test_the_audit_log_is_append_only(database_dsn: str, tmp_path: Path) -> None:
    async with open_database(database_dsn) as database:
        account_id = await database.fetchval("INSERT INTO accounts (slug, name) VALUES ('audit-x', 'A') RETURNING id")
        await audit.record(database, account_id, "admin", uuid.uuid4(), "queue.create", "queue", uuid.uuid4(), {"a": 1})
        for statement in ("UPDATE audit_log SET action = 'x'", "DELETE FROM audit_log", "TRUNCATE audit_log"):
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
                await database.execute(statement)
        [entry] = await audit.entries(database, account_id)
        assert entry["detail"] == {"a": 1} and entry["action"] == "queue.create"
        # Deleting the whole account takes its log with it.
        await database.execute("DELETE FROM accounts WHERE id = $1", account_id)
        assert await audit.entries(database, account_id) == []


# -- canned responses ---------------------------------------------------------------------------


async def test_canned_responses_account_wide_and_personal(database_dsn: str, tmp_path: Path) -> None:
    async with node_and_database(database_dsn, tmp_path) as (_node, client, database):
        slug, admin = await _admin_token(client, database, "canned")
        account_id = await _account_id(client, admin)
        _, ana = await _user_token(client, admin, slug, "agent")
        _, bob = await _user_token(client, admin, slug, "agent")
        _, sue = await _user_token(client, admin, slug, "supervisor")

        shared = {"scope": "account", "shortcut": "hello", "title": "Greeting", "body": "Hello, how can I help?"}
        response = await client.post("/api/v1/canned-responses", json=shared, headers=bearer(admin))
        assert response.status_code == 201, response.text
        hello = response.json()
        assert hello["scope"] == "account" and hello["owner_user_id"] is None
        for token in (ana, sue):
            response = await client.post("/api/v1/canned-responses", json=shared, headers=bearer(token))
            assert response.status_code == 403

        mine = {"scope": "personal", "shortcut": "hello", "title": "My greeting", "body": "Hi, Ana here."}
        response = await client.post("/api/v1/canned-responses", json=mine, headers=bearer(ana))
        assert response.status_code == 201, response.text
        anas = response.json()
        assert anas["scope"] == "personal"
        response = await client.post(
            "/api/v1/canned-responses", json={**mine, "shortcut": "HELLO"}, headers=bearer(ana)
        )
        assert response.status_code == 409
        response = await client.post(
            "/api/v1/canned-responses", json={**shared, "shortcut": "Hello"}, headers=bearer(admin)
        )
        assert response.status_code == 409
        refund = {"scope": "account", "shortcut": "refund", "title": "Refund policy", "body": "30 days."}
        refund = (await client.post("/api/v1/canned-responses", json=refund, headers=bearer(admin))).json()

        async def listed(token: str, q: str | None = None) -> list[str]:
            params = {"q": q} if q is not None else None
            response = await client.get("/api/v1/canned-responses", params=params, headers=bearer(token))
            assert response.status_code == 200
            return [c["id"] for c in response.json()["canned_responses"]]

        assert await listed(ana) == [hello["id"], anas["id"], refund["id"]]
        assert await listed(bob) == [hello["id"], refund["id"]]
        assert await listed(ana, "HEL") == [hello["id"], anas["id"]]
        assert await listed(ana, "policy") == [refund["id"]]
        assert await listed(ana, "ello") == []  # not a prefix of a shortcut, not in a title
        assert await listed(ana, "greet") == [hello["id"], anas["id"]]
        assert await listed(bob, "%") == []

        # Someone else's personal response does not exist for them.
        for method, body in (("PATCH", {"title": "Mine now"}), ("DELETE", None)):
            for token in (bob, admin):
                response = await client.request(
                    method, f"/api/v1/canned-responses/{anas['id']}", json=body, headers=bearer(token)
                )
                assert response.status_code == 404
        # An account-wide one: only admins change it.
        for method, body in (("PATCH", {"title": "Mine now"}), ("DELETE", None)):
            response = await client.request(
                method, f"/api/v1/canned-responses/{hello['id']}", json=body, headers=bearer(ana)
            )
            assert response.status_code == 403
        response = await client.patch(
            f"/api/v1/canned-responses/{anas['id']}", json={"body": "Hi, it's Ana."}, headers=bearer(ana)
        )
        assert response.status_code == 200 and response.json()["body"] == "Hi, it's Ana."
        assert response.json()["updated_at"] >= anas["updated_at"]
        response = await client.patch(
            f"/api/v1/canned-responses/{hello['id']}", json={"title": "Welcome"}, headers=bearer(admin)
        )
        assert response.status_code == 200 and response.json()["title"] == "Welcome"
        for body, field in [
            ({"title": ""}, "title"),
            ({"shortcut": "two words"}, "shortcut"),
            ({"body": "x" * 8001}, "body"),
            ({"scope": "account"}, "scope"),
        ]:
            response = await client.patch(f"/api/v1/canned-responses/{anas['id']}", json=body, headers=bearer(ana))
            assert response.status_code == 400 and field in response.json()["error"]["message"]
        response = await client.post("/api/v1/canned-responses", json={**mine, "scope": "team"}, headers=bearer(ana))
        assert response.status_code == 400
        assert (await client.delete(f"/api/v1/canned-responses/{anas['id']}", headers=bearer(ana))).status_code == 204
        assert (
            await client.delete(f"/api/v1/canned-responses/{hello['id']}", headers=bearer(admin))
        ).status_code == 204
        assert await listed(ana) == [refund["id"]]
        assert (await client.get("/api/v1/canned-responses")).status_code == 401

        actions = [a for a, _t, _r in await _actions(database, account_id)]
        assert actions.count("canned_response.create") == 2  # personal ones are not administrative
        assert "canned_response.update" in actions and "canned_response.delete" in actions
        assert actions.count("forbidden") == 4


# -- web-chat visitors and customers ------------------------------------------------------------


async def test_visitor_token_lifecycle_and_customers(database_dsn: str, tmp_path: Path) -> None:
    async with node_and_database(database_dsn, tmp_path) as (_node, client, database):
        slug, admin = await _admin_token(client, database, "webchat")
        account_id = await _account_id(client, admin)
        _, agent = await _user_token(client, admin, slug, "agent")
        _, supervisor = await _user_token(client, admin, slug, "supervisor")

        response = await client.post("/api/v1/webchat/visitors", json={"account": slug})
        assert response.status_code == 201, response.text
        visitor = response.json()
        token = visitor["token"]
        assert token.startswith("kv_") and len(token) > 40
        assert visitor["account_id"] == str(account_id) and visitor["display_name"] is None
        stored = await database.fetchrow(
            "SELECT visitor_token_hash, channel, last_seen_at FROM customers WHERE id = $1",
            uuid.UUID(visitor["customer_id"]),
        )
        assert stored["channel"] == "webchat" and token.encode() not in stored["visitor_token_hash"]

        # A reload: the same token is the same visitor.
        response = await client.get("/api/v1/webchat/visitor", headers=bearer(token))
        assert response.status_code == 200
        assert response.json() == {
            "customer_id": visitor["customer_id"],
            "display_name": None,
            "account_id": str(account_id),
        }
        response = await client.patch(
            "/api/v1/webchat/visitor", json={"display_name": " Li Wei "}, headers=bearer(token)
        )
        assert response.status_code == 200 and response.json()["display_name"] == "Li Wei"
        seen = await database.fetchval(
            "SELECT last_seen_at FROM customers WHERE id = $1", uuid.UUID(visitor["customer_id"])
        )
        assert seen >= stored["last_seen_at"]
        for headers in ({}, bearer("kv_nope"), bearer(agent), bearer(token + "x")):
            assert (await client.get("/api/v1/webchat/visitor", headers=headers)).status_code == 401
            assert (await client.patch("/api/v1/webchat/visitor", json={}, headers=headers)).status_code == 401
        # A visitor token is not a session token.
        assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 401
        assert (await client.get("/api/v1/queues", headers=bearer(token))).status_code == 401

        named = await client.post("/api/v1/webchat/visitors", json={"account": slug, "display_name": "Zhang"})
        assert named.status_code == 201 and named.json()["display_name"] == "Zhang"
        for body, status in [
            ({"account": "no-such-account"}, 404),
            ({}, 400),
            ({"account": slug, "display_name": ""}, 400),
            ({"account": slug, "display_name": "x" * 201}, 400),
            ({"account": slug, "extra": 1}, 400),
        ]:
            response = await client.post("/api/v1/webchat/visitors", json=body)
            assert response.status_code == status, body
        response = await client.post("/api/v1/webchat/visitors", json={"account": slug, "display_name": "x" * 9000})
        assert response.status_code == 413
        assert response.json()["error"]["code"] == "payload_too_large"

        # Customers as staff see them.
        url = f"/api/v1/customers/{visitor['customer_id']}"
        for token_ in (admin, supervisor, agent):
            response = await client.get(url, headers=bearer(token_))
            assert response.status_code == 200
            assert response.json()["display_name"] == "Li Wei" and response.json()["level"] == 0
        response = await client.patch(url, json={"level": 7}, headers=bearer(agent))
        assert response.status_code == 403
        response = await client.patch(url, json={"level": 7, "display_name": "Wei"}, headers=bearer(supervisor))
        assert (
            response.status_code == 200 and response.json()["level"] == 7 and response.json()["display_name"] == "Wei"
        )
        response = await client.patch(url, json={"display_name": None}, headers=bearer(admin))
        assert response.status_code == 200 and response.json()["display_name"] is None and response.json()["level"] == 7
        for body in ({"level": 11}, {"level": -1}, {"level": "3"}, {"email": "x"}):
            assert (await client.patch(url, json=body, headers=bearer(admin))).status_code == 400, body
        assert (await client.get(url)).status_code == 401
        assert (await client.get(f"/api/v1/customers/{uuid.uuid4()}", headers=bearer(admin))).status_code == 404
        actions = await _actions(database, account_id)
        assert ("forbidden", "customer", "agent") in actions
        assert ("customer.update", "customer", "supervisor") in actions


# -- isolation between accounts -----------------------------------------------------------------


async def test_accounts_cannot_see_or_use_each_others_contact_center(database_dsn: str, tmp_path: Path) -> None:
    async with node_and_database(database_dsn, tmp_path) as (_node, client, database):
        slug_a, admin_a = await _admin_token(client, database, "alpha")
        _slug_b, admin_b = await _admin_token(client, database, "beta")
        ha, hb = bearer(admin_a), bearer(admin_b)
        queue_a = (await client.post("/api/v1/queues", json={"name": "Q"}, headers=ha)).json()
        dept_a = (await client.post("/api/v1/departments", json={"name": "D"}, headers=ha)).json()
        skill_a = (await client.post("/api/v1/skills", json={"name": "S"}, headers=ha)).json()
        canned_a = (
            await client.post(
                "/api/v1/canned-responses",
                json={"scope": "account", "shortcut": "hi", "title": "Hi", "body": "Hi"},
                headers=ha,
            )
        ).json()
        customer_a = (await client.post("/api/v1/webchat/visitors", json={"account": slug_a})).json()["customer_id"]
        queue_b = (await client.post("/api/v1/queues", json={"name": "Q"}, headers=hb)).json()

        for method, url, body in [
            ("GET", f"/api/v1/queues/{queue_a['id']}", None),
            ("PATCH", f"/api/v1/queues/{queue_a['id']}", {"name": "Mine"}),
            ("DELETE", f"/api/v1/queues/{queue_a['id']}", None),
            ("PATCH", f"/api/v1/queues/{queue_b['id']}", {"overflow_queue_id": queue_a["id"]}),
            ("PATCH", f"/api/v1/queues/{queue_b['id']}", {"department_id": dept_a["id"]}),
            ("PATCH", f"/api/v1/queues/{queue_b['id']}", {"skill_id": skill_a["id"]}),
            ("POST", "/api/v1/queues", {"name": "New", "department_id": dept_a["id"]}),
            ("PATCH", f"/api/v1/canned-responses/{canned_a['id']}", {"title": "Mine"}),
            ("DELETE", f"/api/v1/canned-responses/{canned_a['id']}", None),
            ("GET", f"/api/v1/customers/{customer_a}", None),
            ("PATCH", f"/api/v1/customers/{customer_a}", {"level": 3}),
        ]:
            response = await client.request(method, url, json=body, headers=hb)
            assert response.status_code == 404, (method, url, body)
            assert response.json()["error"]["code"] == "not_found"
        listed_b = (await client.get("/api/v1/queues", headers=hb)).json()["queues"]
        assert [q["id"] for q in listed_b if q["name"] != "Default"] == [queue_b["id"]]
        assert (await client.get("/api/v1/canned-responses", headers=hb)).json()["canned_responses"] == []
        assert (await client.get(f"/api/v1/queues/{queue_a['id']}", headers=ha)).json() == queue_a
        assert (await client.get(f"/api/v1/customers/{customer_a}", headers=ha)).json()["level"] == 0
        # The database itself refuses a queue pointing into another account.
        account_b = await _account_id(client, admin_b)
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await database.execute(
                "INSERT INTO queues (account_id, name, department_id) VALUES ($1, 'X', $2)",
                account_b,
                uuid.UUID(dept_a["id"]),
            )
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await database.execute(
                "UPDATE queues SET overflow_queue_id = $2 WHERE id = $1",
                uuid.UUID(queue_b["id"]),
                uuid.UUID(queue_a["id"]),
            )


# -- the OpenAPI document ---------------------------------------------------------------------


async def test_openapi_describes_every_api_route(database_dsn: str, tmp_path: Path) -> None:
    async with node_and_database(database_dsn, tmp_path) as (node, client, _database):
        response = await client.get("/api/v1/openapi.json")
        assert response.status_code == 200
        document = response.json()
    assert document["openapi"].startswith("3.1")
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    paths = document["paths"]
    missing = []
    for rule in node.app.url_map.iter_rules():
        if not rule.rule.startswith("/api/"):
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation = paths.get(path, {}).get(method.lower())
            if operation is None:
                missing.append(f"{method} {path}")
                continue
            assert operation["summary"] and operation["responses"], (method, path)
            for name in rule.arguments:
                assert any(p["name"] == name and p["in"] == "path" for p in operation["parameters"]), (method, path)
    assert missing == [], f"routes missing from the OpenAPI document: {missing}"
    # And nothing documented that the app does not serve.
    served = {r.rule.replace("<", "{").replace(">", "}") for r in node.app.url_map.iter_rules()}
    assert set(paths) <= served

    def refs(value: Any) -> set[str]:
        if isinstance(value, dict):
            found = {value["$ref"]} if "$ref" in value else set()
            return found.union(*(refs(v) for v in value.values()))
        if isinstance(value, list):
            return set().union(*(refs(v) for v in value))
        return set()

    for ref in refs(document):
        assert ref.removeprefix("#/components/schemas/") in document["components"]["schemas"], ref
