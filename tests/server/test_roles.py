"""Roles: the built-in roles as read-only rows, custom roles over REST (storage, rules, audit),
and what a holder of a custom role may do, on a real server and a real PostgreSQL."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import trio

from kefu.protocol.permissions import ADMIN, AGENT, BUILT_IN_ROLES, SUPERVISOR, Permission, permissions_of
from kefu.server import audit, roles
from kefu.server.accounts import create_account
from kefu.server.api.route import ROUTES
from kefu.server.database import Database
from tests.conftest import open_database
from tests.server.live import PASSWORD, Center, connect, live_center

ADMIN_ALL = [p.value for p in Permission]


async def _role(center: Center, body: dict[str, Any], token: str | None = None) -> httpx.Response:
    return await center.http.post("/api/v1/roles", json=body, headers=center.auth(token or center.admin_token))


async def _entries(center: Center, action: str) -> list[dict[str, Any]]:
    async with open_database(center.dsn) as database:
        account_id = await _account_id(database, center.slug)
        return [e for e in await audit.entries(database, account_id) if e["action"] == action]


async def _account_id(database: Database, slug: str) -> uuid.UUID:
    account_id: uuid.UUID = await database.fetchval("SELECT id FROM accounts WHERE slug = $1", slug)
    return account_id


# -- the table and the built-in rows ---------------------------------------------------------------


def test_every_route_declares_one_permission_and_every_permission_is_described() -> None:
    role_routes = [spec for spec in ROUTES if spec.endpoint.startswith("roles.")]
    assert len(role_routes) == 6
    assert all(isinstance(spec.guard, Permission) for spec in role_routes)
    described = roles.list_permissions()
    assert [p.name for p in described] == list(Permission)
    assert all(p.description for p in described)


async def test_the_built_in_roles_come_first_and_are_read_only(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center:
        admin = center.auth(center.admin_token)
        listed = (await center.http.get("/api/v1/roles", headers=admin)).json()["roles"]
        assert [(r["name"], r["built_in"], r["id"]) for r in listed] == [(n, True, None) for n in BUILT_IN_ROLES]
        assert listed[0]["permissions"] == ADMIN_ALL and listed[0]["holders"] == 1
        for name in BUILT_IN_ROLES:
            one = (await center.http.get(f"/api/v1/roles/{name}", headers=admin)).json()
            assert one["permissions"] == [p.value for p in Permission if p in BUILT_IN_ROLES[name].permissions]
            for method, body in (("PATCH", {"permissions": []}), ("DELETE", None)):
                response = await center.http.request(method, f"/api/v1/roles/{name}", json=body, headers=admin)
                assert (response.status_code, response.json()["error"]["code"]) == (409, "role_built_in"), name
        # their names are reserved in any case
        for taken in ("admin", " Supervisor ", "AGENT"):
            response = await _role(center, {"name": taken, "permissions": []})
            assert (response.status_code, response.json()["error"]["code"]) == (409, "role_built_in")
        permissions = (await center.http.get("/api/v1/permissions", headers=admin)).json()["permissions"]
        assert [p["name"] for p in permissions] == ADMIN_ALL and all(p["description"] for p in permissions)


# -- custom roles over REST --------------------------------------------------------------------------


async def test_an_admin_creates_renames_changes_and_deletes_a_custom_role(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center:
        admin = center.auth(center.admin_token)
        response = await _role(center, {"name": " Reviewer ", "permissions": ["reports.view", "audit.read"]})
        assert response.status_code == 201, response.text
        created = response.json()
        # stored in the table's order, whatever the order given
        assert (created["name"], created["permissions"], created["built_in"]) == (
            "Reviewer",
            ["reports.view", "audit.read"],
            False,
        )
        assert (await center.http.get(f"/api/v1/roles/{created['id']}", headers=admin)).json()["name"] == "Reviewer"
        response = await _role(center, {"name": "reviewer", "permissions": []})
        assert (response.status_code, response.json()["error"]["code"]) == (409, "role_name_taken")

        holder = await center.add_agent("Rita", role="Reviewer")
        response = await center.http.patch(f"/api/v1/roles/{created['id']}", json={"name": "Auditor"}, headers=admin)
        assert response.status_code == 200 and response.json()["name"] == "Auditor"
        assert response.json()["holders"] == 1
        # the holder follows the rename, and a rename alone ends no session
        assert (await center.http.get(f"/api/v1/agents/{holder.id}", headers=admin)).json()["role"] == "Auditor"
        assert (await center.http.get("/api/v1/me", headers=center.auth(holder.token))).status_code == 200

        response = await center.http.patch(
            "/api/v1/roles/Auditor",
            json={"permissions": ["audit.read", "reports.view", "directory.read"]},
            headers=admin,
        )
        assert response.json()["permissions"] == ["directory.read", "reports.view", "audit.read"]

        response = await center.http.delete("/api/v1/roles/Auditor", headers=admin)
        assert (response.status_code, response.json()["error"]["code"]) == (409, "role_in_use")
        assert "1 user" in response.json()["error"]["message"]
        await center.http.patch(f"/api/v1/agents/{holder.id}", json={"role": "agent"}, headers=admin)
        response = await center.http.delete("/api/v1/roles/Auditor", headers=admin)
        assert response.status_code == 204
        assert (await center.http.get("/api/v1/roles/Auditor", headers=admin)).status_code == 404

        # every change is audited with what changed
        (create,) = await _entries(center, "role.create")
        assert create["detail"]["after"] == {"name": "Reviewer", "permissions": ["reports.view", "audit.read"]}
        updates = await _entries(center, "role.update")
        assert sorted(tuple(u["detail"]["changes"]) for u in updates) == [("name",), ("permissions",)]
        (deleted,) = await _entries(center, "role.delete")
        assert deleted["detail"]["name"] == "Auditor" and deleted["target_id"] == created["id"]


async def test_bad_role_bodies_are_refused_and_change_nothing(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center:
        admin = center.auth(center.admin_token)
        refused = {
            "unknown_permission": {"name": "Odd", "permissions": ["conversations.handle", "everything.do"]},
            "invalid_request": {"name": "x" * 33, "permissions": []},
        }
        for code, body in refused.items():
            response = await _role(center, body)
            assert (response.status_code, response.json()["error"]["code"]) == (400, code), body
        for body in ({"name": "   ", "permissions": []}, {"name": "Odd"}, {"name": "Odd", "permissions": [], "x": 1}):
            response = await _role(center, body)
            assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_request"), body
        response = await center.http.post("/api/v1/roles", content=b"not json", headers=admin)
        assert response.status_code == 400
        response = await _role(center, {"name": "Twice", "permissions": ["reports.view", "reports.view"]})
        assert response.status_code == 400
        created = (await _role(center, {"name": "Kept", "permissions": ["reports.view"]})).json()
        response = await center.http.patch(
            f"/api/v1/roles/{created['id']}", json={"name": "New", "permissions": ["nope"]}, headers=admin
        )
        assert response.json()["error"]["code"] == "unknown_permission"
        assert (await center.http.get("/api/v1/roles/nobody", headers=admin)).status_code == 404
        assert (await center.http.get(f"/api/v1/roles/{uuid.uuid4()}", headers=admin)).status_code == 404
        names = [r["name"] for r in (await center.http.get("/api/v1/roles", headers=admin)).json()["roles"]]
        assert names == [*BUILT_IN_ROLES, "Kept"]
        assert len(await _entries(center, "role.create")) == 1 and await _entries(center, "role.update") == []


async def test_a_custom_role_user_gets_exactly_its_permissions(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center:
        admin = center.auth(center.admin_token)
        visitor = await center.add_visitor("Carol")
        phone = "+86 138 0013 8000"
        response = await center.http.patch(
            f"/api/v1/customers/{visitor.customer_id}", json={"phone": phone}, headers=admin
        )
        assert response.status_code == 200, response.text
        await _role(center, {"name": "Directory clerk", "permissions": ["directory.read"]})
        await _role(center, {"name": "Caller", "permissions": ["conversations.handle", "contacts.view_unmasked"]})
        clerk = await center.add_agent("Clara", role="Directory clerk")
        caller = await center.add_agent("Cato", role="Caller")
        plain = await center.add_agent("Pia")

        clerk_h, caller_h = center.auth(clerk.token), center.auth(caller.token)
        me = (await center.http.get("/api/v1/me", headers=clerk_h)).json()
        assert (me["role"], me["permissions"]) == ("Directory clerk", ["directory.read"])
        me = (await center.http.get("/api/v1/me", headers=center.auth(caller.token))).json()
        assert me["permissions"] == ["contacts.view_unmasked", "conversations.handle"]  # sorted by name
        # directory.read reads roles and the permission table; roles.manage (not held) writes roles
        assert (await center.http.get("/api/v1/roles", headers=clerk_h)).status_code == 200
        assert (await center.http.get("/api/v1/permissions", headers=clerk_h)).status_code == 200
        response = await _role(center, {"name": "Mine", "permissions": []}, clerk.token)
        assert (response.status_code, response.json()["error"]["code"]) == (403, "forbidden")
        assert "roles.manage" in response.json()["error"]["message"]
        assert (await center.http.get("/api/v1/roles", headers=caller_h)).status_code == 403
        refusals = await _entries(center, "forbidden")
        assert [(e["actor_role"], e["detail"]["attempted"]) for e in refusals] == [
            ("Directory clerk", "role.create"),
            ("Caller", "role.list"),
        ]

        # contacts.view_unmasked from a custom role: the number in full; without it: masked
        def shown(token: str) -> Any:
            return center.http.get(f"/api/v1/customers/{visitor.customer_id}", headers=center.auth(token))

        full, masked = (await shown(caller.token)).json(), (await shown(plain.token)).json()
        assert (full["phone"], full["contact_details_masked"]) == (phone, False)
        assert masked["contact_details_masked"] is True and masked["phone"] != phone
        assert (await shown(clerk.token)).json()["contact_details_masked"] is True


async def test_nobody_grants_a_permission_they_do_not_hold(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center:
        await _role(center, {"name": "Role keeper", "permissions": ["roles.manage", "directory.read", "reports.view"]})
        keeper = await center.add_agent("Kim", role="Role keeper")
        response = await _role(center, {"name": "Climber", "permissions": ["audit.read"]}, keeper.token)
        assert (response.status_code, response.json()["error"]["code"]) == (403, "permission_not_held")
        response = await _role(center, {"name": "Reader", "permissions": ["reports.view"]}, keeper.token)
        assert response.status_code == 201
        # an admin's role with more in it: the keeper may take away, never add
        wide = (await _role(center, {"name": "Wide", "permissions": ["audit.read", "reports.view"]})).json()
        h = center.auth(keeper.token)
        response = await center.http.patch(
            f"/api/v1/roles/{wide['id']}", json={"permissions": ["audit.read"]}, headers=h
        )
        assert response.status_code == 200
        response = await center.http.patch(
            f"/api/v1/roles/{wide['id']}", json={"permissions": ["audit.read", "queues.manage"]}, headers=h
        )
        assert response.json()["error"]["code"] == "permission_not_held"


async def test_giving_a_role_follows_the_grant_rule(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center:
        keeper_permissions = ["directory.manage", "directory.read", "conversations.handle"]
        await _role(center, {"name": "Directory keeper", "permissions": keeper_permissions})
        keeper = await center.add_agent("Dana", role="Directory keeper")
        h = center.auth(keeper.token)

        def body(role: str) -> dict[str, Any]:
            return {
                "email": f"{uuid.uuid4().hex[:8]}@x.example",
                "display_name": "New",
                "password": PASSWORD,
                "role": role,
            }

        # creating: a role within what the giver holds is given; a wider one is refused, nothing is created
        created = await center.http.post("/api/v1/agents", json=body(AGENT), headers=h)
        assert created.status_code == 201, created.text
        before = len((await center.http.get("/api/v1/agents", headers=h)).json()["agents"])
        for wider in (SUPERVISOR, ADMIN):
            refused = await center.http.post("/api/v1/agents", json=body(wider), headers=h)
            assert (refused.status_code, refused.json()["error"]["code"]) == (403, "permission_not_held")
        assert len((await center.http.get("/api/v1/agents", headers=h)).json()["agents"]) == before
        # changing: the same rule; the agent keeps its role
        agent_id = created.json()["id"]
        refused = await center.http.patch(f"/api/v1/agents/{agent_id}", json={"role": SUPERVISOR}, headers=h)
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "permission_not_held")
        assert (await center.http.get(f"/api/v1/agents/{agent_id}", headers=h)).json()["role"] == AGENT
        # an admin gives what the keeper may not
        given = await center.http.patch(
            f"/api/v1/agents/{agent_id}", json={"role": SUPERVISOR}, headers=center.auth(center.admin_token)
        )
        assert (given.status_code, given.json()["role"]) == (200, SUPERVISOR)
        # what the user holds already is no grant: the keeper may move them to a narrower role
        narrowed = await center.http.patch(f"/api/v1/agents/{agent_id}", json={"role": AGENT}, headers=h)
        assert (narrowed.status_code, narrowed.json()["role"]) == (200, AGENT)
        # and nobody takes a role narrower than their own
        demoted = await center.http.patch(f"/api/v1/agents/{keeper.id}", json={"role": AGENT}, headers=h)
        assert (demoted.status_code, demoted.json()["error"]["code"]) == (409, "conflict")


async def test_changing_a_roles_permissions_signs_its_holders_out_and_closes_their_sockets(
    database_dsn: str, tmp_path: Path
) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        admin = center.auth(center.admin_token)
        role = (await _role(center, {"name": "Night shift", "permissions": ["conversations.handle"]})).json()
        holder = await center.add_agent("Nina", role="Night shift")
        other = await center.add_agent("Otto")
        sockets = []
        for agent in (holder, other):
            client = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={agent.token}"))
            await client.wait_for("welcome")
            sockets.append(client)

        response = await center.http.patch(
            f"/api/v1/roles/{role['id']}", json={"permissions": ["conversations.handle", "reports.view"]}, headers=admin
        )
        assert response.status_code == 200
        assert await sockets[0].wait_closed() == 1008
        assert (await center.http.get("/api/v1/me", headers=center.auth(holder.token))).status_code == 401
        # the holder signs in again and has the new permissions
        token = await center.add_agent_session(holder)
        async with open_database(center.dsn) as database:
            user = await _authenticate(database, token)
        assert user == permissions_of("x", {"x": [Permission.CONVERSATIONS_HANDLE, Permission.REPORTS_VIEW]})
        # everyone else is untouched
        await sockets[1].round_trip()
        assert sockets[1].closed_code is None
        (update,) = await _entries(center, "role.update")
        assert update["detail"]["signed_out"] == 1
        nursery.cancel_scope.cancel()


async def _authenticate(database: Database, token: str) -> frozenset[Permission]:
    from kefu.server.auth import authenticate

    user = await authenticate(database, token)
    assert user is not None
    return user.permissions


# -- storage -------------------------------------------------------------------------------------------


async def test_validate_role_accepts_built_in_and_the_accounts_own_names(database_dsn: str) -> None:
    async with open_database(database_dsn) as database:
        mine = await create_account(
            database, name="Mine", slug=f"m-{uuid.uuid4().hex[:8]}", admin_email="a@m.example", admin_password=PASSWORD
        )
        theirs = await create_account(
            database,
            name="Theirs",
            slug=f"t-{uuid.uuid4().hex[:8]}",
            admin_email="a@t.example",
            admin_password=PASSWORD,
        )

        async def create(name: str, *permissions: Permission) -> roles.RoleAnswer:
            body = roles.RoleBody(name=name, permissions=list(permissions))
            everything = frozenset(Permission)
            return await roles.create_role(
                database,
                mine.account_id,
                body,
                actor_role="admin",
                actor_id=mine.admin_user_id,
                actor_permissions=everything,
            )

        await create("Billing", Permission.REPORTS_VIEW)
        for name in (*BUILT_IN_ROLES, "Billing"):
            assert await roles.validate_role(database, mine.account_id, name) == name
        for wrong in ("billing", "Nobody", "", None, 3, "x" * 40):
            with pytest.raises(roles.UnknownRole):
                await roles.validate_role(database, mine.account_id, wrong)
        with pytest.raises(roles.UnknownRole):  # another account's role is not ours
            await roles.validate_role(database, theirs.account_id, "Billing")
        # the limit per account
        for n in range(roles.MAX_CUSTOM_ROLES - 1):
            await create(f"r{n}")
        with pytest.raises(roles.TooManyRoles):
            await create("one more")


async def test_a_stored_permission_this_version_does_not_know_grants_nothing(database_dsn: str) -> None:
    assert roles.known_permissions(["reports.view", "teleport.use"]) == {Permission.REPORTS_VIEW}
    async with open_database(database_dsn) as database:
        account = await create_account(
            database, name="Old", slug=f"o-{uuid.uuid4().hex[:8]}", admin_email="a@o.example", admin_password=PASSWORD
        )
        await database.execute(
            "INSERT INTO roles (account_id, name, permissions) VALUES ($1, 'Legacy', $2)",
            account.account_id,
            ["reports.view", "teleport.use"],
        )
        await database.execute("UPDATE users SET role = 'Legacy' WHERE id = $1", account.admin_user_id)
        granted = await roles.permissions_of_user(database, account.account_id, account.admin_user_id)
        assert granted == {Permission.REPORTS_VIEW}


async def test_check_grantable_refuses_a_role_with_a_permission_the_granter_lacks(database_dsn: str) -> None:
    async with open_database(database_dsn) as database:
        mine, theirs = [
            await create_account(
                database,
                name=n,
                slug=f"g-{uuid.uuid4().hex[:8]}",
                admin_email=f"a@{n}.example",
                admin_password=PASSWORD,
            )
            for n in ("mine", "theirs")
        ]
        for account, name, permissions in (
            (mine, "Queue keeper", ["queues.manage", "directory.manage"]),
            (mine, "Legacy", ["queues.manage", "teleport.use"]),
            (theirs, "Auditor", ["audit.read"]),
        ):
            query = "INSERT INTO roles (account_id, name, permissions) VALUES ($1, $2, $3)"
            await database.execute(query, account.account_id, name, permissions)
        keeper = frozenset({Permission.QUEUES_MANAGE, Permission.DIRECTORY_MANAGE})

        async def grant(role: str, held: frozenset[Permission], **kw: Any) -> frozenset[Permission]:
            return await roles.check_grantable(database, mine.account_id, role, held, **kw)

        assert await grant("Queue keeper", keeper) == keeper
        assert await grant("Legacy", keeper) == {Permission.QUEUES_MANAGE}  # unknown names grant nothing
        for role in (*BUILT_IN_ROLES, "Queue keeper"):
            assert await grant(role, frozenset(Permission)) == permissions_of(role, {"Queue keeper": keeper})
        for role, lacking in (
            (ADMIN, "audit.read"),
            (SUPERVISOR, "conversations.monitor"),
            (AGENT, "conversations.handle"),
        ):
            with pytest.raises(roles.PermissionNotHeld) as refused:
                await grant(role, keeper)
            assert (refused.value.code, refused.value.status) == ("permission_not_held", 403)
            assert lacking in str(refused.value) and "queues.manage" not in str(refused.value)
        with pytest.raises(roles.PermissionNotHeld):
            await grant("Queue keeper", frozenset({Permission.QUEUES_MANAGE}))
        # what the user holds already is no grant: moving them to a narrower role is allowed
        handle = frozenset({Permission.CONVERSATIONS_HANDLE})
        assert await grant(AGENT, keeper, already_held=permissions_of(SUPERVISOR)) == handle
        for unknown in ("Auditor", "queue keeper", "Nobody"):  # another account's role is not ours
            with pytest.raises(roles.UnknownRole):
                await grant(unknown, frozenset(Permission))

        async def hold_then_widen(conn: asyncpg.Connection) -> str:
            async with conn.transaction():
                await roles.check_grantable(conn, mine.account_id, "Queue keeper", keeper)
                async with database.pool.acquire() as other:
                    await other.execute("SET lock_timeout = '50ms'")
                    try:
                        await other.execute("UPDATE roles SET permissions = '{}' WHERE name = 'Queue keeper'")
                    except asyncpg.LockNotAvailableError:
                        return "waited"
                    return "not held"

        assert await database.run(hold_then_widen) == "waited"


def test_the_permission_table_in_this_page_is_the_codes() -> None:
    """docs/security.md's table of permissions and built-in roles is exactly protocol/permissions.py's."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "security.md").read_text()
    header = "| permission | allows | " + " | ".join(BUILT_IN_ROLES) + " |"
    assert header in text
    rows = text.split(header, 1)[1].splitlines()[2 : 2 + len(Permission)]
    expected = [
        f"| `{p.name.value}` | {p.description} | "
        + " | ".join("yes" if p.name in role.permissions else "" for role in BUILT_IN_ROLES.values())
        + " |"
        for p in roles.list_permissions()
    ]
    assert rows == expected


async def test_users_may_hold_any_role_name_the_audit_log_can_record(database_dsn: str) -> None:
    """Migration 0012: `users.role` lost its CHECK of the built-in names, and keeps audit_log's
    length limit; custom role names are unique per account in any case."""
    async with open_database(database_dsn) as database:
        account = await create_account(
            database,
            name="Schema",
            slug=f"s-{uuid.uuid4().hex[:8]}",
            admin_email="a@s.example",
            admin_password=PASSWORD,
        )
        set_role = "UPDATE users SET role = $2 WHERE id = $1"
        await database.execute(set_role, account.admin_user_id, "x" * 32)
        for wrong in ("x" * 33, ""):
            with pytest.raises(asyncpg.CheckViolationError):
                await database.execute(set_role, account.admin_user_id, wrong)
        insert = "INSERT INTO roles (account_id, name) VALUES ($1, $2)"
        await database.execute(insert, account.account_id, "Night")
        with pytest.raises(asyncpg.UniqueViolationError):
            await database.execute(insert, account.account_id, "NIGHT")
