"""Baseline relay servers for the benchmark suite: what a websocket relay costs without kefu.

    python -m kefu.loadtest.echo_servers trio --port 9001     # raw trio-websocket
    python -m kefu.loadtest.echo_servers quart --port 9002    # hypercorn + quart-trio (kefu's stack)

Both speak the same tiny relay protocol, the honest equivalent of customer -> kefu -> agent
minus persistence, actors and routing:

- `/relay/<room>/receiver` registers the room's receiver (kefu: the agent's socket).
- `/relay/<room>/sender` is a sender (kefu: a customer's socket). Each text frame it sends,
  a JSON object with a `client_id`, is parsed (orjson, as kefu does), put on the receiver's
  bounded outgoing queue as it came, and answered with `{"type": "ack", "client_id": ...}`.
  A frame for a room without a receiver is answered with an error frame instead.

So a frame travels client -> server -> other client, and the sender hears back, as in kefu;
what kefu adds (the durable COMMIT before the ack, the CustomerSession and Agent actors, the
sender's own copy of its message, sequence numbers) is what the ratio measures. The receiver's
queue holds 1024 frames, like kefu's default `send_buffer_frames`; a receiver that falls
further behind is closed (4001), as kefu does.

Only loopback addresses are accepted for `--host`.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from typing import Any

import orjson
import trio

from kefu.protocol.errors import CLOSE_POLICY_VIOLATION, CLOSE_SLOW_CONSUMER, CLOSE_UNSUPPORTED_DATA

QUEUE_FRAMES = 1024


class Rooms:
    """Each room's receiver: the send side of its bounded outgoing queue."""

    def __init__(self) -> None:
        self.receivers: dict[str, trio.MemorySendChannel[str]] = {}

    def relay(self, room: str, raw: str) -> bytes:
        """Queue `raw` for the room's receiver; the frame to answer the sender with."""
        try:
            client_id = orjson.loads(raw).get("client_id")
        except (orjson.JSONDecodeError, AttributeError):
            return b'{"type":"error","code":"invalid_json"}'
        queue = self.receivers.get(room)
        if queue is None:
            return orjson.dumps({"type": "error", "code": "no_receiver", "ref": client_id})
        try:
            queue.send_nowait(raw)
        except trio.WouldBlock:
            queue.close()  # the receiver's task closes its socket with 4001
            return orjson.dumps({"type": "error", "code": "receiver_slow", "ref": client_id})
        except trio.ClosedResourceError:
            return orjson.dumps({"type": "error", "code": "no_receiver", "ref": client_id})
        return orjson.dumps({"type": "ack", "client_id": client_id})


# -- raw trio-websocket -------------------------------------------------------------------


async def serve_trio(host: str, port: int, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    from trio_websocket import ConnectionClosed, WebSocketRequest, serve_websocket

    rooms = Rooms()

    async def handler(request: WebSocketRequest) -> None:
        parts = request.path.strip("/").split("/")
        if len(parts) != 3 or parts[0] != "relay" or parts[2] not in ("sender", "receiver"):
            await request.reject(404)
            return
        room, role = parts[1], parts[2]
        ws = await request.accept()
        try:
            if role == "receiver":
                send, receive = trio.open_memory_channel[str](QUEUE_FRAMES)
                rooms.receivers[room] = send
                try:
                    async with trio.open_nursery() as nursery:

                        async def drain_input() -> None:  # the receiver sends nothing we need
                            while True:
                                await ws.get_message()

                        nursery.start_soon(drain_input)
                        async for raw in receive:
                            await ws.send_message(raw)
                        await ws.aclose(CLOSE_SLOW_CONSUMER, "slow consumer")
                        nursery.cancel_scope.cancel()
                finally:
                    if rooms.receivers.get(room) is send:
                        del rooms.receivers[room]
            else:
                while True:
                    message = await ws.get_message()
                    if isinstance(message, bytes):
                        await ws.aclose(CLOSE_UNSUPPORTED_DATA, "binary messages are not accepted")
                        return
                    await ws.send_message(rooms.relay(room, message).decode())
        except ConnectionClosed:
            pass

    await serve_websocket(handler, host, port, ssl_context=None, task_status=task_status, max_message_size=65536)


# -- hypercorn + quart-trio ----------------------------------------------------------------


def quart_app() -> Any:
    from quart import websocket
    from quart_trio import QuartTrio

    app = QuartTrio("kefu-bench-echo")
    rooms = Rooms()

    @app.route("/healthz")
    async def healthz() -> str:
        return "ok"

    @app.websocket("/relay/<room>/<role>")
    async def relay(room: str, role: str) -> None:
        await websocket.accept()
        if role == "receiver":
            send, receive = trio.open_memory_channel[str](QUEUE_FRAMES)
            rooms.receivers[room] = send
            try:
                async with trio.open_nursery() as nursery:

                    async def drain_input() -> None:
                        while True:
                            await websocket.receive()

                    nursery.start_soon(drain_input)
                    async for raw in receive:
                        await websocket.send(raw)
                    await websocket.close(CLOSE_SLOW_CONSUMER, "slow consumer")
                    nursery.cancel_scope.cancel()
            finally:
                if rooms.receivers.get(room) is send:
                    del rooms.receivers[room]
        elif role == "sender":
            while True:
                message = await websocket.receive()
                if isinstance(message, bytes):
                    await websocket.close(CLOSE_UNSUPPORTED_DATA, "binary messages are not accepted")
                    return
                await websocket.send(rooms.relay(room, message).decode())
        else:
            await websocket.close(CLOSE_POLICY_VIOLATION, "unknown role")

    return app


async def serve_quart(host: str, port: int) -> None:
    from hypercorn.config import Config
    from hypercorn.trio import serve

    config = Config()
    config.bind = [f"{host}:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.websocket_max_message_size = 65536
    config.backlog = 4096
    await serve(quart_app(), config)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kind", choices=("trio", "quart"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    if not ipaddress.ip_address(args.host).is_loopback:
        parser.error("the echo servers listen on loopback only")
    try:
        if args.kind == "trio":
            trio.run(serve_trio, args.host, args.port)
        else:
            trio.run(serve_quart, args.host, args.port)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
