"""The audit log over REST (`GET /api/v1/audit-log`, admins of the account only), and the scoped
404 refusals that are written to it: another user's personal canned response, another account's
agent, a message frame naming someone else's attachment."""

from __future__ import annotations

import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import trio

from kefu.protocol.common import SendMessage
from kefu.protocol.customer import StartConversation
from tests.server.live import Center, connect, live_center

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


async def _log(center: Center, token: str, **params: Any) -> dict[str, Any]:
    response = await center.http.get("/api/v1/audit-log", params=params, headers=center.auth(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _account_id(center: Center) -> uuid.UUID:
    (row,) = await center.fetch("SELECT id FROM accounts WHERE slug = $1", center.slug)
    account_id: uuid.UUID = row["id"]
    return account_id


async def _denials(center: Center, action: str) -> list[dict[str, Any]]:
    rows = await center.fetch(
        "SELECT * FROM audit_log WHERE account_id = $1 AND action = $2 ORDER BY id", await _account_id(center), action
    )
    return [dict(r) for r in rows]


async def test_only_admins_read_their_accounts_audit_log_filtered_and_paginated(
    database_dsn: str, tmp_path: Path
) -> None:
    async with live_center(database_dsn, tmp_path) as center:
        agent = await center.add_agent("Ann")
        supervisor = await center.add_agent("Sue", role="supervisor")
        for number in range(7):
            response = await center.http.post(
                "/api/v1/departments", json={"name": f"D{number}"}, headers=center.auth(center.admin_token)
            )
            assert response.status_code == 201
        # A refusal of the caller's own: agents and supervisors may not read the log (audited).
        for user in (agent, supervisor):
            response = await center.http.get("/api/v1/audit-log", headers=center.auth(user.token))
            assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
        response = await center.http.get("/api/v1/audit-log")
        assert response.status_code == 401

        everything = await _log(center, center.admin_token, limit=500)
        ids = [entry["id"] for entry in everything["entries"]]
        assert ids == sorted(ids, reverse=True) and everything["next_before"] is None
        refused = [e for e in everything["entries"] if e["target_type"] == "audit_log"]
        assert {(e["actor_id"], e["action"], e["outcome"]) for e in refused} == {
            (agent.id, "forbidden", "denied"),
            (supervisor.id, "forbidden", "denied"),
        }
        first = everything["entries"][0]
        assert set(first) == {
            "id",
            "at",
            "actor_role",
            "actor_id",
            "action",
            "target_type",
            "target_id",
            "outcome",
            "detail",
        }

        # Filters: action, outcome, actor, time range.
        created = await _log(center, center.admin_token, action="department.create")
        assert len(created["entries"]) == 7 and {e["outcome"] for e in created["entries"]} == {"done"}
        denied = await _log(center, center.admin_token, outcome="denied")
        assert {e["id"] for e in denied["entries"]} == {e["id"] for e in refused}
        by_agent = await _log(center, center.admin_token, actor=agent.id)
        assert [e["id"] for e in by_agent["entries"]] == [e["id"] for e in refused if e["actor_id"] == agent.id]
        window = await _log(center, center.admin_token, since=first["at"], until=first["at"])
        assert window["entries"] == []  # until is exclusive
        window = await _log(center, center.admin_token, since=first["at"])
        assert first["id"] in [e["id"] for e in window["entries"]]
        for bad in (
            {"limit": "0"},
            {"limit": "501"},
            {"before": "x"},
            {"outcome": "maybe"},
            {"since": "yesterday"},
            {"actor": "x"},
            {"color": "red"},
        ):
            response = await center.http.get("/api/v1/audit-log", params=bad, headers=center.auth(center.admin_token))
            assert response.status_code == 400, bad

        # Keyset pages: stable while new entries are written between pages.
        pages: list[int] = []
        before: int | None = None
        while True:
            params: dict[str, Any] = {"limit": 3, **({"before": before} if before is not None else {})}
            page = await _log(center, center.admin_token, **params)
            assert len(page["entries"]) <= 3
            pages += [e["id"] for e in page["entries"]]
            await center.http.post(
                "/api/v1/skills", json={"name": f"S{uuid.uuid4().hex[:6]}"}, headers=center.auth(center.admin_token)
            )
            before = page["next_before"]
            if before is None:
                break
        assert pages == ids

        # Another account's admin sees none of these rows, and this account sees none of theirs.
        other = await center.http.post(
            "/api/v1/departments", json={"name": "X"}, headers=center.auth(center.admin_token)
        )
        assert other.status_code == 201
    async with live_center(database_dsn, tmp_path / "other") as stranger:
        seen = await _log(stranger, stranger.admin_token, limit=500)
        mine = {
            row["id"]
            for row in await stranger.fetch(
                "SELECT id FROM audit_log WHERE account_id = (SELECT id FROM accounts WHERE slug = $1)", stranger.slug
            )
        }
        assert {e["id"] for e in seen["entries"]} == mine
        assert not set(ids) & mine


async def test_scoped_404_refusals_are_audited(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path / "b") as elsewhere:
        foreign_agent = await elsewhere.add_agent("Faraway")
    async with (
        live_center(database_dsn, tmp_path) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        ann = await center.add_agent("Ann")
        bob = await center.add_agent("Bob")

        # Another user's personal canned response: 404 as if it did not exist, and audited.
        response = await center.http.post(
            "/api/v1/canned-responses",
            json={"scope": "personal", "shortcut": "mine", "title": "Mine", "body": "Ann's"},
            headers=center.auth(ann.token),
        )
        assert response.status_code == 201
        canned = response.json()["id"]
        response = await center.http.patch(
            f"/api/v1/canned-responses/{canned}", json={"body": "Bob's now"}, headers=center.auth(bob.token)
        )
        assert response.status_code == 404
        response = await center.http.delete(f"/api/v1/canned-responses/{canned}", headers=center.auth(bob.token))
        assert response.status_code == 404
        for action in ("denied:canned_response.update", "denied:canned_response.delete"):
            (row,) = await _denials(center, action)
            assert (row["actor_id"], row["target_type"], row["target_id"]) == (bob.id, "canned_response", canned)
            assert row["detail"]["status"] == 404

        # Another account's agent: 404 to the admin, audited in the admin's account.
        response = await center.http.get(f"/api/v1/agents/{foreign_agent.id}", headers=center.auth(center.admin_token))
        assert response.status_code == 404
        response = await center.http.patch(
            f"/api/v1/agents/{foreign_agent.id}", json={"display_name": "Mine"}, headers=center.auth(center.admin_token)
        )
        assert response.status_code == 404
        for action in ("denied:agent.read", "denied:agent.update"):
            (row,) = await _denials(center, action)
            assert (row["target_type"], row["target_id"], row["detail"]["status"]) == ("agent", foreign_agent.id, 404)

        # A message frame naming another customer's upload: not_found, and audited.
        owner, thief = await center.add_visitor(), await center.add_visitor()
        upload = await center.http.post(
            "/api/v1/attachments?filename=a.png",
            content=PNG,
            headers={"Authorization": f"Bearer {owner.token}", "Content-Type": "image/png"},
        )
        assert upload.status_code == 201
        attachment = upload.json()["id"]
        customer = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={thief.token}")
        )
        await customer.send(StartConversation(customer.client_id()))
        (ack,) = await customer.wait_for("ack")
        await customer.send(SendMessage("steal", ack.conversation_id, "image", attachment_id=attachment))
        (error,) = await customer.wait_for("error", ref="steal")
        assert error.code == "not_found"
        (row,) = await _denials(center, "denied:message.send")
        assert (row["actor_role"], row["actor_id"], row["target_type"], row["target_id"]) == (
            "customer",
            thief.customer_id,
            "attachment",
            attachment,
        )
        nursery.cancel_scope.cancel()
