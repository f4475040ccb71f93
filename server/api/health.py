"""Health, readiness and metrics: public, for load balancers and Prometheus."""

from __future__ import annotations

import msgspec
from quart import Blueprint, Response, current_app

from kefu.server import metrics
from kefu.server.api.route import PUBLIC, PublicCall, WithStatus, route

bp = Blueprint("health", __name__)
TAG = "operations"


class Health(msgspec.Struct):
    status: str


class Readiness(msgspec.Struct):
    ready: bool
    checks: dict[str, bool]


@route(bp, "GET", "/healthz", permission=PUBLIC, answer=Health, tag=TAG, summary="The process is alive")
async def healthz(call: PublicCall[None, None]) -> Health:
    """The process is alive and its event loop answers."""
    return Health("ok")


@route(
    bp,
    "GET",
    "/readyz",
    permission=PUBLIC,
    answer=Readiness,
    tag=TAG,
    summary="The node can take work: store running, database reachable, schema current",
    responses={"503": {"description": "not ready: the checks say what is missing"}},
)
async def readyz(call: PublicCall[None, None]) -> WithStatus:
    checks = await call.node.readiness()
    ready = all(checks.values())
    return WithStatus(Readiness(ready, checks), 200 if ready else 503)


@route(
    bp,
    "GET",
    "/metrics",
    permission=PUBLIC,
    tag=TAG,
    summary="Prometheus metrics of the node",
    responses={
        "200": {"description": "the Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}
    },
)
async def prometheus_metrics(call: PublicCall[None, None]) -> Response:
    registry = current_app.extensions["kefu.metrics"]
    return Response(metrics.render(registry), content_type=metrics.CONTENT_TYPE)
