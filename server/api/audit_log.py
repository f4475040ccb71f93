"""The audit log, read with `audit.read`; anyone else gets a 403 that is itself audited."""

from __future__ import annotations

from quart import Blueprint

from kefu.protocol.permissions import Permission
from kefu.server import audit
from kefu.server.api.route import Call, route
from kefu.server.audit import AuditLogPage, AuditLogQuery

bp = Blueprint("audit_log", __name__)


@route(
    bp,
    "GET",
    "/api/v1/audit-log",
    permission=Permission.AUDIT_READ,
    query=AuditLogQuery,
    answer=AuditLogPage,
    tag="audit",
    summary="The account's audit log, newest first, in keyset pages",
    target="audit_log",
    action="audit_log.read",
    errors=(400,),
)
async def read_audit_log(call: Call[None, AuditLogQuery]) -> AuditLogPage:
    return await audit.read_log(call.node.database, call.user.account_id, call.query)
