"""Webhooks: signed, ordered, at-least-once deliveries of conversation activity to the business.

(Placeholder of the interface other parts call; the webhooks work fills it in.)
"""

from __future__ import annotations

from uuid import UUID

from kefu.protocol.channels.events import ActivityType
from kefu.server.database import Database


async def enqueue_activity(database: Database, account_id: UUID, activity: ActivityType, *, channel: str | None) -> int:
    """Queue `activity` (one that is not in the event log: typing, an unread notice) for every
    enabled endpoint of the account subscribed to its type (and channel); returns how many
    deliveries were queued. Activities from the event log are queued by the database itself,
    in the transaction that stores the event."""
    raise NotImplementedError
