"""The API's own descriptions: the OpenAPI document and the websocket protocol's JSON Schema."""

from __future__ import annotations

from typing import Any

from quart import Blueprint

from kefu.server.api.route import PUBLIC, PublicCall, route

bp = Blueprint("documents", __name__)
TAG = "meta"
DOCUMENT = {"200": {"description": "the document", "content": {"application/json": {"schema": {"type": "object"}}}}}


@route(
    bp,
    "GET",
    "/api/v1/openapi.json",
    permission=PUBLIC,
    tag=TAG,
    summary="This document (OpenAPI 3.1)",
    responses=DOCUMENT,
)
async def openapi_document(call: PublicCall[None, None]) -> dict[str, Any]:
    from kefu.server import openapi

    return openapi.document()


@route(
    bp,
    "GET",
    "/api/v1/protocol.schema.json",
    permission=PUBLIC,
    tag=TAG,
    summary="The JSON Schema of every websocket frame (docs/protocol.md)",
    responses=DOCUMENT,
)
async def protocol_schema(call: PublicCall[None, None]) -> dict[str, Any]:
    from kefu.protocol.schema import protocol_json_schema  # written beside the frames (helper `frames`)

    schema: dict[str, Any] = protocol_json_schema()
    return schema
