"""Conversations in PostgreSQL: the `ConversationStorage` the actors use, and the REST reads.

Appends to the event log go through the store actor (group commit); this module holds
the other reads and writes: opening a conversation, reading events back for a rebuild or
a resume, keeping the conversations row's index columns current, and listing history.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import asyncpg
import msgspec
from msgspec import Meta

from kefu.actors.ports import AgentProfile, ConversationRow, QueueSettings, StoredEvent
from kefu.protocol.masking import mask_text
from kefu.protocol.permissions import permissions_of
from kefu.protocol.server import CONVERSATION_STATES
from kefu.server.database import Database
from kefu.server.privacy import Privacy
from kefu.server.roles import known_permissions

_ROW = """
    SELECT c.account_id, c.id, c.customer_id, c.channel, c.topic, c.department_id, c.queue_id,
           c.start_client_id, cu.display_name AS customer_name, cu.display_name_enc AS customer_name_enc,
           coalesce(cu.level, 0) AS customer_level, c.last_seq
      FROM conversations c LEFT JOIN customers cu ON cu.account_id = c.account_id AND cu.id = c.customer_id
"""


ConversationStatus = Annotated[str, Meta(extra_json_schema={"enum": sorted(CONVERSATION_STATES)})]
Name = Annotated[str, Meta(max_length=200)]


class ConversationSummary(msgspec.Struct, kw_only=True):
    """One of a customer's conversations."""

    id: UUID
    status: ConversationStatus
    agent_id: UUID | None
    agent_name: Name | None
    channel: str
    topic: Name | None
    created_at: datetime
    closed_at: datetime | None
    last_seq: Annotated[int, Meta(ge=0)]
    wrap_up_code: Name | None


class CustomerConversations(msgspec.Struct):
    conversations: list[ConversationSummary]


class OpenConversation(msgspec.Struct, kw_only=True):
    """An open conversation, as the workbench lists it."""

    id: UUID
    status: ConversationStatus
    channel: str
    topic: Name | None
    created_at: datetime
    customer_name: Name | None
    agent_id: UUID | None
    agent_name: Name | None
    queue_name: Name | None
    department_name: Name | None


class OpenConversations(msgspec.Struct):
    conversations: list[OpenConversation]


Access = Literal["allowed", "forbidden", "not_found"]
"""`not_found`: no such row, or another account's (never said which); `forbidden`: this account's,
but out of the user's scope."""

_MAY_READ = """(
    $3
    OR coalesce(c.department_id, q.department_id) IS NULL
    OR coalesce(c.department_id, q.department_id) IN
       (SELECT ud.department_id FROM user_departments ud WHERE ud.user_id = $2)
    OR c.agent_id = $2
    OR EXISTS (SELECT 1 FROM conversation_events pe WHERE pe.conversation_id = c.id
               AND ((pe.sender_role = 'agent' AND pe.sender_id = $2::text) OR pe.body->>'to_agent_id' = $2::text))
)"""
"""May user $2 read conversation `c` (with its queue `q`)? With `conversations.read_all` ($3): yes.
Otherwise: when the conversation's department (its own, else its queue's) is none or one of the agent's,
or the agent holds it, held it, wrote in it, or is the target of its transfer."""


def _topic(topic: str | None, full: bool) -> str | None:
    """A topic as the customer wrote it (`full`), else with phone numbers and e-mail addresses masked."""
    return topic if full or topic is None else mask_text(topic)


def _access(record: asyncpg.Record | None) -> Access:
    if record is None or not record["same_account"]:
        return "not_found"
    return "allowed" if record["allowed"] else "forbidden"


def _customer_name(privacy: Privacy | None, record: asyncpg.Record) -> str | None:
    """The customer's display name: stored encrypted (server/privacy.py), so decrypted here."""
    if privacy is None or record["customer_name_enc"] is None:
        name: str | None = record["customer_name"]
        return name
    return privacy.name(record["account_id"], record["customer_id"], record["customer_name_enc"])


def _row(record: asyncpg.Record, privacy: Privacy | None = None) -> ConversationRow:
    return ConversationRow(
        account_id=record["account_id"],
        conversation_id=record["id"],
        customer_id=record["customer_id"],
        channel=record["channel"],
        topic=record["topic"],
        department_id=record["department_id"],
        queue_id=record["queue_id"],
        customer_name=_customer_name(privacy, record),
        customer_level=record["customer_level"],
        start_client_id=record["start_client_id"],
        recorded_last_seq=record["last_seq"],
    )


def _event(record: asyncpg.Record) -> StoredEvent:
    return StoredEvent(
        seq=record["seq"],
        kind=record["kind"],
        sender_role=record["sender_role"],
        sender_id=record["sender_id"],
        client_id=record["client_id"],
        body=record["body"],
        created_at=record["created_at"],
    )


def queue_settings(record: asyncpg.Record | dict[str, Any]) -> QueueSettings:
    return QueueSettings(
        account_id=record["account_id"],
        queue_id=record["id"],
        name=record["name"],
        strategy=record["strategy"],
        department_id=record["department_id"],
        skill_id=record["skill_id"],
        min_skill_level=record["min_skill_level"],
        widen_after_seconds=float(record["widen_after_seconds"]),
        offer_timeout_seconds=float(record["offer_timeout_seconds"]),
        auto_accept=record["auto_accept"],
        overflow_after_seconds=(
            float(record["overflow_after_seconds"]) if record["overflow_after_seconds"] is not None else None
        ),
        overflow_queue_id=record["overflow_queue_id"],
        no_agent_message=record["no_agent_message"],
        is_default=record["is_default"],
    )


class PostgresConversations:
    """`kefu.actors.ports.ConversationStorage` on PostgreSQL."""

    def __init__(self, database: Database, privacy: Privacy | None = None) -> None:
        self.database = database
        self.privacy = privacy
        """Decrypts customers' display names; without it, names stored encrypted read as None."""

    async def conversation(self, conversation_id: UUID) -> ConversationRow | None:
        record = await self.database.fetchrow(_ROW + " WHERE c.id = $1", conversation_id)
        return _row(record, self.privacy) if record is not None else None

    async def events_after(self, conversation_id: UUID, after_seq: int, limit: int) -> list[StoredEvent]:
        records = await self.database.fetch(
            "SELECT seq, kind, sender_role, sender_id, client_id, body, created_at FROM conversation_events"
            " WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            conversation_id,
            after_seq,
            limit,
        )
        return [_event(record) for record in records]

    async def all_events(self, conversation_id: UUID) -> list[StoredEvent]:
        records = await self.database.fetch(
            "SELECT seq, kind, sender_role, sender_id, client_id, body, created_at FROM conversation_events"
            " WHERE conversation_id = $1 ORDER BY seq",
            conversation_id,
        )
        return [_event(record) for record in records]

    async def last_seq(self, conversation_id: UUID) -> int:
        value = await self.database.fetchval(
            "SELECT coalesce(max(seq), 0) FROM conversation_events WHERE conversation_id = $1", conversation_id
        )
        return int(value)

    async def record_state(
        self, conversation_id: UUID, *, status: str, agent_id: UUID | None, queue_id: UUID | None, last_seq: int
    ) -> None:
        await self.database.execute(
            "UPDATE conversations SET status = $2, agent_id = $3,"
            " queue_id = coalesce((SELECT q.id FROM queues q WHERE q.id = $4), queue_id), last_seq = $5,"
            " closed_at = CASE WHEN $2 = 'closed' THEN coalesce(closed_at, now()) ELSE NULL END"
            " WHERE id = $1",
            conversation_id,
            status,
            agent_id,
            queue_id,
            last_seq,
        )

    async def attachment_kind(self, account_id: UUID, attachment_id: str, uploader_id: UUID) -> str | None:
        try:
            key = UUID(attachment_id)
        except ValueError:
            return None
        kind: str | None = await self.database.fetchval(
            "SELECT kind FROM attachments WHERE account_id = $1 AND id = $2 AND uploader_id = $3",
            account_id,
            key,
            uploader_id,
        )
        return kind

    async def agent_profile(self, agent_id: UUID) -> AgentProfile | None:
        record = await self.database.fetchrow(
            "SELECT u.account_id, u.id, u.display_name, u.role, u.max_concurrent_conversations,"
            " u.may_view_contact_details, r.permissions AS role_permissions,"
            " coalesce((SELECT array_agg(department_id) FROM user_departments WHERE user_id = u.id), '{}')"
            " AS departments,"
            " coalesce((SELECT jsonb_object_agg(skill_id::text, level) FROM user_skills WHERE user_id = u.id), '{}')"
            " AS skills"
            " FROM users u LEFT JOIN roles r ON r.account_id = u.account_id AND r.name = u.role"
            " WHERE u.id = $1 AND u.disabled_at IS NULL",
            agent_id,
        )
        if record is None:
            return None
        return AgentProfile(
            account_id=record["account_id"],
            agent_id=record["id"],
            display_name=record["display_name"],
            role=record["role"],
            permissions=permissions_of(
                record["role"],
                None
                if record["role_permissions"] is None
                else {record["role"]: known_permissions(record["role_permissions"])},
                may_view_contact_details=record["may_view_contact_details"],
            ),
            capacity=record["max_concurrent_conversations"],
            departments=frozenset(record["departments"]),
            skills={UUID(skill): level for skill, level in record["skills"].items()},
        )

    async def held_conversations(self, agent_id: UUID) -> list[UUID]:
        records = await self.database.fetch(
            "SELECT id FROM conversations WHERE agent_id = $1 AND status IN ('assigned', 'transferring', 'wrap_up')",
            agent_id,
        )
        return [record["id"] for record in records]

    async def queues(self, account_id: UUID) -> list[QueueSettings]:
        records = await self.database.fetch(
            "SELECT * FROM queues WHERE account_id = $1 ORDER BY created_at", account_id
        )
        return [queue_settings(record) for record in records]

    async def queue_for_department(self, account_id: UUID, department_id: UUID) -> UUID | None:
        record = await self.database.fetchrow(
            "SELECT d.id AS department_id,"
            " (SELECT q.id FROM queues q WHERE q.account_id = d.account_id AND q.department_id = d.id"
            "   ORDER BY q.created_at LIMIT 1) AS own,"
            " (SELECT q.id FROM queues q WHERE q.account_id = d.account_id AND q.is_default) AS fallback"
            " FROM departments d WHERE d.account_id = $1 AND d.id = $2",
            account_id,
            department_id,
        )
        if record is None:
            return None
        return record["own"] or record["fallback"] or account_id

    async def record_denial(
        self,
        account_id: UUID,
        actor_role: str,
        actor_id: UUID,
        action: str,
        target_id: UUID | str,
        *,
        target_type: str = "conversation",
        detail: dict[str, Any] | None = None,
    ) -> None:
        await self.database.execute(
            "INSERT INTO audit_log (account_id, actor_role, actor_id, action, target_type, target_id, detail)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            account_id,
            actor_role,
            str(actor_id),
            f"denied:{action}",
            target_type,
            str(target_id),
            {"outcome": "denied", **(detail or {})},
        )

    # -- department scoping (docs/security.md, "Who may see and do what") --------------------------

    async def conversation_access(
        self, account_id: UUID, user_id: UUID, reads_all: bool, conversation_id: UUID
    ) -> Access:
        """May this user read this conversation? See `_MAY_READ` for the rule."""
        record = await self.database.fetchrow(
            "SELECT c.account_id = $1 AS same_account, " + _MAY_READ + " AS allowed"
            " FROM conversations c LEFT JOIN queues q ON q.id = c.queue_id WHERE c.id = $4",
            account_id,
            user_id,
            reads_all,
            conversation_id,
        )
        return _access(record)

    async def customer_access(self, account_id: UUID, user_id: UUID, reads_all: bool, customer_id: UUID) -> Access:
        """A customer is readable by who may read one of its conversations, and by every agent of
        the account while it has none (nothing ties it to a department yet); staff: all."""
        record = await self.database.fetchrow(
            "SELECT cu.account_id = $1 AS same_account,"
            " ($3 OR NOT EXISTS (SELECT 1 FROM conversations c WHERE c.customer_id = cu.id)"
            "  OR EXISTS (SELECT 1 FROM conversations c LEFT JOIN queues q ON q.id = c.queue_id"
            "  WHERE c.account_id = cu.account_id AND c.customer_id = cu.id AND " + _MAY_READ + ")) AS allowed"
            " FROM customers cu WHERE cu.id = $4",
            account_id,
            user_id,
            reads_all,
            customer_id,
        )
        return _access(record)

    async def attachment_access(self, account_id: UUID, user_id: UUID, reads_all: bool, attachment_id: UUID) -> Access:
        """An attachment is readable by its uploader, by who may read a conversation it was sent in,
        and, for a customer's upload, by who may read that customer (see `customer_access`)."""
        record = await self.database.fetchrow(
            "SELECT a.account_id = $1 AS same_account,"
            " ($3 OR (a.uploader_role <> 'customer' AND a.uploader_id = $2)"
            "  OR EXISTS (SELECT 1 FROM conversation_events e JOIN conversations c ON c.id = e.conversation_id"
            "   LEFT JOIN queues q ON q.id = c.queue_id"
            "   WHERE c.account_id = a.account_id AND e.kind = 'message' AND e.body->>'attachment_id' = a.id::text"
            "   AND " + _MAY_READ + ")"
            "  OR (a.uploader_role = 'customer'"
            "   AND (NOT EXISTS (SELECT 1 FROM conversations c WHERE c.customer_id = a.uploader_id)"
            "    OR EXISTS (SELECT 1 FROM conversations c LEFT JOIN queues q ON q.id = c.queue_id"
            "     WHERE c.account_id = a.account_id AND c.customer_id = a.uploader_id AND " + _MAY_READ + ")))"
            " ) AS allowed"
            " FROM attachments a WHERE a.id = $4",
            account_id,
            user_id,
            reads_all,
            attachment_id,
        )
        return _access(record)

    # -- the web-chat gateway's writes ----------------------------------------------------------

    async def open_conversation(
        self,
        *,
        account_id: UUID,
        customer_id: UUID,
        channel: str,
        start_client_id: str,
        department_id: UUID | None,
        topic: str | None,
    ) -> UUID:
        """Create the conversation for a `conversation.start`, or find the one it already made.

        Raises LookupError for a department the account does not have.
        """

        async def work(conn: asyncpg.Connection) -> UUID:
            async with conn.transaction():
                existing: UUID | None = await conn.fetchval(
                    "SELECT id FROM conversations WHERE customer_id = $1 AND start_client_id = $2",
                    customer_id,
                    start_client_id,
                )
                if existing is not None:
                    return existing
                queue_id = None
                if department_id is not None:
                    found = await conn.fetchrow(
                        "SELECT d.id, (SELECT q.id FROM queues q WHERE q.account_id = d.account_id"
                        " AND q.department_id = d.id ORDER BY q.created_at LIMIT 1) AS queue_id"
                        " FROM departments d WHERE d.account_id = $1 AND d.id = $2",
                        account_id,
                        department_id,
                    )
                    if found is None:
                        raise LookupError("no such department")
                    queue_id = found["queue_id"]
                if queue_id is None:
                    queue_id = await conn.fetchval(
                        "SELECT id FROM queues WHERE account_id = $1 AND is_default", account_id
                    )
                opened: UUID = await conn.fetchval(
                    "INSERT INTO conversations (account_id, customer_id, channel, start_client_id, department_id,"
                    " queue_id, topic) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                    " ON CONFLICT (customer_id, start_client_id) WHERE start_client_id IS NOT NULL"
                    " DO UPDATE SET start_client_id = excluded.start_client_id RETURNING id",
                    account_id,
                    customer_id,
                    channel,
                    start_client_id,
                    department_id,
                    queue_id,
                    topic,
                )
                return opened

        return await self.database.run(work)

    async def open_conversations_of_customer(self, customer_id: UUID) -> list[asyncpg.Record]:
        return await self.database.fetch(
            "SELECT * FROM (SELECT c.id, c.status, c.customer_id, c.channel, c.queue_id, c.agent_id, c.topic,"
            " c.created_at, (SELECT coalesce(max(e.seq), 0) FROM conversation_events e"
            " WHERE e.conversation_id = c.id) AS last_seq"
            " FROM conversations c WHERE c.customer_id = $1 AND c.status <> 'closed') open"
            " WHERE last_seq > 0 ORDER BY created_at",
            customer_id,
        )

    async def open_conversation_ids(self) -> list[tuple[UUID, UUID]]:
        """(account, conversation) of every conversation not closed: their sessions restart."""
        records = await self.database.fetch(
            "SELECT account_id, id FROM conversations c WHERE status <> 'closed'"
            " AND EXISTS (SELECT 1 FROM conversation_events e WHERE e.conversation_id = c.id)"
        )
        return [(record["account_id"], record["id"]) for record in records]

    async def open_conversations(
        self, account_id: UUID, user_id: UUID, *, queued_only: bool, every_department: bool, full: bool = False
    ) -> list[dict[str, Any]]:
        """Open conversations an agent may see in the workbench's lists: those of its departments
        (by the conversation's or its queue's department) and those of no department;
        supervisors and admins (`every_department`) see the whole account's. Topics show phone
        numbers and e-mail addresses masked unless `full` (the viewer may see contact details)."""
        records = await self.database.fetch(
            "SELECT c.id, c.status, c.channel, c.topic, c.created_at, c.agent_id,"
            " u.display_name AS agent_name, cu.display_name AS customer_name, cu.display_name_enc AS customer_name_enc,"
            " c.account_id, c.customer_id, q.name AS queue_name,"
            " d.name AS department_name"
            " FROM conversations c"
            " LEFT JOIN customers cu ON cu.account_id = c.account_id AND cu.id = c.customer_id"
            " LEFT JOIN users u ON u.id = c.agent_id"
            " LEFT JOIN queues q ON q.id = c.queue_id"
            " LEFT JOIN departments d ON d.id = coalesce(c.department_id, q.department_id)"
            " WHERE c.account_id = $1 AND c.status <> 'closed'"
            " AND (NOT $2 OR c.status IN ('queued', 'offered'))"
            " AND ($3 OR coalesce(c.department_id, q.department_id) IS NULL"
            "      OR coalesce(c.department_id, q.department_id) IN"
            "         (SELECT department_id FROM user_departments WHERE user_id = $4))"
            " AND EXISTS (SELECT 1 FROM conversation_events e WHERE e.conversation_id = c.id)"
            " ORDER BY c.created_at LIMIT 500",
            account_id,
            queued_only,
            every_department,
            user_id,
        )
        return [
            {
                "id": str(r["id"]),
                "status": r["status"],
                "channel": r["channel"],
                "topic": _topic(r["topic"], full),
                "created_at": r["created_at"].isoformat(),
                "customer_name": _customer_name(self.privacy, r),
                "agent_id": str(r["agent_id"]) if r["agent_id"] else None,
                "agent_name": r["agent_name"],
                "queue_name": r["queue_name"],
                "department_name": r["department_name"],
            }
            for r in records
        ]

    async def conversation_account(self, conversation_id: UUID) -> UUID | None:
        account_id: UUID | None = await self.database.fetchval(
            "SELECT account_id FROM conversations WHERE id = $1", conversation_id
        )
        return account_id

    async def customer_history(
        self,
        account_id: UUID,
        customer_id: UUID,
        limit: int = 50,
        *,
        user_id: UUID | None = None,
        reads_all: bool = True,
        full: bool = False,
    ) -> list[dict[str, Any]]:
        """The customer's conversations, newest first; for an agent only those it may read. Topics
        show phone numbers and e-mail addresses masked unless `full`."""
        records = await self.database.fetch(
            "SELECT c.id, c.status, c.channel, c.topic, c.created_at, c.closed_at, c.agent_id,"
            " (SELECT coalesce(max(e.seq), 0) FROM conversation_events e WHERE e.conversation_id = c.id) AS last_seq,"
            " u.display_name AS agent_name,"
            " (SELECT e.body->>'wrap_up_code' FROM conversation_events e WHERE e.conversation_id = c.id"
            "   AND e.kind = 'wrapped_up' ORDER BY e.seq DESC LIMIT 1) AS wrap_up_code"
            " FROM conversations c LEFT JOIN users u ON u.id = c.agent_id LEFT JOIN queues q ON q.id = c.queue_id"
            " WHERE c.account_id = $1 AND c.customer_id = $4 AND " + _MAY_READ + " ORDER BY c.created_at DESC LIMIT $5",
            account_id,
            user_id,
            reads_all,
            customer_id,
            limit,
        )
        return [
            {
                "id": str(r["id"]),
                "status": r["status"],
                "agent_id": str(r["agent_id"]) if r["agent_id"] else None,
                "agent_name": r["agent_name"],
                "channel": r["channel"],
                "topic": _topic(r["topic"], full),
                "created_at": r["created_at"].isoformat(),
                "closed_at": r["closed_at"].isoformat() if r["closed_at"] else None,
                "last_seq": r["last_seq"],
                "wrap_up_code": r["wrap_up_code"],
            }
            for r in records
        ]
