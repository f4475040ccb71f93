"""The agent workbench (web/agent.html) against a real server, with a websocket peer as the customer."""

from __future__ import annotations

import base64
import re
import uuid
from typing import Any

import httpx
from playwright.sync_api import expect

from tests.web.conftest import KefuProcess, Tenant, WebsocketPeer, screenshot, ws_url

# A 1x1 PNG.
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def visitor(server: KefuProcess, slug: str) -> str:
    response = httpx.post(f"{server.url}/api/v1/webchat/visitors", json={"account": slug}, timeout=10)
    assert response.status_code in (200, 201), response.text
    return str(response.json()["token"])


def sign_in_page(page: Any, server: KefuProcess, tenant: Tenant, agent: dict[str, Any]) -> None:
    page.goto(server.url + "/agent")
    page.fill("#signin-account", tenant.slug)
    page.fill("#signin-email", agent["email"])
    page.fill("#signin-password", agent["password"])
    page.click("#signin-submit")
    expect(page.locator("#connection")).to_have_attribute("data-state", "online")
    page.click("#status-online")
    expect(page.locator("#status-online")).to_have_attribute("aria-pressed", "true")


def start_and_accept(page: Any, server: KefuProcess, customer: WebsocketPeer, first: str) -> str:
    customer.send({"type": "conversation.start", "client_id": f"s-{uuid.uuid4().hex[:8]}", "topic": "Invoice"})
    conversation = customer.wait_for("ack")["conversation_id"]
    customer.send(
        {"type": "message.send", "client_id": "m-1", "conversation_id": conversation, "kind": "text", "text": first}
    )
    customer.wait_for("ack", client_id="m-1")
    page.click("#view-offers")
    accept = page.locator(".offer .accept")
    expect(accept).to_have_count(1, timeout=15000)
    accept.click()
    expect(page.locator("#events .message.incoming", has_text=first)).to_have_count(1)
    customer.wait_for("event", kind="assigned")
    return str(conversation)


def test_agent_takes_an_offer_and_chats(kefu_server: KefuProcess, tenant: Tenant, new_context: Any) -> None:
    agent = tenant.add_agent("Anna")
    page = new_context().new_page()
    sign_in_page(page, kefu_server, tenant, agent)
    token = visitor(kefu_server, tenant.slug)
    customer = WebsocketPeer(ws_url(kefu_server, "/ws/customer", token))
    try:
        conversation = start_and_accept(page, kefu_server, customer, "My invoice is wrong")
        expect(page.locator("#view-mine")).to_contain_text("1")
        customer.send({"type": "typing", "conversation_id": conversation, "active": True})
        expect(page.locator("#typing")).to_have_text("The customer is typing…")
        page.fill("#composer-text", "Let me check that for you")
        customer.wait_for("typing", role="agent", active=True)
        page.press("#composer-text", "Enter")
        customer.wait_for("event", kind="message", text="Let me check that for you")
        expect(page.locator("#composer-text")).to_have_value("")
        reply = customer.wait_for("event", kind="message", text="Let me check that for you")
        customer.send({"type": "read", "conversation_id": conversation, "seq": reply["seq"]})
        expect(page.locator("#events .outgoing .receipt").first).to_have_text("✓ Read")

        # A canned response by its shortcut, and an internal note the customer never sees.
        canned = {"scope": "account", "shortcut": "thanks", "title": "Thanks", "body": "Thank you for waiting."}
        assert tenant.api("POST", "/api/v1/canned-responses", json=canned).status_code == 201
        page.fill("#composer-text", "/tha")
        page.locator("#canned-list button", has_text="/thanks").click()
        expect(page.locator("#composer-text")).to_have_value("Thank you for waiting.")
        page.check("#note-mode")
        page.fill("#composer-text", "VIP customer")
        page.press("#composer-text", "Enter")
        expect(page.locator("#events .note", has_text="VIP customer")).to_have_count(1)
        page.uncheck("#note-mode")

        uploaded = httpx.post(
            f"{kefu_server.url}/api/v1/attachments?filename=photo.png",
            content=TINY_PNG,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "image/png"},
            timeout=10,
        )
        assert uploaded.status_code == 201, uploaded.text
        customer.send(
            {
                "type": "message.send",
                "client_id": "m-2",
                "conversation_id": conversation,
                "kind": "image",
                "attachment_id": uploaded.json()["id"],
            }
        )
        image = page.locator("#events img.media")
        expect(image).to_have_count(1)
        expect(image).to_have_attribute("src", re.compile(r"^blob:"))
        page.wait_for_function(
            "() => { const i = document.querySelector('#events img.media');"
            " return i && i.complete && i.naturalWidth > 0; }"
        )
        # The customer's side sees the read receipt the page sent.
        customer.wait_for("read", role="agent")
        screenshot(page, "workbench")
        assert not customer.of("event", kind="note")

        # The agent uploads an image; the customer receives it as an image message.
        page.set_input_files("#attach", files=[{"name": "reply.png", "mimeType": "image/png", "buffer": TINY_PNG}])
        customer.wait_for("event", kind="message", message_kind="image")
        expect(page.locator("#events .outgoing img.media")).to_have_count(1)

        # Closing with a wrap-up code ends it for the customer and takes it off the agent's list.
        page.fill("#wrap-up-code", "billing-question")
        page.click("#close-form button[type=submit]")
        customer.wait_for("event", kind="closed")
        expect(page.locator("#view-mine")).to_have_text("Mine (0)")
    finally:
        customer.close()


def test_workbench_survives_a_server_restart(
    kefu_server: KefuProcess, tenant: Tenant, new_context: Any, request: Any
) -> None:
    request.node.allowed_console_errors = ("WebSocket connection to",)
    agent = tenant.add_agent("Bo")
    page = new_context().new_page()
    sign_in_page(page, kefu_server, tenant, agent)
    token = visitor(kefu_server, tenant.slug)
    customer = WebsocketPeer(ws_url(kefu_server, "/ws/customer", token))
    try:
        conversation = start_and_accept(page, kefu_server, customer, "Hello before the restart")
    finally:
        customer.close()
    page.fill("#composer-text", "a draft kept across the restart")
    connection = page.locator("#connection")
    page.evaluate(
        """() => {
            window.connectionStates = [];
            const node = document.getElementById("connection");
            new MutationObserver(() => window.connectionStates.push(node.dataset.state))
                .observe(node, {attributes: true, attributeFilter: ["data-state"]});
        }"""
    )
    kefu_server.restart()
    customer = WebsocketPeer(ws_url(kefu_server, "/ws/customer", token))
    try:
        customer.send({"type": "resume", "conversation_id": conversation, "last_seq": 0})
        customer.wait_for("resumed", conversation_id=conversation)
        customer.send(
            {
                "type": "message.send",
                "client_id": "m-9",
                "conversation_id": conversation,
                "kind": "text",
                "text": "sent while you were away",
            }
        )
        customer.wait_for("ack", client_id="m-9")
        expect(connection).to_have_attribute("data-state", "online", timeout=20000)
        states = page.evaluate("() => window.connectionStates")
        assert "reconnecting" in states and states.index("reconnecting") < len(states) - 1, states
        assert states[-1] == "online", states
        expect(page.locator("#composer-text")).to_have_value("a draft kept across the restart")
        expect(page.locator("#events .message.incoming", has_text="sent while you were away")).to_have_count(1)
        page.fill("#composer-text", "back after the restart")
        page.press("#composer-text", "Enter")
        customer.wait_for("event", kind="message", text="back after the restart")
        # A barrier instead of a pause: the page has taken everything the server sent before a
        # later message once that message shows, so a duplicate would be on screen by then.
        customer.send(
            {
                "type": "message.send",
                "client_id": "m-10",
                "conversation_id": conversation,
                "kind": "text",
                "text": "one more after your reply",
            }
        )
        customer.wait_for("ack", client_id="m-10")
        expect(page.locator("#events .message.incoming", has_text="one more after your reply")).to_have_count(1)
        expect(page.locator("#events .message.incoming", has_text="sent while you were away")).to_have_count(1)
        expect(page.locator("#events .message.outgoing", has_text="back after the restart")).to_have_count(1)
        # A reload keeps the session, reopens the conversation with its draft and shows it once.
        page.fill("#composer-text", "a draft kept across a reload")
        page.reload()
        expect(connection).to_have_attribute("data-state", "online")
        expect(page.locator("#composer-text")).to_have_value("a draft kept across a reload")
        expect(page.locator("#events .message.incoming", has_text="sent while you were away")).to_have_count(1)
        expect(page.locator("#events .message.outgoing", has_text="back after the restart")).to_have_count(1)
    finally:
        customer.close()


def test_workbench_in_chinese(kefu_server: KefuProcess, tenant: Tenant, new_context: Any) -> None:
    agent = tenant.add_agent("Chen")
    page = new_context().new_page()
    sign_in_page(page, kefu_server, tenant, agent)
    expect(page.locator("#sign-out")).to_have_text("Sign out")
    page.select_option("#language", "zh-CN")
    expect(page.locator("#sign-out")).to_have_text("退出登录")
    expect(page.locator("#status-online")).to_have_text("在线")
    expect(page.locator("#connection")).to_have_text("已连接")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    screenshot(page, "workbench-zh")


def test_queued_and_department_views_list_open_conversations(
    kefu_server: KefuProcess, tenant: Tenant, new_context: Any
) -> None:
    sales = tenant.api("POST", "/api/v1/departments", json={"name": "Sales"}).json()["id"]
    support = tenant.api("POST", "/api/v1/departments", json={"name": "Support"}).json()["id"]
    assert tenant.api("POST", "/api/v1/queues", json={"name": "Sales queue", "department_id": sales}).status_code == 201
    agent = tenant.add_agent("Dana", departments=[sales])
    page = new_context().new_page()
    sign_in_page(page, kefu_server, tenant, agent)
    page.click("#status-break")  # on break: new customers wait
    expect(page.locator("#status-break")).to_have_attribute("aria-pressed", "true")
    sales_customer = WebsocketPeer(ws_url(kefu_server, "/ws/customer", visitor(kefu_server, tenant.slug)))
    support_customer = WebsocketPeer(ws_url(kefu_server, "/ws/customer", visitor(kefu_server, tenant.slug)))
    try:
        sales_customer.send({"type": "conversation.start", "client_id": "s-1", "department": sales, "topic": "Prices"})
        sales_customer.wait_for("ack")
        support_customer.send({"type": "conversation.start", "client_id": "s-2", "department": support})
        support_customer.wait_for("ack")
        page.click("#view-queued")
        rows = page.locator("#conversation-list li.overview")
        # only the conversation of Dana's department is listed
        expect(rows).to_have_count(1, timeout=10000)
        expect(rows.first).to_contain_text("Sales queue")
        expect(rows.first).to_contain_text("Prices")
        expect(page.locator("#view-queued")).to_have_text("Queued (1)")
        # once she takes it, it shows under her departments with her name
        page.click("#status-online")
        page.click("#view-offers")
        page.locator(".offer", has_text="Prices").locator(".accept").click()
        sales_customer.wait_for("event", kind="assigned")
        page.click("#view-departments")
        expect(rows).to_have_count(1, timeout=10000)
        expect(rows.first).to_contain_text("with Dana")
    finally:
        sales_customer.close()
        support_customer.close()
