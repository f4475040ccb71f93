"""REST routes of the contact center: web-chat visitors, customers, queues, canned responses,
attachments and the OpenAPI document. `register` adds them to the app; handlers translate and
the modules below decide.

Roles: admins change queues and account-wide canned responses and erase customers' personal
data; supervisors read queues and may change customers; agents read queues, and the customers,
conversations and attachments of their scope (docs/security.md, "Who may see and do what"),
with phone numbers and e-mail addresses masked unless they have `may_view_contact_details`.
Every refusal (403, and 404 for an id the caller may not know) and every administrative change
is written to the audit log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

import asyncpg
import orjson
import trio
from quart import Response, jsonify, request, send_file
from quart_trio import QuartTrio
from werkzeug.exceptions import RequestEntityTooLarge

from kefu.actors.session import event_frame
from kefu.protocol import encode_frame
from kefu.server import attachments, audit, canned, openapi, privacy, queues, webchat
from kefu.server.auth import Gate, SignedInUser, authenticate
from kefu.server.directory import NotFound, parse_id

if TYPE_CHECKING:
    from kefu.server.node import Node

log = logging.getLogger("kefu.contact_center")

ErrorResponse = tuple[Response, int]


@dataclass(frozen=True, slots=True)
class InScope:
    """A signed-in user and the id of a row in the user's scope."""

    user: SignedInUser
    target: UUID


VISITOR_BODY_BYTES = 8 * 1024
"""Largest body the unauthenticated visitor endpoints read."""
DRAIN_BYTES, DRAIN_SECONDS = 1024 * 1024, 2.0
"""How much of an upload refused as too large is still read (and dropped) before answering."""


def install_body_limits(app: QuartTrio, node: Node) -> None:
    """Per-route request body limits: uploads may reach `max_upload_bytes`, visitor bodies 8 KiB.

    Quart sizes a request's body buffer when it creates the request, before routing, from
    `MAX_CONTENT_LENGTH`; so the request class picks the limit by method and path.
    """
    base = app.request_class

    def limit(method: str, path: str, default: int | None) -> int | None:
        if method == "POST" and path == "/api/v1/attachments":
            return int(node.config.max_upload_bytes)
        if (method, path) in (("POST", "/api/v1/webchat/visitors"), ("PATCH", "/api/v1/webchat/visitor")):
            return VISITOR_BODY_BYTES
        return default

    class LimitedRequest(base):  # type: ignore[valid-type, misc]
        def __init__(self, method: str, scheme: str, path: str, *args: Any, **kwargs: Any) -> None:
            kwargs["max_content_length"] = limit(method, path, kwargs.get("max_content_length"))
            super().__init__(method, scheme, path, *args, **kwargs)

    app.request_class = LimitedRequest


def register(
    app: QuartTrio,
    node: Node,
    *,
    current_user: Callable[[], Awaitable[SignedInUser | None]],
    bearer_token: Callable[[], str | None],
    error_response: Callable[[str, str, int], ErrorResponse],
    unauthenticated: Callable[[], ErrorResponse],
    too_many: Callable[[str, str, int], ErrorResponse],
    client_address: Callable[[], str],
    gate: Gate,
) -> None:
    install_body_limits(app, node)

    async def json_body() -> Any:
        return await request.get_json(force=True, silent=True)

    async def refuse(user: SignedInUser, attempted: str, target_type: str, target_id: Any = None) -> ErrorResponse:
        """403, written to the audit log."""
        await audit.record(
            node.database,
            user.account_id,
            user.role,
            user.user_id,
            "forbidden",
            target_type,
            target_id,
            {"attempted": attempted, "method": request.method, "path": request.path},
        )
        return error_response("forbidden", "your role may not do this", 403)

    async def out_of_scope(
        user: SignedInUser, access: str, attempted: str, target_type: str, target_id: Any
    ) -> ErrorResponse | None:
        """None when `access` allows; else the refusal, written to the audit log as `denied:<attempted>`:
        403 for a row of the caller's account outside its scope, 404 for another account's or none."""
        if access == "allowed":
            return None
        await node.conversations.record_denial(
            user.account_id,
            user.role,
            user.user_id,
            attempted,
            target_id,
            target_type=target_type,
            detail={"status": 403 if access == "forbidden" else 404, "method": request.method, "path": request.path},
        )
        if access == "forbidden":
            return error_response("forbidden", f"this {target_type.replace('_', ' ')} is outside your departments", 403)
        return error_response("not_found", f"no such {target_type.replace('_', ' ')}", 404)

    async def customer_in_scope(customer_id: str, attempted: str) -> InScope | ErrorResponse:
        """The signed-in user and the customer id when the customer is in the user's scope; else
        the answer to give (401, 400, or the audited 403/404 of `out_of_scope`)."""
        user = await signed_in()
        if not isinstance(user, SignedInUser):
            return user
        target = parse_id(customer_id, "customer")
        access = await node.conversations.customer_access(user.account_id, user.user_id, user.role, target)
        if (refusal := await out_of_scope(user, access, attempted, "customer", target)) is not None:
            return refusal
        return InScope(user, target)

    def auditor(user: SignedInUser, action: str, target_type: str) -> Callable[..., Awaitable[None]]:
        """An audit callback run inside the change's own transaction."""

        async def write(conn: asyncpg.Connection, target: dict[str, Any], changes: Any = None) -> None:
            detail = {"name": target.get("name") or target.get("shortcut")}
            if changes is not None:
                detail["changes"] = changes
            await audit.record(
                conn, user.account_id, user.role, user.user_id, action, target_type, target["id"], detail
            )

        return write

    async def signed_in() -> SignedInUser | ErrorResponse:
        user = await current_user()
        return unauthenticated() if user is None else user

    async def current_visitor() -> webchat.Visitor | None:
        token = bearer_token()
        if token is None:
            return None
        return await webchat.authenticate_visitor(
            node.database, token, node.privacy, ttl_days=node.config.visitor_ttl_days
        )

    @app.errorhandler(privacy.DataKeyError)
    async def data_key_error(error: privacy.DataKeyError) -> ErrorResponse:
        log.error("personal data does not decrypt: %s", error)
        return error_response(
            "data_key_mismatch", "customers' personal data cannot be decrypted with the configured data key", 500
        )

    # -- web-chat visitors -----------------------------------------------------------------------

    @app.post("/api/v1/webchat/visitors")
    async def create_visitor() -> ErrorResponse:
        if wait := gate.admit(gate.visitors_by_address, client_address()):
            await gate.hold_refusal()
            return too_many("rate_limited", "too many new visitors from this address; try again later", wait)
        token, visitor = await webchat.create_visitor(node.database, node.privacy, await json_body())
        return jsonify({**visitor.json(), "token": token}), 201

    @app.get("/api/v1/webchat/visitor")
    async def get_visitor() -> ErrorResponse:
        visitor = await current_visitor()
        if visitor is None:
            return unauthenticated()
        return jsonify(visitor.json()), 200

    @app.patch("/api/v1/webchat/visitor")
    async def rename_visitor() -> ErrorResponse:
        visitor = await current_visitor()
        if visitor is None:
            return unauthenticated()
        renamed = await webchat.rename_visitor(node.database, node.privacy, visitor, await json_body())
        return jsonify(renamed.json()), 200

    # -- customers -------------------------------------------------------------------------------

    async def sees_contact_details(user: SignedInUser) -> bool:
        return privacy.sees_unmasked(user.permissions)

    @app.get("/api/v1/customers")
    async def find_customers() -> ErrorResponse:
        user = await signed_in()
        if not isinstance(user, SignedInUser):
            return user
        given = [field for field in privacy.PERSONAL_FIELDS if request.args.get(field)]
        if len(given) != 1:
            return error_response("invalid_request", "give exactly one of ?phone= and ?email=", 400)
        found = await webchat.find_customers(
            node.database,
            node.privacy,
            user.account_id,
            field=given[0],
            value=request.args[given[0]],
            full=await sees_contact_details(user),
        )
        # The rule of GET /customers/<id>: a customer outside the caller's scope is left out, as
        # if nobody had that number (a 403 would confirm it exists), and the refusal is audited.
        in_scope = []
        for customer in found:
            target = UUID(customer["id"])
            access = await node.conversations.customer_access(user.account_id, user.user_id, user.role, target)
            if access == "allowed":
                in_scope.append(customer)
                continue
            await node.conversations.record_denial(
                user.account_id,
                user.role,
                user.user_id,
                "customer.find",
                target,
                target_type="customer",
                detail={"field": given[0], "method": request.method, "path": request.path},
            )
        return jsonify({"customers": in_scope}), 200

    @app.get("/api/v1/customers/<customer_id>")
    async def get_customer(customer_id: str) -> ErrorResponse:
        scoped = await customer_in_scope(customer_id, "customer.read")
        if not isinstance(scoped, InScope):
            return scoped
        user, target = scoped.user, scoped.target
        customer = await webchat.get_customer(
            node.database,
            node.privacy,
            user.account_id,
            target,
            full=await sees_contact_details(user),
        )
        return jsonify(customer), 200

    @app.post("/api/v1/customers/<customer_id>/erase")
    async def erase_customer(customer_id: str) -> ErrorResponse:
        scoped = await customer_in_scope(customer_id, "customer.erase")
        if not isinstance(scoped, InScope):
            return scoped
        user, target = scoped.user, scoped.target
        if user.role != "admin":
            return await refuse(user, "customer.erase", "customer", target)
        erased = await privacy.erase_customer(
            node.database, node.config.data_dir, user.account_id, target, actor_role=user.role, actor_id=user.user_id
        )
        return jsonify(erased.json()), 200

    @app.patch("/api/v1/customers/<customer_id>")
    async def update_customer(customer_id: str) -> ErrorResponse:
        scoped = await customer_in_scope(customer_id, "customer.update")
        if not isinstance(scoped, InScope):
            return scoped
        user, target = scoped.user, scoped.target
        if user.role not in ("admin", "supervisor"):
            return await refuse(user, "customer.update", "customer", target)
        customer, changes = await webchat.update_customer(
            node.database, node.privacy, user.account_id, target, await json_body(), full=True
        )
        await audit.record(
            node.database, user.account_id, user.role, user.user_id, "customer.update", "customer", target, changes
        )
        return jsonify(customer), 200

    # -- queues ----------------------------------------------------------------------------------

    @app.get("/api/v1/queues")
    async def list_queues() -> ErrorResponse:
        user = await signed_in()
        if not isinstance(user, SignedInUser):
            return user
        return jsonify({"queues": await queues.list_queues(node.database, user.account_id)}), 200

    @app.post("/api/v1/queues")
    async def create_queue() -> ErrorResponse:
        user = await signed_in()
        if not isinstance(user, SignedInUser):
            return user
        if user.role != "admin":
            return await refuse(user, "queue.create", "queue")
        queue = await queues.create_queue(
            node.database, user.account_id, await json_body(), audit=auditor(user, "queue.create", "queue")
        )
        node.queues_changed(user.account_id)
        return jsonify(queue), 201

    @app.get("/api/v1/queues/<queue_id>")
    async def get_queue(queue_id: str) -> ErrorResponse:
        user = await signed_in()
        if not isinstance(user, SignedInUser):
            return user
        return jsonify(await queues.get_queue(node.database, user.account_id, parse_id(queue_id, "queue"))), 200

    @app.patch("/api/v1/queues/<queue_id>")
    async def update_queue(queue_id: str) -> ErrorResponse:
        user = await signed_in()
        if not isinstance(user, SignedInUser):
            return user
        target = parse_id(queue_id, "queue")
        if user.role != "admin":
            return await refuse(user, "queue.update", "queue", target)
        queue = await queues.update_queue(
            node.database, user.account_id, target, await json_body(), audit=auditor(user, "queue.update", "queue")
        )
        node.queues_changed(user.account_id)
        return jsonify(queue), 200

    @app.delete("/api/v1/queues/<queue_id>")
    async def delete_queue(queue_id: str) -> tuple[Response | str, int]:
        user = await signed_in()
        if not isinstance(user, SignedInUser):
            return user
        target = parse_id(queue_id, "queue")
        if user.role != "admin":
            return await refuse(user, "queue.delete", "queue", target)
        await queues.delete_queue(node.database, user.account_id, target, audit=auditor(user, "queue.delete", "queue"))
        node.queues_changed(user.account_id)
        return "", 204

    # -- canned responses ------------------------------------------------------------------------

    @app.get("/api/v1/canned-responses")
    async def list_canned_responses() -> ErrorResponse:
        user = await signed_in()
        if not isinstance(user, SignedInUser):
            return user
        found = await canned.list_canned(node.database, user, request.args.get("q"))
        return jsonify({"canned_responses": found}), 200

    @app.post("/api/v1/canned-responses")
    async def create_canned_response() -> ErrorResponse:
        user = await signed_in()
        if not isinstance(user, SignedInUser):
            return user
        body = await json_body()
        try:
            created = await canned.create_canned(
                node.database, user, body, audit=auditor(user, "canned_response.create", "canned_response")
            )
        except canned.Forbidden:
            return await refuse(user, "canned_response.create", "canned_response")
        return jsonify(created), 201

    @app.patch("/api/v1/canned-responses/<canned_id>")
    async def update_canned_response(canned_id: str) -> ErrorResponse:
        user = await signed_in()
        if not isinstance(user, SignedInUser):
            return user
        target = parse_id(canned_id, "canned response")
        try:
            changed = await canned.update_canned(
                node.database,
                user,
                target,
                await json_body(),
                audit=auditor(user, "canned_response.update", "canned_response"),
            )
        except canned.Forbidden:
            return await refuse(user, "canned_response.update", "canned_response", target)
        return jsonify(changed), 200

    @app.delete("/api/v1/canned-responses/<canned_id>")
    async def delete_canned_response(canned_id: str) -> tuple[Response | str, int]:
        user = await signed_in()
        if not isinstance(user, SignedInUser):
            return user
        target = parse_id(canned_id, "canned response")
        try:
            await canned.delete_canned(
                node.database, user, target, audit=auditor(user, "canned_response.delete", "canned_response")
            )
        except canned.Forbidden:
            return await refuse(user, "canned_response.delete", "canned_response", target)
        return "", 204

    # -- attachments -----------------------------------------------------------------------------

    async def uploader() -> attachments.Uploader | None:
        token = bearer_token()
        if token is None:
            return None
        if webchat.is_visitor_token(token):
            visitor = await webchat.authenticate_visitor(
                node.database, token, node.privacy, ttl_days=node.config.visitor_ttl_days
            )
            return (
                None if visitor is None else attachments.Uploader(visitor.account_id, "customer", visitor.customer_id)
            )
        user = await authenticate(node.database, token)
        return None if user is None else attachments.Uploader(user.account_id, "agent", user.user_id)

    @app.post("/api/v1/attachments")
    async def upload_attachment() -> ErrorResponse:
        # Counted before the token is looked up or a byte of the body is read.
        if wait := gate.admit(gate.uploads_by_address, client_address()):
            await gate.hold_refusal()
            response, status = too_many("rate_limited", "too many uploads from this address; try again later", wait)
        else:
            response, status = await receive_attachment()
        if status >= 400:
            # The body may be partly unread: the client must not send another request on this connection.
            response.headers["Connection"] = "close"
        return response, status

    async def drain_body() -> None:
        """Read and drop a little more of a refused body, so the client is done sending and reads the answer.

        Bounded in bytes and time: a client that keeps sending is cut off when the connection closes.
        """
        dropped = 0
        with trio.move_on_after(DRAIN_SECONDS):
            async for chunk in request.body:
                dropped += len(chunk)
                if dropped > DRAIN_BYTES:
                    break

    async def receive_attachment() -> ErrorResponse:
        who = await uploader()
        if who is None:
            return unauthenticated()
        content_type = (request.mimetype or "").lower()
        kind = node.config.upload_content_types.get(content_type)
        if kind is None:
            return error_response("unsupported_media_type", f"files of type {content_type!r} are not accepted", 415)
        limit = node.config.max_upload_bytes
        if request.content_length is not None and request.content_length > limit:
            return error_response("payload_too_large", f"the file is larger than {limit} bytes", 413)
        timeout = app.config["BODY_TIMEOUT"] or float("inf")
        try:
            with trio.fail_after(timeout):
                stored = await attachments.store_upload(
                    node.database,
                    node.config.data_dir,
                    who,
                    content_type=content_type,
                    kind=kind,
                    filename=attachments.sanitize_filename(request.args.get("filename")),
                    chunks=aiter(request.body),
                    limit=limit,
                )
        except attachments.TooLarge as error:
            await drain_body()
            return error_response("payload_too_large", str(error), 413)
        except RequestEntityTooLarge:
            return error_response("payload_too_large", f"the file is larger than {limit} bytes", 413)
        except attachments.UnsupportedType as error:
            return error_response("unsupported_media_type", str(error), 415)
        except trio.TooSlowError:
            return error_response("request_timeout", "the file did not arrive in time", 408)
        return jsonify(stored), 201

    @app.get("/api/v1/attachments/<attachment_id>")
    async def download_attachment(attachment_id: str) -> Response | ErrorResponse:
        token = bearer_token()
        visitor = user = None
        if webchat.is_visitor_token(token):
            visitor = await current_visitor()
        elif token is not None:
            user = await authenticate(node.database, token)
        if visitor is None and user is None:
            return unauthenticated()
        account_id = visitor.account_id if visitor is not None else user.account_id  # type: ignore[union-attr]
        target = parse_id(attachment_id, "attachment")
        if user is not None:
            access = await node.conversations.attachment_access(account_id, user.user_id, user.role, target)
            if (refusal := await out_of_scope(user, access, "attachment.read", "attachment", target)) is not None:
                return refusal
        row = await attachments.find_attachment(node.database, account_id, target)
        if visitor is not None and not await attachments.visible_to_customer(
            node.database, account_id, target, visitor.customer_id
        ):
            raise NotFound("no such attachment")
        path = attachments.attachments_dir(node.config.data_dir, account_id) / str(target)
        if not await trio.to_thread.run_sync(path.is_file):
            raise NotFound("no such attachment")
        response = await send_file(path, mimetype=row["content_type"])
        response.headers["Content-Disposition"] = attachments.content_disposition(row["kind"], row["filename"])
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
        response.headers["Cache-Control"] = "private, max-age=3600"
        return response

    # -- conversation history ---------------------------------------------------------------------

    @app.get("/api/v1/customers/<customer_id>/conversations")
    async def customer_conversations(customer_id: str) -> ErrorResponse:
        scoped = await customer_in_scope(customer_id, "customer.history")
        if not isinstance(scoped, InScope):
            return scoped
        user, target = scoped.user, scoped.target
        history = await node.conversations.customer_history(
            user.account_id, target, user_id=user.user_id, role=user.role, full=await sees_contact_details(user)
        )
        return jsonify({"conversations": history}), 200

    @app.get("/api/v1/conversations")
    async def list_open_conversations() -> ErrorResponse:
        user = await signed_in()
        if not isinstance(user, SignedInUser):
            return user
        view = request.args.get("view", "departments")
        if view not in ("queued", "departments"):
            return error_response("invalid_request", "view must be 'queued' or 'departments'", 400)
        listed = await node.conversations.open_conversations(
            user.account_id,
            user.user_id,
            queued_only=view == "queued",
            every_department=user.role in ("supervisor", "admin"),
            full=await sees_contact_details(user),
        )
        return jsonify({"conversations": listed}), 200

    @app.get("/api/v1/conversations/<conversation_id>/events")
    async def conversation_events(conversation_id: str) -> ErrorResponse:
        user = await signed_in()
        if not isinstance(user, SignedInUser):
            return user
        target = parse_id(conversation_id, "conversation")
        access = await node.conversations.conversation_access(user.account_id, user.user_id, user.role, target)
        if (refusal := await out_of_scope(user, access, "conversation.events", "conversation", target)) is not None:
            return refusal
        try:
            after = int(request.args.get("after", "0"))
            limit = int(request.args.get("limit", "200"))
        except ValueError:
            return error_response("invalid_request", "after and limit must be integers", 400)
        if after < 0 or not 1 <= limit <= 500:
            return error_response("invalid_request", "after must be >= 0 and limit from 1 to 500", 400)
        events = await node.conversations.events_after(target, after, limit)
        row = await node.conversations.conversation(target)
        customer_name, masked = (row.customer_name if row else None), not await sees_contact_details(user)
        frames = [
            orjson.loads(
                encode_frame(event_frame(target, event, for_customer=False, customer_name=customer_name, masked=masked))
            )
            for event in events
        ]
        return jsonify({"events": frames}), 200

    # -- the API's description -------------------------------------------------------------------

    @app.get("/api/v1/openapi.json")
    async def openapi_document() -> ErrorResponse:
        return jsonify(openapi.document()), 200
