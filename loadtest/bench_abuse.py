"""A well-behaved customer's latency with and without abusive neighbours, in one run.

    python -m kefu.loadtest.bench_abuse [--messages 100] [--rounds 3] [--flooders 4]
        [--slowloris 50] [--json out.json]

A node is started on loopback with an embedded PostgreSQL in a temporary folder (deleted after). One customer
talks to one agent: it sends `--messages` text messages one after the other, 100 ms apart, and for each the
time from sending to its `ack` (durably stored) and to the agent receiving it is recorded.
Interleaved over `--rounds`, the same is measured

(a) alone, and
(b) while neighbours abuse the node, from a second process: `--flooders` customer sockets sending frames as fast as
    they can (refused with `rate_limited`), sockets sending oversized frames (closed with 1009)
    and invalid ones (4003) over and over, and `--slowloris` TCP connections trickling an HTTP
    upgrade one byte every 100 ms (dropped after `handshake_timeout_seconds`).

Reported: p50, p99 and max of both latencies in each case (all rounds pooled), and what the
abusers were answered. Bounded: each round ends after its messages or 60 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import httpx
import trio
import trio_asyncio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, open_websocket_url

from kefu.protocol import decode_server_frame, encode_frame
from kefu.protocol.agent import AcceptOffer, SetStatus
from kefu.protocol.common import Ping, SendMessage
from kefu.protocol.customer import StartConversation
from kefu.protocol.server import Ack, ConversationEvent, Offer, ServerError
from kefu.server.accounts import CreatedAccount, create_account
from kefu.server.config import Config
from kefu.server.database import Database
from kefu.server.node import serve

PASSWORD = "bench password 1"
ROUND_SECONDS = 60
INTERVAL = 0.1


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 0.5) * 1000, 2),
        "p99_ms": round(percentile(values, 0.99) * 1000, 2),
        "max_ms": round(max(values) * 1000, 2),
        "mean_ms": round(statistics.fmean(values) * 1000, 2),
    }


class Abuse:
    """Counts of what the abusers were answered."""

    def __init__(self) -> None:
        self.rate_limited = 0
        self.closes: dict[int, int] = {}
        self.slowloris_dropped = 0

    def closed(self, code: int) -> None:
        self.closes[code] = self.closes.get(code, 0) + 1

    def closed_by(self, group: ExceptionGroup[ConnectionClosed]) -> None:
        for closed in group.exceptions:
            if isinstance(closed, ExceptionGroup):
                self.closed_by(closed)
            else:
                self.closed(closed.reason.code if closed.reason else 1006)


async def flooder(ws_base: str, token: str, abuse: Abuse) -> None:
    """Send frames as fast as the socket takes them; reconnect when closed or refused."""
    data = encode_frame(SendMessage("f", str(uuid.uuid4()), "text", text="flood")).decode()
    while True:
        try:
            async with open_websocket_url(f"{ws_base}/ws/customer?token={token}") as ws:

                async def read(ws: WebSocketConnection = ws) -> None:
                    while True:
                        frame = decode_server_frame(await ws.get_message())
                        if isinstance(frame, ServerError) and frame.code == "rate_limited":
                            abuse.rate_limited += 1

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(read)
                    while True:
                        await ws.send_message(data)
                        await trio.sleep(0)
        except* ConnectionClosed as group:
            abuse.closed_by(group)
        except* (HandshakeError, OSError):
            pass
        await trio.sleep(0.01)


async def closer(ws_base: str, token: str, payload: str, abuse: Abuse) -> None:
    """Connect, send what gets the socket closed (reading what comes back), again and again."""
    while True:
        try:
            async with open_websocket_url(f"{ws_base}/ws/customer?token={token}") as ws:

                async def drain(ws: WebSocketConnection = ws) -> None:
                    while True:
                        await ws.get_message()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(drain)
                    while True:
                        await ws.send_message(payload)
                        await trio.sleep(0.06)  # under the frame rate: each frame is read
        except* ConnectionClosed as group:
            abuse.closed_by(group)
        except* (HandshakeError, OSError):
            pass
        await trio.sleep(0.01)


async def slowloris(host: str, port: int, abuse: Abuse) -> None:
    request = f"GET /ws/customer HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n".encode() * 20
    while True:
        stream = await trio.open_tcp_stream(host, port)
        try:
            for byte in request:
                await stream.send_all(bytes([byte]))
                await trio.sleep(0.1)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            abuse.slowloris_dropped += 1
        finally:
            await trio.aclose_forcefully(stream)


async def abuse_for(seconds: float, ws_base: str, tokens: list[str], conversation: str, slow: int) -> Abuse:
    """The abusers, in their own process (`--abuse`), for `seconds`."""
    abuse = Abuse()
    host, port = ws_base.removeprefix("ws://").rsplit(":", 1)
    big = encode_frame(SendMessage("b", conversation, "text", text="x" * 7000)).decode() * 10
    with trio.move_on_after(seconds):
        async with trio.open_nursery() as abusers:
            for token in tokens[:-2]:
                abusers.start_soon(flooder, ws_base, token, abuse)
            abusers.start_soon(closer, ws_base, tokens[-1], big, abuse)
            abusers.start_soon(closer, ws_base, tokens[-2], '{"type": "nope"}', abuse)
            for _ in range(slow):
                abusers.start_soon(slowloris, host, int(port), abuse)
    return abuse


async def measure(
    customer: WebSocketConnection, conversation: str, messages: int, received: dict[str, float]
) -> dict[str, list[float]]:
    acked: list[float] = []
    delivered: list[float] = []
    with trio.move_on_after(ROUND_SECONDS):
        for number in range(messages):
            client_id = f"m-{uuid.uuid4().hex[:12]}"
            started = time.perf_counter()
            await customer.send_message(
                encode_frame(SendMessage(client_id, conversation, "text", text=f"hello {number}")).decode()
            )
            while True:
                frame = decode_server_frame(await customer.get_message())
                if isinstance(frame, Ack) and frame.client_id == client_id:
                    acked.append(time.perf_counter() - started)
                    break
                if isinstance(frame, ServerError):
                    raise RuntimeError(f"the calm customer was refused: {frame}")
            with trio.fail_after(10):
                while f"hello {number}" not in received:
                    await trio.sleep(0.0005)
            delivered.append(received.pop(f"hello {number}") - started)
            await trio.sleep(INTERVAL)  # a well-behaved client: well under max_frames_per_second
    return {"acked": acked, "delivered": delivered}


async def _new_account(dsn: str, slug: str) -> CreatedAccount:
    async with trio_asyncio.open_loop():
        database = await Database.open(dsn, pool_size=2)
        try:
            await database.migrate()
            return await create_account(
                database, name="Bench", slug=slug, admin_email=f"admin@{slug}.example", admin_password=PASSWORD
            )
        finally:
            await database.close()


async def _tokens(base: str, slug: str, account: CreatedAccount, visitors: int) -> tuple[str, list[str]]:
    """The admin's session token (it answers as the agent) and `visitors` visitor tokens."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        sign_in = {"account": slug, "email": account.admin_email, "password": PASSWORD}
        token = str((await http.post("/api/v1/auth/sign-in", json=sign_in)).json()["token"])
        tokens = []
        for _ in range(visitors):
            response = await http.post("/api/v1/webchat/visitors", json={"account": slug})
            tokens.append(str(response.json()["token"]))
    return token, tokens


class CalmAgent:
    """The agent of the calm customer: accepts its offer, notes when each message arrives."""

    def __init__(self, ws: WebSocketConnection, conversation: str, heartbeat_seconds: float) -> None:
        self.ws = ws
        self.conversation = conversation
        self.heartbeat_seconds = heartbeat_seconds
        self.received: dict[str, float] = {}

    async def read(self) -> None:
        while True:
            try:
                data = await self.ws.get_message()
            except ConnectionClosed:
                return
            frame = decode_server_frame(data)
            if isinstance(frame, Offer) and frame.conversation_id == self.conversation:
                await self.ws.send_message(encode_frame(AcceptOffer(frame.offer_id)).decode())
            elif isinstance(frame, ConversationEvent) and frame.kind == "message" and frame.sender.role == "customer":
                self.received[frame.text or ""] = time.perf_counter()

    async def heartbeat(self) -> None:
        while True:
            await trio.sleep(self.heartbeat_seconds / 3)
            try:
                await self.ws.send_message(encode_frame(Ping("bench")).decode())
            except ConnectionClosed:
                return


async def _start_conversation(customer: WebSocketConnection) -> str:
    await customer.send_message(encode_frame(StartConversation("start")).decode())
    while True:
        frame = decode_server_frame(await customer.get_message())
        if isinstance(frame, Ack):
            return frame.conversation_id


async def _wait_assigned(customer: WebSocketConnection) -> None:
    while True:
        frame = decode_server_frame(await customer.get_message())
        if isinstance(frame, ConversationEvent) and frame.kind == "assigned":
            return


async def _round_with_abusers(
    command: list[str], customer: WebSocketConnection, conversation: str, messages: int, received: dict[str, float]
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """One measured round while the abusers' process runs; what they were answered."""
    outputs: list[subprocess.CompletedProcess[bytes]] = []
    async with trio.open_nursery() as abusers:

        async def run_child() -> None:
            outputs.append(await trio.run_process(command, capture_stdout=True, check=True))

        abusers.start_soon(run_child)
        await trio.sleep(2)  # let the abuse get going
        round_result = await measure(customer, conversation, messages, received)
    answered: dict[str, Any] = json.loads(outputs[0].stdout)
    return round_result, answered


async def run(args: argparse.Namespace, dsn: str, folder: Path) -> dict[str, Any]:
    config = Config(port=0, data_dir=folder, database_url=dsn, handshake_timeout_seconds=5, shutdown_grace=1)
    slug = f"bench-{uuid.uuid4().hex[:6]}"
    account = await _new_account(dsn, slug)
    results: dict[str, dict[str, list[float]]] = {
        "alone": {"acked": [], "delivered": []},
        "with abusers": {"acked": [], "delivered": []},
    }
    answered: list[dict[str, Any]] = []
    async with trio.open_nursery() as nursery:
        node = await nursery.start(serve, config)
        base = node.urls[0]
        ws_base = base.replace("http://", "ws://")
        token, visitor_tokens = await _tokens(base, slug, account, args.flooders + 3)
        calm_token, abuser_tokens = visitor_tokens[0], visitor_tokens[1:]
        async with (
            open_websocket_url(f"{ws_base}/ws/agent?token={token}") as agent_socket,
            open_websocket_url(f"{ws_base}/ws/customer?token={calm_token}") as customer,
        ):
            await agent_socket.send_message(encode_frame(SetStatus("online")).decode())
            conversation = await _start_conversation(customer)
            agent = CalmAgent(agent_socket, conversation, config.heartbeat_seconds)
            nursery.start_soon(agent.read)
            nursery.start_soon(agent.heartbeat)
            await _wait_assigned(customer)
            abuse_seconds = args.messages * INTERVAL * 2 + 10
            command = [
                sys.executable, "-m", "kefu.loadtest.bench_abuse", "--abuse", ws_base,
                conversation, str(abuse_seconds), str(args.slowloris), *abuser_tokens,
            ]  # fmt: skip
            for _ in range(args.rounds):
                alone = await measure(customer, conversation, args.messages, agent.received)
                abused, answer = await _round_with_abusers(
                    command, customer, conversation, args.messages, agent.received
                )
                answered.append(answer)
                for case, round_result in (("alone", alone), ("with abusers", abused)):
                    for key, values in round_result.items():
                        results[case][key].extend(values)
        nursery.cancel_scope.cancel()
    return {
        "messages_per_round": args.messages,
        "rounds": args.rounds,
        "flooders": args.flooders,
        "slowloris": args.slowloris,
        "cases": {
            case: {key: summary(values) | {"count": len(values)} for key, values in data.items()}
            for case, data in results.items()
        },
        "abusers_answered": answered,
    }


def abuse_main(argv: list[str]) -> int:
    ws_base, conversation, seconds, slow, *tokens = argv
    abuse = trio.run(abuse_for, float(seconds), ws_base, tokens, conversation, int(slow))
    answered = {"rate_limited_errors": abuse.rate_limited, "closes": abuse.closes}
    print(json.dumps(answered | {"slowloris_dropped": abuse.slowloris_dropped}))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--abuse"]:
        return abuse_main(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--flooders", type=int, default=4)
    parser.add_argument("--slowloris", type=int, default=50)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not (1 <= args.messages <= 10_000 and 1 <= args.rounds <= 20 and 0 <= args.flooders <= 100):
        parser.error("out of bounds: --messages 1..10000, --rounds 1..20, --flooders 0..100")
    if not 0 <= args.slowloris <= 500:
        parser.error("out of bounds: --slowloris 0..500")
    with tempfile.TemporaryDirectory() as folder:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from pgserver.postgres_server import get_server

            server = get_server(Path(folder) / "pg", cleanup_mode="delete")
        try:
            result = trio.run(run, args, str(server.get_uri()), Path(folder))
        finally:
            server.cleanup()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
