"""An account's roles: kefu's built-in ones (rows of `protocol/permissions.BUILT_IN_ROLES`) and
the custom ones its admins define (rows of the `roles` table, migration 0012).

Rules
-----

1. The built-in roles are listed first and are read-only: changing or deleting one is refused
   with 409 `role_built_in`; their names are reserved in any case ("Admin" is refused too).
2. A custom role is a name (1 to `MAX_ROLE_NAME_CHARS` characters, unique per account in any
   case) and a set of known permissions; an unknown permission name is refused with 400
   `unknown_permission` and nothing changes. An account has at most `MAX_CUSTOM_ROLES`.
3. Nobody grants what they do not hold: a role may gain only permissions the caller holds
   (403 `permission_not_held`), so `roles.manage` alone cannot climb to everything. The same
   holds for giving a user a role (`check_grantable`): every permission the role brings that
   the user did not already hold must be the granter's.
4. Renaming a role renames it for its holders in the same transaction. A role is deleted only
   while nobody holds it (409 `role_in_use`): give its holders another role first.
5. Changing a role's permissions revokes its holders' sessions in the same transaction (as a
   user's own role change does): the edge then closes their sockets, and they sign in again
   with the new permissions. REST reads permissions at every request (`auth.authenticate`).
   A rename alone changes nothing anyone may do and ends no session.
6. Every change is in the audit log (`role.create`, `role.update`, `role.delete`), written in
   the change's own transaction.
7. `validate_role` accepts a built-in name or one of the account's custom role names. Called
   with a transaction's connection, it holds the role (FOR KEY SHARE) until that transaction
   ends, so a concurrent delete or rename waits and then sees the new holder.
"""

from __future__ import annotations

import ast
import functools
import inspect
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final
from uuid import UUID

import asyncpg
import msgspec

from kefu.protocol.permissions import BUILT_IN_ROLES, Permission, permissions_of
from kefu.server import audit
from kefu.server.database import Database

__all__ = [
    "MAX_CUSTOM_ROLES",
    "MAX_ROLE_NAME_CHARS",
    "PermissionAnswer",
    "RoleAnswer",
    "RoleBody",
    "RoleChange",
    "RoleError",
    "RolePatch",
    "check_grantable",
    "create_role",
    "delete_role",
    "get_role",
    "known_permissions",
    "list_permissions",
    "list_roles",
    "permissions_of_user",
    "update_role",
    "validate_role",
]

MAX_ROLE_NAME_CHARS: Final = 32
"""Longest role name: `audit_log.actor_role` records a user's role and holds at most 32."""
MAX_CUSTOM_ROLES: Final = 100
"""Custom roles an account may have; one more is refused with 409 `too_many_roles`."""


# -- the one schema of a role (REST bodies and answers) -----------------------------------------


PermissionList = Annotated[list[Permission], msgspec.Meta(max_length=len(Permission))]
"""A role's permissions in a body: each at most once, so never more than the table has."""


class RoleBody(msgspec.Struct, forbid_unknown_fields=True):
    """`POST /api/v1/roles`: a new custom role."""

    name: str
    """1 to 32 characters (surrounding spaces removed); not a built-in role's name in any case."""
    permissions: PermissionList
    """What the role's holders may do."""


class RolePatch(msgspec.Struct, forbid_unknown_fields=True):
    """`PATCH /api/v1/roles/<id or name>`: only the fields given change."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    permissions: PermissionList | msgspec.UnsetType = msgspec.UNSET


class RoleAnswer(msgspec.Struct, kw_only=True):
    """A role as the API shows it."""

    id: UUID | None
    """None for a built-in role (it is not a row)."""
    name: str
    permissions: list[Permission]
    """In the order of the permission table."""
    built_in: bool
    holders: int
    """Users of the account who hold the role now."""
    created_at: datetime | None = None
    updated_at: datetime | None = None


class PermissionAnswer(msgspec.Struct):
    """One row of the permission table: its name and what it allows (English)."""

    name: Permission
    description: str


# -- errors -------------------------------------------------------------------------------------


class RoleError(Exception):
    """A refused role change: `code` and `status` are the REST answer; the message is for people."""

    code: ClassVar[str] = "invalid_request"
    status: ClassVar[int] = 400


class InvalidRole(RoleError):
    """A malformed name or body."""


class UnknownPermission(RoleError):
    code = "unknown_permission"


class UnknownRole(RoleError):
    """A user was given a role that is neither built in nor one of the account's."""


class PermissionNotHeld(RoleError):
    code = "permission_not_held"
    status = 403


class RoleNotFound(RoleError):
    code = "not_found"
    status = 404


class RoleBuiltIn(RoleError):
    code = "role_built_in"
    status = 409


class RoleInUse(RoleError):
    code = "role_in_use"
    status = 409


class RoleNameTaken(RoleError):
    code = "role_name_taken"
    status = 409


class TooManyRoles(RoleError):
    code = "too_many_roles"
    status = 409


# -- checks ---------------------------------------------------------------------------------------


def known_permissions(names: Iterable[str]) -> frozenset[Permission]:
    """The permissions among stored names; a name this version does not know grants nothing."""
    known = {p.value for p in Permission}
    return frozenset(Permission(name) for name in names if name in known)


def _ordered(permissions: Iterable[Permission]) -> list[Permission]:
    chosen = set(permissions)
    return [p for p in Permission if p in chosen]


def _reserved(name: str) -> bool:
    return name.casefold() in {built_in.casefold() for built_in in BUILT_IN_ROLES}


def _checked_name(raw: str) -> str:
    name = raw.strip()
    if not 1 <= len(name) <= MAX_ROLE_NAME_CHARS:
        raise InvalidRole(f"name must be a string of 1 to {MAX_ROLE_NAME_CHARS} characters")
    if _reserved(name):
        raise RoleBuiltIn(f"{name!r} is the name of a built-in role")
    return name


def _checked_permissions(
    wanted: Sequence[Permission], before: frozenset[Permission], held: frozenset[Permission]
) -> frozenset[Permission]:
    chosen = frozenset(wanted)
    if len(chosen) != len(wanted):
        raise InvalidRole("permissions must not repeat a permission")
    gained = chosen - before - held
    if gained:
        raise PermissionNotHeld(f"you may not grant {', '.join(_ordered(gained))}: you do not hold it")
    return chosen


def decode_body(data: bytes | str, kind: type[RoleBody] | type[RolePatch]) -> RoleBody | RolePatch:
    """A request body, or `InvalidRole` / `UnknownPermission` saying what is wrong with it."""
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as error:
        message = str(error)
        if "Invalid enum value" in message and "$.permissions[" in message:
            raise UnknownPermission(message.replace("Invalid enum value", "unknown permission")) from None
        raise InvalidRole(message) from None
    except msgspec.DecodeError:
        raise InvalidRole("expected a JSON object") from None


# -- reading --------------------------------------------------------------------------------------

_CUSTOM_SELECT = """
    SELECT r.id, r.name, r.permissions, r.created_at, r.updated_at,
           (SELECT count(*) FROM users u WHERE u.account_id = r.account_id AND u.role = r.name) AS holders
    FROM roles r
"""


def _custom(row: asyncpg.Record) -> RoleAnswer:
    return RoleAnswer(
        id=row["id"],
        name=row["name"],
        permissions=_ordered(known_permissions(row["permissions"])),
        built_in=False,
        holders=row["holders"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def _fetch_custom(conn: asyncpg.Connection, account_id: UUID, role_id: UUID) -> RoleAnswer:
    row = await conn.fetchrow(_CUSTOM_SELECT + " WHERE r.account_id = $1 AND r.id = $2", account_id, role_id)
    assert row is not None, "read in the transaction that wrote it"
    return _custom(row)


def _built_in(name: str, holders: int) -> RoleAnswer:
    role = BUILT_IN_ROLES[name]
    return RoleAnswer(id=None, name=name, permissions=_ordered(role.permissions), built_in=True, holders=holders)


async def list_roles(database: Database, account_id: UUID) -> list[RoleAnswer]:
    """The built-in roles in table order, then the account's custom roles by name."""

    async def work(conn: asyncpg.Connection) -> list[RoleAnswer]:
        counts = await conn.fetch(
            """SELECT role, count(*) AS holders FROM users
               WHERE account_id = $1 AND role = ANY($2::text[]) GROUP BY role""",
            account_id,
            list(BUILT_IN_ROLES),
        )
        custom = await conn.fetch(_CUSTOM_SELECT + " WHERE r.account_id = $1 ORDER BY lower(r.name), r.id", account_id)
        held = {row["role"]: row["holders"] for row in counts}
        return [_built_in(name, held.get(name, 0)) for name in BUILT_IN_ROLES] + [_custom(row) for row in custom]

    return await database.run(work)


def list_permissions() -> list[PermissionAnswer]:
    """The permission table, in order, with each permission's description."""
    descriptions = _permission_descriptions()
    return [PermissionAnswer(p, descriptions.get(p.name, "")) for p in Permission]


@functools.cache
def _permission_descriptions() -> dict[str, str]:
    """The docstrings under each member of `Permission`, read from its source: the table stays
    the one place that describes a permission."""
    (declaration,) = ast.parse(inspect.getsource(Permission)).body
    assert isinstance(declaration, ast.ClassDef)
    body = declaration.body
    found: dict[str, str] = {}
    for statement, following in itertools.pairwise(body):
        if (
            isinstance(statement, ast.Assign)
            and isinstance(statement.targets[0], ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
        ):
            found[statement.targets[0].id] = str(following.value.value)
    return found


def _key_clause(key: str) -> tuple[str, Any]:
    """The WHERE clause and its value for a role named by id or by name."""
    try:
        return "r.id = $2", UUID(key)
    except ValueError:
        return "r.name = $2", key


async def _locked_custom(conn: asyncpg.Connection, account_id: UUID, key: str) -> asyncpg.Record:
    """The custom role `key` names, locked until the transaction ends; built-in: `RoleBuiltIn`."""
    if key in BUILT_IN_ROLES:
        raise RoleBuiltIn(f"{key!r} is a built-in role: it cannot be changed or deleted")
    clause, value = _key_clause(key)
    row = await conn.fetchrow(
        f"SELECT r.* FROM roles r WHERE r.account_id = $1 AND {clause} FOR UPDATE", account_id, value
    )
    if row is None:
        raise RoleNotFound("no such role")
    return row


async def get_role(database: Database, account_id: UUID, key: str) -> RoleAnswer:
    """The role named `key` (a built-in name, a custom role's name or its id)."""

    async def work(conn: asyncpg.Connection) -> RoleAnswer:
        if key in BUILT_IN_ROLES:
            holders = await conn.fetchval(
                "SELECT count(*) FROM users WHERE account_id = $1 AND role = $2", account_id, key
            )
            return _built_in(key, holders)
        clause, value = _key_clause(key)
        row = await conn.fetchrow(_CUSTOM_SELECT + f" WHERE r.account_id = $1 AND {clause}", account_id, value)
        if row is None:
            raise RoleNotFound("no such role")
        return _custom(row)

    return await database.run(work)


async def validate_role(conn_or_db: Database | asyncpg.Connection, account_id: UUID, name: Any) -> str:
    """`name` when it is a built-in role or one of the account's custom roles (rule 7)."""
    if isinstance(name, str) and name in BUILT_IN_ROLES:
        return name
    if isinstance(name, str) and 1 <= len(name) <= MAX_ROLE_NAME_CHARS:
        query = "SELECT name FROM roles WHERE account_id = $1 AND name = $2 FOR KEY SHARE"
        found = await conn_or_db.fetchval(query, account_id, name)
        if found is not None:
            return str(found)
    raise UnknownRole(f"role must be one of {', '.join(BUILT_IN_ROLES)} or a custom role of the account")


async def check_grantable(
    conn: Database | asyncpg.Connection,
    account_id: UUID,
    role_name: str,
    granter_permissions: frozenset[Permission],
    *,
    already_held: frozenset[Permission] = frozenset(),
) -> frozenset[Permission]:
    """The permissions of role `role_name` when the granter may give it to a user (rule 3 for
    users: nobody gives a role with a permission they do not hold); otherwise 403
    `permission_not_held` naming what is missing, or `UnknownRole`.

    `already_held` is what the user holds now: keeping it is no grant, so moving someone to a
    narrower role is always allowed. Call it when a user's role is set or changes, with the
    transaction's connection: a custom role's row is then held (FOR SHARE) until the user's
    change commits, so a concurrent widening of the role waits and then revokes the new
    holder's sessions like everyone else's.
    """
    built_in = BUILT_IN_ROLES.get(role_name)
    if built_in is not None:
        permissions = built_in.permissions
    else:
        query = "SELECT permissions FROM roles WHERE account_id = $1 AND name = $2 FOR SHARE"
        stored = await conn.fetchval(query, account_id, role_name)
        if stored is None:
            raise UnknownRole(f"role must be one of {', '.join(BUILT_IN_ROLES)} or a custom role of the account")
        permissions = known_permissions(stored)
    missing = permissions - granter_permissions - already_held
    if missing:
        raise PermissionNotHeld(
            f"you may not give the role {role_name!r}: you do not hold {', '.join(_ordered(missing))}"
        )
    return permissions


async def permissions_of_user(
    database: Database | asyncpg.Connection, account_id: UUID, user_id: UUID
) -> frozenset[Permission] | None:
    """What a user may do now, read from storage (None: no such user). A signed-in caller's own
    permissions are `SignedInUser.permissions`; this is for someone else's (an edited agent's)."""
    row = await database.fetchrow(
        """SELECT u.role, u.may_view_contact_details, r.permissions AS role_permissions
           FROM users u LEFT JOIN roles r ON r.account_id = u.account_id AND r.name = u.role
           WHERE u.account_id = $1 AND u.id = $2""",
        account_id,
        user_id,
    )
    if row is None:
        return None
    custom = None if row["role_permissions"] is None else {row["role"]: known_permissions(row["role_permissions"])}
    return permissions_of(row["role"], custom, may_view_contact_details=row["may_view_contact_details"])


# -- changing -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RoleChange:
    """What a change did: the role as it is now, and the users whose sessions it revoked (rule 5)."""

    role: RoleAnswer
    signed_out: list[UUID]


async def create_role(
    database: Database,
    account_id: UUID,
    body: RoleBody,
    *,
    actor_role: str,
    actor_id: UUID,
    actor_permissions: frozenset[Permission],
) -> RoleAnswer:
    name = _checked_name(body.name)
    permissions = _checked_permissions(body.permissions, frozenset(), actor_permissions)

    async def work(conn: asyncpg.Connection) -> RoleAnswer:
        async with conn.transaction():
            # One creation at a time per account, so the count below cannot be raced past. NO KEY
            # UPDATE: inserts elsewhere that reference the account (FOR KEY SHARE) do not wait.
            await conn.execute("SELECT id FROM accounts WHERE id = $1 FOR NO KEY UPDATE", account_id)
            if await conn.fetchval("SELECT count(*) FROM roles WHERE account_id = $1", account_id) >= MAX_CUSTOM_ROLES:
                raise TooManyRoles(f"an account has at most {MAX_CUSTOM_ROLES} custom roles")
            try:
                role_id = await conn.fetchval(
                    """INSERT INTO roles (account_id, name, permissions, created_by, updated_by)
                       VALUES ($1, $2, $3, $4, $4) RETURNING id""",
                    account_id,
                    name,
                    _ordered(permissions),
                    actor_id,
                )
            except asyncpg.UniqueViolationError:
                raise RoleNameTaken(f"a role named {name!r} already exists") from None
            after = {"name": name, "permissions": _ordered(permissions)}
            await audit.record(
                conn, account_id, actor_role, actor_id, "role.create", "role", role_id, {"name": name, "after": after}
            )
            return await _fetch_custom(conn, account_id, role_id)

    return await database.run(work)


async def update_role(
    database: Database,
    account_id: UUID,
    key: str,
    patch: RolePatch,
    *,
    actor_role: str,
    actor_id: UUID,
    actor_permissions: frozenset[Permission],
) -> RoleChange:
    """Rename a custom role and/or replace its permissions (rules 3-6)."""
    new_name = None if isinstance(patch.name, msgspec.UnsetType) else _checked_name(patch.name)
    wanted = None if isinstance(patch.permissions, msgspec.UnsetType) else patch.permissions

    async def work(conn: asyncpg.Connection) -> RoleChange:
        async with conn.transaction():
            row = await _locked_custom(conn, account_id, key)
            before = known_permissions(row["permissions"])
            permissions = before if wanted is None else _checked_permissions(wanted, before, actor_permissions)
            name = new_name if new_name is not None else row["name"]
            changes = _changes(row["name"], name, before, permissions)
            signed_out: list[UUID] = []
            if changes:
                await _rewrite(conn, account_id, row["id"], row["name"], name, permissions, actor_id)
                if "permissions" in changes:
                    signed_out = await _revoke_holders(conn, account_id, name)
                detail = {"name": name, "changes": changes, "signed_out": len(signed_out)}
                await audit.record(conn, account_id, actor_role, actor_id, "role.update", "role", row["id"], detail)
            return RoleChange(await _fetch_custom(conn, account_id, row["id"]), signed_out)

    return await database.run(work)


def _changes(old_name: str, name: str, before: frozenset[Permission], after: frozenset[Permission]) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    if name != old_name:
        changes["name"] = [old_name, name]
    if after != before:
        changes["permissions"] = [_ordered(before), _ordered(after)]
    return changes


async def _rewrite(
    conn: asyncpg.Connection,
    account_id: UUID,
    role_id: UUID,
    old_name: str,
    name: str,
    permissions: frozenset[Permission],
    actor_id: UUID,
) -> None:
    try:
        await conn.execute(
            """UPDATE roles SET name = $3, permissions = $4, updated_at = now(), updated_by = $5
               WHERE account_id = $1 AND id = $2""",
            account_id,
            role_id,
            name,
            _ordered(permissions),
            actor_id,
        )
    except asyncpg.UniqueViolationError:
        raise RoleNameTaken(f"a role named {name!r} already exists") from None
    if name != old_name:
        await conn.execute("UPDATE users SET role = $3 WHERE account_id = $1 AND role = $2", account_id, old_name, name)


async def _revoke_holders(conn: asyncpg.Connection, account_id: UUID, name: str) -> list[UUID]:
    """Revoke the sessions of everyone holding role `name`; returns their ids (rule 5)."""
    holders = [
        r["id"] for r in await conn.fetch("SELECT id FROM users WHERE account_id = $1 AND role = $2", account_id, name)
    ]
    await conn.execute(
        """UPDATE user_sessions SET revoked_at = now()
           WHERE account_id = $1 AND user_id = ANY($2::uuid[]) AND revoked_at IS NULL""",
        account_id,
        holders,
    )
    return holders


async def delete_role(database: Database, account_id: UUID, key: str, *, actor_role: str, actor_id: UUID) -> None:
    """Delete a custom role nobody holds (rule 4)."""

    async def work(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            row = await _locked_custom(conn, account_id, key)
            holders = await conn.fetchval(
                "SELECT count(*) FROM users WHERE account_id = $1 AND role = $2", account_id, row["name"]
            )
            if holders:
                raise RoleInUse(f"{holders} user(s) hold the role {row['name']!r}: give them another role first")
            await conn.execute("DELETE FROM roles WHERE account_id = $1 AND id = $2", account_id, row["id"])
            detail = {
                "name": row["name"],
                "before": {"name": row["name"], "permissions": _ordered(known_permissions(row["permissions"]))},
            }
            await audit.record(conn, account_id, actor_role, actor_id, "role.delete", "role", row["id"], detail)

    await database.run(work)
