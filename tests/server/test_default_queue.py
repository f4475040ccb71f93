"""Every account has a real default queue, visible and editable over REST (server/queues.py),
and the queue decides which agents its conversations are offered to."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from uuid import UUID

import trio

from kefu.actors import messages as m
from kefu.protocol.agent import SetStatus
from kefu.protocol.customer import StartConversation
from kefu.server.accounts import create_account
from tests.conftest import open_database
from tests.server.live import Agent, Center, Client, connect, live_center


async def _online(stack: AsyncExitStack, nursery: trio.Nursery, center: Center, agent: Agent) -> Client:
    client = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={agent.token}"))
    await client.wait_for("welcome")
    await client.send(SetStatus("online"))
    await client.wait_for("status", status="online")
    return client


async def _department(center: Center, name: str) -> str:
    response = await center.http.post(
        "/api/v1/departments", json={"name": name}, headers=center.auth(center.admin_token)
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


async def test_a_new_account_has_a_default_queue_its_conversations_wait_in(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        headers = center.auth(center.admin_token)
        response = await center.http.get("/api/v1/queues", headers=headers)
        assert response.status_code == 200
        (default,) = response.json()["queues"]
        assert (default["name"], default["is_default"], default["department_id"]) == ("Default", True, None)
        assert default["strategy"] == "least_load"

        # a conversation that asks for no department waits in it, under its real id
        visitor = await center.add_visitor()
        customer = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}")
        )
        await customer.send(StartConversation(customer.client_id()))
        (queued,) = await customer.wait_for("event", kind="queued")
        assert queued.queue_id == default["id"]
        response = await center.http.get(f"/api/v1/queues/{queued.queue_id}", headers=headers)
        assert response.status_code == 200 and response.json()["name"] == "Default"

        # it is editable; it can be neither deleted nor un-marked while it is the default
        response = await center.http.patch(
            f"/api/v1/queues/{default['id']}", json={"name": "Front desk", "offer_timeout_seconds": 30}, headers=headers
        )
        assert response.status_code == 200 and response.json()["name"] == "Front desk"
        response = await center.http.delete(f"/api/v1/queues/{default['id']}", headers=headers)
        assert response.status_code == 409 and response.json()["error"]["code"] == "conflict"
        response = await center.http.patch(
            f"/api/v1/queues/{default['id']}", json={"is_default": False}, headers=headers
        )
        assert response.status_code == 409
        # another queue taking the default frees it to be deleted
        response = await center.http.post("/api/v1/queues", json={"name": "Main", "is_default": True}, headers=headers)
        assert response.status_code == 201
        response = await center.http.delete(f"/api/v1/queues/{default['id']}", headers=headers)
        assert response.status_code == 204
        queues = (await center.http.get("/api/v1/queues", headers=headers)).json()["queues"]
        assert [(q["name"], q["is_default"]) for q in queues] == [("Main", True)]
        nursery.cancel_scope.cancel()


async def test_the_default_queue_offers_to_the_agents_of_its_department(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        headers = center.auth(center.admin_token)
        sales, support = await _department(center, "Sales"), await _department(center, "Support")
        (default,) = (await center.http.get("/api/v1/queues", headers=headers)).json()["queues"]
        response = await center.http.patch(
            f"/api/v1/queues/{default['id']}", json={"department_id": sales}, headers=headers
        )
        assert response.status_code == 200
        seller_row = await center.add_agent("Seller", departments=[sales])
        seller = await _online(stack, nursery, center, seller_row)
        helper_row = await center.add_agent("Helper", departments=[support])
        await _online(stack, nursery, center, helper_row)
        # conversations for no department: only the default queue's department is offered them
        node = center.node
        for _ in range(3):
            visitor = await center.add_visitor()
            customer = await stack.enter_async_context(
                connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}")
            )
            await customer.send(StartConversation(customer.client_id()))
            (ack,) = await customer.wait_for("ack")
            await seller.wait_for("offer", conversation_id=ack.conversation_id)
        await node.dispatcher_mailbox.ref.ask(lambda reply: m.RouteProbe(reply), timeout=10)
        dispatcher = node.dispatcher
        assert dispatcher is not None
        assert len(dispatcher.offers) == 3
        assert {offer.agent_id for offer in dispatcher.offers.values()} == {UUID(seller_row.id)}
        nursery.cancel_scope.cancel()


async def test_the_migration_gives_an_account_without_a_queue_a_default_one(database_dsn: str) -> None:
    async with open_database(database_dsn) as database:
        account = await create_account(
            database, name="Old", slug="old-no-queue", admin_email="admin@old.example", admin_password="p" * 12
        )
        # as an account made before migration 0011: no queue, a conversation in the implicit one
        await database.execute("DELETE FROM queues WHERE account_id = $1", account.account_id)
        migration = (Path(__file__).parents[2] / "server/migrations/0011_default_queue.sql").read_text()
        await database.execute(migration)
        rows = await database.fetch("SELECT name, is_default FROM queues WHERE account_id = $1", account.account_id)
        assert [(r["name"], r["is_default"]) for r in rows] == [("Default", True)]
        # run again (another account already migrated): nothing doubles
        await database.execute(migration)
        assert await database.fetchval("SELECT count(*) FROM queues WHERE account_id = $1", account.account_id) == 1
