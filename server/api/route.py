"""How a REST route is declared: one decorator that is the route's only guard and its description.

Rules of a route (docs/security.md, "Who may see and do what"):

1. Every route is declared with `route(...)` and names its guard: one `Permission`, or
   `SIGNED_IN` (signing in is enough), or `PUBLIC` (no sign-in: the route authenticates its own
   callers, if any). There is no default, and `ROUTES` keeps every declaration, so the access
   matrix test finds a route added without one.
2. In order: sign-in (401 `unauthenticated`; a public route's own `authenticate`, e.g. of a
   visitor's token, runs here), the permission (403 `forbidden`, written to the audit log as
   `forbidden` with what was attempted), the ids in the path (404 `not_found` when malformed),
   the query and then the body, decoded by msgspec into the declared Structs (400
   `invalid_request`, the message naming the field, `structs.invalid_input_message`).
   Nothing of the handler runs before all of them passed.
3. The handler answers a value of the declared `answer` type (a msgspec Struct, or a plain
   value converted to it), encoded with `msgspec.json.encode`; `None` is 204; a `Response` is
   sent as it is (files, metrics). Refusals are raised as `Refused`.
4. The same declarations make the OpenAPI document (`kefu.server.openapi`).
"""

from __future__ import annotations

import enum
import functools
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar
from uuid import UUID

import msgspec
from quart import Blueprint, Response, current_app, request

from kefu.protocol.permissions import Permission
from kefu.server import audit, auth
from kefu.server.api.structs import invalid_input_message
from kefu.server.database import Database
from kefu.server.directory import InvalidInput

if TYPE_CHECKING:
    from kefu.server.node import Node

B = TypeVar("B")
Q = TypeVar("Q")


class Open(enum.Enum):
    """The guards that are not a permission."""

    PUBLIC = "public"
    """No sign-in: sign-in itself, the visitor widget's routes, health, metrics and the documents."""
    SIGNED_IN = "signed_in"
    """Any signed-in user of the account, whatever their permissions."""


PUBLIC: Final = Open.PUBLIC
SIGNED_IN: Final = Open.SIGNED_IN
Guard = Permission | Open

JSON: Final = "application/json"


class Refused(Exception):
    """An answer other than the route's success: `status`, error `code` and `message`."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class WithStatus:
    """An answer with another status than the route's declared one (a 503 readiness)."""

    value: Any
    status: int


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """One declared route: what guards it, what it reads and answers, and how it is described."""

    method: str
    rule: str
    """The Quart rule, e.g. `/api/v1/queues/<queue_id>`."""
    guard: Guard
    endpoint: str
    summary: str
    tag: str
    body: type | None = None
    query: type | None = None
    answer: Any = None
    status: int = 200
    errors: tuple[int, ...] = ()
    target: str = "resource"
    """What the audit log calls this route's resource when it refuses someone (`target_type`)."""
    action: str = ""
    """What an audited refusal says was attempted (`detail.attempted`)."""
    security: tuple[str, ...] | None = None
    """OpenAPI security schemes a PUBLIC route accepts (`visitorToken`, `bearerAuth`); None: none."""
    responses: Mapping[str, Any] = field(default_factory=dict)
    """Extra OpenAPI answers (files, Retry-After), merged over the generated ones."""
    request_body: Mapping[str, Any] | None = None
    """An OpenAPI request body for a non-JSON body (uploads)."""
    description: str | None = None

    @property
    def path(self) -> str:
        """The OpenAPI path, e.g. `/api/v1/queues/{queue_id}`."""
        return self.rule.replace("<", "{").replace(">", "}")

    @property
    def path_parameters(self) -> list[str]:
        return re.findall(r"<(?:[a-z]+:)?(\w+)>", self.rule)


ROUTES: list[RouteSpec] = []
"""Every declared route, in declaration order (rule 1)."""


@dataclass(frozen=True, slots=True)
class Call(Generic[B, Q]):
    """What a signed-in route's handler gets: the node, who calls, and the decoded body and query."""

    node: Node
    user: auth.SignedInUser
    body: B
    query: Q


@dataclass(frozen=True, slots=True)
class PublicCall(Generic[B, Q]):
    """What a public route's handler gets; `caller` is what the route's own `authenticate` found."""

    node: Node
    body: B
    query: Q
    caller: Any = None


def node() -> Node:
    found: Node = current_app.extensions["kefu.node"]
    return found


def gate() -> auth.Gate:
    """The limits of requests nobody has authenticated yet (`auth.Gate`), one per app."""
    found: auth.Gate = current_app.extensions["kefu.gate"]
    return found


def bearer_token() -> str | None:
    """The token of the request's `Authorization: Bearer <token>` header, or None."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def client_address() -> str:
    """The address of the request's peer (what the per-address limits count)."""
    return request.remote_addr or "unknown"


def error_response(code: str, message: str, status: int, *, retry_after: int | None = None) -> Response:
    response = Response(msgspec.json.encode({"error": {"code": code, "message": message}}), status=status)
    response.content_type = JSON
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    if code == "unauthenticated":
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def unauthenticated() -> Refused:
    return Refused(401, "unauthenticated", "a valid session token is required")


async def current_user(database: Database) -> auth.SignedInUser | None:
    token = bearer_token()
    return await auth.authenticate(database, token) if token is not None else None


async def _signed_in(spec: RouteSpec, kefu: Node, arguments: Mapping[str, Any]) -> auth.SignedInUser:
    """Rule 2's first two steps for a guarded route."""
    user = await current_user(kefu.database)
    if user is None:
        raise unauthenticated()
    if isinstance(spec.guard, Permission) and not user.may(spec.guard):
        raise await refuse(kefu, user, spec.action, spec.target, _first_id(arguments), needs=spec.guard)
    return user


async def refuse(
    kefu: Node,
    user: auth.SignedInUser,
    attempted: str,
    target_type: str,
    target_id: Any = None,
    *,
    needs: Permission | None = None,
) -> Refused:
    """The 403 `forbidden` to raise, written to the audit log first; `needs`: the permission the
    user lacks, named in the message."""
    await audit.record(
        kefu.database,
        user.account_id,
        user.role,
        user.user_id,
        "forbidden",
        target_type,
        target_id,
        {"attempted": attempted, "method": request.method, "path": request.path},
    )
    if needs is not None:
        return Refused(403, "forbidden", f"this needs the permission {needs}")
    return Refused(403, "forbidden", "your role may not do this")


def _first_id(arguments: Mapping[str, Any]) -> UUID | None:
    for value in arguments.values():
        try:
            return UUID(str(value))
        except ValueError:
            return None
    return None


def decode_json(data: bytes | str, kind: type[B]) -> B:
    """A request body as `kind`, or `InvalidInput` naming the faulty field."""
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as error:
        raise InvalidInput(invalid_input_message(kind, str(error))) from None
    except msgspec.DecodeError:
        raise InvalidInput("expected a JSON object") from None


def decode_query(args: Mapping[str, str], kind: type[Q]) -> Q:
    """Query parameters as `kind` (numbers from their text), or `InvalidInput` naming the parameter."""
    try:
        return msgspec.convert(dict(args), type=kind, strict=False)
    except msgspec.ValidationError as error:
        message = invalid_input_message(kind, str(error)).removesuffix(" or null")  # absent, never null
        raise InvalidInput(message.replace("unknown field", "unknown parameter")) from None


def encode(spec: RouteSpec, value: Any) -> Response:
    """Rule 3: the handler's answer as the response."""
    if isinstance(value, Response):
        return value
    if value is None:
        return Response("", status=204)
    status = spec.status
    if isinstance(value, WithStatus):
        value, status = value.value, value.status
    if spec.answer is not None and not isinstance(value, msgspec.Struct):
        value = msgspec.convert(value, type=spec.answer)
    response = Response(msgspec.json.encode(value), status=status)
    response.content_type = JSON
    return response


Handler = Callable[..., Awaitable[Any]]


def route(
    blueprint: Blueprint,
    method: str,
    rule: str,
    *,
    permission: Guard,
    summary: str,
    tag: str,
    body: type | None = None,
    query: type | None = None,
    answer: Any = None,
    status: int = 200,
    errors: tuple[int, ...] = (),
    target: str = "resource",
    action: str = "",
    security: tuple[str, ...] | None = None,
    responses: Mapping[str, Any] | None = None,
    request_body: Mapping[str, Any] | None = None,
    description: str | None = None,
    authenticate: Callable[[Node], Awaitable[Any]] | None = None,
    decode_body: Callable[[bytes | str, Any], Any] | None = None,
) -> Callable[[Handler], Handler]:
    """Declare a route of `blueprint` (see the module's rules). `rule` is the full path.

    A PUBLIC route whose callers hold another kind of token (a visitor's) names the function
    that finds them (or raises the 401) as `authenticate`: it runs where the sign-in would.
    A body whose refusals have their own error codes (a role's `unknown_permission`) names its
    decoder as `decode_body(data, body)`; it runs where `decode_json` would."""

    def declare(handler: Handler) -> Handler:
        spec = RouteSpec(
            method=method,
            rule=rule,
            guard=permission,
            endpoint=f"{blueprint.name}.{handler.__name__}",
            summary=summary,
            tag=tag,
            body=body,
            query=query,
            answer=answer,
            status=status,
            errors=errors,
            target=target,
            action=action or f"{target}.{handler.__name__}",
            security=security,
            responses=dict(responses or {}),
            request_body=request_body,
            description=description or handler.__doc__,
        )
        ROUTES.append(spec)

        @functools.wraps(handler)
        async def guarded(**arguments: Any) -> Response:
            kefu = node()
            user = None if permission is PUBLIC else await _signed_in(spec, kefu, arguments)
            caller = await authenticate(kefu) if authenticate is not None else None
            for name, value in arguments.items():
                if name.endswith("_id"):  # ids in the path are checked before the body: 404
                    parse_id(value, spec.target.replace("_", " "))
            parsed_query = decode_query(request.args, query) if query is not None else None
            parsed_body = (decode_body or decode_json)(await request.get_data(), body) if body is not None else None
            if user is None:
                value = await handler(PublicCall(kefu, parsed_body, parsed_query, caller), **arguments)
            else:
                value = await handler(Call(kefu, user, parsed_body, parsed_query), **arguments)
            return encode(spec, value)

        blueprint.add_url_rule(rule, handler.__name__, guarded, methods=[method])
        return handler

    return declare


def auditor(user: auth.SignedInUser, action: str, target_type: str) -> Callable[..., Awaitable[None]]:
    """An audit callback run inside the change's own transaction: `write(conn, target, changes=None)`,
    `target` a Struct or a mapping with `id` and `name` (or `shortcut`)."""

    async def write(conn: Any, target: Any, changes: Any = None) -> None:
        fields = msgspec.to_builtins(target) if isinstance(target, msgspec.Struct) else dict(target)
        detail: dict[str, Any] = {"name": fields.get("name") or fields.get("shortcut")}
        if changes is not None:
            detail["changes"] = changes
        await audit.record(conn, user.account_id, user.role, user.user_id, action, target_type, fields["id"], detail)

    return write


def parse_id(value: str, what: str) -> UUID:
    """An id from a URL: anything malformed is simply not found."""
    try:
        return UUID(value)
    except ValueError:
        raise Refused(404, "not_found", f"no such {what}") from None
