"""Roles and the permission table: read with `directory.read`, changed with `roles.manage`.

`<role>` in a path is a custom role's id, or any role's name. The rules (built-ins read-only,
names, holders, what a caller may grant, audit) are `kefu.server.roles`'.
"""

from __future__ import annotations

from typing import Any

import msgspec
from quart import Blueprint

from kefu.protocol.permissions import Permission
from kefu.server import roles
from kefu.server.api.route import Call, route
from kefu.server.roles import PermissionAnswer, RoleAnswer, RoleBody, RolePatch

bp = Blueprint("roles", __name__)
ONE = "/api/v1/roles/<role>"
ROLE_ERRORS = (400, 403, 404, 409)


class RoleList(msgspec.Struct):
    roles: list[RoleAnswer]


class PermissionList(msgspec.Struct):
    permissions: list[PermissionAnswer]


def _decode(data: bytes | str, kind: Any) -> Any:
    return roles.decode_body(data, kind)


@route(
    bp,
    "GET",
    "/api/v1/roles",
    permission=Permission.DIRECTORY_READ,
    answer=RoleList,
    tag="roles",
    summary="List the account's roles, the built-in ones first",
    target="role",
    action="role.list",
)
async def list_roles(call: Call[None, None]) -> RoleList:
    return RoleList(await roles.list_roles(call.node.database, call.user.account_id))


@route(
    bp,
    "POST",
    "/api/v1/roles",
    permission=Permission.ROLES_MANAGE,
    body=RoleBody,
    answer=RoleAnswer,
    status=201,
    tag="roles",
    summary="Create a custom role",
    target="role",
    action="role.create",
    errors=ROLE_ERRORS,
    decode_body=_decode,
)
async def create_role(call: Call[RoleBody, None]) -> RoleAnswer:
    user = call.user
    return await roles.create_role(
        call.node.database,
        user.account_id,
        call.body,
        actor_role=user.role,
        actor_id=user.user_id,
        actor_permissions=user.permissions,
    )


@route(
    bp,
    "GET",
    ONE,
    permission=Permission.DIRECTORY_READ,
    answer=RoleAnswer,
    tag="roles",
    summary="One role",
    target="role",
    action="role.read",
    errors=(404,),
)
async def get_role(call: Call[None, None], role: str) -> RoleAnswer:
    return await roles.get_role(call.node.database, call.user.account_id, role)


@route(
    bp,
    "PATCH",
    ONE,
    permission=Permission.ROLES_MANAGE,
    body=RolePatch,
    answer=RoleAnswer,
    tag="roles",
    summary="Change a custom role; a change of its permissions signs its holders out",
    target="role",
    action="role.update",
    errors=ROLE_ERRORS,
    decode_body=_decode,
)
async def update_role(call: Call[RolePatch, None], role: str) -> RoleAnswer:
    user = call.user
    change = await roles.update_role(
        call.node.database,
        user.account_id,
        role,
        call.body,
        actor_role=user.role,
        actor_id=user.user_id,
        actor_permissions=user.permissions,
    )
    # Their sessions were revoked with the change (a socket keeps the permissions of its
    # handshake): close their sockets, as for a user's own role change.
    for holder in change.signed_out:
        call.node.signed_out(holder, None)
    return change.role


@route(
    bp,
    "DELETE",
    ONE,
    permission=Permission.ROLES_MANAGE,
    status=204,
    tag="roles",
    summary="Delete a custom role nobody holds",
    target="role",
    action="role.delete",
    errors=(404, 409),
)
async def delete_role(call: Call[None, None], role: str) -> None:
    user = call.user
    await roles.delete_role(call.node.database, user.account_id, role, actor_role=user.role, actor_id=user.user_id)


@route(
    bp,
    "GET",
    "/api/v1/permissions",
    permission=Permission.DIRECTORY_READ,
    answer=PermissionList,
    tag="roles",
    summary="The permission table: every permission and what it allows",
    target="permission",
    action="permission.list",
)
async def list_permissions(call: Call[None, None]) -> PermissionList:
    return PermissionList(roles.list_permissions())
