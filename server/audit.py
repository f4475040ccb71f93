"""The audit log: who changed what in an account, and who was refused.

`audit_log` is append-only (a trigger refuses UPDATE, DELETE and TRUNCATE; only deleting the
whole account takes its log with it). `record` writes one row, either on its own or inside the
caller's transaction when given the transaction's connection.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import asyncpg

from kefu.server.database import Database

_INSERT = """INSERT INTO audit_log (account_id, actor_role, actor_id, action, target_type, target_id, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7)"""


async def record(
    database_or_connection: Database | asyncpg.Connection,
    account_id: UUID,
    actor_role: str,
    actor_id: UUID | str | None,
    action: str,
    target_type: str,
    target_id: UUID | str | None,
    detail: dict[str, Any] | None = None,
) -> None:
    """Append one entry. With a connection (inside `Database.run`), it joins that transaction."""
    args = (
        account_id,
        actor_role,
        None if actor_id is None else str(actor_id),
        action,
        target_type,
        None if target_id is None else str(target_id),
        detail or {},
    )
    if isinstance(database_or_connection, Database):
        await database_or_connection.execute(_INSERT, *args)
    else:
        await database_or_connection.execute(_INSERT, *args)


async def entries(database: Database, account_id: UUID) -> list[dict[str, Any]]:
    """The account's log, oldest first (for tests and, later, an admin page)."""
    rows = await database.fetch("SELECT * FROM audit_log WHERE account_id = $1 ORDER BY id", account_id)
    return [dict(r) for r in rows]
