"""The conversations row is an index of the event log: a session that starts rebuilds it.

A crash between an event's COMMIT and the session's write of the row (status, holder, last
seq) leaves the row behind the log. The next session of the conversation writes it again, so
an agent's listing after a restart shows what the log says it holds.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import trio

from kefu.protocol.agent import AcceptOffer, SetStatus
from kefu.protocol.customer import StartConversation
from tests.server.live import connect, live_center


async def test_a_row_left_behind_by_a_crash_is_written_again_when_the_session_starts(
    database_dsn: str, tmp_path: Path
) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery:
        anna = await center.add_agent("Anna", capacity=1)
        visitor = await center.add_visitor()
        async with (
            connect(nursery, f"{center.ws_base}/ws/agent?token={anna.token}") as agent,
            connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}") as customer,
        ):
            await agent.send(SetStatus("online"))
            await customer.send(StartConversation("t-1"))
            (ack,) = await customer.wait_for("ack")
            held = ack.conversation_id
            (offer,) = await agent.wait_for("offer")
            await agent.send(AcceptOffer(offer.offer_id))
            await customer.wait_for("event", kind="assigned")
        # What a crash right after the `assigned` COMMIT leaves: the row as it was while queued.
        await center.fetch(
            "UPDATE conversations SET status = 'queued', agent_id = NULL, last_seq = 1 WHERE id = $1", UUID(held)
        )
        await center.restart()
        async with connect(nursery, f"{center.ws_base}/ws/agent?token={anna.token}") as agent:
            (listing,) = await agent.wait_for("conversations")
            assert [c.conversation_id for c in listing.conversations] == [held]
            (status,) = await agent.wait_for("status")
            assert status.active_conversations == 1
        (row,) = await center.fetch("SELECT status, agent_id, last_seq FROM conversations WHERE id = $1", UUID(held))
        (last,) = await center.fetch(
            "SELECT max(seq) AS seq FROM conversation_events WHERE conversation_id = $1", UUID(held)
        )
        assert (row["status"], str(row["agent_id"]), row["last_seq"]) == ("assigned", anna.id, last["seq"])
        nursery.cancel_scope.cancel()
