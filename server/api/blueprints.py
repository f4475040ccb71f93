"""Every resource's blueprint, installed on the app, and the answers of the edge's own errors."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from quart import Response
from quart_trio import QuartTrio

from kefu.server import auth, metrics, privacy
from kefu.server.api import (
    attachments,
    audit_log,
    business_hours,
    canned_responses,
    conversations,
    customers,
    directory,
    documents,
    errors,
    health,
    queues,
    roles,
)
from kefu.server.api import auth as sign_in
from kefu.server.api.route import error_response

if TYPE_CHECKING:
    from kefu.server.node import Node

log = logging.getLogger("kefu.api")

BLUEPRINTS = (
    health.bp,
    sign_in.bp,
    directory.bp,
    customers.bp,
    queues.bp,
    canned_responses.bp,
    attachments.bp,
    conversations.bp,
    business_hours.bp,
    audit_log.bp,
    roles.bp,
    documents.bp,
)


def install(app: QuartTrio, node: Node) -> None:
    """Register every resource's blueprint on `app`, the request body limits, and the answers
    of errors (`errors`, and personal data that does not decrypt)."""
    app.extensions["kefu.node"] = node
    app.extensions["kefu.gate"] = auth.Gate(node.config)
    app.extensions["kefu.metrics"] = metrics.metrics_registry(node)
    attachments.install_body_limits(app, int(node.config.max_upload_bytes))
    for blueprint in BLUEPRINTS:
        app.register_blueprint(blueprint)
    errors.install(app)

    @app.errorhandler(privacy.DataKeyError)
    async def data_key_error(error: privacy.DataKeyError) -> Response:
        log.error("personal data does not decrypt: %s", error)
        return error_response(
            "data_key_mismatch", "customers' personal data cannot be decrypted with the configured data key", 500
        )
