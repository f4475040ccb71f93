"""Every resource's blueprint, installed on the app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Response
from quart_trio import QuartTrio

from kefu.server import auth, metrics
from kefu.server.api import audit_log, business_hours, canned_responses, directory, health, queues
from kefu.server.api import auth as sign_in
from kefu.server.api.route import Refused, error_response

if TYPE_CHECKING:
    from kefu.server.node import Node

BLUEPRINTS = (health.bp, sign_in.bp, directory.bp, queues.bp, business_hours.bp, audit_log.bp, canned_responses.bp)


def install(app: QuartTrio, node: Node) -> None:
    """Register every resource's blueprint on `app`, and the answer of a `Refused`."""
    app.extensions["kefu.node"] = node
    app.extensions["kefu.gate"] = auth.Gate(node.config)
    app.extensions["kefu.metrics"] = metrics.metrics_registry(node)
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)

    @app.errorhandler(Refused)
    async def refused(error: Refused) -> Response:
        return error_response(error.code, str(error), error.status, retry_after=error.retry_after)
