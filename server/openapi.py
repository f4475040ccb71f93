"""The OpenAPI 3.1 description of every /api route, served at GET /api/v1/openapi.json.

A test walks the app's URL map and fails when a route or method is missing here.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from kefu.protocol.server import CONVERSATION_STATES
from kefu.server import queues
from kefu.server.api import roles as roles_api

JSON = "application/json"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _string(max_length: int | None = None, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", **extra}
    if max_length is not None:
        schema.update(minLength=1, maxLength=max_length)
    return schema


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


UUID_STRING = {"type": "string", "format": "uuid"}
TIMESTAMP = {"type": "string", "format": "date-time"}


def _integer(low: int, high: int) -> dict[str, Any]:
    return {"type": "integer", "minimum": low, "maximum": high}


def _object(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, **extra}
    if required:
        schema["required"] = required
    return schema


SCHEMAS: dict[str, Any] = {
    "Error": _object(
        {"error": _object({"code": {"type": "string"}, "message": {"type": "string"}}, ["code", "message"])},
        ["error"],
    ),
    "User": _object(
        {
            "id": UUID_STRING,
            "email": {"type": "string"},
            "display_name": {"type": "string"},
            "role": {"enum": ["admin", "supervisor", "agent"]},
            "account_id": UUID_STRING,
        },
        ["id", "email", "display_name", "role", "account_id"],
    ),
    "Group": _object({"id": UUID_STRING, "name": {"type": "string"}, "created_at": TIMESTAMP}, ["id", "name"]),
    "GroupInput": _object({"name": _string(100)}, ["name"]),
    "Agent": _object(
        {
            "id": UUID_STRING,
            "email": {"type": "string"},
            "display_name": {"type": "string"},
            "role": {"enum": ["admin", "supervisor", "agent"]},
            "max_concurrent_conversations": _integer(1, 100),
            "disabled": {"type": "boolean"},
            "may_view_contact_details": {
                "type": "boolean",
                "description": "sees customers' phone numbers and e-mail addresses in full (admins and"
                " supervisors always do; others see them masked)",
            },
            "created_at": TIMESTAMP,
            "departments": {"type": "array", "items": _object({"id": UUID_STRING, "name": {"type": "string"}})},
            "skills": {
                "type": "array",
                "items": _object({"id": UUID_STRING, "name": {"type": "string"}, "level": _integer(1, 10)}),
            },
        }
    ),
    "SkillLevel": _object({"id": UUID_STRING, "level": _integer(1, 10)}, ["id", "level"]),
    "AgentCreate": _object(
        {
            "email": _string(320, format="email"),
            "display_name": _string(200),
            "password": {"type": "string", "minLength": 10, "maxLength": 1024},
            "role": {"enum": ["admin", "supervisor", "agent"], "default": "agent"},
            "max_concurrent_conversations": {**_integer(1, 100), "default": 5},
            "may_view_contact_details": {"type": "boolean", "default": False},
            "departments": {"type": "array", "items": UUID_STRING},
            "skills": {"type": "array", "items": _ref("SkillLevel")},
        },
        ["email", "display_name", "password"],
    ),
    "AgentUpdate": _object(
        {
            "display_name": _string(200),
            "role": {"enum": ["admin", "supervisor", "agent"]},
            "max_concurrent_conversations": _integer(1, 100),
            "disabled": {"type": "boolean"},
            "may_view_contact_details": {"type": "boolean"},
            "departments": {"type": "array", "items": UUID_STRING},
            "skills": {"type": "array", "items": _ref("SkillLevel")},
        },
        additionalProperties=False,
    ),
    "Visitor": _object(
        {"customer_id": UUID_STRING, "display_name": _nullable(_string(200)), "account_id": UUID_STRING},
        ["customer_id", "display_name", "account_id"],
    ),
    "Customer": _object(
        {
            "id": UUID_STRING,
            "display_name": _nullable(_string(200)),
            "level": _integer(0, 10),
            "channel": {"type": "string"},
            "phone": _nullable(
                _string(description="international format (+86 138 1234 5678), or masked (138****5678)")
            ),
            "email": _nullable(_string(description="in full, or masked (a***@example.com)")),
            "contact_details_masked": {
                "type": "boolean",
                "description": "phone and email are masked: the caller lacks may_view_contact_details",
            },
            "created_at": TIMESTAMP,
            "last_seen_at": _nullable(TIMESTAMP),
            "erased": {"type": "boolean", "description": "the customer's personal data was erased"},
        }
    ),
    "CustomerErased": _object(
        {
            "customer_id": UUID_STRING,
            "conversations": {"type": "integer", "minimum": 0},
            "messages_redacted": {"type": "integer", "minimum": 0},
            "attachments_deleted": {"type": "integer", "minimum": 0},
            "files_removed": {"type": "integer", "minimum": 0},
        }
    ),
    "ConversationSummary": _object(
        {
            "id": UUID_STRING,
            "status": {
                "type": "string",
                "enum": ["queued", "offered", "assigned", "transferring", "wrap_up", "closed"],
            },
            "channel": {"type": "string"},
            "topic": _nullable(_string(200)),
            "created_at": TIMESTAMP,
            "closed_at": _nullable(TIMESTAMP),
            "last_seq": {"type": "integer", "minimum": 0},
            "agent_id": _nullable(UUID_STRING),
            "agent_name": _nullable(_string(200)),
            "wrap_up_code": _nullable(_string(200)),
        }
    ),
    "OpenConversation": _object(
        {
            "id": UUID_STRING,
            "status": {"type": "string", "enum": sorted(CONVERSATION_STATES)},
            "channel": {"type": "string"},
            "topic": _nullable(_string(200)),
            "created_at": TIMESTAMP,
            "customer_name": _nullable(_string(200)),
            "agent_id": _nullable(UUID_STRING),
            "agent_name": _nullable(_string(200)),
            "queue_name": _nullable(_string(100)),
            "department_name": _nullable(_string(100)),
        }
    ),
    "CustomerUpdate": _object(
        {
            "display_name": _nullable(_string(200)),
            "level": _integer(0, 10),
            "phone": _nullable(_string(40, description="any usual writing; stored as E.164, encrypted")),
            "email": _nullable(_string(254, format="email")),
        },
        additionalProperties=False,
    ),
    "Queue": _object(
        {
            "id": UUID_STRING,
            "name": _string(100),
            "department_id": _nullable(UUID_STRING),
            "skill_id": _nullable(UUID_STRING),
            "strategy": {"enum": list(queues.STRATEGIES)},
            "min_skill_level": _integer(1, 10),
            "widen_after_seconds": _integer(1, 3600),
            "offer_timeout_seconds": _integer(1, 600),
            "auto_accept": {"type": "boolean"},
            "overflow_after_seconds": _nullable(_integer(1, 86400)),
            "overflow_queue_id": _nullable(UUID_STRING),
            "no_agent_message": _nullable(_string(2000)),
            "is_default": {"type": "boolean"},
            "created_at": TIMESTAMP,
        }
    ),
    "BusinessHoursInput": _object(
        {
            "timezone": _string(64, description="an IANA time zone name, e.g. Asia/Shanghai"),
            "schedule": _object(
                {
                    day: {
                        "type": "array",
                        "maxItems": 10,
                        "items": {"type": "string", "pattern": "^\\d{2}:\\d{2}-\\d{2}:\\d{2}$"},
                    }
                    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
                }
            ),
        },
        ["timezone", "schedule"],
    ),
    "BusinessHours": _object(
        {
            "timezone": {"type": "string"},
            "schedule": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
            "updated_at": _nullable(TIMESTAMP),
        },
        ["timezone", "schedule", "updated_at"],
    ),
    "CannedResponse": _object(
        {
            "id": UUID_STRING,
            "scope": {"enum": ["account", "personal"]},
            "owner_user_id": _nullable(UUID_STRING),
            "shortcut": _string(50),
            "title": _string(200),
            "body": _string(8000),
            "created_at": TIMESTAMP,
            "updated_at": TIMESTAMP,
        }
    ),
    "Attachment": _object(
        {
            "id": UUID_STRING,
            "kind": {"enum": ["image", "voice", "video", "file"]},
            "content_type": {"type": "string"},
            "filename": _string(255),
            "size_bytes": {"type": "integer", "minimum": 1},
        }
    ),
}

SCHEMAS["AuditEntry"] = _object(
    {
        "id": {"type": "integer"},
        "at": TIMESTAMP,
        "actor_role": {"type": "string"},
        "actor_id": _nullable({"type": "string"}),
        "action": {"type": "string"},
        "target_type": {"type": "string"},
        "target_id": _nullable({"type": "string"}),
        "outcome": {"enum": ["done", "denied"]},
        "detail": {"type": "object"},
    },
    ["id", "at", "actor_role", "actor_id", "action", "target_type", "target_id", "outcome", "detail"],
)
SCHEMAS["AuditLogPage"] = _object(
    {
        "entries": {"type": "array", "items": _ref("AuditEntry")},
        "next_before": _nullable({"type": "integer"}),
    },
    ["entries", "next_before"],
    description="next_before is null on the last page; pass it as `before` for the next one.",
)

_queue_input = {k: v for k, v in SCHEMAS["Queue"]["properties"].items() if k not in ("id", "created_at")}
SCHEMAS["QueueCreate"] = _object(
    {**_queue_input, "strategy": {"enum": list(queues.STRATEGIES), "default": "least_load"}},
    ["name"],
    additionalProperties=False,
    description="skill_id is required when strategy is skills; is_default clears it on the account's other queues.",
)
SCHEMAS["QueueUpdate"] = _object(_queue_input, additionalProperties=False)


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref("Error")}}}


RETRY_AFTER = {
    "Retry-After": {
        "description": "whole seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def _retry_later(description: str) -> dict[str, Any]:
    """An error answer that carries `Retry-After` (429, and 503 `busy` of sign-in)."""
    return {**_error(description), "headers": RETRY_AFTER}


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    if schema is None:
        return {"description": description}
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _body(schema: dict[str, Any], content_type: str = JSON) -> dict[str, Any]:
    return {"required": True, "content": {content_type: {"schema": schema}}}


def _path_id(name: str, what: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": f"the {what}'s id", "schema": UUID_STRING}


def _op(
    summary: str,
    responses: dict[str, Any],
    *,
    tag: str,
    body: dict[str, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    security: list[dict[str, Any]] | None = None,
    errors: tuple[int, ...] = (),
) -> dict[str, Any]:
    standard = {
        400: "malformed input; the message names the field",
        401: "no valid token",
        403: "the caller's role may not do this",
        404: "no such resource in the caller's account",
        409: "clashes with an existing row",
        413: "body too large",
        415: "content type not accepted, or the content is not of that type",
        429: "`rate_limited`: too many requests from this client address; wait `Retry-After` seconds",
        503: "the database cannot be reached",
    }
    operation: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": dict(responses)}
    for status in (*errors, 503):
        answer = _retry_later(standard[status]) if status == 429 else _error(standard[status])
        operation["responses"].setdefault(str(status), answer)
    if body is not None:
        operation["requestBody"] = body
    if parameters:
        operation["parameters"] = parameters
    if security is not None:
        operation["security"] = security
    return operation


def _group_paths(plural: str, kind: str) -> dict[str, Any]:
    listing = _object({plural: {"type": "array", "items": _ref("Group")}}, [plural])
    one = [_path_id("group_id", kind)]
    return {
        f"/api/v1/{plural}": {
            "get": _op(
                f"List the {plural} (admin, supervisor)",
                {"200": _ok(plural, listing)},
                tag="directory",
                errors=(401, 403),
            ),
            "post": _op(
                f"Create a {kind} (admin)",
                {"201": _ok(f"the {kind}", _ref("Group"))},
                tag="directory",
                body=_body(_ref("GroupInput")),
                errors=(400, 401, 403, 409),
            ),
        },
        f"/api/v1/{plural}/{{group_id}}": {
            "patch": _op(
                f"Rename a {kind} (admin)",
                {"200": _ok(f"the {kind}", _ref("Group"))},
                tag="directory",
                body=_body(_ref("GroupInput")),
                parameters=one,
                errors=(400, 401, 403, 404, 409),
            ),
            "delete": _op(
                f"Delete a {kind} (admin)",
                {"204": _ok("deleted")},
                tag="directory",
                parameters=one,
                errors=(401, 403, 404, 409),
            ),
        },
    }


VISITOR = [{"visitorToken": []}]
PUBLIC: list[dict[str, Any]] = []


def _paths() -> dict[str, Any]:
    queue_id = [_path_id("queue_id", "queue")]
    canned_id = [_path_id("canned_id", "canned response")]
    customer_id = [_path_id("customer_id", "customer")]
    attachment_id = [_path_id("attachment_id", "attachment")]
    agent_id = [_path_id("agent_id", "agent")]
    sign_in_body = _object(
        {"account": _string(1024), "email": _string(1024), "password": _string(1024)},
        ["account", "email", "password"],
    )
    signed_in = _object(
        {"token": {"type": "string"}, "expires_at": TIMESTAMP, "user": _ref("User")}, ["token", "expires_at", "user"]
    )
    canned_create = _object(
        {
            "scope": {"enum": ["account", "personal"]},
            "shortcut": _string(50),
            "title": _string(200),
            "body": _string(8000),
        },
        ["scope", "shortcut", "title", "body"],
        additionalProperties=False,
    )
    canned_update = _object(
        {"shortcut": _string(50), "title": _string(200), "body": _string(8000)}, additionalProperties=False
    )
    upload_types = {t: {"schema": {"type": "string", "contentMediaType": t}} for t in ("image/png", "application/pdf")}
    return {
        "/api/v1/auth/sign-in": {
            "post": _op(
                "Sign in with account, e-mail and password",
                {
                    "200": _ok("a session", signed_in),
                    "429": _retry_later(
                        "`rate_limited`: too many attempts from this client address or for this account and"
                        " e-mail; `locked_out`: too many wrong passwords in a row (`kefu account unlock` lifts it)."
                        " No password was checked"
                    ),
                    "503": _error(
                        "`busy`: too many sign-ins wait for a password hash (with `Retry-After`); `unavailable`:"
                        " the database cannot be reached"
                    ),
                },
                tag="auth",
                body=_body(sign_in_body),
                security=PUBLIC,
                errors=(400, 401),
            ),
        },
        "/api/v1/auth/sign-out": {
            "post": _op("Revoke the bearer token", {"204": _ok("signed out")}, tag="auth", errors=(401,)),
        },
        "/api/v1/me": {
            "get": _op("The signed-in user", {"200": _ok("the user", _ref("User"))}, tag="auth", errors=(401,)),
        },
        **_group_paths("departments", "department"),
        **_group_paths("skills", "skill"),
        "/api/v1/agents": {
            "get": _op(
                "List the account's users (admin, supervisor)",
                {"200": _ok("agents", _object({"agents": {"type": "array", "items": _ref("Agent")}}))},
                tag="directory",
                errors=(401, 403),
            ),
            "post": _op(
                "Create a user (admin)",
                {"201": _ok("the agent", _ref("Agent"))},
                tag="directory",
                body=_body(_ref("AgentCreate")),
                errors=(400, 401, 403, 404, 409),
            ),
        },
        "/api/v1/agents/{agent_id}": {
            "get": _op(
                "One user (admin, supervisor)",
                {"200": _ok("the agent", _ref("Agent"))},
                tag="directory",
                parameters=agent_id,
                errors=(401, 403, 404),
            ),
            "patch": _op(
                "Change a user (admin)",
                {"200": _ok("the agent", _ref("Agent"))},
                tag="directory",
                body=_body(_ref("AgentUpdate")),
                parameters=agent_id,
                errors=(400, 401, 403, 404, 409),
            ),
        },
        "/api/v1/agents/{agent_id}/unlock": {
            "post": _op(
                "Lift a user's sign-in lockout and reset its failure count (admin; audited as sign_in.unlocked)",
                {
                    "200": _ok(
                        "unlocked",
                        _object({"id": UUID_STRING, "was_locked": {"type": "boolean"}}, ["id", "was_locked"]),
                    )
                },
                tag="directory",
                parameters=agent_id,
                errors=(401, 403, 404),
            ),
        },
        "/api/v1/webchat/visitors": {
            "post": _op(
                "Start a web-chat visitor: returns its kv_ token (shown once; keep it in localStorage)",
                {
                    "201": _ok(
                        "the visitor and its token",
                        _object(
                            {**SCHEMAS["Visitor"]["properties"], "token": {"type": "string", "pattern": "^kv_"}},
                            ["customer_id", "token", "account_id"],
                        ),
                    )
                },
                tag="webchat",
                security=PUBLIC,
                errors=(400, 404, 413, 429),
                body=_body(
                    _object(
                        {
                            "account": _string(63),
                            "display_name": _nullable(_string(200)),
                            "phone": _nullable(_string(40)),
                            "email": _nullable(_string(254, format="email")),
                        },
                        ["account"],
                    )
                ),
            ),
        },
        "/api/v1/webchat/visitor": {
            "get": _op(
                "The visitor a kv_ token belongs to",
                {"200": _ok("the visitor", _ref("Visitor"))},
                tag="webchat",
                security=VISITOR,
                errors=(401,),
            ),
            "patch": _op(
                "Set the visitor's display name, phone or e-mail (null clears it)",
                {"200": _ok("the visitor", _ref("Visitor"))},
                tag="webchat",
                security=VISITOR,
                errors=(400, 401, 413),
                body=_body(
                    _object(
                        {
                            "display_name": _nullable(_string(200)),
                            "phone": _nullable(_string(40)),
                            "email": _nullable(_string(254, format="email")),
                        },
                        minProperties=1,
                    )
                ),
            ),
        },
        "/api/v1/customers": {
            "get": _op(
                "Find customers by phone number (any usual writing) or e-mail, through the blind index"
                " (any user of the account; contact details masked without may_view_contact_details)",
                {
                    "200": _ok(
                        "the customers found, at most 50",
                        _object({"customers": {"type": "array", "items": _ref("Customer")}}, ["customers"]),
                    )
                },
                tag="customers",
                parameters=[
                    {"name": "phone", "in": "query", "schema": _string(40), "description": "e.g. 138 1234 5678"},
                    {"name": "email", "in": "query", "schema": _string(254), "description": "exactly one of the two"},
                ],
                errors=(400, 401),
            ),
        },
        "/api/v1/customers/{customer_id}/erase": {
            "post": _op(
                "Erase a customer's personal data: name, phone, e-mail, visitor token, conversation topics,"
                " message texts and attachments (files too); an audit entry without personal data stays (admin)",
                {"200": _ok("what was erased", _ref("CustomerErased"))},
                tag="customers",
                parameters=customer_id,
                errors=(401, 403, 404, 409),
            ),
        },
        "/api/v1/customers/{customer_id}": {
            "get": _op(
                "One customer (any user of the account)",
                {"200": _ok("the customer", _ref("Customer"))},
                tag="customers",
                parameters=customer_id,
                errors=(401, 404),
            ),
            "patch": _op(
                "Change a customer's display name, level, phone or e-mail (admin, supervisor)",
                {"200": _ok("the customer", _ref("Customer"))},
                tag="customers",
                parameters=customer_id,
                body=_body(_ref("CustomerUpdate")),
                errors=(400, 401, 403, 404),
            ),
        },
        "/api/v1/customers/{customer_id}/conversations": {
            "get": _op(
                "A customer's conversations, newest first, at most 50 (any user of the account; phone numbers and"
                " e-mail addresses in topics masked without may_view_contact_details)",
                {
                    "200": _ok(
                        "conversations",
                        _object({"conversations": {"type": "array", "items": _ref("ConversationSummary")}}),
                    )
                },
                tag="conversations",
                parameters=customer_id,
                errors=(401, 404),
            ),
        },
        "/api/v1/conversations": {
            "get": _op(
                "Open conversations of the caller's departments (and of none); supervisors and admins see all."
                " `view=queued` lists only those waiting, `view=departments` (default) every open one; topics masked"
                " as in the customer's conversations",
                {
                    "200": _ok(
                        "conversations",
                        _object({"conversations": {"type": "array", "items": _ref("OpenConversation")}}),
                    )
                },
                tag="conversations",
                parameters=[
                    {
                        "name": "view",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string", "enum": ["queued", "departments"]},
                    }
                ],
                errors=(400, 401),
            ),
        },
        "/api/v1/conversations/{conversation_id}/events": {
            "get": _op(
                "A conversation's stored events after `after` (default 0), at most `limit` (1-500, default 200);"
                " phone numbers and e-mail addresses in texts masked without may_view_contact_details",
                {
                    "200": _ok(
                        "events, as the websocket's `event` frames",
                        _object({"events": {"type": "array", "items": {"type": "object"}}}),
                    )
                },
                tag="conversations",
                parameters=[
                    _path_id("conversation_id", "conversation"),
                    {"name": "after", "in": "query", "required": False, "schema": _integer(0, 2**63 - 1)},
                    {"name": "limit", "in": "query", "required": False, "schema": _integer(1, 500)},
                ],
                errors=(400, 401, 404),
            ),
        },
        "/api/v1/queues": {
            "get": _op(
                "List the queues (any user)",
                {"200": _ok("queues", _object({"queues": {"type": "array", "items": _ref("Queue")}}))},
                tag="queues",
                errors=(401,),
            ),
            "post": _op(
                "Create a queue (admin)",
                {"201": _ok("the queue", _ref("Queue"))},
                tag="queues",
                body=_body(_ref("QueueCreate")),
                errors=(400, 401, 403, 404, 409),
            ),
        },
        "/api/v1/queues/{queue_id}": {
            "get": _op(
                "One queue (any user)",
                {"200": _ok("the queue", _ref("Queue"))},
                tag="queues",
                parameters=queue_id,
                errors=(401, 404),
            ),
            "patch": _op(
                "Change a queue (admin)",
                {"200": _ok("the queue", _ref("Queue"))},
                tag="queues",
                parameters=queue_id,
                body=_body(_ref("QueueUpdate")),
                errors=(400, 401, 403, 404, 409),
            ),
            "delete": _op(
                "Delete a queue (admin); queues overflowing to it stop overflowing",
                {"204": _ok("deleted")},
                tag="queues",
                parameters=queue_id,
                errors=(401, 403, 404),
            ),
        },
        "/api/v1/canned-responses": {
            "get": _op(
                "The account-wide canned responses and the caller's personal ones",
                {
                    "200": _ok(
                        "canned responses",
                        _object({"canned_responses": {"type": "array", "items": _ref("CannedResponse")}}),
                    )
                },
                tag="canned responses",
                errors=(400, 401),
                parameters=[
                    {
                        "name": "q",
                        "in": "query",
                        "required": False,
                        "schema": _string(200),
                        "description": "case-insensitive prefix of the shortcut or part of the title",
                    }
                ],
            ),
            "post": _op(
                "Create a canned response (account scope: admin)",
                {"201": _ok("the canned response", _ref("CannedResponse"))},
                tag="canned responses",
                body=_body(canned_create),
                errors=(400, 401, 403, 409),
            ),
        },
        "/api/v1/canned-responses/{canned_id}": {
            "patch": _op(
                "Change a canned response (personal: its owner; account-wide: admin)",
                {"200": _ok("the canned response", _ref("CannedResponse"))},
                tag="canned responses",
                parameters=canned_id,
                body=_body(canned_update),
                errors=(400, 401, 403, 404, 409),
            ),
            "delete": _op(
                "Delete a canned response (personal: its owner; account-wide: admin)",
                {"204": _ok("deleted")},
                tag="canned responses",
                parameters=canned_id,
                errors=(401, 403, 404),
            ),
        },
        "/api/v1/attachments": {
            "post": _op(
                "Upload a file: the raw bytes as the body, its type as Content-Type (user or visitor token)",
                {"201": _ok("the attachment", _ref("Attachment"))},
                tag="attachments",
                security=[{"bearerAuth": []}, {"visitorToken": []}],
                errors=(400, 401, 413, 415, 429),
                parameters=[
                    {
                        "name": "filename",
                        "in": "query",
                        "required": False,
                        "schema": _string(255),
                        "description": "the file's name (folders and control characters are removed)",
                    }
                ],
                body={
                    "required": True,
                    "description": "one of the configured upload_content_types",
                    "content": {**upload_types, "*/*": {"schema": {"type": "string", "format": "binary"}}},
                },
            ),
        },
        "/api/v1/attachments/{attachment_id}": {
            "get": _op(
                "Download a file (users of the account; the visitor who uploaded it)",
                {
                    "200": {
                        "description": "the file, with its stored content type",
                        "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
                    }
                },
                tag="attachments",
                parameters=attachment_id,
                security=[{"bearerAuth": []}, {"visitorToken": []}],
                errors=(401, 404),
            ),
        },
        "/api/v1/business-hours": {
            "get": _op(
                "The account's time zone and weekly open intervals (any user; UTC and closed when unset)",
                {"200": _ok("the business hours", _ref("BusinessHours"))},
                tag="business hours",
                errors=(401,),
            ),
            "put": _op(
                "Replace the business hours (admin; audited)",
                {"200": _ok("the business hours", _ref("BusinessHours"))},
                tag="business hours",
                body=_body(_ref("BusinessHoursInput")),
                errors=(400, 401, 403),
            ),
        },
        "/api/v1/audit-log": {
            "get": _op(
                "The account's audit log, newest first, in keyset pages (admin; others get an audited 403)",
                {"200": _ok("one page of entries", _ref("AuditLogPage"))},
                tag="audit",
                errors=(400, 401, 403),
                parameters=[
                    {
                        "name": "actor",
                        "in": "query",
                        "required": False,
                        "schema": UUID_STRING,
                        "description": "only entries of this user (or customer) id",
                    },
                    {
                        "name": "action",
                        "in": "query",
                        "required": False,
                        "schema": _string(100),
                        "description": "only this action, e.g. `agent.update`, `forbidden`, `denied:message.send`",
                    },
                    {"name": "outcome", "in": "query", "required": False, "schema": {"enum": ["done", "denied"]}},
                    {
                        "name": "since",
                        "in": "query",
                        "required": False,
                        "schema": TIMESTAMP,
                        "description": "entries at or after this time (with its UTC offset)",
                    },
                    {
                        "name": "until",
                        "in": "query",
                        "required": False,
                        "schema": TIMESTAMP,
                        "description": "entries before this time (with its UTC offset)",
                    },
                    {
                        "name": "before",
                        "in": "query",
                        "required": False,
                        "schema": _integer(1, 2**63 - 1),
                        "description": "entries with a smaller id: the previous page's `next_before`",
                    },
                    {"name": "limit", "in": "query", "required": False, "schema": _integer(1, 500)},
                ],
            ),
        },
        **roles_api.openapi_paths(),
        "/api/v1/openapi.json": {
            "get": _op("This document", {"200": _ok("OpenAPI 3.1", {"type": "object"})}, tag="meta", security=PUBLIC),
        },
    }


@cache
def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "kefu REST API",
            "version": "1",
            "description": 'JSON in and out; errors are {"error": {"code", "message"}}.',
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": _paths(),
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "a sign-in session token"},
                "visitorToken": {"type": "http", "scheme": "bearer", "description": "a web-chat visitor's kv_ token"},
            },
        },
    }
