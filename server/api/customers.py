"""Customers as staff see them, and the web-chat visitors that are customers of the widget.

Reading needs only sign-in, within the caller's scope (`scope`); changing needs
`customers.update`, erasing `customers.erase`. Phone numbers and e-mail addresses are masked
for users without `contacts.view_unmasked`. The visitor routes are public: a visitor holds a
`kv_` token, not a session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import msgspec
from msgspec import Meta
from quart import Blueprint, request

from kefu.protocol.permissions import Permission
from kefu.server import audit, privacy, webchat
from kefu.server.api import scope
from kefu.server.api.route import (
    PUBLIC,
    SIGNED_IN,
    Call,
    PublicCall,
    Refused,
    bearer_token,
    client_address,
    gate,
    route,
    unauthenticated,
)
from kefu.server.conversations import CustomerConversations
from kefu.server.webchat import (
    Customer,
    CustomerChange,
    CustomerLookup,
    Customers,
    StartedVisitor,
    Visitor,
    VisitorChange,
    VisitorStart,
)

if TYPE_CHECKING:
    from kefu.server.node import Node

bp = Blueprint("customers", __name__)


class CustomerErased(msgspec.Struct):
    customer_id: UUID
    conversations: Annotated[int, Meta(ge=0)]
    messages_redacted: Annotated[int, Meta(ge=0)]
    attachments_deleted: Annotated[int, Meta(ge=0)]
    files_removed: Annotated[int, Meta(ge=0)]


# -- web-chat visitors ---------------------------------------------------------------------------

VISITOR_TOKEN = ("visitorToken",)


async def current_visitor(kefu: Node) -> Visitor:
    """The visitor the request's `kv_` token belongs to, or the 401 is raised."""
    token = bearer_token()
    visitor = None
    if token is not None:
        visitor = await webchat.authenticate_visitor(
            kefu.database, token, kefu.privacy, ttl_days=kefu.config.visitor_ttl_days
        )
    if visitor is None:
        raise unauthenticated()
    return visitor


@route(
    bp,
    "POST",
    "/api/v1/webchat/visitors",
    permission=PUBLIC,
    body=VisitorStart,
    answer=StartedVisitor,
    status=201,
    tag="webchat",
    summary="Start a web-chat visitor: returns its kv_ token (shown once; keep it in localStorage)",
    errors=(400, 404, 413, 429),
)
async def create_visitor(call: PublicCall[VisitorStart, None]) -> StartedVisitor:
    limits = gate()
    if wait := limits.admit(limits.visitors_by_address, client_address()):
        await limits.hold_refusal()
        raise Refused(429, "rate_limited", "too many new visitors from this address; try again later", retry_after=wait)
    return await webchat.create_visitor(call.node.database, call.node.privacy, call.body)


@route(
    bp,
    "GET",
    "/api/v1/webchat/visitor",
    permission=PUBLIC,
    authenticate=current_visitor,
    security=VISITOR_TOKEN,
    answer=Visitor,
    tag="webchat",
    summary="The visitor a kv_ token belongs to",
    errors=(401,),
)
async def get_visitor(call: PublicCall[None, None]) -> Visitor:
    visitor: Visitor = call.caller
    return visitor


@route(
    bp,
    "PATCH",
    "/api/v1/webchat/visitor",
    permission=PUBLIC,
    authenticate=current_visitor,
    security=VISITOR_TOKEN,
    body=VisitorChange,
    answer=Visitor,
    tag="webchat",
    summary="Set the visitor's display name, phone or e-mail (null clears it)",
    errors=(400, 401, 413),
)
async def rename_visitor(call: PublicCall[VisitorChange, None]) -> Visitor:
    visitor: Visitor = call.caller
    return await webchat.rename_visitor(call.node.database, call.node.privacy, visitor, call.body)


# -- customers ------------------------------------------------------------------------------------

ONE = "/api/v1/customers/<customer_id>"


@route(
    bp,
    "GET",
    "/api/v1/customers",
    permission=SIGNED_IN,
    query=CustomerLookup,
    answer=Customers,
    tag="customers",
    target="customer",
    summary="Find customers by phone number (any usual writing) or e-mail, through the blind index"
    " (contact details masked without contacts.view_unmasked)",
    errors=(400,),
)
async def find_customers(call: Call[None, CustomerLookup]) -> Customers:
    user, lookup = call.user, call.query
    found = await webchat.find_customers(
        call.node.database, call.node.privacy, user.account_id, lookup, full=scope.sees_contact_details(user)
    )
    # The rule of GET /customers/<id>: a customer outside the caller's scope is left out, as
    # if nobody had that number (a 403 would confirm it exists), and the refusal is audited.
    in_scope = []
    for customer in found:
        access = await call.node.conversations.customer_access(
            user.account_id, user.user_id, scope.reads_all(user), customer.id
        )
        if access == "allowed":
            in_scope.append(customer)
            continue
        await call.node.conversations.record_denial(
            user.account_id,
            user.role,
            user.user_id,
            "customer.find",
            customer.id,
            target_type="customer",
            detail={"field": lookup.looked_up()[0], "method": request.method, "path": request.path},
        )
    return Customers(in_scope)


@route(
    bp,
    "GET",
    ONE,
    permission=SIGNED_IN,
    answer=Customer,
    tag="customers",
    target="customer",
    summary="One customer (within the caller's departments)",
    errors=(403, 404),
)
async def get_customer(call: Call[None, None], customer_id: str) -> Customer:
    target = await scope.customer(call, customer_id, "customer.read")
    user = call.user
    return await webchat.get_customer(
        call.node.database, call.node.privacy, user.account_id, target, full=scope.sees_contact_details(user)
    )


@route(
    bp,
    "PATCH",
    ONE,
    permission=Permission.CUSTOMERS_UPDATE,
    body=CustomerChange,
    answer=Customer,
    tag="customers",
    target="customer",
    action="customer.update",
    summary="Change a customer's display name, level, phone or e-mail",
    errors=(400, 404),
)
async def update_customer(call: Call[CustomerChange, None], customer_id: str) -> Customer:
    target = await scope.customer(call, customer_id, "customer.update")
    user = call.user
    customer, changes = await webchat.update_customer(
        call.node.database, call.node.privacy, user.account_id, target, call.body, full=True
    )
    await audit.record(
        call.node.database, user.account_id, user.role, user.user_id, "customer.update", "customer", target, changes
    )
    return customer


@route(
    bp,
    "POST",
    f"{ONE}/erase",
    permission=Permission.CUSTOMERS_ERASE,
    answer=CustomerErased,
    tag="customers",
    target="customer",
    action="customer.erase",
    summary="Erase a customer's personal data: name, phone, e-mail, visitor token, conversation topics,"
    " message texts and attachments (files too); an audit entry without personal data stays",
    errors=(404, 409),
)
async def erase_customer(call: Call[None, None], customer_id: str) -> dict[str, Any]:
    target = await scope.customer(call, customer_id, "customer.erase")
    user, kefu = call.user, call.node
    erased = await privacy.erase_customer(
        kefu.database, kefu.config.data_dir, user.account_id, target, actor_role=user.role, actor_id=user.user_id
    )
    return erased.json()


@route(
    bp,
    "GET",
    f"{ONE}/conversations",
    permission=SIGNED_IN,
    answer=CustomerConversations,
    tag="conversations",
    target="customer",
    summary="A customer's conversations, newest first, at most 50 (phone numbers and e-mail addresses in"
    " topics masked without contacts.view_unmasked)",
    errors=(403, 404),
)
async def customer_conversations(call: Call[None, None], customer_id: str) -> dict[str, Any]:
    target = await scope.customer(call, customer_id, "customer.history")
    user = call.user
    history = await call.node.conversations.customer_history(
        user.account_id,
        target,
        user_id=user.user_id,
        reads_all=scope.reads_all(user),
        full=scope.sees_contact_details(user),
    )
    return {"conversations": history}
