"""The HTTP edge: the quart-trio application. Handlers translate; the node decides."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from quart import Response, jsonify, request, send_from_directory
from quart_trio import QuartTrio

from kefu.server import sockets
from kefu.server.api import blueprints

if TYPE_CHECKING:
    from kefu.server.node import Node

WEB_DIR = Path(__file__).resolve().parent.parent / "web"

WEB_PAGES = ("agent", "supervisor", "admin", "chat")
"""Pages served at /<name> from web/<name>.html."""

VENDOR_FILES = {"echarts.min.js": "echarts/dist/echarts.min.js"}
"""Browser libraries served at /vendor/<name>, from web/node_modules (see web/package.json)."""


def error_response(code: str, message: str, status: int) -> tuple[Response, int]:
    return jsonify({"error": {"code": code, "message": message}}), status


def create_app(node: Node) -> QuartTrio:
    app = QuartTrio(__name__, static_folder=None, root_path=str(WEB_DIR.parent))
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    app.config["BODY_TIMEOUT"] = node.config.body_timeout_seconds  # a slower body gets 408
    blueprints.install(app, node)

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

    sockets.register_websockets(app, node)
    return app
