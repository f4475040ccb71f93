"""Every administrative change is in the audit log, and so is every refusal of one.

`ADMIN_WRITES` walks every writing endpoint of the API (checked against the OpenAPI document and
the declared routes' permissions) that changes an account's setup: first as an agent (refused,
403, audited as `forbidden`), then as a role holding the route's permission (done, audited with
its action, in the same transaction).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from kefu.protocol.permissions import AGENT, BUILT_IN_ROLES, Permission
from kefu.server import openapi
from kefu.server.api.route import ROUTES
from tests.server.live import live_center

WEEK = {day: ["09:00-18:00"] for day in ("mon", "tue", "wed", "thu", "fri")} | {"sat": [], "sun": []}

# (method, path, body, who may, audited action, audited target type); ids come from earlier rows.
ADMIN_WRITES: tuple[tuple[str, str, dict[str, Any] | None, str, str, str], ...] = (
    ("post", "/api/v1/departments", {"name": "Sales"}, "admin", "department.create", "department"),
    ("patch", "/api/v1/departments/{department}", {"name": "Sales 2"}, "admin", "department.rename", "department"),
    ("post", "/api/v1/skills", {"name": "French"}, "admin", "skill.create", "skill"),
    ("patch", "/api/v1/skills/{skill}", {"name": "Français"}, "admin", "skill.rename", "skill"),
    (
        "post",
        "/api/v1/agents",
        {"email": "new@example.com", "display_name": "New", "password": "a long password 1"},
        "admin",
        "agent.create",
        "agent",
    ),
    (
        "patch",
        "/api/v1/agents/{agent}",
        {"role": "supervisor", "departments": ["{department}"]},
        "admin",
        "agent.update",
        "agent",
    ),
    ("post", "/api/v1/agents/{agent}/unlock", None, "admin", "sign_in.unlocked", "user"),
    ("patch", "/api/v1/customers/{customer}", {"level": 3}, "supervisor", "customer.update", "customer"),
    ("post", "/api/v1/customers/{customer}/erase", None, "admin", "customer.erase", "customer"),
    ("post", "/api/v1/queues", {"name": "Sales queue"}, "admin", "queue.create", "queue"),
    ("patch", "/api/v1/queues/{queue}", {"strategy": "round_robin"}, "admin", "queue.update", "queue"),
    (
        "post",
        "/api/v1/canned-responses",
        {"scope": "account", "shortcut": "hi", "title": "Hi", "body": "Hello!"},
        "admin",
        "canned_response.create",
        "canned_response",
    ),
    (
        "patch",
        "/api/v1/canned-responses/{canned}",
        {"body": "Hello again!"},
        "admin",
        "canned_response.update",
        "canned_response",
    ),
    (
        "put",
        "/api/v1/business-hours",
        {"timezone": "Asia/Shanghai", "schedule": WEEK},
        "admin",
        "business_hours.update",
        "business_hours",
    ),
    ("post", "/api/v1/roles", {"name": "Night", "permissions": []}, "admin", "role.create", "role"),
    ("patch", "/api/v1/roles/{role}", {"permissions": ["conversations.handle"]}, "admin", "role.update", "role"),
    ("delete", "/api/v1/roles/{role}", None, "admin", "role.delete", "role"),
    ("delete", "/api/v1/canned-responses/{canned}", None, "admin", "canned_response.delete", "canned_response"),
    ("delete", "/api/v1/queues/{queue}", None, "admin", "queue.delete", "queue"),
    ("delete", "/api/v1/skills/{skill}", None, "admin", "skill.delete", "skill"),
    ("delete", "/api/v1/departments/{department}", None, "admin", "department.delete", "department"),
)
NOT_ADMINISTRATIVE = {
    ("post", "/api/v1/auth/sign-in"),
    ("post", "/api/v1/auth/sign-out"),
    ("post", "/api/v1/webchat/visitors"),  # a visitor creates itself
    ("patch", "/api/v1/webchat/visitor"),  # and names itself
    ("post", "/api/v1/attachments"),  # an upload, checked by tests/server/test_attachments.py
}
CREATED = {
    "department": "departments",
    "skill": "skills",
    "agent": "agents",
    "queue": "queues",
    "canned": "canned-responses",
    "role": "roles",
}


def _openapi_path(path: str) -> str:
    names = {"department": "group_id", "skill": "group_id", "agent": "agent_id", "customer": "customer_id"}
    names |= {"queue": "queue_id", "canned": "canned_id", "role": "role"}
    return re.sub(r"\{(\w+)\}", lambda match: "{" + names[match.group(1)] + "}", path)


def test_the_table_covers_every_writing_endpoint() -> None:
    writes = {
        (method, path)
        for path, operations in openapi.document()["paths"].items()
        for method in operations
        if method in ("post", "put", "patch", "delete")
    }
    assert writes - NOT_ADMINISTRATIVE == {(method, _openapi_path(path)) for method, path, *_ in ADMIN_WRITES}


def test_the_table_follows_the_permission_table() -> None:
    """Each administrative change is made by a role holding its route's permission, and refused
    to the agent, who holds none of them; and every writing route with a permission is here."""
    guards = {(spec.method.lower(), spec.path): spec.guard for spec in ROUTES}
    for method, path, _body, who, _action, target_type in ADMIN_WRITES:
        guard = guards[(method, _openapi_path(path))]
        if target_type == "canned_response":  # anyone's own; the shared ones need it, known from the row
            guard = Permission.CANNED_MANAGE_SHARED
        assert isinstance(guard, Permission), (method, path)
        assert guard in BUILT_IN_ROLES[who].permissions and guard not in BUILT_IN_ROLES[AGENT].permissions
    guarded_writes = {
        (method, path)
        for (method, path), guard in guards.items()
        if isinstance(guard, Permission) and method in ("post", "put", "patch", "delete")
    }
    assert guarded_writes <= {(method, _openapi_path(path)) for method, path, *_ in ADMIN_WRITES}


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return re.sub(r"\{(\w+)\}", lambda match: ids[match.group(1)], value)
    if isinstance(value, list):
        return [_fill(item, ids) for item in value]
    if isinstance(value, dict):
        return {key: _fill(item, ids) for key, item in value.items()}
    return value


async def test_every_administrative_change_and_every_refusal_is_audited(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center:
        agent = await center.add_agent("Ann")
        supervisor = await center.add_agent("Sue", role="supervisor")
        customer = await center.add_visitor("Li Wei")
        me = (await center.http.get("/api/v1/me", headers=center.auth(center.admin_token))).json()
        ids = {"customer": customer.customer_id}
        before = len(await center.fetch("SELECT 1 FROM audit_log WHERE actor_id = $1", agent.id))
        assert before == 0

        for method, path, body, who, action, target_type in ADMIN_WRITES:
            url = _fill(path, ids)
            payload = {"json": _fill(body, ids)} if body is not None else {}
            refused = await center.http.request(method.upper(), url, headers=center.auth(agent.token), **payload)
            assert refused.status_code == 403, (method, path, refused.text)
            token = center.admin_token if who == "admin" else supervisor.token
            response = await center.http.request(method.upper(), url, headers=center.auth(token), **payload)
            assert response.status_code in (200, 201, 204), (method, path, response.text)
            for name, plural in CREATED.items():
                if method == "post" and path == f"/api/v1/{plural}":
                    ids[name] = response.json()["id"]
            actor = me["id"] if who == "admin" else supervisor.id
            rows = await center.fetch(
                "SELECT action, target_type, target_id FROM audit_log WHERE actor_id = $1 ORDER BY id DESC LIMIT 1",
                actor,
            )
            (row,) = rows
            assert (row["action"], row["target_type"]) == (action, target_type), (method, path)
            if "{" in path:
                assert row["target_id"] == ids[re.search(r"\{(\w+)\}", path).group(1)]  # type: ignore[union-attr]

        # Each refusal of the agent is in the log too, with what was attempted.
        refusals = await center.fetch(
            "SELECT action, detail->>'method' AS method, detail->>'path' AS path FROM audit_log"
            " WHERE actor_id = $1 ORDER BY id",
            agent.id,
        )
        assert [(r["action"], r["method"]) for r in refusals] == [("forbidden", m.upper()) for m, *_ in ADMIN_WRITES]

        # What an update changed is recorded, old and new.
        (update,) = await center.fetch("SELECT detail FROM audit_log WHERE action = 'agent.update'")
        assert update["detail"]["changes"]["role"] == ["agent", "supervisor"]
        assert update["detail"]["changes"]["departments"] == [[], [ids["department"]]]
        (rename,) = await center.fetch("SELECT detail FROM audit_log WHERE action = 'department.rename'")
        assert rename["detail"]["changes"] == {"name": ["Sales", "Sales 2"]}
        # No secret reaches the log.
        log_text = str(await center.fetch("SELECT detail FROM audit_log"))
        assert "a long password 1" not in log_text and "new@example.com" not in log_text


async def test_a_change_whose_audit_record_fails_is_not_made(database_dsn: str, tmp_path: Path) -> None:
    """The audit record is written in the change's transaction: no record, no change."""
    async with live_center(database_dsn, tmp_path) as center:
        admin = center.auth(center.admin_token)
        department = (await center.http.post("/api/v1/departments", json={"name": "Sales"}, headers=admin)).json()
        # A constraint that refuses this one action makes its audit insert fail.
        await center.fetch(
            "ALTER TABLE audit_log ADD CONSTRAINT test_no_renames CHECK (action <> 'department.rename') NOT VALID"
        )
        try:
            response = await center.http.patch(
                f"/api/v1/departments/{department['id']}", json={"name": "Sales 2"}, headers=admin
            )
            assert response.status_code == 500
        finally:
            await center.fetch("ALTER TABLE audit_log DROP CONSTRAINT test_no_renames")
        listed = (await center.http.get("/api/v1/departments", headers=admin)).json()["departments"]
        assert [d["name"] for d in listed] == ["Sales"]
