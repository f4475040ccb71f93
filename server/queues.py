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

from datetime import datetime
from typing import Annotated, Any, Literal, get_args
from uuid import UUID

import asyncpg
import msgspec
from msgspec import UNSET, Meta, UnsetType

from kefu.actors.routing import MAX_SKILL_LEVEL, MIN_SKILL_LEVEL
from kefu.server.api.structs import check_text, given
from kefu.server.database import Database
from kefu.server.directory import Conflict, InvalidInput, NotFound

Strategy = Literal["least_load", "longest_idle", "round_robin", "skills", "priority"]
STRATEGIES: tuple[str, ...] = get_args(Strategy)
MAX_NAME_CHARS = 100
MAX_NO_AGENT_MESSAGE_CHARS = 2000

COLUMNS = (
    "account_id, id, name, department_id, skill_id, strategy, min_skill_level, widen_after_seconds,"
    " offer_timeout_seconds, auto_accept, overflow_after_seconds, overflow_queue_id, no_agent_message,"
    " is_default, created_at"
)

QueueName = Annotated[str, Meta(min_length=1, max_length=MAX_NAME_CHARS)]
SkillLevel = Annotated[int, Meta(ge=MIN_SKILL_LEVEL, le=MAX_SKILL_LEVEL)]
WidenAfter = Annotated[int, Meta(ge=1, le=3600, description="seconds before the skills strategy widens")]
OfferTimeout = Annotated[int, Meta(ge=1, le=600, description="seconds an agent has to accept an offer")]
OverflowAfter = Annotated[int, Meta(ge=1, le=86400, description="seconds waited before overflowing")]
NoAgentMessage = Annotated[str, Meta(min_length=1, max_length=MAX_NO_AGENT_MESSAGE_CHARS)]

_REFERENCES = {"department_id": ("departments", "department"), "skill_id": ("skills", "skill")}


class Queue(msgspec.Struct, kw_only=True):
    """A queue, as the API shows it."""

    id: UUID
    name: QueueName
    department_id: UUID | None
    skill_id: UUID | None
    strategy: Strategy
    min_skill_level: SkillLevel
    widen_after_seconds: WidenAfter
    offer_timeout_seconds: OfferTimeout
    auto_accept: bool
    overflow_after_seconds: OverflowAfter | None
    overflow_queue_id: UUID | None
    no_agent_message: NoAgentMessage | None
    is_default: bool
    created_at: datetime


class Queues(msgspec.Struct):
    queues: list[Queue]


class _QueueFields(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    def __post_init__(self) -> None:
        for name in ("name", "no_agent_message"):
            value = getattr(self, name)
            if isinstance(value, str):
                setattr(self, name, check_text(value, name, type(self)))


class QueueCreate(_QueueFields, kw_only=True):
    """A new queue. skill_id is required when strategy is skills; is_default clears it on the
    account's other queues."""

    name: QueueName
    department_id: UUID | None = None
    skill_id: UUID | None = None
    strategy: Strategy = "least_load"
    min_skill_level: SkillLevel = 1
    widen_after_seconds: WidenAfter = 30
    offer_timeout_seconds: OfferTimeout = 20
    auto_accept: bool = False
    overflow_after_seconds: OverflowAfter | None = None
    overflow_queue_id: UUID | None = None
    no_agent_message: NoAgentMessage | None = None
    is_default: bool = False


class QueueChange(_QueueFields, kw_only=True):
    """The fields of a queue to change; absent ones stay as they are."""

    name: QueueName | UnsetType = UNSET
    department_id: UUID | UnsetType | None = UNSET
    skill_id: UUID | UnsetType | None = UNSET
    strategy: Strategy | UnsetType = UNSET
    min_skill_level: SkillLevel | UnsetType = UNSET
    widen_after_seconds: WidenAfter | UnsetType = UNSET
    offer_timeout_seconds: OfferTimeout | UnsetType = UNSET
    auto_accept: bool | UnsetType = UNSET
    overflow_after_seconds: OverflowAfter | UnsetType | None = UNSET
    overflow_queue_id: UUID | UnsetType | None = UNSET
    no_agent_message: NoAgentMessage | UnsetType | None = UNSET
    is_default: bool | UnsetType = UNSET


FIELDS: tuple[str, ...] = QueueChange.__struct_fields__
"""What a client may set; all optional except `name` on create."""


def queue_of(row: asyncpg.Record | dict[str, Any]) -> Queue:
    return Queue(**{name: row[name] for name in Queue.__struct_fields__})


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


async def list_queues(database: Database, account_id: UUID) -> list[Queue]:
    return [queue_of(r) for r in await load_queues(database, account_id)]


async def get_queue(database: Database, account_id: UUID, queue_id: UUID) -> Queue:
    row = await database.fetchrow(
        f"SELECT {COLUMNS} FROM queues WHERE account_id = $1 AND id = $2", account_id, queue_id
    )
    if row is None:
        raise NotFound("no such queue")
    return queue_of(row)


async def create_queue(database: Database, account_id: UUID, body: QueueCreate, *, audit: Any = None) -> Queue:
    """Create a queue; `audit(conn, queue)` runs inside the same transaction when given."""
    values = msgspec.structs.asdict(body)
    _check_whole(values)

    async def work(conn: asyncpg.Connection) -> Queue:
        async with conn.transaction():
            await _check_references(conn, account_id, values)
            if values["is_default"]:
                await conn.execute(
                    "UPDATE queues SET is_default = false WHERE account_id = $1 AND is_default", account_id
                )
            names = [name for name in QueueCreate.__struct_fields__ if name != "name"]
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
            queue = queue_of(row)
            if audit is not None:
                await audit(conn, queue)
            return queue

    return await database.run(work)


async def update_queue(
    database: Database, account_id: UUID, queue_id: UUID, body: QueueChange, *, audit: Any = None
) -> Queue:
    """Change the fields present in `body`; `audit(conn, queue, changes)` runs in the transaction."""
    changes = given(body)

    async def work(conn: asyncpg.Connection) -> Queue:
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
            names = list(QueueCreate.__struct_fields__)
            row = await _write(
                conn,
                f"""UPDATE queues SET {", ".join(f"{n} = ${i + 3}" for i, n in enumerate(names))}
                    WHERE account_id = $1 AND id = $2 RETURNING {COLUMNS}""",
                account_id,
                queue_id,
                *(merged[n] for n in names),
            )
            assert row is not None
            queue = queue_of(row)
            if audit is not None:
                await audit(conn, queue, msgspec.to_builtins({k: getattr(queue, k) for k in changes}))
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
                await audit(conn, {"id": queue_id, "name": name})

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
