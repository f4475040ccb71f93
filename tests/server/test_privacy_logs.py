"""Logs never contain message bodies, tokens or unmasked phone numbers and e-mail addresses.

A whole conversation runs with logging at DEBUG through kefu's own log configuration (the
handler and formatter `kefu serve` installs); then the captured lines are searched.
"""

from __future__ import annotations

import base64
import io
import logging
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import orjson
import pytest
import trio

from kefu.protocol.agent import AcceptOffer, SetStatus
from kefu.protocol.common import SendMessage
from kefu.protocol.customer import CloseConversation, StartConversation
from kefu.server.logs import configure_logging, scrub
from tests.server.live import connect, live_center

PHONE = "13987654321"
EMAIL = "zhang.wei@example.net"
CUSTOMER_TEXT = f"Hello, my order 4471 never came; call me on {PHONE[:3]} {PHONE[3:7]} {PHONE[7:]}"
AGENT_TEXT = "Sorry about that, I am checking the parcel with the courier right now"


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    """kefu's logging at DEBUG into a buffer; the previous configuration comes back afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    levels = {name: logging.getLogger(name).level for name in ("hypercorn.access", "pgserver")}
    buffer = io.StringIO()
    configure_logging("DEBUG", "json", stream=buffer)
    try:
        yield buffer
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def test_scrub_masks_numbers_and_addresses_and_removes_tokens() -> None:
    line = f"visitor kv_{'a' * 43} said call {PHONE} or {EMAIL}; Authorization: Bearer abc.def"
    assert scrub(line) == "visitor [token] said call 139****4321 or z***@example.net; Authorization: Bearer [token]"


async def test_a_conversation_at_debug_level_logs_no_bodies_tokens_or_numbers(
    database_dsn: str, tmp_path: Path, debug_log: io.StringIO
) -> None:
    key = base64.b64encode(b"L" * 32).decode()
    async with (
        live_center(database_dsn, tmp_path, data_key=key, wrap_up_seconds=0) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        anna = await center.add_agent("Anna")
        agent = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={anna.token}"))
        await agent.wait_for("welcome")
        await agent.send(SetStatus("online"))
        visitor = await center.add_visitor("Zhang Wei")
        response = await center.http.patch(
            "/api/v1/webchat/visitor", json={"phone": PHONE, "email": EMAIL}, headers=center.auth(visitor.token)
        )
        assert response.status_code == 200, response.text
        customer = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}")
        )
        await customer.send(StartConversation(customer.client_id(), topic=f"parcel for {PHONE}"))
        (ack,) = await customer.wait_for("ack")
        conversation = ack.conversation_id
        (offer,) = await agent.wait_for("offer", conversation_id=conversation)
        await agent.send(AcceptOffer(offer.offer_id))
        await customer.wait_for("event", kind="assigned")
        await customer.send(SendMessage(customer.client_id(), conversation, "text", CUSTOMER_TEXT))
        await agent.wait_for("event", kind="message", conversation_id=conversation)
        await agent.send(SendMessage(agent.client_id(), conversation, "text", AGENT_TEXT))
        await customer.wait_for("event", kind="message", count=2)
        # Bad input is logged too, and must not echo what was sent.
        await customer.send_raw(f'{{"type": "message.send", "text": "{PHONE} {EMAIL}"}}')
        await customer.wait_for("error")
        found = await center.http.get("/api/v1/customers", params={"phone": PHONE}, headers=center.auth(anna.token))
        assert found.status_code == 200
        await customer.send(CloseConversation(customer.client_id(), conversation))
        await customer.wait_for("event", kind="closed")
        secrets = {
            "customer message": CUSTOMER_TEXT,
            "agent message": AGENT_TEXT,
            "visitor token": visitor.token,
            "agent token": anna.token,
            "admin token": center.admin_token,
            "phone": PHONE,
            "phone with spaces": f"{PHONE[:3]} {PHONE[3:7]} {PHONE[7:]}",
            "e-mail": EMAIL,
        }
        await center.restart()  # starting and stopping log too

    lines = debug_log.getvalue().splitlines()
    assert len(lines) > 5, "expected kefu to log at DEBUG"
    for line in lines:
        orjson.loads(line)  # every line is still one JSON object
    text = debug_log.getvalue()
    leaked = [name for name, secret in secrets.items() if secret in text or secret.lower() in text.lower()]
    assert leaked == [], f"found in the logs: {leaked}"
    # Parts of a message (a long word of it) do not appear either.
    assert "courier" not in text and "never came" not in text


def test_the_pools_reconnect_attempts_during_an_outage_log_one_line_each(debug_log: io.StringIO) -> None:
    buffer = debug_log
    pool_log = logging.getLogger("asyncpg.pool")
    for error in (FileNotFoundError(2, "No such file or directory"), ValueError("a bug")):
        try:
            raise error
        except Exception:
            pool_log.warning("Failed to restore the pool connection floor; retrying", exc_info=True)
    expected, unexpected = (orjson.loads(line) for line in buffer.getvalue().splitlines())
    # the expected failure to connect: asyncpg's warning and the error, no traceback
    assert expected["error"] == "FileNotFoundError: [Errno 2] No such file or directory"
    assert "exception" not in expected
    # anything else keeps its traceback
    assert "Traceback" in unexpected["exception"] and "ValueError: a bug" in unexpected["exception"]
