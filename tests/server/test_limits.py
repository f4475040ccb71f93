"""Limits against bad input and abuse, each answered with its close code or HTTP status, on a live
node; and while a neighbour is refused, a well-behaved client's messages keep flowing.

The limits (docs/security.md, "Limits"): websocket message size (1009), request-head time
(slowloris: the connection is dropped), request-head size (431), request-body time (408), idle
sockets (4002), invalid frames (4003), binary frames (1003). The frame rate, connections per
address and uploads have their tests in test_live_behaviour.py and test_attachments.py.
"""

from __future__ import annotations

import json
import uuid
from contextlib import AsyncExitStack
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from kefu.protocol.agent import AcceptOffer, SetStatus
from kefu.protocol.common import Ping, SendMessage
from kefu.protocol.customer import StartConversation
from tests.server.live import Agent, Center, Client, connect, live_center

UPGRADE = (
    "GET /ws/customer?token={token} HTTP/1.1\r\n"
    "Host: {host}\r\n"
    "Upgrade: websocket\r\n"
    "Connection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\n"
    "\r\n"
)


async def _online(stack: AsyncExitStack, nursery: trio.Nursery, center: Center, agent: Agent) -> Client:
    client = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/agent?token={agent.token}"))
    await client.wait_for("welcome")
    await client.send(SetStatus("online"))
    await client.wait_for("status", status="online")
    return client


async def _assigned(stack: AsyncExitStack, nursery: trio.Nursery, center: Center, agent: Client) -> tuple[Client, str]:
    visitor = await center.add_visitor()
    customer = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}"))
    await customer.send(StartConversation(customer.client_id()))
    (ack,) = await customer.wait_for("ack")
    (offer,) = await agent.wait_for("offer", conversation_id=ack.conversation_id)
    await agent.send(AcceptOffer(offer.offer_id))
    await customer.wait_for("event", kind="assigned")
    return customer, ack.conversation_id


async def _talk(customer: Client, agent: Client, conversation: str, rounds: int) -> None:
    """A well-behaved customer: each message is acknowledged and reaches the agent, in order."""
    for number in range(rounds):
        client_id = customer.client_id()
        await customer.send(SendMessage(client_id, conversation, "text", text=f"calm {number}"))
        await customer.wait_for("ack", client_id=client_id)
        await agent.wait_for("event", kind="message", text=f"calm {number}")
    texts = [e.text for e in agent.events(conversation) if e.kind == "message"]
    assert texts == [f"calm {n}" for n in range(rounds)]
    assert customer.closed_code is None and not customer.of("error")


async def _stored_messages(center: Center, conversation: str) -> int:
    rows = await center.fetch(
        "SELECT count(*) AS n FROM conversation_events WHERE conversation_id = $1 AND kind = 'message'",
        uuid.UUID(conversation),
    )
    return int(rows[0]["n"])


async def _read_response(stream: trio.SocketStream) -> bytes:
    """One HTTP response (head and a Content-Length body), or what came before the server hung up."""
    received = b""
    while True:
        head, blank, body = received.partition(b"\r\n\r\n")
        if blank:
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            if len(body) >= length:
                return received
        try:
            chunk = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            return received
        if not chunk:
            return received
        received += chunk


def _address(center: Center) -> tuple[str, int]:
    url = urlsplit(center.node.urls[0])
    assert url.hostname is not None and url.port is not None
    return url.hostname, url.port


async def _read_until_closed(stream: trio.SocketStream) -> bytes:
    """Everything the server sends until it closes the connection."""
    received = b""
    try:
        while chunk := await stream.receive_some(65536):
            received += chunk
    except trio.BrokenResourceError:
        pass
    return received


async def test_an_oversized_frame_closes_with_1009_and_a_neighbour_keeps_talking(
    database_dsn: str, tmp_path: Path
) -> None:
    async with (
        live_center(database_dsn, tmp_path, max_frame_bytes=4096) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        anna = await center.add_agent("Anna")
        agent = await _online(stack, nursery, center, anna)
        big, big_conversation = await _assigned(stack, nursery, center, agent)
        wide, wide_conversation = await _assigned(stack, nursery, center, agent)
        calm, calm_conversation = await _assigned(stack, nursery, center, agent)
        # more characters than the limit: refused while it arrives, before it is all read
        await big.send_raw(orjson.dumps({"type": "message.send", "text": "x" * 5000}).decode())
        # fewer characters but more bytes (4-byte characters): the protocol decoder refuses it
        frame = SendMessage(wide.client_id(), wide_conversation, "text", text="😀" * 1100)
        await wide.send(frame)
        assert await big.wait_closed() == 1009
        assert await wide.wait_closed() == 1009
        # both answered with `oversized` before the close, as docs/protocol.md promises
        for refused in (big, wide):
            (error,) = refused.of("error")
            assert error.code == "oversized"
            assert "larger than 4096 bytes" in error.message
        await _talk(calm, agent, calm_conversation, rounds=5)
        # nothing of the refused frames was stored
        assert await _stored_messages(center, big_conversation) == 0
        assert await _stored_messages(center, wide_conversation) == 0
        assert await _stored_messages(center, calm_conversation) == 5
        nursery.cancel_scope.cancel()


async def test_a_slowloris_handshake_is_dropped_and_a_neighbour_keeps_talking(
    database_dsn: str, tmp_path: Path
) -> None:
    async with (
        live_center(database_dsn, tmp_path, handshake_timeout_seconds=1) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        anna = await center.add_agent("Anna")
        agent = await _online(stack, nursery, center, anna)
        calm, calm_conversation = await _assigned(stack, nursery, center, agent)
        visitor = await center.add_visitor()
        host, port = _address(center)
        request = UPGRADE.format(token=visitor.token, host=f"{host}:{port}").encode()
        sent = 0
        dropped = trio.Event()

        async def slowloris() -> None:
            """One byte every 50 ms: the whole head would take far longer than the limit."""
            nonlocal sent
            stream = await trio.open_tcp_stream(host, port)
            async with stream:
                async with trio.open_nursery() as inner:

                    async def watch() -> None:
                        await _read_until_closed(stream)
                        dropped.set()
                        inner.cancel_scope.cancel()

                    inner.start_soon(watch)
                    try:
                        for byte in request:
                            await stream.send_all(bytes([byte]))
                            sent += 1
                            await trio.sleep(0.05)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        await dropped.wait()

        with trio.fail_after(30):
            async with trio.open_nursery() as attackers:
                attackers.start_soon(slowloris)
                await _talk(calm, agent, calm_conversation, rounds=5)
        assert dropped.is_set()
        assert sent < len(request), "the server hung up before the request head was complete"
        # the same request sent at once is served: the limit is on time, not on the client
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(request)
            assert (await stream.receive_some(65536)).startswith(b"HTTP/1.1 101")
        nursery.cancel_scope.cancel()


async def test_an_idle_keep_alive_connection_is_closed_after_the_timeout(database_dsn: str, tmp_path: Path) -> None:
    """`handshake_timeout_seconds` is also the keep-alive timeout between requests: a connection
    left idle after a response is closed by the server (the bound's other side: the server's
    end of stream is awaited, 15 times the limit at most)."""
    async with live_center(database_dsn, tmp_path, handshake_timeout_seconds=1) as center:
        host, port = _address(center)
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            await stream.send_all(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            assert (await _read_response(stream)).startswith(b"HTTP/1.1 200")
            with trio.fail_after(15):
                assert await _read_until_closed(stream) == b""


async def test_an_oversized_request_head_gets_431(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center:
        host, port = _address(center)
        stream = await trio.open_tcp_stream(host, port)
        async with stream:
            head = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Junk: {'j' * 100_000}\r\n\r\n".encode()
            try:
                await stream.send_all(head)
            except trio.BrokenResourceError:
                pass
            with trio.fail_after(10):
                answer = await _read_until_closed(stream)
        assert answer.startswith(b"HTTP/1.1 431")
        assert (await center.http.get("/healthz")).status_code == 200


async def test_a_body_that_trickles_gets_408(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path, body_timeout_seconds=1) as center:
        host, port = _address(center)
        body = orjson.dumps({"account": center.slug, "display_name": "Slow"})
        for path, headers in [
            ("/api/v1/webchat/visitors", "Content-Type: application/json\r\n"),
            (
                "/api/v1/attachments?filename=a.txt",
                f"Authorization: Bearer {center.admin_token}\r\nContent-Type: text/plain\r\n",
            ),
        ]:
            stream = await trio.open_tcp_stream(host, port)
            async with stream:
                await stream.send_all(
                    f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: {len(body)}\r\n\r\n".encode()
                    + body[:5]
                )
                # ... and the rest never comes
                with trio.fail_after(15):
                    answer = await _read_response(stream)
            assert answer.startswith(b"HTTP/1.1 408"), (path, answer[:200])
            assert b"request_timeout" in answer
        # no visitor and no attachment was made of the partial bodies
        rows = await center.fetch(
            "SELECT (SELECT count(*) FROM customers WHERE display_name = 'Slow') AS visitors,"
            " (SELECT count(*) FROM attachments) AS files"
        )
        assert (rows[0]["visitors"], rows[0]["files"]) == (0, 0)
        assert not list((tmp_path / "attachments").rglob("*.part"))


async def test_a_silent_socket_is_closed_with_4002_and_a_pinging_one_is_not(database_dsn: str, tmp_path: Path) -> None:
    async with (
        live_center(database_dsn, tmp_path, heartbeat_seconds=1) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        silent_visitor, pinging_visitor = await center.add_visitor(), await center.add_visitor()
        silent = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={silent_visitor.token}")
        )
        pinging = await stack.enter_async_context(
            connect(nursery, f"{center.ws_base}/ws/customer?token={pinging_visitor.token}")
        )
        await silent.wait_for("welcome")
        await pinging.wait_for("welcome")

        pings = 0

        async def heartbeat() -> None:
            """A ping every 0.1 s: a pause 15 times as long would be needed to look silent."""
            nonlocal pings
            while True:
                await pinging.send(Ping(f"n{pings}"))
                pings += 1
                await trio.sleep(0.1)

        nursery.start_soon(heartbeat)
        assert await silent.wait_closed() == 4002
        # past the silent one's end, the pinging one is still answered
        await pinging.wait_for("pong", nonce=f"n{pings}")
        assert pinging.closed_code is None
        nursery.cancel_scope.cancel()


async def test_invalid_and_binary_frames_close_the_socket(database_dsn: str, tmp_path: Path) -> None:
    async with (
        live_center(database_dsn, tmp_path, max_frames_per_second=10_000) as center,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        visitor = await center.add_visitor()
        url = f"{center.ws_base}/ws/customer?token={visitor.token}"
        # a frame the protocol refuses gets an error and the socket stays open up to the 49th;
        # the 50th gets its error too, then the close 4003 (docs/protocol.md, close codes)
        noisy = await stack.enter_async_context(connect(nursery, url))
        for number in range(49):
            await noisy.send_raw(orjson.dumps({"type": "no.such.frame", "client_id": f"n{number}"}).decode())
        await noisy.send(Ping("still open"))
        await noisy.wait_for("pong", nonce="still open")  # answered in order: the 49 errors came first
        assert len(noisy.of("error", code="unknown_type")) == 49
        assert noisy.closed_code is None
        await noisy.send_raw('{"type": "no.such.frame", "client_id": "n49"}')
        assert await noisy.wait_closed() == 4003
        refused = noisy.of("error", code="unknown_type")
        assert [error.ref for error in refused] == [f"n{number}" for number in range(50)]
        # not JSON: closed with 1007 at once; binary: 1003
        garbled = await stack.enter_async_context(connect(nursery, url))
        await garbled.send_raw("{not json")
        assert await garbled.wait_closed() == 1007
        binary = await stack.enter_async_context(connect(nursery, url))
        await binary.send_raw(b'{"type": "ping"}')
        assert await binary.wait_closed() == 1003
        # the visitor's next connection is served as before
        fresh = await stack.enter_async_context(connect(nursery, url))
        await fresh.send(Ping("ok"))
        await fresh.wait_for("pong", nonce="ok")
        nursery.cancel_scope.cancel()


# --- arbitrary bodies to every JSON endpoint of a live node ------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.sampled_from([2**64, -(2**70), 10**30])  # beyond 64 bits: the JSON parser refuses them
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | st.uuids().map(str)
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=15,
)
FIELD_NAMES = [
    "account", "email", "password", "display_name", "name", "role", "max_concurrent_conversations", "disabled",
    "departments", "skills", "timezone", "schedule", "level", "strategy", "department_id", "skill_id",
    "offer_timeout_seconds", "overflow_queue_id", "is_default", "scope", "shortcut", "title", "body",
]  # fmt: skip
json_bodies = (
    st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=5).map(lambda value: json.dumps(value).encode())
    | json_values.map(lambda value: json.dumps(value).encode())
    | st.binary(max_size=60)
)
ANSWERS = {200, 201, 204, 400, 401, 403, 404, 409, 413, 415}


async def test_arbitrary_bodies_to_every_json_endpoint_get_a_clear_answer(database_dsn: str, tmp_path: Path) -> None:
    """Never a 500: each answer is a success or a JSON error with a code; the node stays ready."""
    async with live_center(database_dsn, tmp_path) as center:
        admin = center.auth(center.admin_token)
        ids = {}
        for plural in ("departments", "skills"):
            response = await center.http.post(f"/api/v1/{plural}", json={"name": f"first {plural}"}, headers=admin)
            ids[plural] = response.json()["id"]
        anna = await center.add_agent("Anna")
        visitor = await center.add_visitor("Li")
        response = await center.http.post("/api/v1/queues", json={"name": "Sales"}, headers=admin)
        ids["queues"] = response.json()["id"]
        response = await center.http.post(
            "/api/v1/canned-responses", json={"scope": "account", "shortcut": "hi", "title": "Hi", "body": "Hello"},
            headers=admin,
        )  # fmt: skip
        ids["canned"] = response.json()["id"]
        endpoints = [
            ("POST", "/api/v1/auth/sign-in", {}),
            ("POST", "/api/v1/departments", admin),
            ("PATCH", f"/api/v1/departments/{ids['departments']}", admin),
            ("PATCH", f"/api/v1/skills/{ids['skills']}", admin),
            ("POST", "/api/v1/agents", admin),
            ("PATCH", f"/api/v1/agents/{anna.id}", admin),
            ("PUT", "/api/v1/business-hours", admin),
            ("POST", "/api/v1/webchat/visitors", {}),
            ("PATCH", "/api/v1/webchat/visitor", center.auth(visitor.token)),
            ("PATCH", f"/api/v1/customers/{visitor.customer_id}", admin),
            ("POST", "/api/v1/queues", admin),
            ("PATCH", f"/api/v1/queues/{ids['queues']}", admin),
            ("PATCH", "/api/v1/queues/not-an-id", admin),
            ("POST", "/api/v1/canned-responses", center.auth(anna.token)),
            ("PATCH", f"/api/v1/canned-responses/{ids['canned']}", admin),
        ]
        answers: dict[int, int] = {}

        @settings(max_examples=300, deadline=None, database=None, derandomize=True)
        @given(st.sampled_from(endpoints), json_bodies)
        def fuzz(endpoint: tuple[str, str, dict[str, str]], body: bytes) -> None:
            method, path, headers = endpoint
            response = trio.from_thread.run(
                lambda: center.http.request(
                    method, path, content=body, headers={**headers, "Content-Type": "application/json"}
                )
            )
            answers[response.status_code] = answers.get(response.status_code, 0) + 1
            assert response.status_code in ANSWERS, (method, path, body, response.status_code, response.text)
            if response.status_code >= 400:
                assert response.json()["error"]["code"], response.text

        await trio.to_thread.run_sync(fuzz)
        assert answers.get(400, 0) > 100 and len(answers) > 2, answers  # the bodies reach the checks
        assert (await center.http.get("/readyz")).status_code == 200
