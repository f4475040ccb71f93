"""Access ends on open sockets too: an expired session, sign-out, disabling and a role change
(which revokes the sessions: the user signs in again with the new role) close the agent's
websockets with 1008; a department change re-scopes them without a close. A frame the user
lacks the permission for is refused `forbidden`, changes nothing, and is audited."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from uuid import UUID

import pytest
import trio

from kefu.protocol.agent import SetStatus
from kefu.protocol.common import Ping, Resume, SendMessage
from kefu.protocol.customer import StartConversation
from tests.server.live import AGENT_PASSWORD, Agent, Center, Client, connect, live_center


async def _socket(stack: AsyncExitStack, nursery: trio.Nursery, center: Center, agent: Agent) -> Client:
    client = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={agent.token}"))
    await client.wait_for("welcome")
    return client


async def _expire(center: Center, agent: Agent) -> None:
    await center.fetch(
        "UPDATE user_sessions SET expires_at = now() + interval '1 second' WHERE user_id = $1", UUID(agent.id)
    )


async def _sign_out(center: Center, agent: Agent) -> None:
    assert (await center.http.post("/api/v1/auth/sign-out", headers=center.auth(agent.token))).status_code == 204


async def _patch(center: Center, agent: Agent, body: dict[str, object]) -> None:
    response = await center.http.patch(f"/api/v1/agents/{agent.id}", json=body, headers=center.auth(center.admin_token))
    assert response.status_code == 200, response.text


async def _disable(center: Center, agent: Agent) -> None:
    await _patch(center, agent, {"disabled": True})


async def _demote(center: Center, agent: Agent) -> None:
    await _patch(center, agent, {"role": "agent"})


@pytest.mark.parametrize(
    "change", [_expire, _sign_out, _disable, _demote], ids=["session-expires", "sign-out", "disabled", "role-change"]
)
async def test_when_access_ends_or_changes_the_agents_sockets_close_with_1008(
    database_dsn: str, tmp_path: Path, change: object
) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        sue = await center.add_agent("Sue", role="supervisor")
        visitor = await center.add_visitor()
        customer = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}")
        )
        await customer.send(StartConversation("start-1"))
        (ack,) = await customer.wait_for("ack")
        if change is _expire:
            await _expire(center, sue)  # before the socket opens: the handshake accepts, the expiry closes
        first, second = await _socket(stack, nursery, center, sue), await _socket(stack, nursery, center, sue)
        # as a supervisor Sue may follow any conversation of the account
        await first.send(Resume(ack.conversation_id, 0))
        await first.wait_for("resumed", conversation_id=ack.conversation_id)

        if change is not _expire:
            await change(center, sue)  # type: ignore[operator]
        assert await first.wait_closed() == 1008
        assert await second.wait_closed() == 1008
        if change is _expire:
            assert first.of("error", code="session_expired")
        # the token opens nothing any more
        again = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={sue.token}"))
        assert await again.wait_closed() == 1008
        assert (await center.http.get("/api/v1/me", headers=center.auth(sue.token))).status_code == 401

        if change is _demote:
            # Signing in again gives the new role, which may no longer follow others' conversations.
            email = (await center.fetch("SELECT email FROM users WHERE id = $1", UUID(sue.id)))[0]["email"]
            response = await center.http.post(
                "/api/v1/auth/sign-in", json={"account": center.slug, "email": email, "password": AGENT_PASSWORD}
            )
            sue.token = response.json()["token"]
            demoted = await _socket(stack, nursery, center, sue)
            assert demoted.of("welcome")[0].role == "agent"
            await demoted.send(Resume(ack.conversation_id, 0))
            (error,) = await demoted.wait_for("error")
            assert error.code == "forbidden"
            denials = await center.fetch(
                "SELECT action FROM audit_log WHERE actor_id = $1 AND action LIKE 'denied:%'", sue.id
            )
            assert [row["action"] for row in denials] == ["denied:resume"]
        nursery.cancel_scope.cancel()


async def test_a_department_change_rescopes_without_closing(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        admin = center.auth(center.admin_token)
        sales = (await center.http.post("/api/v1/departments", json={"name": "Sales"}, headers=admin)).json()["id"]
        support = (await center.http.post("/api/v1/departments", json={"name": "Support"}, headers=admin)).json()["id"]
        for name, department in (("Sales", sales), ("Support", support)):
            response = await center.http.post(
                "/api/v1/queues", json={"name": name, "department_id": department}, headers=admin
            )
            assert response.status_code == 201, response.text
        alice = await center.add_agent("Alice", departments=[sales])
        client = await _socket(stack, nursery, center, alice)
        await client.send(SetStatus("online"))
        await client.wait_for("status", status="online")

        await _patch(center, alice, {"departments": [support]})
        # The socket stays open ...
        await client.send(Ping("still-here"))
        await client.wait_for("pong", nonce="still-here")
        # ... and is now offered Support's conversations.
        visitor = await center.add_visitor()
        customer = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}")
        )
        await customer.send(StartConversation("start-1", department=support))
        (ack,) = await customer.wait_for("ack")
        (offer,) = await client.wait_for("offer")
        assert offer.conversation_id == ack.conversation_id
        assert client.closed_code is None
        nursery.cancel_scope.cancel()


async def test_a_visitor_token_unused_for_visitor_ttl_days_has_expired(database_dsn: str, tmp_path: Path) -> None:
    async with (
        live_center(database_dsn, tmp_path, visitor_ttl_days=30) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        lapsed = await center.add_visitor("Away for a while")
        recent = await center.add_visitor("Back soon")
        await center.fetch(
            "UPDATE customers SET last_seen_at = now() - interval '31 days' WHERE id = $1", UUID(lapsed.customer_id)
        )
        await center.fetch(
            "UPDATE customers SET last_seen_at = now() - interval '29 days' WHERE id = $1", UUID(recent.customer_id)
        )
        # the lapsed token opens nothing: the socket is refused with 1008, REST with 401
        refused = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={lapsed.token}")
        )
        assert await refused.wait_closed() == 1008
        response = await center.http.patch(
            "/api/v1/webchat/visitor", json={"display_name": "Me"}, headers=center.auth(lapsed.token)
        )
        assert response.status_code == 401
        # the recent one still works, and using it renews it (sliding expiry)
        welcomed = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={recent.token}")
        )
        await welcomed.wait_for("welcome")
        (row,) = await center.fetch(
            "SELECT now() - last_seen_at < interval '1 minute' AS renewed FROM customers WHERE id = $1",
            UUID(recent.customer_id),
        )
        assert row["renewed"]
        nursery.cancel_scope.cancel()


async def test_frames_refused_for_a_missing_permission_change_nothing_and_are_audited(
    database_dsn: str, tmp_path: Path
) -> None:
    """docs/security.md, "Permissions and roles": every refusal is audited as `forbidden` with
    what was attempted, frames included."""
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        admin = center.auth(center.admin_token)
        role = await center.http.post(
            "/api/v1/roles", json={"name": "Monitor only", "permissions": ["conversations.monitor"]}, headers=admin
        )
        assert role.status_code == 201, role.text
        watcher = await center.add_agent("Wanda", role="Monitor only")
        visitor = await center.add_visitor()
        customer = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}")
        )
        await customer.wait_for("welcome")
        await customer.send(StartConversation(client_id="start-1"))
        (ack,) = await customer.wait_for("ack", client_id="start-1")
        client = await _socket(stack, nursery, center, watcher)

        await client.send(SetStatus("online"))
        await client.send(SendMessage("m-1", ack.conversation_id, "text", text="hello"))
        await client.wait_for("error", code="forbidden", ref=None)
        await client.wait_for("error", code="forbidden", ref="m-1")
        await client.round_trip()
        # nothing changed: the watcher never went online (no offer of the waiting conversation)
        # and the customer got no message
        assert client.of("offer") == [] and all(s.status != "online" for s in client.of("status"))
        await customer.round_trip()
        assert [e for e in customer.events(ack.conversation_id) if e.kind == "message"] == []

        response = await center.http.get("/api/v1/audit-log", headers=admin)
        assert response.status_code == 200, response.text
        rows = [e for e in response.json()["entries"] if e["action"] == "forbidden" and e["actor_id"] == watcher.id]
        assert sorted((e["detail"]["attempted"], e["target_type"], e["target_id"]) for e in rows) == [
            ("message.send", "conversation", ack.conversation_id),
            ("status.set", "agent", watcher.id),
        ]
        nursery.cancel_scope.cancel()
