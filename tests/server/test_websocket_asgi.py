"""kefu's websocket routes on hypercorn's ASGI interface: several messages written at once."""

from __future__ import annotations

import socket
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve
from trio_websocket import open_websocket_url

from kefu.server.websocket_asgi import WebsocketConnection, WebsocketRoutes, websocket

BIG = "客" * 40_000  # 120 KB of UTF-8: more than one write batch on its own


async def _not_found(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError(f"not a websocket route: {scope.get('path')}")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_send_many_writes_separate_messages_in_order_through_hypercorn() -> None:
    routes = WebsocketRoutes(_not_found)
    coalesced: list[bool] = []

    @routes.route("/ws/echo")
    async def echo() -> None:
        await websocket.accept()
        coalesced.append(websocket.coalesces)
        while True:
            count = int(await websocket.receive())
            await websocket.send_many([f"{number}" for number in range(count)] + [BIG, "last"])

    config = HypercornConfig()
    port = _free_port()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    async with trio.open_nursery() as nursery:
        shutdown = trio.Event()
        await nursery.start(
            lambda task_status: serve(routes, config, shutdown_trigger=shutdown.wait, task_status=task_status)
        )
        async with open_websocket_url(f"ws://127.0.0.1:{port}/ws/echo", max_message_size=1 << 20) as client:
            for count in (1, 3, 200):
                await client.send_message(str(count))
                received = [await client.get_message() for _ in range(count + 2)]
                assert received == [f"{number}" for number in range(count)] + [BIG, "last"]
        # the fast path is the one taken: if a hypercorn upgrade moved what it relies on, this fails
        assert coalesced == [True]
        shutdown.set()


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
