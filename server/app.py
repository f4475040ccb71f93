"""The HTTP edge: the quart-trio application. Handlers translate; the node decides."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from quart import Response, jsonify, request, send_from_directory
from quart_trio import QuartTrio

from kefu.server import audit, auth, business_hours, contact_center, directory, metrics, privacy, sockets
from kefu.server.api import roles as roles_api
from kefu.server.database import DatabaseUnavailable

if TYPE_CHECKING:
    from kefu.server.node import Node

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

WEB_PAGES = ("agent", "supervisor", "admin", "chat")
"""Pages served at /<name> from web/<name>.html."""

VENDOR_FILES = {"echarts.min.js": "echarts/dist/echarts.min.js"}
"""Browser libraries served at /vendor/<name>, from web/node_modules (see web/package.json)."""


MAX_CREDENTIAL_CHARS = 1024
"""Longest account slug, e-mail or password a sign-in request may carry."""


def error_response(code: str, message: str, status: int) -> tuple[Response, int]:
    return jsonify({"error": {"code": code, "message": message}}), status


def too_many(code: str, message: str, retry_after: int, status: int = 429) -> tuple[Response, int]:
    """429 (or 503) with `Retry-After` in whole seconds."""
    response, status = error_response(code, message, status)
    response.headers["Retry-After"] = str(retry_after)
    return response, status


def client_address() -> str:
    """The address of the request's peer (what the per-address limits count)."""
    return request.remote_addr or "unknown"


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
        "permissions": sorted(user.permissions),
    }


def _unauthenticated() -> tuple[Response, int]:
    response, status = error_response("unauthenticated", "a valid session token is required", 401)
    response.headers["WWW-Authenticate"] = "Bearer"
    return response, status


def create_app(node: Node) -> QuartTrio:
    app = QuartTrio(__name__, static_folder=None, root_path=str(WEB_DIR.parent))
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    app.config["BODY_TIMEOUT"] = node.config.body_timeout_seconds  # a slower body gets 408
    registry = metrics.metrics_registry(node)
    gate = auth.Gate(node.config)
    app.extensions["kefu.gate"] = gate

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
                gate,
                body["account"],
                body["email"],
                body["password"],
                timedelta(hours=node.config.session_ttl_hours),
                address=client_address(),
                user_agent=request.headers.get("User-Agent"),
            )
        except auth.SignInRefused as refused:
            await gate.hold_refusal()
            return too_many(refused.code, str(refused), refused.retry_after, 503 if refused.code == "busy" else 429)
        except auth.InvalidCredentials:
            return error_response("invalid_credentials", "invalid account, e-mail or password", 401)
        return jsonify({"token": token, "expires_at": user.expires_at.isoformat(), "user": user_json(user)}), 200

    async def current_user() -> auth.SignedInUser | None:
        """Who the request's bearer token signs in, if anyone."""
        token = bearer_token()
        return await auth.authenticate(node.database, token) if token is not None else None

    @app.post("/api/v1/auth/sign-out")
    async def sign_out() -> tuple[Response | str, int]:
        token = bearer_token()
        user = await auth.authenticate(node.database, token) if token is not None else None
        if token is None or not await auth.sign_out(node.database, token):
            return _unauthenticated()
        if user is not None:
            node.signed_out(user.user_id, auth.token_hash(token))
        return "", 204

    @app.get("/api/v1/me")
    async def me() -> tuple[Response, int]:
        user = await current_user()
        if user is None:
            return _unauthenticated()
        return jsonify(user_json(user)), 200

    async def staff(*, write: bool) -> auth.SignedInUser | tuple[Response, int]:
        """The signed-in caller when their role may do this; otherwise the error to answer with.

        Admins may read and change the directory, supervisors may only read it, agents neither.
        """
        user = await current_user()
        if user is None:
            return _unauthenticated()
        if user.role != "admin" and (write or user.role != "supervisor"):
            await audit.record(
                node.database,
                user.account_id,
                user.role,
                user.user_id,
                "forbidden",
                "directory",
                None,
                {"method": request.method, "path": request.path},
            )
            return error_response("forbidden", "your role may not do this", 403)
        return user

    def directory_auditor(user: auth.SignedInUser, target_type: str) -> directory.Audit:
        """Writes a directory change to the audit log inside the change's transaction."""

        async def write(conn: Any, action: str, target_id: Any, detail: dict[str, Any]) -> None:
            await audit.record(conn, user.account_id, user.role, user.user_id, action, target_type, target_id, detail)

        return write

    async def json_body() -> Any:
        return await request.get_json(force=True, silent=True)

    def group_routes(kind: str, plural: str) -> None:
        @app.get(f"/api/v1/{plural}", endpoint=f"list_{plural}")
        async def list_groups() -> tuple[Response, int]:
            user = await staff(write=False)
            if not isinstance(user, auth.SignedInUser):
                return user
            groups = await directory.list_groups(node.database, kind, user.account_id)
            return jsonify({plural: [g.json() for g in groups]}), 200

        @app.post(f"/api/v1/{plural}", endpoint=f"create_{kind}")
        async def create_group() -> tuple[Response, int]:
            user = await staff(write=True)
            if not isinstance(user, auth.SignedInUser):
                return user
            group = await directory.create_group(
                node.database, kind, user.account_id, await json_body(), audit=directory_auditor(user, kind)
            )
            return jsonify(group.json()), 201

        @app.patch(f"/api/v1/{plural}/<group_id>", endpoint=f"rename_{kind}")
        async def rename_group(group_id: str) -> tuple[Response, int]:
            user = await staff(write=True)
            if not isinstance(user, auth.SignedInUser):
                return user
            group = await directory.rename_group(
                node.database,
                kind,
                user.account_id,
                directory.parse_id(group_id, kind),
                await json_body(),
                audit=directory_auditor(user, kind),
            )
            return jsonify(group.json()), 200

        @app.delete(f"/api/v1/{plural}/<group_id>", endpoint=f"delete_{kind}")
        async def delete_group(group_id: str) -> tuple[Response | str, int]:
            user = await staff(write=True)
            if not isinstance(user, auth.SignedInUser):
                return user
            await directory.delete_group(
                node.database,
                kind,
                user.account_id,
                directory.parse_id(group_id, kind),
                audit=directory_auditor(user, kind),
            )
            return "", 204

    group_routes("department", "departments")
    group_routes("skill", "skills")

    @app.get("/api/v1/agents")
    async def list_agents() -> tuple[Response, int]:
        user = await staff(write=False)
        if not isinstance(user, auth.SignedInUser):
            return user
        return jsonify({"agents": await directory.list_agents(node.database, user.account_id)}), 200

    @app.post("/api/v1/agents")
    async def create_agent() -> tuple[Response, int]:
        user = await staff(write=True)
        if not isinstance(user, auth.SignedInUser):
            return user
        created = await directory.create_agent(
            node.database, user.account_id, await json_body(), audit=directory_auditor(user, "agent")
        )
        return jsonify(created), 201

    async def agent_not_found(user: auth.SignedInUser, attempted: str, agent_id: Any) -> None:
        """An agent id that is not in the caller's account (another account's, or none): audited, then 404."""
        await audit.record_denial(
            node.database,
            user.account_id,
            user.role,
            user.user_id,
            attempted,
            "agent",
            agent_id,
            {"status": 404, "method": request.method, "path": request.path},
        )

    @app.get("/api/v1/agents/<agent_id>")
    async def get_agent(agent_id: str) -> tuple[Response, int]:
        user = await staff(write=False)
        if not isinstance(user, auth.SignedInUser):
            return user
        target = directory.parse_id(agent_id, "agent")
        try:
            agent = await directory.get_agent(node.database, user.account_id, target)
        except directory.NotFound:
            await agent_not_found(user, "agent.read", target)
            raise
        return jsonify(agent), 200

    @app.patch("/api/v1/agents/<agent_id>")
    async def update_agent(agent_id: str) -> tuple[Response, int]:
        user = await staff(write=True)
        if not isinstance(user, auth.SignedInUser):
            return user
        recorded: dict[str, Any] = {}
        write_audit = directory_auditor(user, "agent")

        async def audit_and_keep(conn: Any, action: str, target_id: Any, detail: dict[str, Any]) -> None:
            recorded.update(detail.get("changes", {}))
            await write_audit(conn, action, target_id, detail)

        changed = directory.parse_id(agent_id, "agent")
        try:
            agent = await directory.update_agent(
                node.database,
                user.account_id,
                changed,
                await json_body(),
                acting_user_id=user.user_id,
                audit=audit_and_keep,
            )
        except directory.NotFound as missing:
            if str(missing) == "no such agent":  # not a department or skill named in the body
                await agent_not_found(user, "agent.update", changed)
            raise
        if agent.get("disabled") or "role" in recorded:
            # Their sessions were revoked (a socket carries the role of its handshake): close the sockets.
            node.signed_out(changed, None)
        else:
            # Departments are read live by every check; routing reloads the profile.
            node.agent_changed(changed)
            if (handle := node.center.agent(changed)) is not None:
                # Open sockets mask texts by the permission: they follow a change at once.
                sees = await privacy.viewer_may_see(node.database, user.account_id, changed)
                for connection in list(handle.connections):
                    connection.sees_contact_details = sees
        return jsonify(agent), 200

    @app.post("/api/v1/agents/<agent_id>/unlock")
    async def unlock_agent(agent_id: str) -> tuple[Response, int]:
        """Lift a user's sign-in lockout (docs/security.md, "Sign-in"); admins only, audited."""
        user = await staff(write=True)
        if not isinstance(user, auth.SignedInUser):
            return user
        target = directory.parse_id(agent_id, "agent")
        was_locked = await auth.unlock_user(
            node.database, user.account_id, target, actor_role=user.role, actor_id=user.user_id
        )
        if was_locked is None:
            raise directory.NotFound("no such agent")
        return jsonify({"id": str(target), "was_locked": was_locked}), 200

    business_hours.register(app, node, current_user, error_response, _unauthenticated)
    roles_api.register(app, node)
    audit.register(app, node, current_user, error_response, _unauthenticated)
    contact_center.register(
        app,
        node,
        current_user=current_user,
        bearer_token=bearer_token,
        error_response=error_response,
        unauthenticated=_unauthenticated,
        too_many=too_many,
        client_address=client_address,
        gate=gate,
    )

    @app.errorhandler(directory.InvalidInput)
    async def invalid_input(error: Exception) -> tuple[Response, int]:
        return error_response("invalid_request", str(error), 400)

    @app.errorhandler(directory.NotFound)
    async def directory_not_found(error: Exception) -> tuple[Response, int]:
        return error_response("not_found", str(error), 404)

    @app.errorhandler(directory.Conflict)
    async def conflict(error: Exception) -> tuple[Response, int]:
        return error_response("conflict", str(error), 409)

    @app.get("/")
    async def index() -> Response:
        return await send_from_directory(WEB_DIR, "index.html")

    # -- the web pages: files of web/, and the browser libraries npm installed -----------------

    def _page(name: str) -> Any:
        async def page() -> Response:
            response = await send_from_directory(WEB_DIR, f"{name}.html")
            response.headers["X-Content-Type-Options"] = "nosniff"
            response.headers["Cache-Control"] = "no-cache"
            return response

        page.__name__ = f"page_{name}"
        return page

    for name in WEB_PAGES:
        app.get(f"/{name}")(_page(name))

    @app.get("/favicon.ico")
    async def favicon() -> Response:
        return await send_from_directory(WEB_DIR / "static", "favicon.svg", mimetype="image/svg+xml")

    # The chat widget runs on other sites: its requests (visitor token, attachments) are
    # cross-origin. They carry a bearer token, never cookies, so any origin may make them.
    def _widget_api(path: str) -> bool:
        return path.startswith(("/api/v1/webchat/", "/api/v1/attachments"))

    @app.before_request
    async def widget_preflight() -> Response | None:
        if request.method == "OPTIONS" and _widget_api(request.path):
            response = Response("", status=204)
            response.headers["Access-Control-Allow-Methods"] = "GET, POST, PATCH"
            response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
            response.headers["Access-Control-Max-Age"] = "600"
            return response
        return None

    @app.after_request
    async def widget_cors(response: Response) -> Response:
        if _widget_api(request.path):
            response.headers["Access-Control-Allow-Origin"] = "*"
        return response

    @app.get("/widget.js")
    async def widget_script() -> Response:
        response = await send_from_directory(WEB_DIR, "widget.js")
        response.headers["Access-Control-Allow-Origin"] = "*"  # embedded on other sites
        response.headers["Cache-Control"] = "no-cache"
        return response

    @app.get("/static/<path:path>")
    async def static_file(path: str) -> Response:
        response = await send_from_directory(WEB_DIR / "static", path)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-cache"
        return response

    @app.get("/vendor/<name>")
    async def vendor_file(name: str) -> Response | tuple[Response, int]:
        """Third-party browser files, straight from web/node_modules (installed by `make`)."""
        relative = VENDOR_FILES.get(name)
        if relative is None:
            return error_response("not_found", "no such file", 404)
        path = WEB_DIR / "node_modules" / relative
        if not path.is_file():
            return error_response("not_installed", "browser libraries are missing: run `make run` to install them", 404)
        response = await send_from_directory(path.parent, path.name)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "public, max-age=86400"
        return response

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

    @app.errorhandler(UnicodeDecodeError)
    async def body_not_utf8(_error: Exception) -> tuple[Response, int]:
        # Quart's get_json(silent=True) decodes the body as UTF-8 before it parses, outside what
        # `silent` covers: a body of other bytes would otherwise be a 500.
        return error_response("invalid_request", "the request body is not UTF-8 JSON", 400)

    @app.errorhandler(408)
    async def request_timeout(_error: Exception) -> tuple[Response, int]:
        response = jsonify({"error": {"code": "request_timeout", "message": "the request body did not arrive in time"}})
        response.headers["Connection"] = "close"
        return response, 408

    @app.errorhandler(DatabaseUnavailable)
    async def database_unavailable(_error: Exception) -> tuple[Response, int]:
        return error_response("unavailable", "the database cannot be reached; try again", 503)

    @app.errorhandler(500)
    async def internal_error(_error: Exception) -> tuple[Response, int]:
        # Quart has already logged the exception; the client gets JSON like every other error.
        return jsonify({"error": {"code": "internal_error", "message": "internal server error"}}), 500

    sockets.register_websockets(app, node)
    return app
