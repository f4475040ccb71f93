"""One load generator for kefu and the baseline relays: rooms of senders and one receiver.

A room is one receiver socket and up to `per_room` sender sockets:

- kefu: the receiver is an agent (capacity `per_room`, online, accepting every offer at
  once); each sender is a web-chat customer (its own visitor) with a conversation that the
  dispatcher assigned to one of the agents. A message goes customer -> kefu (stored, COMMIT,
  ack) -> agent.
- echo baselines (`echo_servers.py`): `/relay/<room>/receiver` and `/relay/<room>/sender`; a
  message goes sender -> server (parsed, queued, ack) -> receiver.

Every message text is `b <sender> <n> <t>`: the sender's index, its running number and the
time it was due (monotonic clock of this process), so the receiver can check that each
message arrives exactly once and in order, and latency is measured from the time a message
was due, not from when it was sent (open loop: a slow server cannot hide its latency by
slowing the generator down).

Client sockets are spread over several loopback source addresses (127.0.0.1, 127.0.0.2, ...)
so that more than one address's ephemeral port range is available.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import math
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import trio
from hdrh.histogram import HdrHistogram
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream

SOCKETS_PER_SOURCE_ADDRESS = 10_000
AGENT_PASSWORD = "bench agent password"
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


# -- measurements ------------------------------------------------------------------------


def histogram() -> HdrHistogram:
    return HdrHistogram(1, 3_600_000_000, 3)


def summary(h: HdrHistogram) -> dict[str, Any]:
    n = h.get_total_count()
    out: dict[str, Any] = {"count": n}
    if n:
        for p in PERCENTILES:
            out[f"p{p:g}_ms"] = round(h.get_value_at_percentile(p) / 1000, 3)
        out["max_ms"] = round(h.get_max_value() / 1000, 3)
    return out


@dataclass
class Tally:
    """What was sent and what arrived, per sender; errors by kind; delivery latency."""

    sent: dict[int, int] = field(default_factory=dict)
    seen: dict[int, list[int]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    latency: HdrHistogram = field(default_factory=histogram)
    delivered: int = 0
    record_latency: bool = True
    changed: trio.Event = field(default_factory=trio.Event)

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1
        self.wake()

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def arrived(self, text: str, now: float) -> None:
        try:
            _, sender, n, due = text.split(" ")
            index, number, at = int(sender), int(n), float(due)
        except ValueError:
            self.error("unexpected text at a receiver")
            return
        self.seen.setdefault(index, []).append(number)
        self.delivered += 1
        if self.record_latency:
            self.latency.record_value(max(1, int((now - at) * 1_000_000)))
        self.wake()

    def check(self) -> dict[str, int]:
        lost = duplicated = out_of_order = 0
        for index, count in self.sent.items():
            seen = self.seen.get(index, [])
            distinct = set(seen)
            lost += sum(1 for n in range(count) if n not in distinct)
            duplicated += len(seen) - len(distinct)
            out_of_order += sum(1 for a, b in itertools.pairwise(seen) if b <= a)
        unexpected = sum(len(v) for k, v in self.seen.items() if k not in self.sent)
        return {
            "sent": sum(self.sent.values()),
            "delivered": self.delivered,
            "lost": lost,
            "duplicated": duplicated,
            "out_of_order": out_of_order,
            "unexpected": unexpected,
        }

    async def wait_delivered(self, total: int, timeout: float) -> bool:
        with trio.move_on_after(timeout):
            while self.delivered < total:
                await self.changed.wait()
            return True
        return False


# -- sockets --------------------------------------------------------------------------------


def source_address(i: int) -> str:
    """The loopback source address of the i-th client socket: 10,000 sockets per address."""
    k = 1 + i // SOCKETS_PER_SOURCE_ADDRESS
    if k > 254:
        raise ValueError("more client sockets than 254 loopback source addresses hold")
    return f"127.0.0.{k}"


async def open_ws(nursery: trio.Nursery, port: int, resource: str, source: str) -> WebSocketConnection:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    try:
        await sock.bind((source, 0))
        await sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    stream = trio.SocketStream(sock)
    try:
        return await wrap_client_stream(
            nursery, stream, f"127.0.0.1:{port}", resource, message_queue_size=4096, max_message_size=1 << 20
        )
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise


class Client:
    """One client websocket and the task that reads it, handing each frame to `on_frame`."""

    def __init__(self, ws: WebSocketConnection, tally: Tally, who: str) -> None:
        self.ws = ws
        self.tally = tally
        self.who = who
        self.acked = 0
        self.closing = False
        self.changed = trio.Event()
        self.on_frame: Callable[[dict[str, Any]], None] = lambda frame: None

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def read(self) -> None:
        try:
            while True:
                raw = await self.ws.get_message()
                frame = orjson.loads(raw)
                kind = frame.get("type")
                if kind == "ack":
                    self.acked += 1
                elif kind == "error" and frame.get("code") != "offer_gone":
                    self.tally.error(f"{self.who} error frame: {frame.get('code')}")
                self.on_frame(frame)
                self.wake()
        except ConnectionClosed as closed:
            if not self.closing:
                code = closed.reason.code if closed.reason is not None else 1006
                self.tally.error(f"{self.who} closed unexpectedly: {code}")
            self.wake()

    async def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        with trio.fail_after(timeout):
            while not predicate():
                if self.ws.closed is not None:
                    raise ConnectionError(f"{self.who} closed while waiting for {what}")
                await self.changed.wait()

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_message(orjson.dumps(frame).decode())


# -- REST with keep-alive (one connection per worker thread) -----------------------------------


class Rest:
    def __init__(self, port: int, threads: int = 4) -> None:
        self.port = port
        self.local = threading.local()
        self.limiter = trio.CapacityLimiter(threads)
        self.connections: list[http.client.HTTPConnection] = []

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.connections.append(conn)
        return conn

    def _post(self, path: str, body: dict[str, Any], token: str | None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request("POST", path, body=json.dumps(body), headers=headers)
                response = conn.getresponse()
                data = response.read()
                return response.status, json.loads(data or b"{}")
            except (http.client.HTTPException, OSError):
                conn.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def post(self, path: str, body: dict[str, Any], token: str | None = None, expect: int = 200) -> Any:
        status, data = await trio.to_thread.run_sync(self._post, path, body, token, limiter=self.limiter)
        if status != expect:
            raise RuntimeError(f"POST {path}: {status} {data}")
        return data

    def close(self) -> None:
        for conn in self.connections:
            conn.close()


# -- targets ----------------------------------------------------------------------------------


class Sender:
    def __init__(self, index: int, client: Client, frame: dict[str, Any]) -> None:
        self.index = index
        self.client = client
        self.frame = frame  # what every message frame carries besides client_id and text
        self.sent = 0

    async def send(self, due: float) -> None:
        n = self.sent
        self.sent += 1
        self.client.tally.sent[self.index] = self.sent
        await self.client.send({**self.frame, "client_id": f"b{n}", "text": f"b {self.index} {n} {due:.6f}"})


class Target:
    """Opens receivers (one per room) and senders on one server, counting into one tally."""

    name = "target"

    def __init__(self, port: int, tally: Tally, per_room: int) -> None:
        self.port = port
        self.tally = tally
        self.per_room = per_room
        self.sockets = 0
        self.clients: list[Client] = []

    async def _client(self, nursery: trio.Nursery, resource: str, who: str) -> Client:
        source = source_address(self.sockets)
        self.sockets += 1
        ws = await open_ws(nursery, self.port, resource, source)
        client = Client(ws, self.tally, who)
        self.clients.append(client)
        nursery.start_soon(client.read)
        return client

    async def prepare(self, rooms: int, senders: int) -> None:
        """Whatever must exist before sockets open (accounts, tokens)."""

    async def open_receiver(self, nursery: trio.Nursery, room: int) -> None:
        raise NotImplementedError

    async def open_sender(self, nursery: trio.Nursery, index: int) -> Sender:
        raise NotImplementedError

    def close_all(self) -> None:
        for client in self.clients:
            client.closing = True

    async def aclose(self) -> None:
        """Close every client socket at once (no closing handshakes: the run is over)."""
        self.close_all()
        for client in self.clients:
            await trio.aclose_forcefully(client.ws._stream)


class EchoTarget(Target):
    def __init__(self, name: str, port: int, tally: Tally, per_room: int) -> None:
        super().__init__(port, tally, per_room)
        self.name = name

    async def open_receiver(self, nursery: trio.Nursery, room: int) -> None:
        client = await self._client(nursery, f"/relay/{room}/receiver", "receiver")
        client.on_frame = lambda frame: self.tally.arrived(frame.get("text", ""), time.monotonic())

    async def open_sender(self, nursery: trio.Nursery, index: int) -> Sender:
        client = await self._client(nursery, f"/relay/{index // self.per_room}/sender", "sender")
        return Sender(index, client, {"type": "message.send", "kind": "text"})


class KefuTarget(Target):
    """kefu: agents are the receivers, web-chat customers with an assigned conversation the senders."""

    name = "kefu"

    def __init__(self, port: int, tally: Tally, per_room: int, slug: str, admin_email: str, password: str) -> None:
        super().__init__(port, tally, per_room)
        self.slug = slug
        self.admin_email = admin_email
        self.password = password
        self.rest = Rest(port)
        self.agent_tokens: list[str] = []
        self.visitor_tokens: list[str] = []
        self.run_id = uuid.uuid4().hex[:6]

    async def prepare(self, rooms: int, senders: int) -> None:
        admin = await self.rest.post(
            "/api/v1/auth/sign-in", {"account": self.slug, "email": self.admin_email, "password": self.password}
        )
        first_agent, first_visitor = len(self.agent_tokens), len(self.visitor_tokens)
        self.agent_tokens.extend([""] * rooms)
        self.visitor_tokens.extend([""] * senders)

        async def agent(i: int) -> None:
            email = f"bench-{self.run_id}-{i}@{self.slug}.example"
            body = {
                "email": email,
                "display_name": f"Bench agent {i}",
                "role": "agent",
                "password": AGENT_PASSWORD,
                "max_concurrent_conversations": self.per_room,
            }
            await self.rest.post("/api/v1/agents", body, admin["token"], expect=201)
            signed = await self.rest.post(
                "/api/v1/auth/sign-in", {"account": self.slug, "email": email, "password": AGENT_PASSWORD}
            )
            self.agent_tokens[i] = signed["token"]

        async def visitor(i: int) -> None:
            data = await self.rest.post(
                "/api/v1/webchat/visitors", {"account": self.slug, "display_name": f"Bench customer {i}"}, expect=201
            )
            self.visitor_tokens[i] = data["token"]

        async with trio.open_nursery() as nursery:
            for i in range(first_agent, first_agent + rooms):
                nursery.start_soon(agent, i)
            for i in range(first_visitor, first_visitor + senders):
                nursery.start_soon(visitor, i)

    async def open_receiver(self, nursery: trio.Nursery, room: int) -> None:
        client = await self._client(nursery, f"/ws/agent?token={self.agent_tokens[room]}", "agent")
        online = trio.Event()

        def on_frame(frame: dict[str, Any]) -> None:
            kind = frame.get("type")
            if kind == "event":
                sender = frame.get("sender") or {}
                if frame.get("kind") == "message" and sender.get("role") == "customer":
                    self.tally.arrived(frame.get("text") or "", time.monotonic())
            elif kind == "offer":
                nursery.start_soon(client.send, {"type": "offer.accept", "offer_id": frame["offer_id"]})
            elif kind == "status" and frame.get("status") == "online":
                online.set()

        client.on_frame = on_frame
        await client.send({"type": "status.set", "status": "online"})
        with trio.fail_after(30):
            await online.wait()

    async def open_sender(self, nursery: trio.Nursery, index: int) -> Sender:
        client = await self._client(nursery, f"/ws/customer?token={self.visitor_tokens[index]}", "customer")
        state: dict[str, Any] = {"conversation": None, "assigned": False}

        def on_frame(frame: dict[str, Any]) -> None:
            kind = frame.get("type")
            if kind == "ack" and state["conversation"] is None:
                state["conversation"] = frame["conversation_id"]
            elif kind == "event" and frame.get("kind") == "assigned":
                state["assigned"] = True

        client.on_frame = on_frame
        await client.send({"type": "conversation.start", "client_id": "start", "topic": "bench"})
        await client.wait(lambda: state["assigned"], 60, "assigned")
        client.acked = 0
        return Sender(index, client, {"type": "message.send", "conversation_id": state["conversation"], "kind": "text"})

    async def aclose(self) -> None:
        await super().aclose()
        self.rest.close()


# -- workloads -------------------------------------------------------------------------------


@dataclass
class Fleet:
    """The open sockets of one target: receivers first, then senders room by room."""

    target: Target
    nursery: trio.Nursery
    rooms: int = 0
    senders: list[Sender] = field(default_factory=list)

    async def grow(self, rooms: int, setup_concurrency: int = 64) -> None:
        """Open `rooms` more rooms, each with a receiver and `per_room` senders."""
        per_room = self.target.per_room
        await self.target.prepare(rooms, rooms * per_room)
        first_room = self.rooms
        async with trio.open_nursery() as setup:
            for room in range(first_room, first_room + rooms):
                setup.start_soon(self.target.open_receiver, self.nursery, room)
        limiter = trio.CapacityLimiter(setup_concurrency)
        first = len(self.senders)
        opened: list[Sender | None] = [None] * (rooms * per_room)

        async def one(i: int) -> None:
            async with limiter:
                opened[i] = await self.target.open_sender(self.nursery, first + i)

        async def progress() -> None:
            t0 = time.monotonic()
            while True:
                await trio.sleep(10)
                done = sum(1 for s in opened if s is not None)
                print(
                    f"    {self.target.name}: {done:,} of {len(opened):,} senders open after"
                    f" {time.monotonic() - t0:.0f} s ({self.target.sockets:,} sockets in all)",
                    file=sys.stderr,
                    flush=True,
                )

        async with trio.open_nursery() as setup:
            setup.start_soon(progress)
            async with trio.open_nursery() as openers:
                for i in range(rooms * per_room):
                    openers.start_soon(one, i)
            setup.cancel_scope.cancel()
        self.senders.extend(s for s in opened if s is not None)
        self.rooms += rooms

    def active(self, count: int) -> list[Sender]:
        """`count` senders spread evenly over the rooms (the others stay idle)."""
        count = min(count, len(self.senders))
        if count <= 0:
            return []
        step = len(self.senders) / count
        return [self.senders[int(i * step)] for i in range(count)]


async def closed_loop(senders: list[Sender], messages: int, timeout: float) -> float:
    """Each sender sends its share of `messages` one at a time, the next after the ack of the
    last. Returns the seconds until the last message reached its receiver."""
    tally = senders[0].client.tally
    start_delivered = tally.delivered
    per_sender = max(1, messages // len(senders))
    total = per_sender * len(senders)
    t0 = time.monotonic()

    async def run(sender: Sender) -> None:
        for _ in range(per_sender):
            want = sender.client.acked + 1
            await sender.send(time.monotonic())

            def acked(sender: Sender = sender, want: int = want) -> bool:
                return sender.client.acked >= want

            await sender.client.wait(acked, timeout, "ack")

    with trio.move_on_after(timeout):
        async with trio.open_nursery() as nursery:
            for sender in senders:
                nursery.start_soon(run, sender)
    await tally.wait_delivered(start_delivered + total, max(1.0, timeout - (time.monotonic() - t0)))
    return time.monotonic() - t0


async def open_loop(senders: list[Sender], rate: float, seconds: float) -> int:
    """Messages at `rate` per second for `seconds`, round robin over `senders`, each sent when
    due whatever happened to the ones before (no waiting for acks). Returns how many."""
    count = max(1, int(rate * seconds))
    t0 = time.monotonic() + 0.05
    for k in range(count):
        due = t0 + k / rate
        now = time.monotonic()
        if due > now:
            await trio.sleep(due - now)
        sender = senders[k % len(senders)]
        try:
            await sender.send(due)
        except ConnectionClosed:
            sender.client.tally.error("send on a closed socket")
    return count


def cpu_ms_per_message(result: dict[str, Any], messages: int) -> None:
    """CPU time per delivered message, of the server and of its database: unlike throughput,
    this hardly changes when other processes take turns on the same core."""
    if messages:
        result["server_cpu_ms_per_message"] = round(1000 * result["server_cpu_seconds"] / messages, 3)
        if "database_cpu_seconds" in result:
            result["database_cpu_ms_per_message"] = round(1000 * result["database_cpu_seconds"] / messages, 3)


def cpu_share(seconds_used: float, elapsed: float) -> float:
    return round(100 * seconds_used / elapsed, 1) if elapsed > 0 else math.nan


def gc_window(before: dict[str, float], after: dict[str, float]) -> dict[str, Any]:
    """The server's garbage-collector pauses between two readings of its counters: collections
    and seconds paused by generation, and the bucket bound of the longest full collection."""
    window: dict[str, Any] = {}
    for generation in "012":
        window[f"gen{generation}_collections"] = int(
            after.get(f"count{generation}", 0) - before.get(f"count{generation}", 0)
        )
        window[f"gen{generation}_paused_ms"] = round(
            1000 * (after.get(f"sum{generation}", 0) - before.get(f"sum{generation}", 0)), 1
        )
    # cumulative buckets: the smallest bound that grew as much as the count holds the longest
    if window["gen2_collections"]:
        grew_all = [
            float(key[3:])
            for key, value in after.items()
            if key.startswith("le=") and value - before.get(key, 0) >= window["gen2_collections"]
        ]
        window["gen2_longest_ms_at_most"] = 1000 * min(grew_all) if grew_all else None
    return window


@contextlib.contextmanager
def measured(results: dict[str, Any], server: Any) -> Any:
    """Elapsed time, and CPU use of this process, of the server process and of the processes
    working for it (kefu's PostgreSQL), into `results`; the server's profiler runs meanwhile."""
    from kefu.loadtest.servers import cpu_seconds

    helpers = [pid for pid in server.related_pids() if pid != server.pid]
    t0 = time.monotonic()
    server0 = cpu_seconds(server.pid)
    helpers0 = {pid: cpu_seconds(pid) for pid in helpers}
    own0 = time.process_time()
    gc0 = server.gc_pauses()
    server.profile_window(True)
    try:
        yield
    finally:
        server.profile_window(False)
    elapsed = time.monotonic() - t0
    gc1 = server.gc_pauses()
    if gc0 is not None and gc1 is not None:
        results["gc"] = gc_window(gc0, gc1)
    results["elapsed_seconds"] = round(elapsed, 3)
    server_used = cpu_seconds(server.pid) - server0
    results["server_cpu_seconds"] = round(server_used, 3)
    results["server_cpu_percent"] = cpu_share(server_used, elapsed)
    if helpers:
        used = sum(cpu_seconds(pid) - helpers0[pid] for pid in helpers)
        results["database_cpu_seconds"] = round(used, 3)
        results["database_cpu_percent"] = cpu_share(used, elapsed)
    results["generator_cpu_percent"] = cpu_share(time.process_time() - own0, elapsed)
