"""Signing in and out, and who the token signs in (`/me`)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated
from uuid import UUID

import msgspec
from msgspec import Meta
from quart import Blueprint, request

from kefu.protocol.permissions import Permission
from kefu.server import auth
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
)

bp = Blueprint("auth", __name__)
TAG = "auth"

MAX_CREDENTIAL_CHARS = 1024
"""Longest account slug, e-mail or password a sign-in request may carry."""

Credential = Annotated[str, Meta(min_length=1, max_length=MAX_CREDENTIAL_CHARS)]


class SignIn(msgspec.Struct):
    """The account's slug, the user's e-mail and password."""

    account: Credential
    email: Credential
    password: Credential


class User(msgspec.Struct):
    """A signed-in user."""

    id: UUID
    email: str
    display_name: str
    role: str
    account_id: UUID
    permissions: list[Permission]
    """What the user may do, sorted by name: their role's permissions, and `contacts.view_unmasked`
    when it was granted to them alone. The pages decide what to show from these, never from `role`."""


class Session(msgspec.Struct):
    """A session: its token (shown once) and who it signs in."""

    token: str
    expires_at: datetime
    user: User


def user_of(user: auth.SignedInUser) -> User:
    return User(user.user_id, user.email, user.display_name, user.role, user.account_id, sorted(user.permissions))


@route(
    bp,
    "POST",
    "/api/v1/auth/sign-in",
    permission=PUBLIC,
    body=SignIn,
    answer=Session,
    tag=TAG,
    summary="Sign in with account, e-mail and password",
    errors=(400,),
    responses={
        "401": {"description": "`invalid_credentials`: wrong account, e-mail or password (never said which)"},
        "429": {
            "description": "`rate_limited`: too many attempts from this client address or for this account and"
            " e-mail; `locked_out`: too many wrong passwords in a row (`kefu account unlock` lifts it)."
            " No password was checked"
        },
        "503": {
            "description": "`busy`: too many sign-ins wait for a password hash (with `Retry-After`); `unavailable`:"
            " the database cannot be reached"
        },
    },
)
async def sign_in(call: PublicCall[SignIn, None]) -> Session:
    the_gate, body = gate(), call.body
    try:
        token, user = await auth.sign_in(
            call.node.database,
            the_gate,
            body.account,
            body.email,
            body.password,
            timedelta(hours=call.node.config.session_ttl_hours),
            address=client_address(),
            user_agent=request.headers.get("User-Agent"),
        )
    except auth.SignInRefused as refused:
        await the_gate.hold_refusal()
        status = 503 if refused.code == "busy" else 429
        raise Refused(status, refused.code, str(refused), retry_after=refused.retry_after) from None
    except auth.InvalidCredentials:
        raise Refused(401, "invalid_credentials", "invalid account, e-mail or password") from None
    return Session(token, user.expires_at, user_of(user))


@route(
    bp, "POST", "/api/v1/auth/sign-out", permission=SIGNED_IN, status=204, tag=TAG, summary="Revoke the bearer token"
)
async def sign_out(call: Call[None, None]) -> None:
    token = bearer_token()
    assert token is not None  # the guard signed it in
    if not await auth.sign_out(call.node.database, token):
        raise Refused(401, "unauthenticated", "a valid session token is required")
    call.node.signed_out(call.user.user_id, auth.token_hash(token))


@route(bp, "GET", "/api/v1/me", permission=SIGNED_IN, answer=User, tag=TAG, summary="The signed-in user")
async def me(call: Call[None, None]) -> User:
    return user_of(call.user)
