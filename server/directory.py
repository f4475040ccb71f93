"""The directory of an account: its departments (teams), skills and agents (users).

Every function takes the caller's account id and sees only that account's rows: an id that
belongs to another account is reported exactly like one that does not exist. Input arrives
as decoded JSON values and is checked here; the errors name the offending field.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import trio

from kefu.server.accounts import MIN_PASSWORD_LENGTH, ROLES, hash_password
from kefu.server.database import Database
from kefu.server.roles import validate_role

MAX_NAME_CHARS = 100
MAX_DISPLAY_NAME_CHARS = 200
MAX_EMAIL_CHARS = 320
MAX_PASSWORD_CHARS = 1024
MIN_LEVEL, MAX_LEVEL = 1, 10
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


# -- input checks ---------------------------------------------------------------------------


def parse_id(value: Any, what: str = "resource") -> UUID:
    """An id from a URL: anything malformed is simply not found."""
    try:
        return UUID(str(value))
    except ValueError:
        raise NotFound(f"no such {what}") from None


def _body_id(value: Any, field: str) -> UUID:
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a UUID string")
    try:
        return UUID(value)
    except ValueError:
        raise InvalidInput(f"{field} must be a UUID string") from None


def _text(body: dict[str, Any], field: str, max_chars: int) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not 1 <= len(value.strip()) <= max_chars:
        raise InvalidInput(f"{field} must be a string of 1 to {max_chars} characters")
    return value.strip()


def _int(body: dict[str, Any], field: str, low: int, high: int) -> int:
    value = body.get(field)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{field} must be an integer from {low} to {high}")
    return value


def _role(body: dict[str, Any]) -> str:
    role = body.get("role")
    if not isinstance(role, str):  # a built-in or custom role: roles.validate_role in the transaction
        raise InvalidInput(f"role must be one of {', '.join(ROLES)} or a custom role of the account")
    return role


def _department_ids(body: dict[str, Any]) -> list[UUID]:
    value = body.get("departments")
    if not isinstance(value, list) or len(value) > MAX_LIST_ITEMS:
        raise InvalidInput("departments must be a list of department ids")
    ids = [_body_id(v, f"departments[{i}]") for i, v in enumerate(value)]
    if len(set(ids)) != len(ids):
        raise InvalidInput("departments must not repeat an id")
    return ids


def _skill_levels(body: dict[str, Any]) -> dict[UUID, int]:
    value = body.get("skills")
    if not isinstance(value, list) or len(value) > MAX_LIST_ITEMS:
        raise InvalidInput('skills must be a list of {"id", "level"} objects')
    levels: dict[UUID, int] = {}
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidInput(f'skills[{i}] must be an object with "id" and "level"')
        skill_id = _body_id(item.get("id"), f"skills[{i}].id")
        if skill_id in levels:
            raise InvalidInput("skills must not repeat an id")
        level = item.get("level")
        if isinstance(level, bool) or not isinstance(level, int) or not MIN_LEVEL <= level <= MAX_LEVEL:
            raise InvalidInput(f"skills[{i}].level must be an integer from {MIN_LEVEL} to {MAX_LEVEL}")
        levels[skill_id] = level
    return levels


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise InvalidInput("expected a JSON object")
    return body


# -- departments and skills -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Group:
    """A department or a skill: both are named sets within an account."""

    id: UUID
    name: str
    created_at: Any

    def json(self) -> dict[str, Any]:
        return {"id": str(self.id), "name": self.name, "created_at": self.created_at.isoformat()}


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
    database: Database, kind: str, account_id: UUID, body: Any, *, audit: Audit = _no_audit
) -> Group:
    table = _GROUP_TABLES[kind]
    name = _text(_object(body), "name", MAX_NAME_CHARS)

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
    database: Database, kind: str, account_id: UUID, group_id: UUID, body: Any, *, audit: Audit = _no_audit
) -> Group:
    table = _GROUP_TABLES[kind]
    name = _text(_object(body), "name", MAX_NAME_CHARS)

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


def _flag(body: dict[str, Any], name: str) -> bool | None:
    """A true/false field of the body, or None when it is absent."""
    if name not in body:
        return None
    if not isinstance(body[name], bool):
        raise InvalidInput(f"{name} must be true or false")
    return body[name]


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


async def create_agent(database: Database, account_id: UUID, body: Any, *, audit: Audit = _no_audit) -> dict[str, Any]:
    """Create a user (agent, supervisor or admin) with its departments and skill levels."""
    body = _object(body)
    email = _text(body, "email", MAX_EMAIL_CHARS)
    if not re.fullmatch(r"[^@\s]+@[^@\s]+", email):
        raise InvalidInput("email must be an e-mail address")
    display_name = _text(body, "display_name", MAX_DISPLAY_NAME_CHARS)
    role = _role(body) if "role" in body else "agent"
    password = body.get("password")
    if not isinstance(password, str) or not MIN_PASSWORD_LENGTH <= len(password) <= MAX_PASSWORD_CHARS:
        raise InvalidInput(f"password must be a string of at least {MIN_PASSWORD_LENGTH} characters")
    capacity = (
        _int(body, "max_concurrent_conversations", MIN_CAPACITY, MAX_CAPACITY)
        if "max_concurrent_conversations" in body
        else 5
    )
    departments = _department_ids(body) if "departments" in body else []
    skills = _skill_levels(body) if "skills" in body else {}
    may_view = _flag(body, "may_view_contact_details") or False
    password_hash = await trio.to_thread.run_sync(hash_password, password)

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        async with conn.transaction():
            await validate_role(conn, account_id, role)
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


async def update_agent(
    database: Database, account_id: UUID, user_id: UUID, body: Any, *, acting_user_id: UUID, audit: Audit = _no_audit
) -> dict[str, Any]:
    """Change an agent's display name, role, capacity, disabled flag, departments or skills.

    Only the fields present change; `departments` and `skills` replace the whole list. An
    admin cannot disable or demote themself (so an account never loses its last admin that way).
    Disabling and a role change revoke the user's sessions: it signs in again, with the new role.
    """
    body = _object(body)
    known = {
        "display_name",
        "role",
        "max_concurrent_conversations",
        "disabled",
        "departments",
        "skills",
        "may_view_contact_details",
    }
    unknown = sorted(set(body) - known)
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]}")
    display_name = _text(body, "display_name", MAX_DISPLAY_NAME_CHARS) if "display_name" in body else None
    role = _role(body) if "role" in body else None
    capacity = (
        _int(body, "max_concurrent_conversations", MIN_CAPACITY, MAX_CAPACITY)
        if "max_concurrent_conversations" in body
        else None
    )
    disabled = body.get("disabled")
    if "disabled" in body and not isinstance(disabled, bool):
        raise InvalidInput("disabled must be true or false")
    may_view = _flag(body, "may_view_contact_details")
    departments = _department_ids(body) if "departments" in body else None
    skills = _skill_levels(body) if "skills" in body else None
    if user_id == acting_user_id and (disabled is True or role not in (None, "admin")):
        raise Conflict("you cannot disable or demote yourself")

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        async with conn.transaction():
            exists = await conn.fetchval(
                "SELECT true FROM users WHERE account_id = $1 AND id = $2 FOR UPDATE", account_id, user_id
            )
            if not exists:
                raise NotFound("no such agent")
            if role is not None:
                await validate_role(conn, account_id, role)
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
