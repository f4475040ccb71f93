"""Who may do what: the permission table and the built-in roles, as data.

Rules
-----

1. Every REST route and every websocket frame a signed-in user sends is guarded by exactly one
   ``Permission`` (or by none, when signing in is enough, as for reading one's own profile). The
   guard is declared where the route or frame is declared, never written inside a handler.
2. A role is a name and a set of permissions. The three built-in roles are rows of
   ``BUILT_IN_ROLES``; an account's admin may define more (custom roles) from the same
   permissions. A built-in role cannot be renamed, changed or deleted.
3. This module is the only place in kefu that names a role. Elsewhere code asks
   ``permissions`` whether a user holds a permission, never which role they have.
4. A permission only widens what a user may do inside their own account; department scoping
   (an agent reads the conversations of their own departments) applies to everyone who lacks
   ``CONVERSATIONS_READ_ALL``.
5. ``CONTACTS_VIEW_UNMASKED`` may also be granted to one user on their own
   (``may_view_contact_details``), whatever their role.

Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

__all__ = [
    "ADMIN",
    "AGENT",
    "ALL_PERMISSIONS",
    "BUILT_IN_ROLES",
    "SUPERVISOR",
    "Permission",
    "Role",
    "is_built_in",
    "permissions_of",
]


class Permission(StrEnum):
    """One thing a signed-in user may do. The value is what REST, the pages and storage use."""

    CONVERSATIONS_HANDLE = "conversations.handle"
    """Go online, take offers, write to customers in the conversations one holds, transfer and close them."""
    CONVERSATIONS_READ_ALL = "conversations.read_all"
    """Read every conversation, customer and attachment of the account, not only one's departments'."""
    CONVERSATIONS_MONITOR = "conversations.monitor"
    """Watch the live feed of the account's agents and conversations (the supervisor view)."""
    CONTACTS_VIEW_UNMASKED = "contacts.view_unmasked"
    """See customers' phone numbers and e-mail addresses in full instead of masked."""
    CUSTOMERS_UPDATE = "customers.update"
    """Change a customer's record."""
    CUSTOMERS_ERASE = "customers.erase"
    """Erase a customer's personal data (right to be forgotten)."""
    CUSTOMERS_MERGE = "customers.merge"
    """Merge two customer records into one, and split a wrong merge."""
    QUEUES_MANAGE = "queues.manage"
    """Create, change and delete queues."""
    DIRECTORY_READ = "directory.read"
    """List agents, departments, teams and skills."""
    DIRECTORY_MANAGE = "directory.manage"
    """Create and change agents, departments, teams and skills; unlock a locked-out agent."""
    CANNED_MANAGE_SHARED = "canned.manage_shared"
    """Create, change and delete the account's shared canned responses (everyone manages their own)."""
    BUSINESS_HOURS_MANAGE = "business_hours.manage"
    """Change the account's business hours."""
    REPORTS_VIEW = "reports.view"
    """See reports of past periods (the reports pages; the live dashboard needs conversations.monitor)."""
    AUDIT_READ = "audit.read"
    """Read the account's audit log."""
    ROLES_MANAGE = "roles.manage"
    """Define, change and delete custom roles."""
    CHANNELS_MANAGE = "channels.manage"
    """Set up channels: API keys, webhooks, the app's identity secret."""


ALL_PERMISSIONS: Final[frozenset[Permission]] = frozenset(Permission)


@dataclass(frozen=True, slots=True)
class Role:
    """A named set of permissions."""

    name: str
    """The role's name, unique in its account; built-in names are reserved."""
    permissions: frozenset[Permission]
    """What a user with this role may do."""
    built_in: bool = False
    """Whether the role is one of kefu's own (read-only)."""


ADMIN: Final = "admin"
SUPERVISOR: Final = "supervisor"
AGENT: Final = "agent"

_AGENT_PERMISSIONS: Final = frozenset({Permission.CONVERSATIONS_HANDLE})
_SUPERVISOR_PERMISSIONS: Final = _AGENT_PERMISSIONS | {
    Permission.CONVERSATIONS_READ_ALL,
    Permission.CONVERSATIONS_MONITOR,
    Permission.CONTACTS_VIEW_UNMASKED,
    Permission.CUSTOMERS_UPDATE,
    Permission.CUSTOMERS_MERGE,
    Permission.DIRECTORY_READ,
    Permission.REPORTS_VIEW,
}

BUILT_IN_ROLES: Final[Mapping[str, Role]] = MappingProxyType(
    {
        ADMIN: Role(ADMIN, ALL_PERMISSIONS, built_in=True),
        SUPERVISOR: Role(SUPERVISOR, _SUPERVISOR_PERMISSIONS, built_in=True),
        AGENT: Role(AGENT, _AGENT_PERMISSIONS, built_in=True),
    }
)
"""kefu's own roles, in order from most to least permitted."""


def is_built_in(role_name: str) -> bool:
    return role_name in BUILT_IN_ROLES


def permissions_of(
    role_name: str,
    custom_roles: Mapping[str, Iterable[Permission]] | None = None,
    *,
    may_view_contact_details: bool = False,
) -> frozenset[Permission]:
    """What a user holding `role_name` may do.

    `custom_roles` maps the account's own role names to their permissions. An unknown role
    grants nothing: a user whose role was deleted keeps signing in but may do nothing until
    an admin gives them a role.
    """
    built_in = BUILT_IN_ROLES.get(role_name)
    if built_in is not None:
        granted = built_in.permissions
    elif custom_roles is not None and role_name in custom_roles:
        granted = frozenset(custom_roles[role_name])
    else:
        granted = frozenset()
    if may_view_contact_details:
        granted |= {Permission.CONTACTS_VIEW_UNMASKED}
    return granted
