"""The supervisor dashboard follows the `stats` frames live: an agent going online, a customer
answered, in English and in Simplified Chinese."""

from __future__ import annotations

from typing import Any

import httpx

from tests.web.conftest import AGENT_PASSWORD, KefuProcess, Tenant, WebsocketPeer, screenshot, sign_in, ws_url


def test_dashboard_shows_queues_and_agents_live(kefu_server: KefuProcess, tenant: Tenant, new_context: Any) -> None:
    from playwright.sync_api import expect

    queue = tenant.api("POST", "/api/v1/queues", json={"name": "General", "is_default": True})
    assert queue.status_code == 201, queue.text
    queue_id = queue.json()["id"]
    sue = tenant.add_agent("Sue", role="supervisor")
    anna = tenant.add_agent("Anna")

    page = new_context().new_page()
    page.goto(kefu_server.url + "/supervisor")
    page.get_by_label("Account").fill(tenant.slug)
    page.get_by_label("E-mail").fill(sue["email"])
    page.get_by_label("Password").fill(AGENT_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#connection")).to_have_attribute("data-state", "online")

    anna_token = sign_in(kefu_server, tenant.slug, anna["email"], AGENT_PASSWORD)
    agent = WebsocketPeer(ws_url(kefu_server, "/ws/agent", anna_token))
    visitor = httpx.post(f"{kefu_server.url}/api/v1/webchat/visitors", json={"account": tenant.slug}, timeout=10).json()
    customer = WebsocketPeer(ws_url(kefu_server, "/ws/customer", visitor["token"]))
    try:
        agent.send({"type": "status.set", "status": "online"})
        agent.wait_for("status", status="online")
        row = page.locator(f'#agents tr[data-agent-id="{anna["id"]}"]')
        expect(row.locator(".status")).to_have_attribute("data-status", "online", timeout=10000)
        expect(row.locator(".load")).to_have_text("0")

        customer.send({"type": "conversation.start", "client_id": "s-1"})
        conversation = customer.wait_for("ack")["conversation_id"]
        offer = agent.wait_for("offer", conversation_id=conversation)
        agent.send({"type": "offer.accept", "offer_id": offer["offer_id"]})
        customer.wait_for("event", kind="assigned")

        expect(page.locator(f'#queues tr[data-queue-id="{queue_id}"] .answered')).to_have_text("1", timeout=10000)
        expect(row.locator(".load")).to_have_text("1", timeout=10000)
        expect(page.locator("#chart-waiting canvas")).to_have_count(1)
        screenshot(page, "dashboard")

        page.get_by_label("Language").select_option("zh-CN")
        expect(page.get_by_role("heading", name="坐席状态分布")).to_be_visible()
        expect(row.locator(".status")).to_have_text("在线")
        expect(page.locator("#connection")).to_have_text("实时")
        screenshot(page, "dashboard-zh")
    finally:
        agent.close()
        customer.close()
