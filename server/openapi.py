"""The OpenAPI 3.1 document of the REST API, served at GET /api/v1/openapi.json.

Generated, never written by hand: the paths from the declared routes (`kefu.server.api.route.ROUTES`),
the schemas from the same msgspec Structs that decode the bodies and encode the answers
(`msgspec.json.schema_components`). A route and its description cannot drift apart.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec

from kefu.protocol.permissions import Permission
from kefu.server.api import blueprints
from kefu.server.api.route import JSON, PUBLIC, ROUTES, RouteSpec

REF = "#/components/schemas/{name}"


class ErrorDetail(msgspec.Struct):
    code: str
    message: str


class Error(msgspec.Struct):
    """Every error answer: a stable `code` clients rely on, and a message for people."""

    error: ErrorDetail


STANDARD_ERRORS = {
    400: "`invalid_request`: malformed input; the message names the field",
    401: "`unauthenticated`: no valid token",
    403: "`forbidden`: the caller lacks the permission (or the row is outside the caller's departments); audited",
    404: "`not_found`: no such resource in the caller's account",
    409: "`conflict`: clashes with an existing row",
    413: "`payload_too_large`: body too large",
    415: "`unsupported_media_type`: content type not accepted, or the content is not of that type",
    429: "`rate_limited`: too many requests from this client address; wait `Retry-After` seconds",
    503: "`unavailable`: the database cannot be reached",
}
RETRY_AFTER = {
    "Retry-After": {
        "description": "whole seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def _ref(kind: type) -> dict[str, str]:
    return {"$ref": REF.format(name=kind.__name__)}


def _error(status: int, description: str) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description, "content": {JSON: {"schema": _ref(Error)}}}
    if status == 429:
        answer["headers"] = RETRY_AFTER
    return answer


def _responses(spec: RouteSpec) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if spec.answer is not None:
        responses[str(spec.status)] = {"description": spec.summary, "content": {JSON: {"schema": _ref(spec.answer)}}}
    elif spec.status == 204:
        responses["204"] = {"description": "done; no content"}
    statuses = {*spec.errors, 503}
    if spec.guard is not PUBLIC:
        statuses.add(401)
    if isinstance(spec.guard, Permission):
        statuses.add(403)
    if spec.body is not None or spec.query is not None:
        statuses.add(400)
    for status in sorted(statuses):
        responses[str(status)] = _error(status, STANDARD_ERRORS[status])
    for code, answer in spec.responses.items():
        responses[code] = {**responses.get(code, {}), **answer}
        if int(code) >= 400:
            responses[code].setdefault("content", {JSON: {"schema": _ref(Error)}})
    return responses


def _parameters(spec: RouteSpec, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": f"the {spec.target.replace('_', ' ')}'s id",
            "schema": {"type": "string", "format": "uuid"},
        }
        for name in spec.path_parameters
    ]
    if spec.query is not None:
        query = schemas[spec.query.__name__]
        required = set(query.get("required", ()))
        for name, schema in query["properties"].items():
            parameter = {"name": name, "in": "query", "required": name in required, "schema": _plain(schema)}
            if "description" in schema:
                parameter["description"] = schema["description"]
            parameters.append(parameter)
    return parameters


def _plain(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter's schema: its one type when it may also be absent (null)."""
    kinds = [s for s in schema.get("anyOf", ()) if s != {"type": "null"}]
    plain = dict(kinds[0]) if len(kinds) == 1 else dict(schema)
    if "default" in schema:
        plain["default"] = schema["default"]
    return plain


def _operation(spec: RouteSpec, schemas: dict[str, Any]) -> dict[str, Any]:
    guard = spec.guard.value
    operation: dict[str, Any] = {
        "operationId": spec.endpoint,
        "summary": spec.summary,
        "tags": [spec.tag],
        "x-permission": guard,
        "responses": _responses(spec),
    }
    needs = {
        "public": "No sign-in needed.",
        "signed_in": "Any signed-in user of the account.",
    }.get(guard, f"Needs the permission `{guard}`.")
    operation["description"] = f"{spec.description.strip()}\n\n{needs}" if spec.description else needs
    if parameters := _parameters(spec, schemas):
        operation["parameters"] = parameters
    if spec.body is not None:
        operation["requestBody"] = {"required": True, "content": {JSON: {"schema": _ref(spec.body)}}}
    elif spec.request_body is not None:
        operation["requestBody"] = dict(spec.request_body)
    if spec.guard is PUBLIC:
        operation["security"] = [{scheme: []} for scheme in spec.security or ()]
    return operation


def _schemas() -> dict[str, Any]:
    types: list[Any] = [Error]
    for spec in ROUTES:
        types.extend(kind for kind in (spec.body, spec.answer, spec.query) if kind is not None)
    _, components = msgspec.json.schema_components(list(dict.fromkeys(types)), ref_template=REF)
    return components


@cache
def document() -> dict[str, Any]:
    assert blueprints.BLUEPRINTS  # every route is declared once the blueprints are imported
    schemas = _schemas()
    paths: dict[str, dict[str, Any]] = {}
    for spec in ROUTES:
        paths.setdefault(spec.path, {})[spec.method.lower()] = _operation(spec, schemas)
    queries = {spec.query.__name__ for spec in ROUTES if spec.query is not None}
    bodies_and_answers = {kind.__name__ for spec in ROUTES for kind in (spec.body, spec.answer) if kind is not None}
    for name in queries - bodies_and_answers:
        del schemas[name]  # described as parameters
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "kefu REST API",
            "version": "1",
            "description": 'JSON in and out; errors are {"error": {"code", "message"}}. Every route names the one'
            " permission it needs (`x-permission`: a permission, `signed_in` or `public`).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "description": "a sign-in session token"},
                "visitorToken": {"type": "http", "scheme": "bearer", "description": "a web-chat visitor's kv_ token"},
            },
        },
    }
