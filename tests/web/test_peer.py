"""The websocket peer the browser tests use talks to a running server (a check of the harness)."""

from __future__ import annotations

import httpx

from tests.web.conftest import AGENT_PASSWORD, KefuProcess, Tenant, WebsocketPeer, sign_in, ws_url


def test_peer_starts_a_conversation_an_agent_takes(kefu_server: KefuProcess, tenant: Tenant) -> None:
    agent = tenant.add_agent("Anna")
    token = sign_in(kefu_server, tenant.slug, agent["email"], AGENT_PASSWORD)
    visitor = httpx.post(f"{kefu_server.url}/api/v1/webchat/visitors", json={"account": tenant.slug}).json()
    anna = WebsocketPeer(ws_url(kefu_server, "/ws/agent", token))
    customer = WebsocketPeer(ws_url(kefu_server, "/ws/customer", visitor["token"]))
    try:
        anna.send({"type": "status.set", "status": "online"})
        anna.wait_for("status", status="online")
        customer.send({"type": "conversation.start", "client_id": "s-1"})
        conversation = customer.wait_for("ack")["conversation_id"]
        offer = anna.wait_for("offer", conversation_id=conversation)
        anna.send({"type": "offer.accept", "offer_id": offer["offer_id"]})
        customer.wait_for("event", kind="assigned")
    finally:
        anna.close()
        customer.close()
