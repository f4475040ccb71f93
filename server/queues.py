"""Queues: where conversations wait and how an agent is picked for them.

Every account has exactly one default queue (created with the account; migration 0011 gave
older accounts theirs): the queue of a conversation that asks for no department, or for one
without a queue of its own. It is a queue like the others, visible and editable; making
another queue the default moves the mark, and the default itself can be neither deleted nor
un-marked (409), so a conversation always has a real queue to wait in.

Which agents a queue offers to: with a `department_id`, the agents of that department; with
a `skill_id`, those having the skill (at `min_skill_level` or above for the `skills` strategy,
which widens with the wait); with neither, every agent of the account.

The REST edge creates, changes and deletes them (admins only) and then tells the node, whose
dispatcher reloads the account's queues with `load_queues`. References to a department, skill
or overflow queue are checked within the caller's account; another account's id is not found.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from kefu.server.database import Database
from kefu.server.directory import Conflict, InvalidInput, NotFound

STRATEGIES = ("least_load", "longest_idle", "round_robin", "skills", "priority")
MAX_NAME_CHARS = 100
MAX_NO_AGENT_MESSAGE_CHARS = 2000

COLUMNS = (
    "account_id, id, name, department_id, skill_id, strategy, min_skill_level, widen_after_seconds,"
    " offer_timeout_seconds, auto_accept, overflow_after_seconds, overflow_queue_id, no_agent_message,"
    " is_default, created_at"
)

_INTEGERS = {
    "min_skill_level": (1, 10),
    "widen_after_seconds": (1, 3600),
    "offer_timeout_seconds": (1, 600),
    "overflow_after_seconds": (1, 86400),
}
_NULLABLE = {"department_id", "skill_id", "overflow_after_seconds", "overflow_queue_id", "no_agent_message"}
_REFERENCES = {"department_id": ("departments", "department"), "skill_id": ("skills", "skill")}
FIELDS = (
    "name",
    "department_id",
    "skill_id",
    "strategy",
    "min_skill_level",
    "widen_after_seconds",
    "offer_timeout_seconds",
    "auto_accept",
    "overflow_after_seconds",
    "overflow_queue_id",
    "no_agent_message",
    "is_default",
)
"""What a client may set; all optional except `name` on create."""


def queue_json(row: asyncpg.Record | dict[str, Any]) -> dict[str, Any]:
    def ident(value: UUID | None) -> str | None:
        return None if value is None else str(value)

    return {
        "id": str(row["id"]),
        "name": row["name"],
        "department_id": ident(row["department_id"]),
        "skill_id": ident(row["skill_id"]),
        "strategy": row["strategy"],
        "min_skill_level": row["min_skill_level"],
        "widen_after_seconds": row["widen_after_seconds"],
        "offer_timeout_seconds": row["offer_timeout_seconds"],
        "auto_accept": row["auto_accept"],
        "overflow_after_seconds": row["overflow_after_seconds"],
        "overflow_queue_id": ident(row["overflow_queue_id"]),
        "no_agent_message": row["no_agent_message"],
        "is_default": row["is_default"],
        "created_at": row["created_at"].isoformat(),
    }


def _parse(body: Any, *, create: bool) -> dict[str, Any]:
    """The fields of a create or update body, checked and converted."""
    if not isinstance(body, dict):
        raise InvalidInput("expected a JSON object")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]}")
    if create and "name" not in body:
        raise InvalidInput(f"name must be a string of 1 to {MAX_NAME_CHARS} characters")
    values: dict[str, Any] = {}
    for field, value in body.items():
        if value is None and field in _NULLABLE:
            values[field] = None
        elif field == "name":
            if not isinstance(value, str) or not 1 <= len(value.strip()) <= MAX_NAME_CHARS:
                raise InvalidInput(f"name must be a string of 1 to {MAX_NAME_CHARS} characters")
            values[field] = value.strip()
        elif field in ("department_id", "skill_id", "overflow_queue_id"):
            try:
                values[field] = UUID(value) if isinstance(value, str) else None
            except ValueError:
                values[field] = None
            if values[field] is None:
                raise InvalidInput(f"{field} must be a UUID string or null")
        elif field == "strategy":
            if value not in STRATEGIES:
                raise InvalidInput(f"strategy must be one of {', '.join(STRATEGIES)}")
            values[field] = value
        elif field in _INTEGERS:
            low, high = _INTEGERS[field]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                nullable = " or null" if field in _NULLABLE else ""
                raise InvalidInput(f"{field} must be an integer from {low} to {high}{nullable}")
            values[field] = value
        elif field in ("auto_accept", "is_default"):
            if not isinstance(value, bool):
                raise InvalidInput(f"{field} must be true or false")
            values[field] = value
        elif field == "no_agent_message":
            if not isinstance(value, str) or not 1 <= len(value.strip()) <= MAX_NO_AGENT_MESSAGE_CHARS:
                raise InvalidInput(
                    f"no_agent_message must be a string of 1 to {MAX_NO_AGENT_MESSAGE_CHARS} characters or null"
                )
            values[field] = value.strip()
    return values


async def _check_references(conn: asyncpg.Connection, account_id: UUID, values: dict[str, Any]) -> None:
    for field, (table, what) in _REFERENCES.items():
        if values.get(field) is not None:
            found = await conn.fetchval(
                f"SELECT true FROM {table} WHERE account_id = $1 AND id = $2", account_id, values[field]
            )
            if not found:
                raise NotFound(f"no such {what} ({field})")
    if values.get("overflow_queue_id") is not None:
        found = await conn.fetchval(
            "SELECT true FROM queues WHERE account_id = $1 AND id = $2", account_id, values["overflow_queue_id"]
        )
        if not found:
            raise NotFound("no such queue (overflow_queue_id)")


def _check_whole(row: dict[str, Any]) -> None:
    if row["strategy"] == "skills" and row["skill_id"] is None:
        raise InvalidInput("skill_id is required when strategy is skills")
    if row["overflow_queue_id"] is not None and row["overflow_queue_id"] == row.get("id"):
        raise InvalidInput("overflow_queue_id must not be the queue itself")


async def _write(conn: asyncpg.Connection, query: str, *args: Any) -> asyncpg.Record | None:
    try:
        return await conn.fetchrow(query, *args)
    except asyncpg.UniqueViolationError:
        raise Conflict("a queue with this name already exists") from None


_DEFAULTS: dict[str, Any] = {
    "department_id": None,
    "skill_id": None,
    "strategy": "least_load",
    "min_skill_level": 1,
    "widen_after_seconds": 30,
    "offer_timeout_seconds": 20,
    "auto_accept": False,
    "overflow_after_seconds": None,
    "overflow_queue_id": None,
    "no_agent_message": None,
    "is_default": False,
}


async def list_queues(database: Database, account_id: UUID) -> list[dict[str, Any]]:
    return [queue_json(r) for r in await load_queues(database, account_id)]


async def get_queue(database: Database, account_id: UUID, queue_id: UUID) -> dict[str, Any]:
    row = await database.fetchrow(
        f"SELECT {COLUMNS} FROM queues WHERE account_id = $1 AND id = $2", account_id, queue_id
    )
    if row is None:
        raise NotFound("no such queue")
    return queue_json(row)


async def create_queue(database: Database, account_id: UUID, body: Any, *, audit: Any = None) -> dict[str, Any]:
    """Create a queue; `audit(conn, queue_json)` runs inside the same transaction when given."""
    values = {**_DEFAULTS, **_parse(body, create=True)}
    _check_whole(values)

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        async with conn.transaction():
            await _check_references(conn, account_id, values)
            if values["is_default"]:
                await conn.execute(
                    "UPDATE queues SET is_default = false WHERE account_id = $1 AND is_default", account_id
                )
            names = list(_DEFAULTS)
            row = await _write(
                conn,
                f"""INSERT INTO queues (account_id, name, {", ".join(names)})
                    VALUES ($1, $2, {", ".join(f"${i + 3}" for i in range(len(names)))})
                    RETURNING {COLUMNS}""",
                account_id,
                values["name"],
                *(values[n] for n in names),
            )
            assert row is not None
            queue = queue_json(row)
            if audit is not None:
                await audit(conn, queue)
            return queue

    return await database.run(work)


async def update_queue(
    database: Database, account_id: UUID, queue_id: UUID, body: Any, *, audit: Any = None
) -> dict[str, Any]:
    """Change the fields present in `body`; `audit(conn, queue_json, changes)` runs in the transaction."""
    changes = _parse(body, create=False)

    async def work(conn: asyncpg.Connection) -> dict[str, Any]:
        async with conn.transaction():
            current = await conn.fetchrow(
                f"SELECT {COLUMNS} FROM queues WHERE account_id = $1 AND id = $2 FOR UPDATE", account_id, queue_id
            )
            if current is None:
                raise NotFound("no such queue")
            if current["is_default"] and changes.get("is_default") is False:
                raise Conflict("this is the account's default queue: make another queue the default instead")
            merged = {**dict(current), **changes}
            _check_whole(merged)
            await _check_references(conn, account_id, changes)
            if changes.get("is_default"):
                await conn.execute(
                    "UPDATE queues SET is_default = false WHERE account_id = $1 AND is_default AND id <> $2",
                    account_id,
                    queue_id,
                )
            names = ["name", *_DEFAULTS]
            row = await _write(
                conn,
                f"""UPDATE queues SET {", ".join(f"{n} = ${i + 3}" for i, n in enumerate(names))}
                    WHERE account_id = $1 AND id = $2 RETURNING {COLUMNS}""",
                account_id,
                queue_id,
                *(merged[n] for n in names),
            )
            assert row is not None
            queue = queue_json(row)
            if audit is not None:
                await audit(conn, queue, {k: queue[k] for k in changes})
            return queue

    return await database.run(work)


async def delete_queue(database: Database, account_id: UUID, queue_id: UUID, *, audit: Any = None) -> None:
    """Delete a queue; queues that overflowed to it stop overflowing."""

    async def work(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            is_default = await conn.fetchval(
                "SELECT is_default FROM queues WHERE account_id = $1 AND id = $2 FOR UPDATE", account_id, queue_id
            )
            if is_default:
                raise Conflict("the default queue cannot be deleted: make another queue the default first")
            name = await conn.fetchval(
                "DELETE FROM queues WHERE account_id = $1 AND id = $2 RETURNING name", account_id, queue_id
            )
            if name is None:
                raise NotFound("no such queue")
            if audit is not None:
                await audit(conn, {"id": str(queue_id), "name": name})

    await database.run(work)


async def load_queues(database: Database, account_id: UUID) -> list[dict[str, Any]]:
    """Every queue of an account with all its columns (ids as UUID, created_at as datetime), by name."""
    rows = await database.fetch(
        f"SELECT {COLUMNS} FROM queues WHERE account_id = $1 ORDER BY lower(name), id", account_id
    )
    return [dict(r) for r in rows]


async def load_all_queues(database: Database) -> list[dict[str, Any]]:
    """Every queue of every account, as `load_queues` gives them, ordered by account then name."""
    rows = await database.fetch(f"SELECT {COLUMNS} FROM queues ORDER BY account_id, lower(name), id")
    return [dict(r) for r in rows]
