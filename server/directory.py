"""The directory of an account: its departments (teams), skills and agents (users).

Every function takes the caller's account id and sees only that account's rows: an id that
belongs to another account is reported exactly like one that does not exist. Input arrives as
the Structs declared here (`AgentCreate`, `AgentChange`, `GroupName`), decoded and checked by the
REST edge; what their types cannot say is checked in their `__post_init__`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import msgspec
import trio
from msgspec import UNSET, Meta, UnsetType

from kefu.actors.routing import MAX_SKILL_LEVEL, MIN_SKILL_LEVEL
from kefu.protocol.permissions import AGENT, Permission
from kefu.server import roles
from kefu.server.accounts import MIN_PASSWORD_LENGTH, hash_password
from kefu.server.api.structs import check_text, given
from kefu.server.database import Database

MAX_NAME_CHARS = 100
MAX_DISPLAY_NAME_CHARS = 200
MAX_EMAIL_CHARS = 320
MAX_PASSWORD_CHARS = 1024
MIN_LEVEL, MAX_LEVEL = MIN_SKILL_LEVEL, MAX_SKILL_LEVEL  # the router's, which decides by them
MIN_CAPACITY, MAX_CAPACITY = 1, 100
MAX_LIST_ITEMS = 200


Audit = Callable[[asyncpg.Connection, str, UUID, dict[str, Any]], Awaitable[None]]
"""`audit(conn, action, target_id, detail)`: writes one audit record inside the change's transaction."""


async def _no_audit(conn: asyncpg.Connection, action: str, target_id: UUID, detail: dict[str, Any]) -> None:
    return None


class DirectoryError(Exception):
    """Base of the errors below; the message is meant for the client."""


class InvalidInput(DirectoryError):
    """A field is missing or malformed; the message names it."""


class NotFound(DirectoryError):
    """No such department, skill or agent in the caller's account."""


class Conflict(DirectoryError):
    """The change clashes with existing rows (a duplicate name or e-mail, …)."""


Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME_CHARS)]
DisplayName = Annotated[str, Meta(min_length=1, max_length=MAX_DISPLAY_NAME_CHARS)]
Email = Annotated[str, Meta(min_length=1, max_length=MAX_EMAIL_CHARS, extra_json_schema={"format": "email"})]
Password = Annotated[str, Meta(min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_CHARS)]
RoleName = Annotated[
    str,
    Meta(min_length=1, max_length=roles.MAX_ROLE_NAME_CHARS, description="a built-in or custom role of the account"),
]
Capacity = Annotated[
    int, Meta(ge=MIN_CAPACITY, le=MAX_CAPACITY, description="conversations the agent holds at once at most")
]
Level = Annotated[int, Meta(ge=MIN_LEVEL, le=MAX_LEVEL)]
MayViewContactDetails = Annotated[
    bool,
    Meta(
        description="sees customers' phone numbers and e-mail addresses in full (a role with"
        " contacts.view_unmasked always does; others see them masked)"
    ),
]


class SkillLevel(msgspec.Struct, forbid_unknown_fields=True):
    id: UUID
    level: Level


DepartmentIds = Annotated[list[UUID], Meta(max_length=MAX_LIST_ITEMS)]
SkillLevels = Annotated[list[SkillLevel], Meta(max_length=MAX_LIST_ITEMS)]


class GroupName(msgspec.Struct):
    """The name of a department or skill."""

    name: Name

    def __post_init__(self) -> None:
        self.name = check_text(self.name, "name", GroupName)


def _check_agent_fields(fields: AgentCreate | AgentChange) -> None:
    """What the declared types cannot say: trimmed names, no repeated ids (roles: `validate_role`)."""
    if isinstance(fields.display_name, str):
        fields.display_name = check_text(fields.display_name, "display_name", type(fields))
    if isinstance(fields.departments, list) and len(set(fields.departments)) != len(fields.departments):
        raise ValueError("departments must not repeat an id")
    if isinstance(fields.skills, list) and len({skill.id for skill in fields.skills}) != len(fields.skills):
        raise ValueError("skills must not repeat an id")


class AgentCreate(msgspec.Struct, kw_only=True):
    """A new user of the account with its departments and skill levels."""

    email: Email
    display_name: DisplayName
    password: Password
    role: RoleName = AGENT
    max_concurrent_conversations: Capacity = 5
    may_view_contact_details: MayViewContactDetails = False
    departments: DepartmentIds = msgspec.field(default_factory=list)
    skills: SkillLevels = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        self.email = check_text(self.email, "email", AgentCreate)
        if not re.fullmatch(r"[^@\s]+@[^@\s]+", self.email):
            raise ValueError("email must be an e-mail address")
        _check_agent_fields(self)


class AgentChange(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The fields of a user to change; `departments` and `skills` replace the whole list."""

    display_name: DisplayName | UnsetType = UNSET
    role: RoleName | UnsetType = UNSET
    max_concurrent_conversations: Capacity | UnsetType = UNSET
    disabled: bool | UnsetType = UNSET
    may_view_contact_details: MayViewContactDetails | UnsetType = UNSET
    departments: DepartmentIds | UnsetType = UNSET
    skills: SkillLevels | UnsetType = UNSET

    def __post_init__(self) -> None:
        _check_agent_fields(self)


class NamedRef(msgspec.Struct):
    id: UUID
    name: str


class SkillRef(msgspec.Struct):
    id: UUID
    name: str
    level: Level


class Agent(msgspec.Struct, kw_only=True):
    """A user of the account as the API shows it (never the password hash)."""

    id: UUID
    email: str
    display_name: str
    role: str
    max_concurrent_conversations: Capacity
    disabled: bool
    may_view_contact_details: MayViewContactDetails
    created_at: datetime
    departments: list[NamedRef]
    skills: list[SkillRef]


class Agents(msgspec.Struct):
    agents: list[Agent]


class Unlocked(msgspec.Struct):
    id: UUID
    was_locked: bool


# -- departments and skills -----------------------------------------------------------------


class Group(msgspec.Struct):
    """A department or a skill: both are named sets within an account."""

    id: UUID
    name: str
    created_at: datetime


class Departments(msgspec.Struct):
    departments: list[Group]


class Skills(msgspec.Struct):
    skills: list[Group]


_GROUP_TABLES = {"department": "departments", "skill": "skills"}


def _group(row: asyncpg.Record) -> Group:
    return Group(row["id"], row["name"], row["created_at"])


async def list_groups(database: Database, kind: str, account_id: UUID) -> list[Group]:
    table = _GROUP_TABLES[kind]
    rows = await database.fetch(
        f"SELECT id, name, created_at FROM {table} WHERE account_id = $1 ORDER BY lower(name), id", account_id
    )
    return [_group(r) for r in rows]


async def create_group(
    database: Database, kind: str, account_id: UUID, body: GroupName, *, audit: Audit = _no_audit
) -> Group:
    table = _GROUP_TABLES[kind]
    name = body.name

    async def work(conn: asyncpg.Connection) -> Group:
        async with conn.transaction():
            try:
                row = await conn.fetchrow(
                    f"INSERT INTO {table} (account_id, name) VALUES ($1, $2) RETURNING id, name, created_at",
                    account_id,
                    name,
                )
            except asyncpg.UniqueViolationError:
                raise Conflict(f"a {kind} named {name!r} already exists") from None
            assert row is not None
            await audit(conn, f"{kind}.create", row["id"], {"name": name})
            return _group(row)

    return await database.run(work)


async def rename_group(
    database: Database, kind: str, account_id: UUID, group_id: UUID, body: GroupName, *, audit: Audit = _no_audit
) -> Group:
    table = _GROUP_TABLES[kind]
    name = body.name

    async def work(conn: asyncpg.Connection) -> Group:
        async with conn.transaction():
            before = await conn.fetchval(
                f"SELECT name FROM {table} WHERE account_id = $1 AND id = $2 FOR UPDATE", account_id, group_id
            )
            if before is None:
                raise NotFound(f"no such {kind}")
            try:
                row = await conn.fetchrow(
                    f"""UPDATE {table} SET name = $3 WHERE account_id = $1 AND id = $2
                        RETURNING id, name, created_at""",
                    account_id,
                    group_id,
                    name,
                )
            except asyncpg.UniqueViolationError:
                raise Conflict(f"a {kind} named {name!r} already exists") from None
            assert row is not None
            await audit(conn, f"{kind}.rename", group_id, {"name": name, "changes": {"name": [before, name]}})
            return _group(row)

    return await database.run(work)


async def delete_group(
    database: Database, kind: str, account_id: UUID, group_id: UUID, *, audit: Audit = _no_audit
) -> None:
    """Delete a department or skill; its members simply lose it."""
    table = _GROUP_TABLES[kind]

    async def work(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            try:
                name = await conn.fetchval(
                    f"DELETE FROM {table} WHERE account_id = $1 AND id = $2 RETURNING name", account_id, group_id
                )
            except asyncpg.CheckViolationError:
                # A skills queue needs its skill; the queue must change first.
                raise Conflict(f"the {kind} is the skill of a queue with the skills strategy") from None
            if name is None:
                raise NotFound(f"no such {kind}")
            await audit(conn, f"{kind}.delete", group_id, {"name": name})

    await database.run(work)


# -- agents ---------------------------------------------------------------------------------


_AGENT_SELECT = """
    SELECT u.id, u.email, u.display_name, u.role, u.max_concurrent_conversations,
           u.disabled_at, u.created_at, u.may_view_contact_details,
           COALESCE((SELECT jsonb_agg(jsonb_build_object('id', d.id, 'name', d.name)
                                      ORDER BY lower(d.name), d.id)
                     FROM user_departments ud
                     JOIN departments d ON d.account_id = ud.account_id AND d.id = ud.department_id
                     WHERE ud.account_id = u.account_id AND ud.user_id = u.id), '[]'::jsonb) AS departments,
           COALESCE((SELECT jsonb_agg(jsonb_build_object('id', s.id, 'name', s.name, 'level', us.level)
                                      ORDER BY lower(s.name), s.id)
                     FROM user_skills us
                     JOIN skills s ON s.account_id = us.account_id AND s.id = us.skill_id
                     WHERE us.account_id = u.account_id AND us.user_id = u.id), '[]'::jsonb) AS skills
    FROM users u
"""


def _agent_json(row: asyncpg.Record) -> dict[str, Any]:
    """An agent as the API shows it (never the password hash)."""
    return {
        "id": str(row["id"]),
        "email": row["email"],
        "display_name": row["display_name"],
        "role": row["role"],
        "max_concurrent_conversations": row["max_concurrent_conversations"],
        "disabled": row["disabled_at"] is not None,
        "may_view_contact_details": row["may_view_contact_details"],
        "created_at": row["created_at"].isoformat(),
        "departments": row["departments"],
        "skills": row["skills"],
    }


async def _fetch_agent(conn: asyncpg.Connection, account_id: UUID, user_id: UUID) -> dict[str, Any]:
    row = await conn.fetchrow(_AGENT_SELECT + " WHERE u.account_id = $1 AND u.id = $2", account_id, user_id)
    if row is None:
        raise NotFound("no such agent")
    return _agent_json(row)


async def list_agents(database: Database, account_id: UUID) -> list[dict[str, Any]]:
    rows = await database.fetch(
        _AGENT_SELECT + " WHERE u.account_id = $1 ORDER BY lower(u.display_name), u.id", account_id
    )
    return [_agent_json(r) for r in rows]


async def get_agent(database: Database, account_id: UUID, user_id: UUID) -> dict[str, Any]:
    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        return await _fetch_agent(conn, account_id, user_id)

    return await database.run(work)


async def _set_memberships(
    conn: asyncpg.Connection,
    account_id: UUID,
    user_id: UUID,
    departments: list[UUID] | None,
    skills: dict[UUID, int] | None,
) -> None:
    """Replace the user's departments and/or skills; unknown ids (or another account's) are not found."""
    if departments is not None:
        found = await conn.fetchval(
            "SELECT count(*) FROM departments WHERE account_id = $1 AND id = ANY($2::uuid[])", account_id, departments
        )
        if found != len(departments):
            raise NotFound("no such department")
        await conn.execute("DELETE FROM user_departments WHERE account_id = $1 AND user_id = $2", account_id, user_id)
        await conn.executemany(
            "INSERT INTO user_departments (account_id, user_id, department_id) VALUES ($1, $2, $3)",
            [(account_id, user_id, d) for d in departments],
        )
    if skills is not None:
        found = await conn.fetchval(
            "SELECT count(*) FROM skills WHERE account_id = $1 AND id = ANY($2::uuid[])", account_id, list(skills)
        )
        if found != len(skills):
            raise NotFound("no such skill")
        await conn.execute("DELETE FROM user_skills WHERE account_id = $1 AND user_id = $2", account_id, user_id)
        await conn.executemany(
            "INSERT INTO user_skills (account_id, user_id, skill_id, level) VALUES ($1, $2, $3, $4)",
            [(account_id, user_id, s, level) for s, level in skills.items()],
        )


async def create_agent(
    database: Database,
    account_id: UUID,
    body: AgentCreate,
    *,
    acting_permissions: frozenset[Permission],
    audit: Audit = _no_audit,
) -> dict[str, Any]:
    """Create a user (of any role) with its departments and skill levels.

    The role is a built-in or one of the account's custom roles, and brings no permission the
    creator does not hold (403 `permission_not_held`)."""
    email, display_name, role = body.email, body.display_name, body.role
    capacity, may_view, departments = body.max_concurrent_conversations, body.may_view_contact_details, body.departments
    skills = {skill.id: skill.level for skill in body.skills}
    password_hash = await trio.to_thread.run_sync(hash_password, body.password)

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        async with conn.transaction():
            await roles.validate_role(conn, account_id, role)
            await roles.check_grantable(conn, account_id, role, acting_permissions)
            try:
                user_id = await conn.fetchval(
                    """INSERT INTO users (account_id, email, display_name, role, password_hash,
                                          max_concurrent_conversations, may_view_contact_details)
                       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id""",
                    account_id,
                    email,
                    display_name,
                    role,
                    password_hash,
                    capacity,
                    may_view,
                )
            except asyncpg.UniqueViolationError:
                raise Conflict(f"a user with the e-mail {email!r} already exists") from None
            await _set_memberships(conn, account_id, user_id, departments, skills)
            created = await _fetch_agent(conn, account_id, user_id)
            await audit(conn, "agent.create", user_id, {"name": display_name, "after": _audited(created)})
            return created

    return await database.run(work)


def _audited(agent: dict[str, Any]) -> dict[str, Any]:
    """The fields of an agent an audit record keeps (ids of departments and skills, no e-mail)."""
    return {
        "display_name": agent["display_name"],
        "role": agent["role"],
        "max_concurrent_conversations": agent["max_concurrent_conversations"],
        "disabled": agent["disabled"],
        "departments": sorted(d["id"] for d in agent["departments"]),
        "skills": {s["id"]: s["level"] for s in agent["skills"]},
    }


async def _check_new_role(
    conn: asyncpg.Connection,
    account_id: UUID,
    user_id: UUID,
    role: str,
    acting_user_id: UUID,
    acting_permissions: frozenset[Permission],
) -> None:
    """A role may be given when it exists, brings nothing its giver lacks (beyond what the user
    holds already), and is not a demotion of the giver themself."""
    await roles.validate_role(conn, account_id, role)
    held = await roles.permissions_of_user(conn, account_id, user_id) or frozenset()
    granted = await roles.check_grantable(conn, account_id, role, acting_permissions, already_held=held)
    if user_id == acting_user_id and not acting_permissions <= granted:
        raise Conflict("you cannot disable or demote yourself")


async def update_agent(
    database: Database,
    account_id: UUID,
    user_id: UUID,
    body: AgentChange,
    *,
    acting_user_id: UUID,
    acting_permissions: frozenset[Permission],
    audit: Audit = _no_audit,
) -> dict[str, Any]:
    """Change an agent's display name, role, capacity, disabled flag, departments or skills.

    Only the fields present change; `departments` and `skills` replace the whole list. Nobody
    can disable themself or take a role with fewer permissions than they hold (so an account
    never loses its last administrator that way).
    Disabling and a role change revoke the user's sessions: it signs in again, with the new role.
    """
    changes = given(body)
    display_name, role = changes.get("display_name"), changes.get("role")
    capacity, disabled = changes.get("max_concurrent_conversations"), changes.get("disabled")
    may_view, departments = changes.get("may_view_contact_details"), changes.get("departments")
    skills = None if body.skills is UNSET else {skill.id: skill.level for skill in body.skills}
    if user_id == acting_user_id and disabled is True:
        raise Conflict("you cannot disable or demote yourself")

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        async with conn.transaction():
            exists = await conn.fetchval(
                "SELECT true FROM users WHERE account_id = $1 AND id = $2 FOR UPDATE", account_id, user_id
            )
            if not exists:
                raise NotFound("no such agent")
            if role is not None:
                await _check_new_role(conn, account_id, user_id, role, acting_user_id, acting_permissions)
            before = _audited(await _fetch_agent(conn, account_id, user_id))
            await conn.execute(
                """UPDATE users SET
                       display_name = COALESCE($3, display_name),
                       role = COALESCE($4, role),
                       max_concurrent_conversations = COALESCE($5, max_concurrent_conversations),
                       disabled_at = CASE WHEN $6::boolean IS NULL THEN disabled_at
                                          WHEN $6 THEN COALESCE(disabled_at, now())
                                          ELSE NULL END,
                       may_view_contact_details = COALESCE($7, may_view_contact_details)
                   WHERE account_id = $1 AND id = $2""",
                account_id,
                user_id,
                display_name,
                role,
                capacity,
                disabled,
                may_view,
            )
            role_changes = role is not None and role != before["role"]
            if disabled or role_changes:
                # A new role means signing in again: the sessions (and their sockets) end.
                await conn.execute(
                    """UPDATE user_sessions SET revoked_at = now()
                       WHERE account_id = $1 AND user_id = $2 AND revoked_at IS NULL""",
                    account_id,
                    user_id,
                )
            await _set_memberships(conn, account_id, user_id, departments, skills)
            updated = await _fetch_agent(conn, account_id, user_id)
            after = _audited(updated)
            changes = {field: [before[field], after[field]] for field in after if before[field] != after[field]}
            await audit(conn, "agent.update", user_id, {"name": updated["display_name"], "changes": changes})
            return updated

    return await database.run(work)
