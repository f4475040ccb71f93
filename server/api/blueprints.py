"""Every resource's blueprint, installed on the app."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quart import Response
from quart_trio import QuartTrio

from kefu.server.api import audit_log, business_hours, canned_responses, directory, queues
from kefu.server.api.route import Refused, error_response

if TYPE_CHECKING:
    from kefu.server.node import Node

BLUEPRINTS = (directory.bp, queues.bp, business_hours.bp, audit_log.bp, canned_responses.bp)


def install(app: QuartTrio, node: Node) -> None:
    """Register every resource's blueprint on `app`, and the answer of a `Refused`."""
    app.extensions["kefu.node"] = node
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)

    @app.errorhandler(Refused)
    async def refused(error: Refused) -> Response:
        return error_response(error.code, str(error), error.status, retry_after=error.retry_after)
