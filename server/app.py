"""The HTTP edge: the quart-trio application. Handlers translate; the node decides.

REST routes live in one blueprint per resource (`kefu.server.api`), the pages in
`kefu.server.pages`, the websockets in `kefu.server.sockets`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from quart import Response, request
from quart_trio import QuartTrio

from kefu.server import pages, sockets
from kefu.server.api import blueprints

if TYPE_CHECKING:
    from kefu.server.node import Node


def create_app(node: Node) -> QuartTrio:
    app = QuartTrio(__name__, static_folder=None, root_path=str(Path(__file__).resolve().parent))
    app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    app.config["BODY_TIMEOUT"] = node.config.body_timeout_seconds  # a slower body gets 408
    app.register_blueprint(pages.pages)
    blueprints.install(app, node)

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

    sockets.register_websockets(app, node)
    return app
