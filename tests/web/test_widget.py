"""The customer chat widget (web/widget.js) on the demo shop page (web/chat.html), with an
agent played by a WebsocketPeer."""

from __future__ import annotations

import base64
import http.server
import threading
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.web.conftest import AGENT_PASSWORD, KefuProcess, Tenant, WebsocketPeer, screenshot, sign_in, ws_url

# a 1x1 PNG
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def online_agent(server: KefuProcess, tenant: Tenant, name: str) -> WebsocketPeer:
    agent = tenant.add_agent(name)
    token = sign_in(server, tenant.slug, agent["email"], AGENT_PASSWORD)
    peer = WebsocketPeer(ws_url(server, "/ws/agent", token))
    peer.send({"type": "status.set", "status": "online"})
    peer.wait_for("status", status="online")
    return peer


def open_widget(page: Any, server: KefuProcess, slug: str) -> Any:
    page.goto(f"{server.url}/chat?account={slug}")
    launcher = page.locator(".kw-launcher")
    expect(launcher).to_be_visible()
    launcher.click()
    panel = page.locator(".kw-panel")
    expect(panel).to_be_visible()
    expect(page.locator(".kw-conn")).to_have_attribute("data-state", "online")
    return panel


def send(page: Any, text: str) -> None:
    box = page.get_by_role("textbox", name="Type a message")
    box.fill(text)
    box.press("Enter")


def test_customer_talks_with_an_agent_and_sends_an_image(
    kefu_server: KefuProcess, tenant: Tenant, new_context: Any
) -> None:
    anna = online_agent(kefu_server, tenant, "Anna")
    try:
        page = new_context().new_page()
        panel = open_widget(page, kefu_server, tenant.slug)
        send(page, "Hello, my anvil is broken")
        expect(panel.locator(".kw-own").first).to_contain_text("Hello, my anvil is broken")
        offer = anna.wait_for("offer")
        assert offer["customer"]["channel"] == "webchat"
        conversation = offer["conversation_id"]
        anna.send({"type": "offer.accept", "offer_id": offer["offer_id"]})
        anna.wait_for("event", conversation_id=conversation, kind="assigned")
        expect(panel.locator(".kw-note", has_text="Anna joined")).to_be_visible()
        message = anna.wait_for("event", conversation_id=conversation, kind="message")
        assert message["text"] == "Hello, my anvil is broken"
        anna.send({"type": "typing", "conversation_id": conversation, "active": True})
        expect(panel.locator(".kw-typing")).to_contain_text("Anna is typing")
        anna.send(
            {
                "type": "message.send",
                "client_id": "a-1",
                "conversation_id": conversation,
                "kind": "text",
                "text": "Sorry to hear that! 我们会处理。",
            }
        )
        reply = panel.locator(".kw-agent")
        expect(reply).to_contain_text("Anna")
        expect(reply).to_contain_text("Sorry to hear that!")
        # the panel is open, so the widget says it has read the reply
        anna.wait_for("read", conversation_id=conversation)
        anna.send({"type": "read", "conversation_id": conversation, "seq": message["seq"]})
        expect(panel.locator(".kw-own .kw-status").first).to_have_text("Read")

        page.locator(".kw-form input[type=file]").set_input_files(
            {"name": "broken.png", "mimeType": "image/png", "buffer": PNG}
        )
        image = anna.wait_for("event", conversation_id=conversation, kind="message", message_kind="image")
        assert image["attachment_id"]
        expect(panel.locator(".kw-own img")).to_have_js_property("naturalWidth", 1)
        screenshot(page, "widget")
    finally:
        anna.close()


def test_queue_position_and_reload_resumes(kefu_server: KefuProcess, tenant: Tenant, new_context: Any) -> None:
    page = new_context().new_page()
    panel = open_widget(page, kefu_server, tenant.slug)
    send(page, "Is anyone there?")
    expect(panel.locator(".kw-queue")).to_contain_text("number 1 in the queue")
    expect(panel.locator(".kw-own .kw-status")).to_have_text("Sent")
    notes = panel.locator(".kw-note")
    expect(notes).to_have_count(2)  # the welcome line and the server's "no agent online"
    no_agent = notes.nth(1).inner_text()

    page.reload()
    panel = open_widget(page, kefu_server, tenant.slug)
    expect(panel.locator(".kw-own")).to_have_count(1)
    expect(panel.locator(".kw-own")).to_contain_text("Is anyone there?")
    expect(panel.locator(".kw-note", has_text=no_agent)).to_have_count(1)
    send(page, "Still waiting")
    expect(panel.locator(".kw-own .kw-status")).to_have_text(["Sent", "Sent"])

    # one conversation, holding both messages: an agent who comes online gets one offer
    anna = online_agent(kefu_server, tenant, "Anna")
    try:
        offer = anna.wait_for("offer")
        anna.send({"type": "offer.accept", "offer_id": offer["offer_id"]})
        anna.wait_for("resumed", conversation_id=offer["conversation_id"])
        texts = [e.get("text") for e in anna.of("event", kind="message")]
        assert texts == ["Is anyone there?", "Still waiting"]
        assert len({o["conversation_id"] for o in anna.of("offer")}) == 1
        expect(panel.locator(".kw-note", has_text="Anna joined")).to_be_visible()
        expect(panel.locator(".kw-queue")).to_be_empty()
    finally:
        anna.close()


def test_phone_layout_and_chinese(kefu_server: KefuProcess, tenant: Tenant, new_context: Any) -> None:
    context = new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = context.new_page()
    panel = open_widget(page, kefu_server, tenant.slug)
    box = panel.bounding_box()
    assert box is not None
    assert box["x"] == 0 and box["y"] == 0 and box["width"] == 390 and box["height"] == 844
    send(page, "Hi from my phone")
    expect(panel.locator(".kw-own .kw-status")).to_have_text("Sent")
    screenshot(page, "widget-phone")

    page.get_by_label("Language").select_option("zh-CN")
    expect(page.get_by_role("button", name="发送")).to_be_visible()
    expect(page.get_by_role("textbox", name="输入消息")).to_be_visible()
    expect(panel.locator(".kw-own .kw-status")).to_have_text("已发送")
    screenshot(page, "widget-zh")


def test_reconnects_and_sends_what_was_typed_offline(
    kefu_server: KefuProcess, tenant: Tenant, new_context: Any, request: pytest.FixtureRequest
) -> None:
    # the browser logs each refused connection attempt while the server is down
    request.node.allowed_console_errors = ("ERR_CONNECTION_REFUSED",)
    page = new_context().new_page()
    panel = open_widget(page, kefu_server, tenant.slug)
    send(page, "Before the restart")
    expect(panel.locator(".kw-own .kw-status")).to_have_text("Sent")
    kefu_server.stop()
    expect(panel.locator(".kw-conn")).to_have_attribute("data-state", "reconnecting")
    send(page, "While the server is down")
    expect(panel.locator(".kw-own .kw-status")).to_have_text(["Sent", "Sending…"])
    kefu_server.start()
    expect(panel.locator(".kw-conn")).to_have_attribute("data-state", "online", timeout=15000)
    expect(panel.locator(".kw-own .kw-status")).to_have_text(["Sent", "Sent"], timeout=15000)
    expect(panel.locator(".kw-own")).to_have_count(2)


def test_widget_api_allows_other_origins(kefu_server: KefuProcess, tenant: Tenant) -> None:
    origin = {"Origin": "https://shop.example"}
    preflight = httpx.options(
        kefu_server.url + "/api/v1/attachments?filename=a.png",
        headers={**origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"},
        timeout=10,
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "Authorization" in preflight.headers["access-control-allow-headers"]
    visitor = httpx.post(
        kefu_server.url + "/api/v1/webchat/visitors", json={"account": tenant.slug}, headers=origin, timeout=10
    )
    assert visitor.status_code == 201, visitor.text
    assert visitor.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-origin" not in httpx.get(kefu_server.url + "/api/v1/agents", timeout=10).headers


def test_embedded_on_another_site(kefu_server: KefuProcess, tenant: Tenant, new_context: Any) -> None:
    page = new_context().new_page()
    html = (
        "<!doctype html><title>Other shop</title><h1>Other shop</h1>"
        f'<script src="{kefu_server.url}/widget.js" data-account="{tenant.slug}" data-lang="zh-CN" async></script>'
    )

    # another origin: a little HTTP server of the test's own, on another port
    class Shop(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    shop = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Shop)
    threading.Thread(target=shop.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{shop.server_address[1]}/")

        page.locator(".kw-launcher").click()
        expect(page.locator(".kw-conn")).to_have_attribute("data-state", "online")
        expect(page.get_by_role("button", name="发送")).to_be_visible()
        box = page.get_by_role("textbox", name="输入消息")
        box.fill("你好")
        box.press("Enter")
        expect(page.locator(".kw-own .kw-status")).to_have_text("已发送")
    finally:
        shop.shutdown()
        shop.server_close()
