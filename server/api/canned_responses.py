"""Canned responses: everyone manages their own; the shared ones need `canned.manage_shared`,
which depends on the response, so it is checked by `kefu.server.canned`, and refused here."""

from __future__ import annotations

from quart import Blueprint

from kefu.server import canned
from kefu.server.api.route import SIGNED_IN, Call, auditor, parse_id, refuse, route
from kefu.server.canned import CannedChange, CannedCreate, CannedQuery, CannedResponse, CannedResponses

bp = Blueprint("canned_responses", __name__)
ALL = "/api/v1/canned-responses"
ONE = "/api/v1/canned-responses/<canned_id>"
TAG = "canned responses"
TARGET = "canned_response"


@route(
    bp,
    "GET",
    ALL,
    permission=SIGNED_IN,
    query=CannedQuery,
    answer=CannedResponses,
    tag=TAG,
    summary="The account-wide canned responses and the caller's personal ones",
    errors=(400,),
)
async def list_canned_responses(call: Call[None, CannedQuery]) -> CannedResponses:
    return CannedResponses(await canned.list_canned(call.node.database, call.user, call.query.q))


@route(
    bp,
    "POST",
    ALL,
    permission=SIGNED_IN,
    body=CannedCreate,
    answer=CannedResponse,
    status=201,
    tag=TAG,
    summary="Create a canned response (account scope: canned.manage_shared)",
    errors=(400, 403, 409),
)
async def create_canned_response(call: Call[CannedCreate, None]) -> CannedResponse:
    user = call.user
    try:
        return await canned.create_canned(
            call.node.database, user, call.body, audit=auditor(user, "canned_response.create", TARGET)
        )
    except canned.Forbidden:
        raise await refuse(call.node, user, "canned_response.create", TARGET) from None


@route(
    bp,
    "PATCH",
    ONE,
    permission=SIGNED_IN,
    body=CannedChange,
    answer=CannedResponse,
    tag=TAG,
    summary="Change a canned response (personal: its owner; account-wide: canned.manage_shared)",
    errors=(400, 403, 404, 409),
)
async def update_canned_response(call: Call[CannedChange, None], canned_id: str) -> CannedResponse:
    user = call.user
    target = parse_id(canned_id, "canned response")
    try:
        return await canned.update_canned(
            call.node.database, user, target, call.body, audit=auditor(user, "canned_response.update", TARGET)
        )
    except canned.Forbidden:
        raise await refuse(call.node, user, "canned_response.update", TARGET, target) from None


@route(
    bp,
    "DELETE",
    ONE,
    permission=SIGNED_IN,
    status=204,
    tag=TAG,
    summary="Delete a canned response (personal: its owner; account-wide: canned.manage_shared)",
    errors=(403, 404),
)
async def delete_canned_response(call: Call[None, None], canned_id: str) -> None:
    user = call.user
    target = parse_id(canned_id, "canned response")
    try:
        await canned.delete_canned(
            call.node.database, user, target, audit=auditor(user, "canned_response.delete", TARGET)
        )
    except canned.Forbidden:
        raise await refuse(call.node, user, "canned_response.delete", TARGET, target) from None
