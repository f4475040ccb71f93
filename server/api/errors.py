"""The answers of errors raised outside a route's own refusals: all JSON, all `{"error": {"code", "message"}}`."""

from __future__ import annotations

from typing import Any

from quart import Response
from quart_trio import QuartTrio

from kefu.server import directory, roles
from kefu.server.api.route import Refused, error_response
from kefu.server.database import DatabaseUnavailable

FIXED: dict[Any, tuple[int, str, str]] = {
    directory.InvalidInput: (400, "invalid_request", ""),
    directory.NotFound: (404, "not_found", ""),
    directory.Conflict: (409, "conflict", ""),
    404: (404, "not_found", "no such resource"),
    413: (413, "payload_too_large", "request body too large"),
    # Quart decodes a body as UTF-8 before some parsers run: a body of other bytes would be a 500.
    UnicodeDecodeError: (400, "invalid_request", "the request body is not UTF-8 JSON"),
    DatabaseUnavailable: (503, "unavailable", "the database cannot be reached; try again"),
    # Quart has already logged the exception; the client gets JSON like every other error.
    500: (500, "internal_error", "internal server error"),
}
"""Error (class or status) -> (status, code, message); an empty message: the exception's own."""


def install(app: QuartTrio) -> None:
    for error, answer in FIXED.items():
        app.register_error_handler(error, _answer(*answer))

    @app.errorhandler(Refused)
    async def refused(error: Refused) -> Response:
        return error_response(error.code, str(error), error.status, retry_after=error.retry_after)

    @app.errorhandler(roles.RoleError)
    async def role_refused(error: roles.RoleError) -> Response:
        return error_response(error.code, str(error), error.status)

    @app.errorhandler(405)
    async def method_not_allowed(error: Exception) -> Response:
        response = error_response("method_not_allowed", "method not allowed here", 405)
        allowed = getattr(error, "valid_methods", None)
        if allowed:
            response.headers["Allow"] = ", ".join(sorted(allowed))
        return response

    @app.errorhandler(408)
    async def request_timeout(_error: Exception) -> Response:
        response = error_response("request_timeout", "the request body did not arrive in time", 408)
        response.headers["Connection"] = "close"
        return response


def _answer(status: int, code: str, message: str) -> Any:
    async def answer(error: Exception) -> Response:
        return error_response(code, message or str(error), status)

    return answer
