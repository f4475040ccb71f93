"""The HTTP edge: the quart-trio application. Handlers translate; the node decides."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from quart import Response, jsonify, send_from_directory
from quart_trio import QuartTrio

from kefu.server import metrics

if TYPE_CHECKING:
    from kefu.server.node import Node

WEB_DIR = Path(__file__).resolve().parent.parent / "web"


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

    @app.errorhandler(500)
    async def internal_error(_error: Exception) -> tuple[Response, int]:
        # Quart has already logged the exception; the client gets JSON like every other error.
        return jsonify({"error": {"code": "internal_error", "message": "internal server error"}}), 500

    return app
