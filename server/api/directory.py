"""The directory: departments, skills and agents (the account's users). Read with
`directory.read`, changed with `directory.manage`; every change is audited in its transaction."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from quart import Blueprint, request

from kefu.protocol.permissions import Permission
from kefu.server import audit, auth, directory, roles
from kefu.server.api.route import Call, parse_id, route
from kefu.server.directory import (
    Agent,
    AgentChange,
    AgentCreate,
    Agents,
    Departments,
    Group,
    GroupName,
    Skills,
    Unlocked,
)

bp = Blueprint("directory", __name__)
TAG = "directory"
READ = Permission.DIRECTORY_READ
MANAGE = Permission.DIRECTORY_MANAGE


def directory_auditor(user: auth.SignedInUser, target_type: str) -> directory.Audit:
    """Writes a directory change to the audit log inside the change's transaction."""

    async def write(conn: Any, action: str, target_id: Any, detail: dict[str, Any]) -> None:
        await audit.record(conn, user.account_id, user.role, user.user_id, action, target_type, target_id, detail)

    return write


# -- departments and skills: the same four routes each ------------------------------------------


def _group_routes(kind: str, plural: str, listing: type[Departments] | type[Skills]) -> None:
    one = f"/api/v1/{plural}/<group_id>"
    common: dict[str, Any] = {"tag": TAG, "target": kind}

    async def list_groups(call: Call[None, None]) -> Departments | Skills:
        groups = await directory.list_groups(call.node.database, kind, call.user.account_id)
        return listing(groups)

    async def create_group(call: Call[GroupName, None]) -> Group:
        user = call.user
        return await directory.create_group(
            call.node.database, kind, user.account_id, call.body, audit=directory_auditor(user, kind)
        )

    async def rename_group(call: Call[GroupName, None], group_id: str) -> Group:
        user, target = call.user, parse_id(group_id, kind)
        return await directory.rename_group(
            call.node.database, kind, user.account_id, target, call.body, audit=directory_auditor(user, kind)
        )

    async def delete_group(call: Call[None, None], group_id: str) -> None:
        user, target = call.user, parse_id(group_id, kind)
        await directory.delete_group(
            call.node.database, kind, user.account_id, target, audit=directory_auditor(user, kind)
        )

    for handler, name in (
        (list_groups, f"list_{plural}"),
        (create_group, f"create_{kind}"),
        (rename_group, f"rename_{kind}"),
        (delete_group, f"delete_{kind}"),
    ):
        handler.__name__ = handler.__qualname__ = name
    route(bp, "GET", f"/api/v1/{plural}", permission=READ, answer=listing, summary=f"List the {plural}", **common)(
        list_groups
    )
    route(
        bp,
        "POST",
        f"/api/v1/{plural}",
        permission=MANAGE,
        body=GroupName,
        answer=Group,
        status=201,
        summary=f"Create a {kind}",
        action=f"{kind}.create",
        errors=(400, 409),
        **common,
    )(create_group)
    route(
        bp,
        "PATCH",
        one,
        permission=MANAGE,
        body=GroupName,
        answer=Group,
        summary=f"Rename a {kind}",
        action=f"{kind}.rename",
        errors=(400, 404, 409),
        **common,
    )(rename_group)
    route(
        bp,
        "DELETE",
        one,
        permission=MANAGE,
        status=204,
        summary=f"Delete a {kind}",
        action=f"{kind}.delete",
        errors=(404, 409),
        **common,
    )(delete_group)


_group_routes("department", "departments", Departments)
_group_routes("skill", "skills", Skills)


# -- agents ---------------------------------------------------------------------------------------

AGENT = "/api/v1/agents/<agent_id>"


@route(bp, "GET", "/api/v1/agents", permission=READ, answer=Agents, tag=TAG, target="agent", summary="List the users")
async def list_agents(call: Call[None, None]) -> Agents:
    found = await directory.list_agents(call.node.database, call.user.account_id)
    return msgspec.convert({"agents": found}, Agents)


@route(
    bp,
    "POST",
    "/api/v1/agents",
    permission=MANAGE,
    body=AgentCreate,
    answer=Agent,
    status=201,
    tag=TAG,
    target="agent",
    action="agent.create",
    summary="Create a user",
    errors=(400, 404, 409),
)
async def create_agent(call: Call[AgentCreate, None]) -> dict[str, Any]:
    user = call.user
    return await directory.create_agent(
        call.node.database,
        user.account_id,
        call.body,
        acting_permissions=user.permissions,
        audit=directory_auditor(user, "agent"),
    )


async def agent_not_found(call: Call[Any, Any], attempted: str, agent_id: UUID) -> None:
    """An agent id that is not in the caller's account (another account's, or none): audited, then 404."""
    user = call.user
    await audit.record_denial(
        call.node.database,
        user.account_id,
        user.role,
        user.user_id,
        attempted,
        "agent",
        agent_id,
        {"status": 404, "method": request.method, "path": request.path},
    )


@route(bp, "GET", AGENT, permission=READ, answer=Agent, tag=TAG, target="agent", summary="One user", errors=(404,))
async def get_agent(call: Call[None, None], agent_id: str) -> dict[str, Any]:
    target = parse_id(agent_id, "agent")
    try:
        return await directory.get_agent(call.node.database, call.user.account_id, target)
    except directory.NotFound:
        await agent_not_found(call, "agent.read", target)
        raise


@route(
    bp,
    "PATCH",
    AGENT,
    permission=MANAGE,
    body=AgentChange,
    answer=Agent,
    tag=TAG,
    target="agent",
    action="agent.update",
    summary="Change a user",
    errors=(400, 404, 409),
)
async def update_agent(call: Call[AgentChange, None], agent_id: str) -> dict[str, Any]:
    user, changed = call.user, parse_id(agent_id, "agent")
    recorded: dict[str, Any] = {}
    write_audit = directory_auditor(user, "agent")

    async def audit_and_keep(conn: Any, action: str, target_id: Any, detail: dict[str, Any]) -> None:
        recorded.update(detail.get("changes", {}))
        await write_audit(conn, action, target_id, detail)

    try:
        agent = await directory.update_agent(
            call.node.database,
            user.account_id,
            changed,
            call.body,
            acting_user_id=user.user_id,
            acting_permissions=user.permissions,
            audit=audit_and_keep,
        )
    except directory.NotFound as missing:
        if str(missing) == "no such agent":  # not a department or skill named in the body
            await agent_not_found(call, "agent.update", changed)
        raise
    await _follow_change(call, changed, agent, role_changed="role" in recorded)
    return agent


async def _follow_change(call: Call[Any, Any], changed: UUID, agent: dict[str, Any], *, role_changed: bool) -> None:
    """What a change of a user means for their open sockets."""
    kefu = call.node
    if agent.get("disabled") or role_changed:
        # Their sessions were revoked (a socket carries the permissions of its handshake): close the sockets.
        kefu.signed_out(changed, None)
        return
    # Departments are read live by every check; routing reloads the profile.
    kefu.agent_changed(changed)
    if (handle := kefu.center.agent(changed)) is not None:
        # Open sockets mask texts by the permission: they follow a change at once.
        granted = await roles.permissions_of_user(kefu.database, call.user.account_id, changed) or frozenset()
        await handle.show_contact_details(Permission.CONTACTS_VIEW_UNMASKED in granted)


@route(
    bp,
    "POST",
    f"{AGENT}/unlock",
    permission=MANAGE,
    answer=Unlocked,
    tag=TAG,
    target="agent",
    action="sign_in.unlock",
    summary="Lift a user's sign-in lockout and reset its failure count (audited as sign_in.unlocked)",
    errors=(404,),
)
async def unlock_agent(call: Call[None, None], agent_id: str) -> Unlocked:
    """Lift a user's sign-in lockout (docs/security.md, "Sign-in")."""
    user, target = call.user, parse_id(agent_id, "agent")
    was_locked = await auth.unlock_user(
        call.node.database, user.account_id, target, actor_role=user.role, actor_id=user.user_id
    )
    if was_locked is None:
        raise directory.NotFound("no such agent")
    return Unlocked(target, was_locked)
