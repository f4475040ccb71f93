"""Queues: listed and read by every user, created, changed and deleted with `queues.manage`."""

from __future__ import annotations

from quart import Blueprint

from kefu.protocol.permissions import Permission
from kefu.server import queues
from kefu.server.api.route import SIGNED_IN, Call, auditor, parse_id, route
from kefu.server.queues import Queue, QueueChange, QueueCreate, Queues

bp = Blueprint("queues", __name__)
ONE = "/api/v1/queues/<queue_id>"


@route(bp, "GET", "/api/v1/queues", permission=SIGNED_IN, answer=Queues, tag="queues", summary="List the queues")
async def list_queues(call: Call[None, None]) -> Queues:
    return Queues(await queues.list_queues(call.node.database, call.user.account_id))


@route(
    bp,
    "POST",
    "/api/v1/queues",
    permission=Permission.QUEUES_MANAGE,
    body=QueueCreate,
    answer=Queue,
    status=201,
    tag="queues",
    summary="Create a queue",
    target="queue",
    action="queue.create",
    errors=(400, 404, 409),
)
async def create_queue(call: Call[QueueCreate, None]) -> Queue:
    user = call.user
    queue = await queues.create_queue(
        call.node.database, user.account_id, call.body, audit=auditor(user, "queue.create", "queue")
    )
    call.node.queues_changed(user.account_id)
    return queue


@route(bp, "GET", ONE, permission=SIGNED_IN, answer=Queue, tag="queues", summary="One queue", errors=(404,))
async def get_queue(call: Call[None, None], queue_id: str) -> Queue:
    return await queues.get_queue(call.node.database, call.user.account_id, parse_id(queue_id, "queue"))


@route(
    bp,
    "PATCH",
    ONE,
    permission=Permission.QUEUES_MANAGE,
    body=QueueChange,
    answer=Queue,
    tag="queues",
    summary="Change a queue",
    target="queue",
    action="queue.update",
    errors=(400, 404, 409),
)
async def update_queue(call: Call[QueueChange, None], queue_id: str) -> Queue:
    user = call.user
    queue = await queues.update_queue(
        call.node.database,
        user.account_id,
        parse_id(queue_id, "queue"),
        call.body,
        audit=auditor(user, "queue.update", "queue"),
    )
    call.node.queues_changed(user.account_id)
    return queue


@route(
    bp,
    "DELETE",
    ONE,
    permission=Permission.QUEUES_MANAGE,
    tag="queues",
    summary="Delete a queue; queues overflowing to it stop overflowing",
    target="queue",
    action="queue.delete",
    status=204,
    errors=(404, 409),
)
async def delete_queue(call: Call[None, None], queue_id: str) -> None:
    user = call.user
    target = parse_id(queue_id, "queue")
    await queues.delete_queue(call.node.database, user.account_id, target, audit=auditor(user, "queue.delete", "queue"))
    call.node.queues_changed(user.account_id)
