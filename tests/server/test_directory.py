"""Departments, skills and agents over REST: admin changes, supervisor reads, agent neither."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from kefu.server.accounts import create_account
from kefu.server.database import Database
from tests.conftest import open_database
from tests.server.test_app import running_node
from tests.server.test_auth import PASSWORD, bearer

AGENT_PASSWORD = "agent password 1"


async def _admin_token(client: httpx.AsyncClient, database: Database, name: str) -> tuple[str, str]:
    slug = f"{name}-{uuid.uuid4().hex[:8]}"
    account = await create_account(
        database, name=name, slug=slug, admin_email=f"admin@{slug}.example", admin_password=PASSWORD
    )
    response = await client.post(
        "/api/v1/auth/sign-in", json={"account": slug, "email": account.admin_email, "password": PASSWORD}
    )
    assert response.status_code == 200
    return slug, response.json()["token"]


async def _user_token(client: httpx.AsyncClient, admin: str, slug: str, role: str, **extra: object) -> tuple[str, str]:
    email = f"{role}-{uuid.uuid4().hex[:6]}@{slug}.example"
    body = {"email": email, "display_name": role.title(), "role": role, "password": AGENT_PASSWORD, **extra}
    response = await client.post("/api/v1/agents", json=body, headers=bearer(admin))
    assert response.status_code == 201, response.text
    agent_id = response.json()["id"]
    response = await client.post(
        "/api/v1/auth/sign-in", json={"account": slug, "email": email, "password": AGENT_PASSWORD}
    )
    assert response.status_code == 200
    return agent_id, response.json()["token"]


async def test_admin_builds_the_directory_and_the_agent_signs_in(database_dsn: str, tmp_path: Path) -> None:
    async with open_database(database_dsn) as database, running_node(database_dsn, tmp_path) as (_node, client):
        slug, admin = await _admin_token(client, database, "acme")
        h = bearer(admin)
        sales = (await client.post("/api/v1/departments", json={"name": "Sales"}, headers=h)).json()
        billing = await client.post("/api/v1/departments", json={"name": " Billing "}, headers=h)
        assert billing.status_code == 201
        billing = billing.json()
        assert billing["name"] == "Billing"
        french = (await client.post("/api/v1/skills", json={"name": "French"}, headers=h)).json()
        refunds = (await client.post("/api/v1/skills", json={"name": "Refunds"}, headers=h)).json()

        body = {
            "email": f"ana@{slug}.example",
            "display_name": "Ana",
            "role": "agent",
            "password": AGENT_PASSWORD,
            "max_concurrent_conversations": 3,
            "departments": [sales["id"], billing["id"]],
            "skills": [{"id": french["id"], "level": 7}, {"id": refunds["id"], "level": 10}],
        }
        response = await client.post("/api/v1/agents", json=body, headers=h)
        assert response.status_code == 201, response.text
        agent = response.json()
        assert "password" not in response.text and "argon2" not in response.text
        assert agent["role"] == "agent" and agent["max_concurrent_conversations"] == 3
        assert agent["disabled"] is False
        assert agent["departments"] == [
            {"id": billing["id"], "name": "Billing"},
            {"id": sales["id"], "name": "Sales"},
        ]
        assert agent["skills"] == [
            {"id": french["id"], "name": "French", "level": 7},
            {"id": refunds["id"], "name": "Refunds", "level": 10},
        ]
        assert (await client.get(f"/api/v1/agents/{agent['id']}", headers=h)).json() == agent
        listed = (await client.get("/api/v1/agents", headers=h)).json()["agents"]
        assert agent in listed and len(listed) == 2
        assert "argon2" not in str(listed)
        names = [d["name"] for d in (await client.get("/api/v1/departments", headers=h)).json()["departments"]]
        assert names == ["Billing", "Sales"]

        response = await client.post(
            "/api/v1/auth/sign-in", json={"account": slug, "email": body["email"], "password": AGENT_PASSWORD}
        )
        assert response.status_code == 200
        assert response.json()["user"]["role"] == "agent"

        # Rename, replace memberships, delete.
        response = await client.patch(f"/api/v1/skills/{french['id']}", json={"name": "Français"}, headers=h)
        assert response.status_code == 200 and response.json()["name"] == "Français"
        response = await client.patch(
            f"/api/v1/agents/{agent['id']}",
            json={"departments": [sales["id"]], "skills": [{"id": french["id"], "level": 2}], "role": "supervisor"},
            headers=h,
        )
        assert response.status_code == 200, response.text
        changed = response.json()
        assert changed["role"] == "supervisor"
        assert changed["departments"] == [{"id": sales["id"], "name": "Sales"}]
        assert changed["skills"] == [{"id": french["id"], "name": "Français", "level": 2}]
        assert (await client.delete(f"/api/v1/departments/{sales['id']}", headers=h)).status_code == 204
        assert (await client.delete(f"/api/v1/departments/{sales['id']}", headers=h)).status_code == 404
        assert (await client.get(f"/api/v1/agents/{agent['id']}", headers=h)).json()["departments"] == []


async def test_roles_decide_who_reads_and_who_changes(database_dsn: str, tmp_path: Path) -> None:
    async with open_database(database_dsn) as database, running_node(database_dsn, tmp_path) as (_node, client):
        slug, admin = await _admin_token(client, database, "roles")
        department = (await client.post("/api/v1/departments", json={"name": "D"}, headers=bearer(admin))).json()
        skill = (await client.post("/api/v1/skills", json={"name": "S"}, headers=bearer(admin))).json()
        agent_id, agent = await _user_token(client, admin, slug, "agent")
        _, supervisor = await _user_token(client, admin, slug, "supervisor")
        reads = [
            ("GET", "/api/v1/departments"),
            ("GET", "/api/v1/skills"),
            ("GET", "/api/v1/agents"),
            ("GET", f"/api/v1/agents/{agent_id}"),
        ]
        writes = [
            ("POST", "/api/v1/departments", {"name": "X"}),
            ("PATCH", f"/api/v1/departments/{department['id']}", {"name": "X"}),
            ("DELETE", f"/api/v1/departments/{department['id']}", None),
            ("POST", "/api/v1/skills", {"name": "X"}),
            ("PATCH", f"/api/v1/skills/{skill['id']}", {"name": "X"}),
            ("DELETE", f"/api/v1/skills/{skill['id']}", None),
            ("POST", "/api/v1/agents", {"email": "x@y.z", "display_name": "X", "password": AGENT_PASSWORD}),
            ("PATCH", f"/api/v1/agents/{agent_id}", {"max_concurrent_conversations": 9}),
        ]
        for method, url in reads:
            response = await client.request(method, url, headers=bearer(agent))
            assert response.status_code == 403, url
            assert response.json()["error"]["code"] == "forbidden"
            assert (await client.request(method, url, headers=bearer(supervisor))).status_code == 200, url
            assert (await client.request(method, url)).status_code == 401, url
        for method, url, body in writes:
            for token in (agent, supervisor):
                response = await client.request(method, url, json=body, headers=bearer(token))
                assert response.status_code == 403, (method, url)
                assert response.json()["error"]["code"] == "forbidden"
        # Nothing changed.
        assert (await client.get(f"/api/v1/agents/{agent_id}", headers=bearer(admin))).json()[
            "max_concurrent_conversations"
        ] == 5
        assert len((await client.get("/api/v1/departments", headers=bearer(admin))).json()["departments"]) == 1


async def test_accounts_cannot_see_or_use_each_others_rows(database_dsn: str, tmp_path: Path) -> None:
    async with open_database(database_dsn) as database, running_node(database_dsn, tmp_path) as (_node, client):
        slug_a, admin_a = await _admin_token(client, database, "alpha")
        slug_b, admin_b = await _admin_token(client, database, "beta")
        dept_a = (await client.post("/api/v1/departments", json={"name": "Sales"}, headers=bearer(admin_a))).json()
        skill_a = (await client.post("/api/v1/skills", json={"name": "French"}, headers=bearer(admin_a))).json()
        agent_a, _ = await _user_token(client, admin_a, slug_a, "agent")
        agent_b, _ = await _user_token(client, admin_b, slug_b, "agent")
        hb = bearer(admin_b)
        # The same name is fine in another account.
        assert (await client.post("/api/v1/departments", json={"name": "Sales"}, headers=hb)).status_code == 201
        for method, url, body in [
            ("GET", f"/api/v1/agents/{agent_a}", None),
            ("PATCH", f"/api/v1/agents/{agent_a}", {"disabled": True}),
            ("PATCH", f"/api/v1/departments/{dept_a['id']}", {"name": "Mine"}),
            ("DELETE", f"/api/v1/departments/{dept_a['id']}", None),
            ("PATCH", f"/api/v1/skills/{skill_a['id']}", {"name": "Mine"}),
            ("DELETE", f"/api/v1/skills/{skill_a['id']}", None),
            ("PATCH", f"/api/v1/agents/{agent_b}", {"departments": [dept_a["id"]]}),
            ("PATCH", f"/api/v1/agents/{agent_b}", {"skills": [{"id": skill_a["id"], "level": 3}]}),
        ]:
            response = await client.request(method, url, json=body, headers=hb)
            assert response.status_code == 404, (method, url, body)
            assert response.json()["error"]["code"] == "not_found"
        body = {
            "email": f"new@{slug_b}.example",
            "display_name": "New",
            "password": AGENT_PASSWORD,
            "departments": [dept_a["id"]],
        }
        assert (await client.post("/api/v1/agents", json=body, headers=hb)).status_code == 404
        listed = (await client.get("/api/v1/agents", headers=hb)).json()["agents"]
        assert agent_a not in {a["id"] for a in listed}
        assert len(listed) == 2
        assert (await client.get(f"/api/v1/agents/{agent_b}", headers=hb)).json()["departments"] == []
        # Account A's rows are untouched.
        assert (await client.get(f"/api/v1/agents/{agent_a}", headers=bearer(admin_a))).json()["disabled"] is False
        names = (await client.get("/api/v1/departments", headers=bearer(admin_a))).json()["departments"]
        assert names == [dept_a]
        # The database itself refuses a cross-account membership.
        rows = await database.fetchval(
            "SELECT count(*) FROM user_departments WHERE department_id = $1", uuid.UUID(dept_a["id"])
        )
        assert rows == 0


async def test_duplicates_conflict_and_bad_input_is_refused(database_dsn: str, tmp_path: Path) -> None:
    async with open_database(database_dsn) as database, running_node(database_dsn, tmp_path) as (_node, client):
        slug, admin = await _admin_token(client, database, "checks")
        h = bearer(admin)
        dept = (await client.post("/api/v1/departments", json={"name": "Sales"}, headers=h)).json()
        other = (await client.post("/api/v1/departments", json={"name": "Other"}, headers=h)).json()
        skill = (await client.post("/api/v1/skills", json={"name": "French"}, headers=h)).json()
        for url, body in [
            ("/api/v1/departments", {"name": "sales"}),
            (f"/api/v1/departments/{other['id']}", {"name": "SALES"}),
            ("/api/v1/skills", {"name": "french"}),
            ("/api/v1/agents", {"email": f"ADMIN@{slug}.example", "display_name": "A", "password": AGENT_PASSWORD}),
        ]:
            method = "PATCH" if url.count("/") == 4 else "POST"
            response = await client.request(method, url, json=body, headers=h)
            assert response.status_code == 409, (url, body)
            assert response.json()["error"]["code"] == "conflict"

        agent = {"email": f"a@{slug}.example", "display_name": "A", "password": AGENT_PASSWORD}
        bad = [
            ("POST", "/api/v1/departments", {}, "name"),
            ("POST", "/api/v1/departments", {"name": ""}, "name"),
            ("POST", "/api/v1/skills", {"name": "x" * 101}, "name"),
            ("PATCH", f"/api/v1/departments/{dept['id']}", {"name": 3}, "name"),
            ("POST", "/api/v1/agents", {**agent, "skills": [{"id": skill["id"], "level": 0}]}, "level"),
            ("POST", "/api/v1/agents", {**agent, "skills": [{"id": skill["id"], "level": 11}]}, "level"),
            ("POST", "/api/v1/agents", {**agent, "max_concurrent_conversations": 0}, "max_concurrent_conversations"),
            ("POST", "/api/v1/agents", {**agent, "departments": ["not-a-uuid"]}, "departments"),
            ("POST", "/api/v1/agents", {**agent, "password": "short"}, "password"),
            ("POST", "/api/v1/agents", {**agent, "email": "nope"}, "email"),
            ("POST", "/api/v1/agents", {**agent, "role": "owner"}, "role"),
            ("POST", "/api/v1/agents", {**{k: v for k, v in agent.items() if k != "display_name"}}, "display_name"),
            ("POST", "/api/v1/agents", ["not", "an", "object"], "object"),
        ]
        for method, url, body, field in bad:
            response = await client.request(method, url, json=body, headers=h)
            assert response.status_code == 400, (url, body)
            error = response.json()["error"]
            assert error["code"] == "invalid_request"
            assert field in error["message"], (error, field)
        agent_id = (await client.get("/api/v1/agents", headers=h)).json()["agents"][0]["id"]
        response = await client.patch(f"/api/v1/agents/{agent_id}", json={"max_concurrent_conversations": 0}, headers=h)
        assert response.status_code == 400
        assert "max_concurrent_conversations" in response.json()["error"]["message"]
        # No half-created agent was left behind.
        assert len((await client.get("/api/v1/agents", headers=h)).json()["agents"]) == 1

        for method, url in [
            ("GET", "/api/v1/agents/not-a-uuid"),
            ("PATCH", "/api/v1/agents/123"),
            ("PATCH", "/api/v1/departments/zzz"),
            ("DELETE", "/api/v1/skills/zzz"),
            ("GET", f"/api/v1/agents/{uuid.uuid4()}"),
            ("DELETE", f"/api/v1/departments/{uuid.uuid4()}"),
        ]:
            response = await client.request(method, url, json={"name": "x"}, headers=h)
            assert response.status_code == 404, url
            assert response.json()["error"]["code"] == "not_found"


async def test_disabling_an_agent_ends_their_sessions(database_dsn: str, tmp_path: Path) -> None:
    async with open_database(database_dsn) as database, running_node(database_dsn, tmp_path) as (_node, client):
        slug, admin = await _admin_token(client, database, "disable")
        agent_id, token = await _user_token(client, admin, slug, "agent")
        assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 200
        response = await client.patch(f"/api/v1/agents/{agent_id}", json={"disabled": True}, headers=bearer(admin))
        assert response.status_code == 200 and response.json()["disabled"] is True
        response = await client.get("/api/v1/me", headers=bearer(token))
        assert response.status_code == 401
        # Enabling again does not revive the old token; a fresh sign-in works.
        response = await client.patch(f"/api/v1/agents/{agent_id}", json={"disabled": False}, headers=bearer(admin))
        assert response.json()["disabled"] is False
        assert (await client.get("/api/v1/me", headers=bearer(token))).status_code == 401
        # An admin cannot lock themself out.
        me = (await client.get("/api/v1/me", headers=bearer(admin))).json()
        for change in ({"disabled": True}, {"role": "agent"}):
            response = await client.patch(f"/api/v1/agents/{me['id']}", json=change, headers=bearer(admin))
            assert response.status_code == 409
        assert (await client.get("/api/v1/me", headers=bearer(admin))).status_code == 200
