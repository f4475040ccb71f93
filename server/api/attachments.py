"""Attachments: uploads from users and visitors, downloads within the caller's scope.

Both routes are public in the guard's sense: they take either a user's session token or a
visitor's `kv_` token, and authenticate it themselves.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec
import trio
from msgspec import Meta
from quart import Blueprint, Response, current_app, request, send_file
from quart_trio import QuartTrio
from werkzeug.exceptions import RequestEntityTooLarge

from kefu.server import attachments, auth, webchat
from kefu.server.api import scope
from kefu.server.api.route import (
    PUBLIC,
    Call,
    PublicCall,
    Refused,
    bearer_token,
    client_address,
    error_response,
    gate,
    route,
    unauthenticated,
)
from kefu.server.directory import NotFound

bp = Blueprint("attachments", __name__)
TAG = "attachments"
EITHER_TOKEN = ("bearerAuth", "visitorToken")

VISITOR_BODY_BYTES = 8 * 1024
"""Largest body the unauthenticated visitor endpoints read."""
DRAIN_BYTES, DRAIN_SECONDS = 1024 * 1024, 2.0
"""How much of an upload refused as too large is still read (and dropped) before answering."""


class Attachment(msgspec.Struct):
    id: UUID
    kind: Literal["image", "voice", "video", "file"]
    content_type: str
    filename: Annotated[str, Meta(min_length=1, max_length=attachments.MAX_FILENAME_CHARS)]
    size_bytes: Annotated[int, Meta(ge=1)]


class UploadName(msgspec.Struct):
    filename: (
        Annotated[str, Meta(description="the file's name (folders and control characters are removed)")] | None
    ) = None


def install_body_limits(app: QuartTrio, max_upload_bytes: int) -> None:
    """Per-route request body limits: uploads may reach `max_upload_bytes`, visitor bodies 8 KiB.

    Quart sizes a request's body buffer when it creates the request, before routing, from
    `MAX_CONTENT_LENGTH`; so the request class picks the limit by method and path.
    """
    base = app.request_class

    def limit(method: str, path: str, default: int | None) -> int | None:
        if method == "POST" and path == "/api/v1/attachments":
            return max_upload_bytes
        if (method, path) in (("POST", "/api/v1/webchat/visitors"), ("PATCH", "/api/v1/webchat/visitor")):
            return VISITOR_BODY_BYTES
        return default

    class LimitedRequest(base):  # type: ignore[valid-type, misc]
        def __init__(self, method: str, scheme: str, path: str, *args: Any, **kwargs: Any) -> None:
            kwargs["max_content_length"] = limit(method, path, kwargs.get("max_content_length"))
            super().__init__(method, scheme, path, *args, **kwargs)

    app.request_class = LimitedRequest


async def uploader(call: PublicCall[Any, Any]) -> attachments.Uploader:
    token, kefu = bearer_token(), call.node
    found = None
    if token is not None and webchat.is_visitor_token(token):
        visitor = await webchat.authenticate_visitor(
            kefu.database, token, kefu.privacy, ttl_days=kefu.config.visitor_ttl_days
        )
        if visitor is not None:
            found = attachments.Uploader(visitor.account_id, "customer", visitor.customer_id)
    elif token is not None:
        user = await auth.authenticate(kefu.database, token)
        found = None if user is None else attachments.Uploader(user.account_id, "agent", user.user_id)
    if found is None:
        raise unauthenticated()
    return found


UPLOAD_TYPES = {t: {"schema": {"type": "string", "contentMediaType": t}} for t in ("image/png", "application/pdf")}


@route(
    bp,
    "POST",
    "/api/v1/attachments",
    permission=PUBLIC,
    security=EITHER_TOKEN,
    query=UploadName,
    answer=Attachment,
    status=201,
    tag=TAG,
    summary="Upload a file: the raw bytes as the body, its type as Content-Type (user or visitor token)",
    errors=(400, 401, 413, 415, 429),
    request_body={
        "required": True,
        "description": "one of the configured upload_content_types",
        "content": {**UPLOAD_TYPES, "*/*": {"schema": {"type": "string", "format": "binary"}}},
    },
)
async def upload_attachment(call: PublicCall[None, UploadName]) -> Response | Attachment:
    limits = gate()
    try:
        # Counted before the token is looked up or a byte of the body is read.
        if wait := limits.admit(limits.uploads_by_address, client_address()):
            await limits.hold_refusal()
            raise Refused(429, "rate_limited", "too many uploads from this address; try again later", retry_after=wait)
        return await receive_attachment(call)
    except Refused as refused:
        response = error_response(refused.code, str(refused), refused.status, retry_after=refused.retry_after)
        # The body may be partly unread: the client must not send another request on this connection.
        response.headers["Connection"] = "close"
        return response


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


async def receive_attachment(call: PublicCall[None, UploadName]) -> Attachment:
    who, config = await uploader(call), call.node.config
    content_type = (request.mimetype or "").lower()
    kind = config.upload_content_types.get(content_type)
    if kind is None:
        raise Refused(415, "unsupported_media_type", f"files of type {content_type!r} are not accepted")
    limit = config.max_upload_bytes
    too_large = Refused(413, "payload_too_large", f"the file is larger than {limit} bytes")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    timeout = current_app.config["BODY_TIMEOUT"] or float("inf")
    try:
        with trio.fail_after(timeout):
            stored = await attachments.store_upload(
                call.node.database,
                config.data_dir,
                who,
                content_type=content_type,
                kind=kind,
                filename=attachments.sanitize_filename(call.query.filename),
                chunks=aiter(request.body),
                limit=limit,
            )
    except attachments.TooLarge as error:
        await drain_body()
        raise Refused(413, "payload_too_large", str(error)) from None
    except RequestEntityTooLarge:
        raise too_large from None
    except attachments.UnsupportedType as error:
        raise Refused(415, "unsupported_media_type", str(error)) from None
    except trio.TooSlowError:
        raise Refused(408, "request_timeout", "the file did not arrive in time") from None
    return msgspec.convert(stored, Attachment)


@route(
    bp,
    "GET",
    "/api/v1/attachments/<attachment_id>",
    permission=PUBLIC,
    security=EITHER_TOKEN,
    tag=TAG,
    target="attachment",
    summary="Download a file (users within their departments; the visitor who uploaded it)",
    errors=(401, 403, 404),
    responses={
        "200": {
            "description": "the file, with its stored content type",
            "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def download_attachment(call: PublicCall[None, None], attachment_id: str) -> Response:
    token, kefu, target = bearer_token(), call.node, UUID(attachment_id)
    visitor = user = None
    if webchat.is_visitor_token(token):
        assert token is not None
        visitor = await webchat.authenticate_visitor(
            kefu.database, token, kefu.privacy, ttl_days=kefu.config.visitor_ttl_days
        )
    elif token is not None:
        user = await auth.authenticate(kefu.database, token)
    if visitor is not None:
        account_id = visitor.account_id
        if not await attachments.visible_to_customer(kefu.database, account_id, target, visitor.customer_id):
            raise NotFound("no such attachment")
    elif user is not None:
        account_id = user.account_id
        signed_in: Call[None, None] = Call(kefu, user, None, None)
        access = await kefu.conversations.attachment_access(account_id, user.user_id, scope.reads_all(user), target)
        await scope.check(signed_in, access, "attachment.read", "attachment", target)
    else:
        raise unauthenticated()
    return await _file(call, account_id, target)


async def _file(call: PublicCall[None, None], account_id: UUID, target: UUID) -> Response:
    row = await attachments.find_attachment(call.node.database, account_id, target)
    path = attachments.attachments_dir(call.node.config.data_dir, account_id) / str(target)
    if not await trio.to_thread.run_sync(path.is_file):
        raise NotFound("no such attachment")
    response = await send_file(path, mimetype=row["content_type"])
    response.headers["Content-Disposition"] = attachments.content_disposition(row["kind"], row["filename"])
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response
