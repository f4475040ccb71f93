"""The aggregator's day in PostgreSQL: its saved counters and the conversations waiting now.

`PostgresDayStore` is the `DayStore` of actors/aggregator.py (rule 7): a restarted aggregator
loads the day's counters from `queue_day_counters` and `agent_day_counters` (migration 0010)
and rebuilds its waiting lines from the conversations table and the event log, so "Longest
wait" is the age of the oldest waiting conversation also after a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import asyncpg

from kefu.actors.aggregator import AgentDay, DayState, QueueDay, WaitingConversation
from kefu.server.database import Database

WAITING_STATES = ("queued", "offered")
"""Conversation states in which a conversation waits in a queue."""

_WAITING = """
SELECT c.account_id, c.id, coalesce(c.queue_id, c.account_id) AS queue_id,
       coalesce((SELECT min(e.created_at) FROM conversation_events e
                 WHERE e.conversation_id = c.id
                   AND (e.kind = 'queued' OR (e.kind = 'transferred' AND e.body->>'to_agent_id' IS NULL))
                   AND e.seq > coalesce((SELECT max(a.seq) FROM conversation_events a
                                         WHERE a.conversation_id = c.id AND a.kind = 'assigned'), -1)),
                c.created_at) AS waiting_since
FROM conversations c
WHERE c.status = ANY($1::text[])
"""
"""A wait starts at the first `queued` (or transfer to a queue) after the last assignment."""


class PostgresDayStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    async def load_day(self, day: date) -> DayState:
        async def work(conn: asyncpg.Connection) -> DayState:
            queues = await conn.fetch(
                """SELECT account_id, queue_id, offered, answered, abandoned, answered_in_time, abandoned_late,
                          answer_wait_total
                   FROM queue_day_counters WHERE day = $1""",
                day,
            )
            agents = await conn.fetch(
                "SELECT account_id, agent_id, handled FROM agent_day_counters WHERE day = $1", day
            )
            waiting = await conn.fetch(_WAITING, list(WAITING_STATES))
            wanted = {r["queue_id"] for r in queues} | {r["queue_id"] for r in waiting}
            names = await conn.fetch("SELECT account_id, id, name FROM queues WHERE id = ANY($1::uuid[])", list(wanted))
            return DayState(
                queues=tuple(
                    QueueDay(
                        r["account_id"],
                        r["queue_id"],
                        r["offered"],
                        r["answered"],
                        r["abandoned"],
                        r["answered_in_time"],
                        r["abandoned_late"],
                        r["answer_wait_total"],
                    )
                    for r in queues
                ),
                agents=tuple(AgentDay(r["account_id"], r["agent_id"], r["handled"]) for r in agents),
                waiting=tuple(
                    WaitingConversation(r["account_id"], r["id"], r["queue_id"], r["waiting_since"]) for r in waiting
                ),
                queue_names=tuple((r["account_id"], r["id"], r["name"]) for r in names),
            )

        return await self.database.run(work)

    async def save_day(self, day: date, queues: Sequence[QueueDay], agents: Sequence[AgentDay]) -> None:
        async def work(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                if queues:
                    # An account deleted meanwhile has no rows to keep: the join drops them.
                    await conn.execute(
                        """INSERT INTO queue_day_counters (account_id, day, queue_id, offered, answered, abandoned,
                                                           answered_in_time, abandoned_late, answer_wait_total)
                           SELECT q.account_id, $1::date, q.queue_id, q.offered, q.answered, q.abandoned,
                                  q.answered_in_time, q.abandoned_late, q.answer_wait_total
                           FROM unnest($2::uuid[], $3::uuid[], $4::bigint[], $5::bigint[], $6::bigint[],
                                       $7::bigint[], $8::bigint[], $9::float8[])
                                AS q(account_id, queue_id, offered, answered, abandoned, answered_in_time,
                                     abandoned_late, answer_wait_total)
                           JOIN accounts a ON a.id = q.account_id
                           ON CONFLICT (day, account_id, queue_id) DO UPDATE SET
                               offered = excluded.offered, answered = excluded.answered,
                               abandoned = excluded.abandoned, answered_in_time = excluded.answered_in_time,
                               abandoned_late = excluded.abandoned_late,
                               answer_wait_total = excluded.answer_wait_total, updated_at = now()""",
                        day,
                        [q.account_id for q in queues],
                        [q.queue_id for q in queues],
                        [q.offered for q in queues],
                        [q.answered for q in queues],
                        [q.abandoned for q in queues],
                        [q.answered_in_time for q in queues],
                        [q.abandoned_late for q in queues],
                        [q.answer_wait_total for q in queues],
                    )
                if agents:
                    await conn.execute(
                        """INSERT INTO agent_day_counters (account_id, day, agent_id, handled)
                           SELECT g.account_id, $1::date, g.agent_id, g.handled
                           FROM unnest($2::uuid[], $3::uuid[], $4::bigint[]) AS g(account_id, agent_id, handled)
                           JOIN accounts a ON a.id = g.account_id
                           ON CONFLICT (day, account_id, agent_id) DO UPDATE SET
                               handled = excluded.handled, updated_at = now()""",
                        day,
                        [a.account_id for a in agents],
                        [a.agent_id for a in agents],
                        [a.handled for a in agents],
                    )

        await self.database.run(work)
