"""The HTTP edge: the quart-trio application. Handlers translate; the node decides."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quart import Response, jsonify, request, send_from_directory
from quart_trio import QuartTrio

from kefu.server import auth, metrics
from kefu.server.database import DatabaseUnavailable

if TYPE_CHECKING:
    from kefu.server.node import Node

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


MAX_CREDENTIAL_CHARS = 1024
"""Longest account slug, e-mail or password a sign-in request may carry."""


def error_response(code: str, message: str, status: int) -> tuple[Response, int]:
    return jsonify({"error": {"code": code, "message": message}}), status


def bearer_token() -> str | None:
    """The token of the request's `Authorization: Bearer <token>` header, or None."""
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def user_json(user: auth.SignedInUser) -> dict[str, Any]:
    return {
        "id": str(user.user_id),
        "email": user.email,
        "display_name": user.display_name,
        "role": user.role,
        "account_id": str(user.account_id),
    }


def _unauthenticated() -> tuple[Response, int]:
    response, status = error_response("unauthenticated", "a valid session token is required", 401)
    response.headers["WWW-Authenticate"] = "Bearer"
    return response, status


def create_app(node: Node) -> QuartTrio:
    app = QuartTrio(__name__, static_folder=None, root_path=str(WEB_DIR.parent))
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    registry = metrics.metrics_registry(node)

    @app.get("/healthz")
    async def healthz() -> Response:
        """The process is alive and its event loop answers."""
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    async def readyz() -> tuple[Response, int]:
        """The node can take work: store running, database reachable, schema current."""
        checks = await node.readiness()
        ready = all(checks.values())
        return jsonify({"ready": ready, "checks": checks}), (200 if ready else 503)

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        return Response(metrics.render(registry), content_type=metrics.CONTENT_TYPE)

    @app.post("/api/v1/auth/sign-in")
    async def sign_in() -> tuple[Response, int]:
        body = await request.get_json(force=True, silent=True)
        fields = ("account", "email", "password")
        if not isinstance(body, dict) or not all(
            isinstance(body.get(f), str) and 0 < len(body[f]) <= MAX_CREDENTIAL_CHARS for f in fields
        ):
            return error_response(
                "invalid_request", "expected a JSON object with string fields account, email and password", 400
            )
        try:
            token, user = await auth.sign_in(
                node.database,
                body["account"],
                body["email"],
                body["password"],
                timedelta(hours=node.config.session_ttl_hours),
                user_agent=request.headers.get("User-Agent"),
            )
        except auth.InvalidCredentials:
            return error_response("invalid_credentials", "invalid account, e-mail or password", 401)
        return jsonify({"token": token, "expires_at": user.expires_at.isoformat(), "user": user_json(user)}), 200

    @app.post("/api/v1/auth/sign-out")
    async def sign_out() -> tuple[Response | str, int]:
        token = bearer_token()
        if token is None or await auth.authenticate(node.database, token) is None:
            return _unauthenticated()
        await auth.sign_out(node.database, token)
        return "", 204

    @app.get("/api/v1/me")
    async def me() -> tuple[Response, int]:
        token = bearer_token()
        user = await auth.authenticate(node.database, token) if token is not None else None
        if user is None:
            return _unauthenticated()
        return jsonify(user_json(user)), 200

    @app.get("/")
    async def index() -> Response:
        return await send_from_directory(WEB_DIR, "index.html")

    @app.errorhandler(404)
    async def not_found(_error: Exception) -> tuple[Response, int]:
        return jsonify({"error": {"code": "not_found", "message": "no such resource"}}), 404

    @app.errorhandler(405)
    async def method_not_allowed(error: Exception) -> tuple[Response, int]:
        response = jsonify({"error": {"code": "method_not_allowed", "message": "method not allowed here"}})
        allowed = getattr(error, "valid_methods", None)
        if allowed:
            response.headers["Allow"] = ", ".join(sorted(allowed))
        return response, 405

    @app.errorhandler(413)
    async def too_large(_error: Exception) -> tuple[Response, int]:
        return jsonify({"error": {"code": "payload_too_large", "message": "request body too large"}}), 413

    @app.errorhandler(DatabaseUnavailable)
    async def database_unavailable(_error: Exception) -> tuple[Response, int]:
        return error_response("unavailable", "the database cannot be reached; try again", 503)

    @app.errorhandler(500)
    async def internal_error(_error: Exception) -> tuple[Response, int]:
        # Quart has already logged the exception; the client gets JSON like every other error.
        return jsonify({"error": {"code": "internal_error", "message": "internal server error"}}), 500

    return app
