"""Privacy of what customers write and who they are (docs/security.md, Privacy):

- the customer's display name is stored only encrypted: never in the event log, whose frames take
  the name from the customer record;
- phone numbers and e-mail addresses a customer types (messages, the topic) reach agents without
  `may_view_contact_details` masked on every path: live `event` frames, `resume` replays, the
  `conversations` frame and REST; agents with the permission, supervisors and the customer see
  them as written.
"""

from __future__ import annotations

import secrets
import string
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

from kefu.protocol.agent import AcceptOffer, SetStatus
from kefu.protocol.common import Resume, SendMessage
from kefu.protocol.customer import StartConversation
from kefu.server.database import _migrate_aio, bundled_migrations
from tests.conftest import new_account, new_conversation, open_database
from tests.server.live import Center, Client, connect, live_center
from tests.server.test_migrations import empty_dsn  # noqa: F401  (a fixture)

PHONE = "138-1234-5678"
EMAIL = "Alice.Wang@Example.com"
MASKED = "138****5678 or A***@Example.com"
WRITTEN = f"{PHONE} or {EMAIL}"


def _random_name() -> str:
    """24 random letters: no stored byte string (hex, base64, UUIDs) contains them by chance."""
    return "".join(secrets.choice(string.ascii_letters) for _ in range(24))


async def _dump(center: Center) -> str:
    """Every row of every table of kefu's schema, as text: what a copy of the database shows."""
    tables = await center.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename")
    dump = []
    for table in tables:
        rows = await center.fetch(f'SELECT t::text AS row FROM "{table["tablename"]}" t')
        dump.extend(row["row"] for row in rows)
    return "\n".join(dump)


async def _agent_socket(stack: AsyncExitStack, nursery: trio.Nursery, center: Center, token: str) -> Client:
    client = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={token}"))
    await client.wait_for("welcome")
    return client


async def test_the_customer_name_is_never_stored_in_plaintext(database_dsn: str, tmp_path: Path) -> None:
    name = _random_name()
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        visitor = await center.add_visitor(name)
        anna = await center.add_agent("Anna")
        agent = await _agent_socket(stack, nursery, center, anna.token)
        await agent.send(SetStatus("online"))
        customer = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}")
        )
        await customer.send(StartConversation("c-1"))
        (ack,) = await customer.wait_for("ack", client_id="c-1")
        conversation = ack.conversation_id
        await customer.send(SendMessage("c-2", conversation, "text", text="before an agent"))
        await customer.wait_for("ack", client_id="c-2")
        (offer,) = await agent.wait_for("offer")
        await agent.send(AcceptOffer(offer.offer_id))
        await agent.wait_for("resumed", conversation_id=conversation)
        await customer.send(SendMessage("c-3", conversation, "text", text="live"))
        await agent.wait_for("event", client_id="c-3")

        # Frames still name the customer (replayed and live), from the encrypted customer record.
        shown = [e for e in agent.events(conversation) if e.sender.role == "customer"]
        assert [e.client_id for e in shown] == ["c-2", "c-3"]
        assert all(e.sender.display_name == name for e in shown)
        response = await center.http.get(
            f"/api/v1/conversations/{conversation}/events", headers=center.auth(center.admin_token)
        )
        assert response.status_code == 200, response.text
        customers = [e for e in response.json()["events"] if e["sender"]["role"] == "customer"]
        assert [e["sender"]["display_name"] for e in customers] == [name, name]

        dump = await _dump(center)
        assert str(conversation) in dump and "before an agent" in dump  # the dump holds the conversation
        assert name not in dump and name.lower() not in dump.lower()
        nursery.cancel_scope.cancel()


async def test_migration_0008_removes_names_stored_in_customers_events(empty_dsn: str) -> None:  # noqa: F811
    name = _random_name()
    migrations = bundled_migrations()
    before = [m for m in migrations if m.version < 8]
    async with open_database(empty_dsn) as database:

        async def migrate_up_to_0007(conn: Any) -> None:
            await _migrate_aio(conn, before)

        await database.run(migrate_up_to_0007)
        account = await new_account(database)
        conversation = await new_conversation(database, account)
        rows = [
            (1, "c-1", "customer", "cust-1", {"text": "hi", "sender_name": name, "message_kind": "text"}),
            (2, "c-2", "agent", "agent-1", {"text": "hello", "sender_name": "Anna", "message_kind": "text"}),
        ]
        for seq, client_id, role, sender_id, body in rows:
            await database.execute(
                "INSERT INTO conversation_events (account_id, conversation_id, seq, client_id, kind, sender_role,"
                " sender_id, body, created_at) VALUES ($1, $2, $3, $4, 'message', $5, $6, $7, now())",
                account,
                conversation,
                seq,
                client_id,
                role,
                sender_id,
                body,
            )
        assert [m.version for m in await database.migrate()] == [m.version for m in migrations if m.version >= 8]
        stored = await database.fetch(
            "SELECT e::text AS raw, body FROM conversation_events e WHERE conversation_id = $1 ORDER BY seq",
            conversation,
        )
        assert name not in stored[0]["raw"] and stored[0]["body"] == {"text": "hi", "message_kind": "text"}
        assert stored[1]["body"]["sender_name"] == "Anna"  # agents' names are not customers' personal data


def _texts(client: Client, conversation: str, client_id: str) -> list[str | None]:
    return [e.text for e in client.events(conversation) if e.client_id == client_id]


async def _rest(center: Center, token: str, path: str) -> Any:
    response = await center.http.get(path, headers=center.auth(token))
    assert response.status_code == 200, response.text
    return response.json()


async def test_agents_without_the_permission_get_contact_details_masked_everywhere(
    database_dsn: str, tmp_path: Path
) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        visitor = await center.add_visitor("Alice")
        anna = await center.add_agent("Anna")
        sue = await center.add_agent("Sue", role="supervisor")
        agent = await _agent_socket(stack, nursery, center, anna.token)
        await agent.send(SetStatus("online"))
        await agent.wait_for("status", status="online")
        customer = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}")
        )
        await customer.send(StartConversation("c-1", topic=f"call me: {WRITTEN}"))
        (ack,) = await customer.wait_for("ack", client_id="c-1")
        conversation = ack.conversation_id
        await customer.send(SendMessage("c-2", conversation, "text", text=f"waiting: {WRITTEN}"))
        await customer.wait_for("ack", client_id="c-2")
        (offer,) = await agent.wait_for("offer")
        await agent.send(AcceptOffer(offer.offer_id))
        await agent.wait_for("resumed", conversation_id=conversation)
        # the replay on assignment
        assert _texts(agent, conversation, "c-2") == [f"waiting: {MASKED}"]

        # live: the agent's copy is masked, the customer's own is not
        await customer.send(SendMessage("c-3", conversation, "text", text=f"live: {WRITTEN}"))
        await agent.wait_for("event", client_id="c-3")
        assert _texts(agent, conversation, "c-3") == [f"live: {MASKED}"]
        await customer.wait_for("event", client_id="c-3")
        assert _texts(customer, conversation, "c-3") == [f"live: {WRITTEN}"]
        # what an agent writes reaches the customer as written, and other agents masked
        await agent.send(SendMessage("a-1", conversation, "text", text=f"ours: {WRITTEN}"))
        await customer.wait_for("event", client_id="a-1")
        assert _texts(customer, conversation, "a-1") == [f"ours: {WRITTEN}"]

        # a second tab: the `conversations` frame's topic, then a resume replay
        tab = await _agent_socket(stack, nursery, center, anna.token)
        (listed,) = await tab.wait_for("conversations")
        assert [c.topic for c in listed.conversations] == [f"call me: {MASKED}"]
        await tab.send(Resume(conversation, 0))
        await tab.wait_for("resumed", conversation_id=conversation)
        assert _texts(tab, conversation, "c-2") == [f"waiting: {MASKED}"]
        assert _texts(tab, conversation, "c-3") == [f"live: {MASKED}"]

        # REST: the events, the open conversations, the customer's conversations
        paths = (
            f"/api/v1/conversations/{conversation}/events",
            "/api/v1/conversations",
            f"/api/v1/customers/{visitor.customer_id}/conversations",
        )
        for path in paths:
            text = str(await _rest(center, anna.token, path))
            assert PHONE not in text and EMAIL not in text, path
            assert "138****5678" in text and "A***@Example.com" in text, path
        events = (await _rest(center, anna.token, paths[0]))["events"]
        assert [e["text"] for e in events if e.get("client_id") in ("c-2", "c-3")] == [
            f"waiting: {MASKED}",
            f"live: {MASKED}",
        ]

        # A supervisor sees everything as written, on a socket and over REST.
        watcher = await _agent_socket(stack, nursery, center, sue.token)
        await watcher.send(Resume(conversation, 0))
        await watcher.wait_for("resumed", conversation_id=conversation)
        assert _texts(watcher, conversation, "c-2") == [f"waiting: {WRITTEN}"]
        for path in paths:
            text = str(await _rest(center, sue.token, path))
            assert PHONE in text and EMAIL in text, path

        # An admin grants Anna the permission: her open sockets and REST show it at once.
        response = await center.http.patch(
            f"/api/v1/agents/{anna.id}",
            json={"may_view_contact_details": True},
            headers=center.auth(center.admin_token),
        )
        assert response.status_code == 200, response.text
        await customer.send(SendMessage("c-4", conversation, "text", text=f"granted: {WRITTEN}"))
        await agent.wait_for("event", client_id="c-4")
        await tab.wait_for("event", client_id="c-4")
        assert _texts(agent, conversation, "c-4") == _texts(tab, conversation, "c-4") == [f"granted: {WRITTEN}"]
        for path in paths:
            text = str(await _rest(center, anna.token, path))
            assert PHONE in text and EMAIL in text, path
        third = await _agent_socket(stack, nursery, center, anna.token)
        (listed,) = await third.wait_for("conversations")
        assert [c.topic for c in listed.conversations] == [f"call me: {WRITTEN}"]

        # ... and taking it back masks again, without a new connection.
        response = await center.http.patch(
            f"/api/v1/agents/{anna.id}",
            json={"may_view_contact_details": False},
            headers=center.auth(center.admin_token),
        )
        assert response.status_code == 200, response.text
        await customer.send(SendMessage("c-5", conversation, "text", text=f"revoked: {WRITTEN}"))
        await agent.wait_for("event", client_id="c-5")
        assert _texts(agent, conversation, "c-5") == [f"revoked: {MASKED}"]
        nursery.cancel_scope.cancel()


async def test_the_store_keeps_what_the_customer_wrote(database_dsn: str, tmp_path: Path) -> None:
    """Masking happens when shown, never when stored: the log keeps the text as written."""
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        visitor = await center.add_visitor()
        customer = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}")
        )
        await customer.send(StartConversation("c-1"))
        (ack,) = await customer.wait_for("ack", client_id="c-1")
        await customer.send(SendMessage("c-2", ack.conversation_id, "text", text=WRITTEN))
        await customer.wait_for("ack", client_id="c-2")
        (row,) = await center.fetch(
            "SELECT body->>'text' AS text FROM conversation_events WHERE conversation_id = $1 AND client_id = 'c-2'",
            uuid.UUID(ack.conversation_id),
        )
        assert row["text"] == WRITTEN
        nursery.cancel_scope.cancel()
