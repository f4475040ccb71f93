"""kefu's websocket routes on hypercorn's ASGI interface: several messages written at once."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from trio_websocket import open_websocket_url

from kefu.server.websocket_asgi import WebsocketConnection, WebsocketRoutes, websocket
from tests.server.raw_websocket import RawSocket, client_frame

BIG = "客" * 40_000  # 120 KB of UTF-8: more than one write batch, and a 64-bit length
MEDIUM = "服" * 1_000  # 3 KB: a 16-bit length


async def _not_found(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError(f"not a websocket route: {scope.get('path')}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def _serving(routes: WebsocketRoutes, max_message_size: int | None = None) -> AsyncIterator[int]:
    """hypercorn serving `routes` on a loopback port (yielded) until the block ends."""
    config = HypercornConfig()
    if max_message_size is not None:
        config.websocket_max_message_size = max_message_size
    port = _free_port()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    async with trio.open_nursery() as nursery:
        shutdown = trio.Event()
        await nursery.start(
            lambda task_status: serve(routes, config, shutdown_trigger=shutdown.wait, task_status=task_status)
        )
        yield port
        shutdown.set()


async def test_send_many_writes_separate_messages_in_order_through_hypercorn() -> None:
    routes = WebsocketRoutes(_not_found)
    coalesced: list[bool] = []

    @routes.route("/ws/echo")
    async def echo() -> None:
        await websocket.accept()
        coalesced.append(websocket.coalesces)
        while True:
            count = int(await websocket.receive())
            texts = [f"{number}" for number in range(count)] + [MEDIUM, BIG, "last"]
            await websocket.send_many(texts)

    async with _serving(routes) as port:
        async with open_websocket_url(f"ws://127.0.0.1:{port}/ws/echo", max_message_size=1 << 20) as client:
            for count in (1, 3, 200):
                await client.send_message(str(count))
                received = [await client.get_message() for _ in range(count + 3)]
                assert received == [f"{number}" for number in range(count)] + [MEDIUM, BIG, "last"]
        # the fast path is the one taken: if a hypercorn upgrade moved what it relies on, this fails
        assert coalesced == [True]


async def test_send_many_without_hypercorn_sends_one_asgi_message_each() -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: Any) -> None:
        sent.append(dict(message))

    connection = WebsocketConnection({"type": "websocket"}, receive, send, trio.CancelScope())
    assert not connection.coalesces
    await connection.send_many(["a", "b", "c"])
    assert sent == [{"type": "websocket.send", "text": text} for text in "abc"]


async def test_send_many_compresses_when_the_client_asked_for_permessage_deflate() -> None:
    """Browsers offer permessage-deflate and hypercorn accepts it: the frames written together
    are compressed each, as hypercorn's own sends would be."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request, TextMessage
    from wsproto.extensions import PerMessageDeflate

    routes = WebsocketRoutes(_not_found)

    @routes.route("/ws/echo")
    async def echo() -> None:
        await websocket.accept()
        await websocket.receive()
        await websocket.send_many(["one", "two " * 500, BIG])

    async with _serving(routes) as port:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        deflate = PerMessageDeflate()
        client = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(client.send(Request(host="127.0.0.1", target="/ws/echo", extensions=[deflate])))
        received: list[str] = []
        partial = ""
        with trio.fail_after(10):
            while len(received) < 3:
                client.receive_data(await stream.receive_some(65536))
                for event in client.events():
                    if isinstance(event, AcceptConnection):
                        await stream.send_all(client.send(TextMessage(data="go")))
                    elif isinstance(event, TextMessage):
                        partial += event.data
                        if event.message_finished:
                            received.append(partial)
                            partial = ""
        assert deflate.enabled()  # negotiated: what arrived was compressed, and inflates to the texts
        assert received == ["one", "two " * 500, BIG]
        await stream.aclose()


async def test_what_the_websocket_layer_refuses_is_reported_and_closed_with_its_code() -> None:
    """Rule 5: a handler that registers `report_refusals` is told (code, reason) and closes
    with what it likes after answering; one that registers nothing is cancelled and closed with
    the code. Nothing is read after a refusal, and the TCP connection ends after the close."""
    routes = WebsocketRoutes(_not_found)
    reported: list[tuple[int, str]] = []

    @routes.route("/ws/answering")
    async def answering() -> None:
        # as kefu's sockets do: the callback cancels the reading, never a send under way
        with trio.CancelScope() as reading:

            def on_refused(code: int, reason: str) -> None:
                reported.append((code, reason))
                reading.cancel()

            websocket.report_refusals(on_refused)
            await websocket.accept()
            while True:
                text = await websocket.receive()
                with trio.CancelScope(shield=True):
                    await websocket.send(f"echo {text}")
        await websocket.send("refused")
        await websocket.close(reported[-1][0], "refused")

    @routes.route("/ws/silent")
    async def silent() -> None:
        await websocket.accept()
        while True:
            await websocket.send(f"echo {await websocket.receive()}")

    async def outcome(path: str, *frames: bytes) -> tuple[list[str], int | None, bool]:
        raw = await RawSocket.open("127.0.0.1", port, path)
        async with raw.stream:
            await raw.stream.send_all(b"".join(frames))
            with trio.fail_after(10):
                texts: list[str] = []
                while (frame := await raw.frame()) is not None:
                    opcode, payload = frame
                    if opcode == 0x8:
                        return texts, struct.unpack("!H", payload[:2])[0], await raw.frame() is None
                    texts.append(payload.decode())
        return texts, None, True

    fine = client_frame(0x1, b"fine")
    after = client_frame(0x1, b"never read")
    async with _serving(routes, max_message_size=10) as port:
        # not UTF-8: 1007; more characters than the limit (11 > 10): 1009; unmasked: 1002
        assert await outcome("/ws/answering", fine, client_frame(0x1, b"\xff"), after) == (
            ["echo fine", "refused"],
            1007,
            True,
        )
        assert await outcome("/ws/answering", fine, client_frame(0x1, ("客" * 11).encode()), after) == (
            ["echo fine", "refused"],
            1009,
            True,
        )
        # ten characters (30 bytes of UTF-8) are within a limit counted in characters
        assert (await outcome("/ws/answering", client_frame(0x1, ("客" * 10).encode()), client_frame(0x1, b"\xff")))[
            0
        ] == ["echo " + "客" * 10, "refused"]
        assert await outcome("/ws/answering", fine, client_frame(0x1, b"unmasked", masked=False), after) == (
            ["echo fine", "refused"],
            1002,
            True,
        )
        assert [code for code, _ in reported] == [1007, 1009, 1007, 1002]
        assert all(reason for _, reason in reported)
        # nobody told: the handler is cancelled and the socket closed with the code
        assert await outcome("/ws/silent", client_frame(0x1, b"\xff"), after) == ([], 1007, True)
