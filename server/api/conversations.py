"""Conversations as the workbench lists and reads them, within the caller's scope (`scope`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
import orjson
from msgspec import Meta
from quart import Blueprint

from kefu.actors.session import event_frame
from kefu.protocol import encode_frame
from kefu.server.api import scope
from kefu.server.api.route import SIGNED_IN, Call, route
from kefu.server.conversations import OpenConversations

bp = Blueprint("conversations", __name__)
TAG = "conversations"
MAX_EVENTS_PER_PAGE = 500


class ConversationsView(msgspec.Struct, kw_only=True):
    view: Annotated[
        Literal["queued", "departments"],
        Meta(description="`queued`: only those waiting; `departments`: every open one"),
    ] = "departments"


class EventsPage(msgspec.Struct, kw_only=True):
    after: Annotated[int, Meta(ge=0, le=2**63 - 1, description="the last sequence number already read")] = 0
    limit: Annotated[int, Meta(ge=1, le=MAX_EVENTS_PER_PAGE)] = 200


class ConversationEvents(msgspec.Struct):
    """Events, as the websocket's `event` frames (`/api/v1/protocol.schema.json`)."""

    events: list[dict[str, Any]]


@route(
    bp,
    "GET",
    "/api/v1/conversations",
    permission=SIGNED_IN,
    query=ConversationsView,
    answer=OpenConversations,
    tag=TAG,
    target="conversation",
    summary="Open conversations of the caller's departments (and of none); with conversations.read_all, all"
    " of the account's. Topics masked as in the customer's conversations",
    errors=(400,),
)
async def list_open_conversations(call: Call[None, ConversationsView]) -> dict[str, Any]:
    user = call.user
    listed = await call.node.conversations.open_conversations(
        user.account_id,
        user.user_id,
        queued_only=call.query.view == "queued",
        every_department=scope.reads_all(user),
        full=scope.sees_contact_details(user),
    )
    return {"conversations": listed}


@route(
    bp,
    "GET",
    "/api/v1/conversations/<conversation_id>/events",
    permission=SIGNED_IN,
    query=EventsPage,
    answer=ConversationEvents,
    tag=TAG,
    target="conversation",
    summary="A conversation's stored events after `after`, at most `limit`; phone numbers and e-mail"
    " addresses in texts masked without contacts.view_unmasked",
    errors=(400, 403, 404),
)
async def conversation_events(call: Call[None, EventsPage], conversation_id: str) -> ConversationEvents:
    user, target, conversations = call.user, UUID(conversation_id), call.node.conversations
    access = await conversations.conversation_access(user.account_id, user.user_id, scope.reads_all(user), target)
    await scope.check(call, access, "conversation.events", "conversation", target)
    events = await conversations.events_after(target, call.query.after, call.query.limit)
    row = await conversations.conversation(target)
    customer_name, masked = (row.customer_name if row else None), not scope.sees_contact_details(user)
    frames = [
        orjson.loads(
            encode_frame(event_frame(target, event, for_customer=False, customer_name=customer_name, masked=masked))
        )
        for event in events
    ]
    return ConversationEvents(frames)
