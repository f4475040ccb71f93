"""Department scoping at the REST edge (docs/security.md, "Who may see and do what").

A user without `conversations.read_all` reads the conversations, customers and attachments of
their own departments. A row of the account outside that scope is refused 403; another account's
row, or none, 404; both are written to the audit log as `denied:<attempted>`.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from quart import request

from kefu.protocol.permissions import Permission
from kefu.server import auth
from kefu.server.api.route import Call, Refused


def reads_all(user: auth.SignedInUser) -> bool:
    return user.may(Permission.CONVERSATIONS_READ_ALL)


def sees_contact_details(user: auth.SignedInUser) -> bool:
    return user.may(Permission.CONTACTS_VIEW_UNMASKED)


async def check(call: Call[Any, Any], access: str, attempted: str, target_type: str, target_id: UUID) -> None:
    """Nothing when `access` allows; else the audited refusal is raised."""
    if access == "allowed":
        return
    user = call.user
    await call.node.conversations.record_denial(
        user.account_id,
        user.role,
        user.user_id,
        attempted,
        target_id,
        target_type=target_type,
        detail={"status": 403 if access == "forbidden" else 404, "method": request.method, "path": request.path},
    )
    what = target_type.replace("_", " ")
    if access == "forbidden":
        raise Refused(403, "forbidden", f"this {what} is outside your departments")
    raise Refused(404, "not_found", f"no such {what}")


async def customer(call: Call[Any, Any], customer_id: str, attempted: str) -> UUID:
    """The customer's id when it is in the caller's scope; else the audited refusal is raised."""
    user, target = call.user, UUID(customer_id)
    access = await call.node.conversations.customer_access(user.account_id, user.user_id, reads_all(user), target)
    await check(call, access, attempted, "customer", target)
    return target
