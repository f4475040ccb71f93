"""REST for roles and the permission table: `/api/v1/roles` and `/api/v1/permissions`.

| route                              | permission         | body        | answer                          |
| ---------------------------------- | ------------------ | ----------- | ------------------------------- |
| GET    /api/v1/roles               | `directory.read`   |             | `{"roles": [RoleAnswer]}`       |
| POST   /api/v1/roles               | `roles.manage`     | `RoleBody`  | 201 `RoleAnswer`                |
| GET    /api/v1/roles/<role>        | `directory.read`   |             | `RoleAnswer`                    |
| PATCH  /api/v1/roles/<role>        | `roles.manage`     | `RolePatch` | `RoleAnswer`                    |
| DELETE /api/v1/roles/<role>        | `roles.manage`     |             | 204                             |
| GET    /api/v1/permissions         | `directory.read`   |             | `{"permissions": [Permission…]}`|

`<role>` is a custom role's id, or any role's name. The rules (built-ins read-only, names,
holders, audit) are `server/roles.py`'s. Each route declares its one permission in `ROUTES`;
`_signed_in_with` is a small local guard until the shared route decorator takes these over.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import msgspec
from quart import Blueprint, Response, current_app, request

from kefu.protocol.permissions import Permission
from kefu.server import audit, auth, roles
from kefu.server.roles import PermissionAnswer, RoleAnswer, RoleBody, RolePatch

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from kefu.server.node import Node

__all__ = ["ROUTES", "bp", "openapi_paths", "register"]

NODE_KEY: Final = "kefu.node"
bp = Blueprint("roles", __name__)
Answer = tuple[Response, int]


class RoleList(msgspec.Struct):
    roles: list[RoleAnswer]


class PermissionList(msgspec.Struct):
    permissions: list[PermissionAnswer]


@dataclass(frozen=True, slots=True)
class Route:
    """One route's declaration: what it needs and what it takes and answers (for OpenAPI)."""

    method: str
    path: str
    permission: Permission
    summary: str
    body: type[msgspec.Struct] | None
    answer: type[msgspec.Struct] | None
    status: int = 200


ROUTES: Final = (
    Route("get", "/api/v1/roles", Permission.DIRECTORY_READ, "List the account's roles", None, RoleList),
    Route("post", "/api/v1/roles", Permission.ROLES_MANAGE, "Create a custom role", RoleBody, RoleAnswer, 201),
    Route("get", "/api/v1/roles/<role>", Permission.DIRECTORY_READ, "One role", None, RoleAnswer),
    Route("patch", "/api/v1/roles/<role>", Permission.ROLES_MANAGE, "Change a custom role", RolePatch, RoleAnswer),
    Route(
        "delete", "/api/v1/roles/<role>", Permission.ROLES_MANAGE, "Delete a custom role nobody holds", None, None, 204
    ),
    Route("get", "/api/v1/permissions", Permission.DIRECTORY_READ, "The permission table", None, PermissionList),
)
_PERMISSION = {(r.method.upper(), r.path): r.permission for r in ROUTES}


def register(app: QuartTrio, node: Node) -> None:
    """Serve the routes of this module on `app` (one line in `create_app`)."""
    app.extensions[NODE_KEY] = node
    app.register_blueprint(bp)


def _node() -> Node:
    node: Node = current_app.extensions[NODE_KEY]
    return node


def _json(value: Any, status: int = 200) -> Answer:
    return Response(msgspec.json.encode(value), content_type="application/json"), status


def _error(code: str, message: str, status: int) -> Answer:
    return _json({"error": {"code": code, "message": message}}, status)


def _bearer_token() -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def _signed_in_with(permission: Permission) -> auth.SignedInUser | Answer:
    """The caller when they hold `permission`; else 401, or 403 `forbidden` (audited)."""
    token = _bearer_token()
    user = await auth.authenticate(_node().database, token) if token is not None else None
    if user is None:
        response, status = _error("unauthenticated", "a valid session token is required", 401)
        response.headers["WWW-Authenticate"] = "Bearer"
        return response, status
    if not user.may(permission):
        detail = {"attempted": str(permission), "method": request.method, "path": request.path}
        await audit.record(
            _node().database, user.account_id, user.role, user.user_id, "forbidden", "role", None, detail
        )
        return _error("forbidden", f"this needs the permission {permission}", 403)
    return user


Handler = Callable[[auth.SignedInUser, dict[str, Any]], Awaitable[Answer]]


def _guarded(handler: Handler) -> Callable[..., Awaitable[Answer]]:
    """Look up the route's declared permission in `ROUTES` and check it before `handler`."""

    async def guarded(**arguments: Any) -> Answer:
        rule = request.url_rule
        assert rule is not None
        method = "GET" if request.method == "HEAD" else request.method
        user = await _signed_in_with(_PERMISSION[(method, rule.rule)])
        if not isinstance(user, auth.SignedInUser):
            return user
        return await handler(user, arguments)

    guarded.__name__ = guarded.__qualname__ = handler.__name__
    return guarded


@bp.app_errorhandler(roles.RoleError)
async def _refused(error: roles.RoleError) -> Answer:
    return _error(error.code, str(error), error.status)


async def _body(kind: type[RoleBody] | type[RolePatch]) -> Any:
    return roles.decode_body(await request.get_data(), kind)


# -- the routes -----------------------------------------------------------------------------------


@bp.get("/api/v1/roles")
@_guarded
async def list_roles(user: auth.SignedInUser, _: dict[str, Any]) -> Answer:
    return _json(RoleList(await roles.list_roles(_node().database, user.account_id)))


@bp.post("/api/v1/roles")
@_guarded
async def create_role(user: auth.SignedInUser, _: dict[str, Any]) -> Answer:
    body = await _body(RoleBody)
    created = await roles.create_role(
        _node().database,
        user.account_id,
        body,
        actor_role=user.role,
        actor_id=user.user_id,
        actor_permissions=user.permissions,
    )
    return _json(created, 201)


@bp.get("/api/v1/roles/<role>")
@_guarded
async def get_role(user: auth.SignedInUser, arguments: dict[str, Any]) -> Answer:
    return _json(await roles.get_role(_node().database, user.account_id, arguments["role"]))


@bp.patch("/api/v1/roles/<role>")
@_guarded
async def update_role(user: auth.SignedInUser, arguments: dict[str, Any]) -> Answer:
    patch = await _body(RolePatch)
    node = _node()
    change = await roles.update_role(
        node.database,
        user.account_id,
        arguments["role"],
        patch,
        actor_role=user.role,
        actor_id=user.user_id,
        actor_permissions=user.permissions,
    )
    # Their sessions were revoked with the change (a socket keeps the permissions of its
    # handshake): close their sockets, as for a user's own role change.
    for holder in change.signed_out:
        node.signed_out(holder, None)
    return _json(change.role)


@bp.delete("/api/v1/roles/<role>")
@_guarded
async def delete_role(user: auth.SignedInUser, arguments: dict[str, Any]) -> Answer:
    await roles.delete_role(
        _node().database, user.account_id, arguments["role"], actor_role=user.role, actor_id=user.user_id
    )
    return Response("", status=204), 204


@bp.get("/api/v1/permissions")
@_guarded
async def list_permissions(user: auth.SignedInUser, _: dict[str, Any]) -> Answer:
    return _json(PermissionList(roles.list_permissions()))


# -- OpenAPI --------------------------------------------------------------------------------------


def _inline(schema: Any, definitions: dict[str, Any]) -> Any:
    """`schema` with every `$ref` to `definitions` replaced by its target (none is recursive)."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return _inline(definitions[schema["$ref"].rsplit("/", 1)[-1]], definitions)
        return {key: _inline(value, definitions) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_inline(value, definitions) for value in schema]
    return schema


def _schema(kind: type[msgspec.Struct]) -> dict[str, Any]:
    generated = msgspec.json.schema(kind)
    inlined: dict[str, Any] = _inline(generated, generated.get("$defs", {}))
    inlined.pop("$defs", None)
    return inlined


_ERRORS: Final = {
    "400": "`invalid_request` (malformed body) or `unknown_permission`",
    "401": "no valid token",
    "403": "`forbidden`: the caller lacks the route's permission; `permission_not_held`: a role may gain only"
    " permissions the caller holds",
    "404": "no such role in the caller's account",
    "409": "`role_built_in` (built-in roles are read-only, their names reserved), `role_in_use`, `role_name_taken`,"
    " `too_many_roles`",
}


def _operation(route: Route) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": route.summary}
    if route.answer is not None:
        ok["content"] = {"application/json": {"schema": _schema(route.answer)}}
    operation: dict[str, Any] = {
        "summary": f"{route.summary} (`{route.permission}`)",
        "tags": ["roles"],
        "x-permission": str(route.permission),
        "responses": {str(route.status): ok, **{k: {"description": v} for k, v in _ERRORS.items()}},
    }
    if route.body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": _schema(route.body)}}}
    if "<role>" in route.path:
        operation["parameters"] = [
            {
                "name": "role",
                "in": "path",
                "required": True,
                "description": "a custom role's id, or any role's name",
                "schema": {"type": "string"},
            }
        ]
    return operation


def openapi_paths() -> dict[str, Any]:
    """The OpenAPI paths of `ROUTES`, generated from their declarations."""
    paths: dict[str, Any] = {}
    for route in ROUTES:
        path = route.path.replace("<", "{").replace(">", "}")
        paths.setdefault(path, {})[route.method] = _operation(route)
    return paths
