"""Load test of a running kefu node: customers and agents over the real websocket protocol.

    python -m kefu.loadtest.contact_center --url http://127.0.0.1:8080 --account SLUG \\
        --admin-email E --admin-password P [--customers 200] [--agents 20] [--rate 20] \\
        [--messages 5] [--duration 60] [--json result.json]

Setup over REST with the admin's credentials: `--agents` agents are created and signed in,
each customer gets a visitor token. Agents connect to /ws/agent, go online, accept every offer
after a think time and answer every customer message. Customers arrive open loop (Poisson,
`--rate` conversations/s after a linear ramp from 10%), each scheduled from the start time
whatever happened to the earlier ones: a slow server shows up as latency, not as fewer
arrivals. A customer starts a conversation, waits for its agent, sends `--messages` messages
and waits for each reply, then closes. A share of them drop their connection mid-conversation,
reconnect and resume with their last seq.

Measured (HdrHistogram, microseconds): delivery latency customer→agent and agent→customer
(send time to the other side's event; the send time travels in the message text), time in
queue (start → assigned). Every message must arrive exactly once and in order on the other
side: lost, duplicated and out-of-order messages are counted, as are error frames and
unexpected closes. Exit code 0 only with no loss and no error.

Only loopback addresses are load-tested unless a host is named with `--allow-host`.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import itertools
import json
import math
import random
import socket
import statistics
import sys
import time
import urllib.parse
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from hdrh.histogram import HdrHistogram
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

MAX_DURATION = 3600.0
AGENT_PASSWORD = "load test agent password"
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


class RefusedTarget(ValueError):
    """The URL names a host that is not loopback and was not allowed with --allow-host."""


@dataclass
class LoadConfig:
    url: str
    account: str
    admin_email: str
    admin_password: str
    customers: int = 200
    agents: int = 20
    capacity: int = 5
    rate: float = 20.0
    messages: int = 5
    duration: float = 60.0
    ramp: float = 10.0
    drain: float = 30.0
    agent_think: float = 0.2
    customer_think: float = 0.5
    reconnect_share: float = 0.1
    allow_hosts: tuple[str, ...] = ()
    seed: int | None = None
    progress: bool = True


def check_target(url: str, allow_hosts: tuple[str, ...] = ()) -> str:
    """The URL's host when it may be load-tested: loopback, or named in `allow_hosts`."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise RefusedTarget(f"not an http(s) URL: {url!r}")
    host = parsed.hostname
    if host in allow_hosts:
        return host
    try:
        infos = socket.getaddrinfo(host, parsed.port or 80, proto=socket.IPPROTO_TCP)
    except socket.gaierror as e:
        raise RefusedTarget(f"cannot resolve {host!r}: {e}") from e
    addresses = {str(info[4][0]) for info in infos}
    if not addresses or not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addresses):
        raise RefusedTarget(
            f"refusing to load-test {host!r} ({', '.join(sorted(addresses))}): not a loopback address;"
            " name it with --allow-host if you own it"
        )
    return host


# -- measurements ------------------------------------------------------------------------


def _histogram() -> HdrHistogram:
    return HdrHistogram(1, int(MAX_DURATION * 2 * 1_000_000), 3)


def _summary(h: HdrHistogram) -> dict[str, Any]:
    n = h.get_total_count()
    out: dict[str, Any] = {"count": n}
    if n:
        for p in PERCENTILES:
            out[f"p{p:g}_ms"] = round(h.get_value_at_percentile(p) / 1000, 3)
        out["max_ms"] = round(h.get_max_value() / 1000, 3)
        out["mean_ms"] = round(h.get_mean_value() / 1000, 3)
    return out


@dataclass
class Bucket:
    started: int = 0
    completed: int = 0
    messages: int = 0
    latencies_us: list[int] = field(default_factory=list)


@dataclass
class Stats:
    t0: float
    to_agent: HdrHistogram = field(default_factory=_histogram)
    to_customer: HdrHistogram = field(default_factory=_histogram)
    queue_time: HdrHistogram = field(default_factory=_histogram)
    buckets: dict[int, Bucket] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    started: int = 0
    completed: int = 0
    failed: int = 0
    reconnects: int = 0
    offers_gone: int = 0
    messages_delivered: int = 0

    def bucket(self, now: float | None = None) -> Bucket:
        second = int((time.monotonic() if now is None else now) - self.t0)
        b = self.buckets.get(second)
        if b is None:
            b = self.buckets[second] = Bucket()
        return b

    def error(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    def delivered(self, histogram: HdrHistogram, sent_at: float, now: float) -> None:
        us = max(1, int((now - sent_at) * 1_000_000))
        histogram.record_value(us)
        b = self.bucket(now)
        b.messages += 1
        b.latencies_us.append(us)
        self.messages_delivered += 1


@dataclass
class Conversation:
    """What each side sent and saw, to check exactly-once and order at the end."""

    index: int
    id: str | None = None
    agent_id: str | None = None
    customer_sent: list[str] = field(default_factory=list)
    agent_seen: list[tuple[int, str]] = field(default_factory=list)
    agent_sent: list[str] = field(default_factory=list)
    customer_seen: list[tuple[int, str]] = field(default_factory=list)
    completed: bool = False
    phase: str = "new"


@dataclass
class Result:
    config: dict[str, Any]
    elapsed_seconds: float
    conversations: dict[str, int]
    messages: dict[str, int]
    throughput: dict[str, float]
    latency: dict[str, Any]
    fairness: dict[str, Any]
    errors: dict[str, int]
    timeline: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        m = self.messages
        return (
            not self.errors
            and m["lost"] == 0
            and m["duplicated"] == 0
            and m["out_of_order"] == 0
            and self.conversations["failed"] == 0
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "config": self.config,
            "elapsed_seconds": self.elapsed_seconds,
            "conversations": self.conversations,
            "messages": self.messages,
            "throughput": self.throughput,
            "latency": self.latency,
            "fairness": self.fairness,
            "errors": self.errors,
            "timeline": self.timeline,
        }


def _check(conversations: list[Conversation]) -> dict[str, int]:
    lost = duplicated = out_of_order = sent = 0

    def one_way(sent_texts: list[str], seen: list[tuple[int, str]]) -> None:
        nonlocal lost, duplicated, out_of_order, sent
        sent += len(sent_texts)
        counts: dict[str, int] = {}
        for _, text in seen:
            counts[text] = counts.get(text, 0) + 1
        lost += sum(1 for t in sent_texts if t not in counts)
        duplicated += sum(n - 1 for n in counts.values())
        seqs = [s for s, _ in seen]
        out_of_order += sum(1 for a, b in itertools.pairwise(seqs) if b <= a)
        order = {t: i for i, t in enumerate(sent_texts)}
        positions = [order[t] for _, t in seen if t in order]
        out_of_order += sum(1 for a, b in itertools.pairwise(positions) if b < a)

    for c in conversations:
        one_way(c.customer_sent, c.agent_seen)
        one_way(c.agent_sent, c.customer_seen)
    return {"sent": sent, "lost": lost, "duplicated": duplicated, "out_of_order": out_of_order}


# -- REST ------------------------------------------------------------------------------


class Rest:
    """The few REST calls the setup needs, with http.client in worker threads (no extra dependency).

    A 429 or 503 with `Retry-After` (kefu's rate limits and its bounded sign-in hashing) is
    waited out and retried, at most `RETRIES` times.
    """

    RETRIES = 5

    def __init__(self, base: str, limit: int = 8) -> None:
        self.base = base.rstrip("/")
        self.parsed = urllib.parse.urlsplit(self.base)
        self.limiter = trio.CapacityLimiter(limit)

    def _post(
        self, path: str, body: dict[str, Any], token: str | None, source: str | None
    ) -> tuple[int, dict[str, Any], float | None]:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        kind = http.client.HTTPSConnection if self.parsed.scheme == "https" else http.client.HTTPConnection
        connection = kind(
            self.parsed.hostname or "", self.parsed.port, timeout=30, source_address=(source, 0) if source else None
        )
        try:
            connection.request("POST", self.parsed.path + path, body=json.dumps(body).encode(), headers=headers)
            response = connection.getresponse()
            raw = response.read()
            retry_after = response.getheader("Retry-After")
        finally:
            connection.close()
        wait = float(retry_after) if retry_after and retry_after.isdigit() else None
        if response.status >= 400:
            return response.status, {"error": raw.decode(errors="replace")}, wait
        return response.status, json.loads(raw or b"{}"), wait

    async def post(
        self, path: str, body: dict[str, Any], token: str | None = None, expect: int = 200, source: str | None = None
    ) -> Any:
        """POST `body`; `source`: the local address to send from (a loopback address of its own)."""
        for _ in range(self.RETRIES):
            status, data, wait = await trio.to_thread.run_sync(
                self._post, path, body, token, source, limiter=self.limiter
            )
            if status in (429, 503) and wait is not None:
                await trio.sleep(wait)  # the server said when to come back
                continue
            break
        if status != expect:
            raise RuntimeError(f"POST {path}: {status} {data}")
        return data

    def customer_address(self, i: int) -> str | None:
        """Customer `i`'s own source address when kefu is on IPv4 loopback (127.0.x.y, which this
        machine reaches without any set-up): customers come from addresses of their own, so kefu's
        per-address limits on new visitors treat them as it treats real ones."""
        try:
            target = ipaddress.ip_address(self.parsed.hostname or "")
        except ValueError:
            target = None
        if self.parsed.hostname == "localhost" or (target is not None and target.version == 4 and target.is_loopback):
            return f"127.0.{1 + i // 250 % 250}.{2 + i % 250}"
        return None


# -- websocket plumbing -----------------------------------------------------------------


class Socket:
    """One websocket: a reader task hands each frame to `on_frame`; `changed` wakes waiters."""

    def __init__(self, ws: WebSocketConnection, stats: Stats, who: str) -> None:
        self.ws = ws
        self.stats = stats
        self.who = who
        self.closing = False
        self.closed = False
        self.changed = trio.Event()
        self._ids = itertools.count(1)
        self._prefix = uuid.uuid4().hex[:8]

    def client_id(self) -> str:
        return f"lt-{self._prefix}-{next(self._ids)}"

    async def send(self, frame: dict[str, Any]) -> None:
        await self.ws.send_message(json.dumps({"v": 1, **frame}, ensure_ascii=False))

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def read(self, on_frame: Callable[[dict[str, Any]], None]) -> None:
        try:
            while True:
                frame = json.loads(await self.ws.get_message())
                if frame.get("type") == "error" and frame.get("code") == "offer_gone":
                    self.stats.offers_gone += 1  # the offer was revoked (taken, expired) before the accept
                elif frame.get("type") == "error":
                    self.stats.error(f"{self.who} error frame: {frame.get('code')}")
                on_frame(frame)
                self.wake()
        except ConnectionClosed as closed:
            if not self.closing:
                code = closed.reason.code if closed.reason is not None else 1006
                self.stats.error(f"{self.who} unexpected close: {code}")
        finally:
            self.closed = True
            self.wake()

    async def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        with trio.fail_after(timeout):
            while not predicate():
                if self.closed:
                    raise ConnectionError(f"{self.who} closed while waiting for {what}")
                await self.changed.wait()

    async def close(self) -> None:
        self.closing = True
        await self.ws.aclose()
        # trio-websocket's abort path can leave its TCP stream open; close it for sure.
        await trio.aclose_forcefully(self.ws._stream)


def _stamp(text: str) -> float:
    """The monotonic send time carried in a load-test message text: `lt <kind> <conv> <i> <t>`."""
    return float(text.rsplit(" ", 1)[1])


# -- agents -----------------------------------------------------------------------------


@dataclass
class AgentState:
    index: int
    id: str
    token: str
    assigned: int = 0


class LoadTest:
    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.random = random.Random(config.seed)
        self.ws_base = config.url.rstrip("/").replace("https://", "wss://").replace("http://", "ws://")
        self.stats = Stats(time.monotonic())
        self.conversations: list[Conversation] = []
        self.by_id: dict[str, Conversation] = {}
        self.agents: list[AgentState] = []
        self.stop_agents = trio.Event()

    def think(self, mean: float) -> float:
        return max(0.0, mean * self.random.uniform(0.5, 1.5))

    async def run_agent(self, agent: AgentState, ready: trio.Event) -> None:
        url = f"{self.ws_base}/ws/agent?token={agent.token}"
        async with open_websocket_url(url) as ws:
            try:
                await self._agent_session(ws, agent, ready)
            finally:
                sock_stream = ws._stream
        await trio.aclose_forcefully(sock_stream)

    async def _agent_session(self, ws: WebSocketConnection, agent: AgentState, ready: trio.Event) -> None:
        async with trio.open_nursery() as nursery:
            sock = Socket(ws, self.stats, "agent")

            async def later(delay: float, frame: dict[str, Any]) -> None:
                await trio.sleep(delay)
                if not sock.closed:
                    await sock.send(frame)

            def on_frame(frame: dict[str, Any]) -> None:
                kind = frame.get("type")
                if kind == "status" and frame.get("status") == "online":
                    ready.set()
                elif kind == "offer":
                    frame_out = {"type": "offer.accept", "offer_id": frame["offer_id"]}
                    nursery.start_soon(later, self.think(self.config.agent_think), frame_out)
                elif kind == "event":
                    self.agent_event(sock, agent, frame, nursery, later)

            nursery.start_soon(sock.read, on_frame)
            await sock.send({"type": "status.set", "status": "online"})

            async def heartbeat() -> None:
                while True:
                    await trio.sleep(10)
                    await sock.send({"type": "ping"})

            nursery.start_soon(heartbeat)
            await self.stop_agents.wait()
            sock.closing = True
            nursery.cancel_scope.cancel()

    def agent_event(
        self,
        sock: Socket,
        agent: AgentState,
        frame: dict[str, Any],
        nursery: trio.Nursery,
        later: Callable[[float, dict[str, Any]], Awaitable[None]],
    ) -> None:
        now = time.monotonic()
        conv = self.by_id.get(frame["conversation_id"])
        if conv is None:
            return
        kind = frame.get("kind")
        sender = frame.get("sender") or {}
        if kind == "assigned" and frame.get("agent_id") == agent.id and conv.agent_id is None:
            conv.agent_id = agent.id
            agent.assigned += 1
        elif kind == "message" and sender.get("role") == "customer":
            text = frame.get("text") or ""
            conv.agent_seen.append((frame["seq"], text))
            if any(t == text for _, t in conv.agent_seen[:-1]):
                return  # a duplicate: counted at the end, not answered twice
            self.stats.delivered(self.stats.to_agent, _stamp(text), now)
            index = text.split(" ")[3]

            async def reply() -> None:
                await trio.sleep(self.think(self.config.agent_think))
                reply_text = f"lt reply {conv.index} {index} {time.monotonic():.6f}"
                conv.agent_sent.append(reply_text)
                await sock.send(
                    {
                        "type": "message.send",
                        "client_id": sock.client_id(),
                        "conversation_id": conv.id,
                        "kind": "text",
                        "text": reply_text,
                    }
                )

            nursery.start_soon(reply)
        elif kind == "closed" and conv.agent_id == agent.id:
            # finish wrap-up at once, so the slot is free for the next conversation
            frame_out = {
                "type": "conversation.close",
                "client_id": sock.client_id(),
                "conversation_id": conv.id,
                "wrap_up_code": "load test",
            }
            nursery.start_soon(later, 0.0, frame_out)

    # -- customers ----------------------------------------------------------------------

    async def run_customer(self, conv: Conversation, token: str) -> None:
        config = self.config
        reconnect_after = (
            self.random.randrange(config.messages) if self.random.random() < config.reconnect_share else None
        )
        customer = CustomerRun(self, conv, reconnect_after)
        url = f"{self.ws_base}/ws/customer?token={token}"
        try:
            await self.connected(url, "customer", customer.on_frame, customer.session)
            if not conv.completed:
                await trio.sleep(self.random.uniform(0.05, 0.3))
                await self.connected(url, "customer", customer.on_frame, customer.session)
        except (trio.TooSlowError, ConnectionError, ConnectionClosed, OSError) as e:
            self.stats.failed += 1
            self.stats.error(f"customer gave up: {type(e).__name__}: {e}")

    async def connected(
        self,
        url: str,
        who: str,
        on_frame: Callable[[dict[str, Any]], None],
        body: Callable[[Socket], Awaitable[None]],
    ) -> None:
        async with open_websocket_url(url) as ws:
            try:
                async with trio.open_nursery() as nursery:
                    sock = Socket(ws, self.stats, who)
                    nursery.start_soon(sock.read, on_frame)
                    try:
                        await body(sock)
                    finally:
                        sock.closing = True
                        nursery.cancel_scope.cancel()
            finally:
                stream = ws._stream
        await trio.aclose_forcefully(stream)

    # -- the run ------------------------------------------------------------------------

    def arrivals(self) -> list[float]:
        """Arrival times (seconds from the start): Poisson with a linear ramp from 10% of the rate."""
        config = self.config
        times: list[float] = []
        t = 0.0
        while len(times) < config.customers:
            # thinning: candidates at the full rate, kept with the ramp's share at their time
            t += self.random.expovariate(config.rate)
            if t >= config.duration:
                break
            share = 1.0 if config.ramp <= 0 or t >= config.ramp else 0.1 + 0.9 * t / config.ramp
            if self.random.random() < share:
                times.append(t)
        return times

    async def progress(self) -> None:
        while True:
            await trio.sleep(1)
            s = self.stats
            p99 = s.to_customer.get_value_at_percentile(99) / 1000 if s.to_customer.get_total_count() else 0
            print(
                f"[{time.monotonic() - s.t0:6.1f}s] started {s.started} completed {s.completed}"
                f" active {s.started - s.completed - s.failed} failed {s.failed} messages {s.messages_delivered}"
                f" reconnects {s.reconnects} errors {sum(s.errors.values())} p99 agent→customer {p99:.1f} ms",
                file=sys.stderr,
                flush=True,
            )

    async def run(self) -> Result:
        config = self.config
        rest = Rest(config.url)
        admin = await rest.post(
            "/api/v1/auth/sign-in",
            {"account": config.account, "email": config.admin_email, "password": config.admin_password},
        )
        run_id = uuid.uuid4().hex[:8]

        async def make_agent(i: int) -> None:
            email = f"loadtest-{run_id}-{i}@{config.account}.example"
            body = {
                "email": email,
                "display_name": f"Load agent {i}",
                "role": "agent",
                "password": AGENT_PASSWORD,
                "max_concurrent_conversations": config.capacity,
            }
            created = await rest.post("/api/v1/agents", body, admin["token"], expect=201)
            signed = await rest.post(
                "/api/v1/auth/sign-in", {"account": config.account, "email": email, "password": AGENT_PASSWORD}
            )
            self.agents.append(AgentState(i, created["id"], signed["token"]))

        arrivals = self.arrivals()
        tokens: list[str] = []

        async def make_visitor(i: int) -> None:
            data = await rest.post(
                "/api/v1/webchat/visitors",
                {"account": config.account, "display_name": f"Load customer {i}"},
                expect=201,
                source=rest.customer_address(i),
            )
            tokens[i] = data["token"]

        tokens = [""] * len(arrivals)
        async with trio.open_nursery() as nursery:
            for i in range(config.agents):
                nursery.start_soon(make_agent, i)
            for i in range(len(arrivals)):
                nursery.start_soon(make_visitor, i)

        async with trio.open_nursery() as outer:
            readies = []
            for agent in self.agents:
                ready = trio.Event()
                readies.append(ready)
                outer.start_soon(self.run_agent, agent, ready)
            with trio.fail_after(30):
                for ready in readies:
                    await ready.wait()
            progress = trio.CancelScope()

            async def report() -> None:
                with progress:
                    await self.progress()

            if config.progress:
                outer.start_soon(report)
            self.stats.t0 = t0 = time.monotonic()
            # trio's clock is not time.monotonic() (it has an offset of its own): schedule on it
            start = trio.current_time()
            try:
                with trio.move_on_after(config.duration + config.drain) as bounded:
                    async with trio.open_nursery() as customers:
                        for i, at in enumerate(arrivals):
                            await trio.sleep_until(start + at)
                            conv = Conversation(i)
                            self.conversations.append(conv)
                            customers.start_soon(self.run_customer, conv, tokens[i])
            finally:
                progress.cancel()
                self.stop_agents.set()
            if bounded.cancelled_caught:
                self.stats.error("drain timeout: conversations still open at the end")
            elapsed = time.monotonic() - t0
        return self.result(elapsed, len(arrivals))

    def result(self, elapsed: float, planned: int) -> Result:
        s = self.stats
        loads = [a.assigned for a in self.agents]
        completed = sum(1 for c in self.conversations if c.completed)
        messages = _check(self.conversations)
        messages["delivered"] = s.messages_delivered
        timeline = []
        for second in range(max(s.buckets, default=-1) + 1):
            b = s.buckets.get(second, Bucket())
            lat = sorted(b.latencies_us)
            timeline.append(
                {
                    "second": second,
                    "started": b.started,
                    "completed": b.completed,
                    "messages": b.messages,
                    "p50_ms": round(lat[len(lat) // 2] / 1000, 3) if lat else None,
                    "p99_ms": round(lat[min(len(lat) - 1, math.ceil(len(lat) * 0.99) - 1)] / 1000, 3) if lat else None,
                }
            )
        config = {k: v for k, v in vars(self.config).items() if k not in ("admin_password",)}
        config["allow_hosts"] = list(self.config.allow_hosts)
        return Result(
            config=config,
            elapsed_seconds=round(elapsed, 3),
            conversations={
                "planned": planned,
                "started": s.started,
                "completed": completed,
                "failed": len(self.conversations) - completed,
                "reconnects": s.reconnects,
                "offers_gone_before_accept": s.offers_gone,
            },
            messages=messages,
            throughput={
                "conversations_per_second": round(completed / elapsed, 3) if elapsed else 0.0,
                "messages_per_second": round(s.messages_delivered / elapsed, 3) if elapsed else 0.0,
            },
            latency={
                "customer_to_agent": _summary(s.to_agent),
                "agent_to_customer": _summary(s.to_customer),
                "queue_time": _summary(s.queue_time),
            },
            fairness={
                "agents": len(loads),
                "per_agent": loads,
                "min": min(loads, default=0),
                "max": max(loads, default=0),
                "stddev": round(statistics.pstdev(loads), 3) if loads else 0.0,
            },
            errors=dict(s.errors),
            timeline=timeline,
        )


class CustomerRun:
    """One simulated customer's conversation over one or two connections (it may reconnect once)."""

    def __init__(self, test: LoadTest, conv: Conversation, reconnect_after: int | None) -> None:
        self.test = test
        self.config = test.config
        self.stats = test.stats
        self.conv = conv
        self.reconnect_after = reconnect_after
        self.acks: dict[str, int] = {}
        self.replaying = False
        self.replies_seen: set[str] = set()
        self.queued_at = time.monotonic()
        self.assigned = trio.Event()
        self.last_seq = 0
        self.sent = 0
        self.reconnected = False

    def on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "ack":
            self.acks[frame["client_id"]] = frame["seq"]
            if self.conv.id is None:
                self.conv.id = frame["conversation_id"]
                self.test.by_id[self.conv.id] = self.conv
        elif kind == "resumed" and frame.get("conversation_id") == self.conv.id:
            self.replaying = False
        elif kind == "event" and frame.get("conversation_id") == self.conv.id:
            self._on_event(frame, time.monotonic())

    def _on_event(self, frame: dict[str, Any], now: float) -> None:
        stats = self.stats
        if frame.get("kind") == "assigned" and not self.assigned.is_set():
            stats.queue_time.record_value(max(1, int((now - self.queued_at) * 1_000_000)))
            self.assigned.set()
        elif frame.get("kind") == "message" and (frame.get("sender") or {}).get("role") == "agent":
            text = frame.get("text") or ""
            self.conv.customer_seen.append((frame["seq"], text))
            if text not in self.replies_seen:
                self.replies_seen.add(text)
                if not self.replaying:
                    stats.delivered(stats.to_customer, _stamp(text), now)
                else:
                    stats.bucket(now).messages += 1
                    stats.messages_delivered += 1
        self.last_seq = max(self.last_seq, frame["seq"])

    async def _wait_ack(self, sock: Socket, client_id: str, what: str) -> None:
        await sock.wait(lambda: client_id in self.acks, 30, what)

    async def _wait_replies(self, sock: Socket, count: int) -> None:
        await sock.wait(lambda: len(self.replies_seen) >= count, 30, "reply")

    async def session(self, sock: Socket) -> None:
        conv, stats = self.conv, self.stats
        if not self.reconnected and conv.id is None:
            start_id = sock.client_id()
            await sock.send({"type": "conversation.start", "client_id": start_id, "topic": "load test"})
            stats.started += 1
            stats.bucket().started += 1
            await self._wait_ack(sock, start_id, "conversation.start ack")
            conv.phase = "queue"
            with trio.fail_after(max(60.0, self.config.drain)):
                await self.assigned.wait()
        elif self.reconnected:
            self.replaying = True
            await sock.send({"type": "resume", "conversation_id": conv.id, "last_seq": self.last_seq})
            await self._wait_replies(sock, self.sent)
        if await self._send_messages(sock):
            return  # it reconnects
        cid = sock.client_id()
        await sock.send({"type": "conversation.close", "client_id": cid, "conversation_id": conv.id})
        conv.phase = "close"
        await self._wait_ack(sock, cid, "close ack")
        conv.completed = True
        stats.completed += 1
        stats.bucket().completed += 1

    async def _send_messages(self, sock: Socket) -> bool:
        """Send the rest of the messages, each after the reply to the one before; True to reconnect."""
        conv = self.conv
        while self.sent < self.config.messages:
            i = self.sent
            await trio.sleep(self.test.think(self.config.customer_think))
            text = f"lt msg {conv.index} {i} {time.monotonic():.6f}"
            conv.customer_sent.append(text)
            cid = sock.client_id()
            frame = {"type": "message.send", "client_id": cid, "conversation_id": conv.id}
            await sock.send({**frame, "kind": "text", "text": text})
            await self._wait_ack(sock, cid, "message ack")
            self.sent = i + 1
            if i == self.reconnect_after and not self.reconnected:
                self.reconnected = True
                self.stats.reconnects += 1
                return True
            conv.phase = f"reply {i}"
            await self._wait_replies(sock, i + 1)
        return False


async def run_load(config: LoadConfig) -> Result:
    """Run one load test against `config.url` and return what was measured."""
    check_target(config.url, config.allow_hosts)
    if not 0 < config.duration <= MAX_DURATION:
        raise ValueError(f"--duration must be in (0, {MAX_DURATION:g}] seconds")
    if config.rate <= 0 or config.customers < 1 or config.agents < 1 or config.messages < 1:
        raise ValueError("--rate, --customers, --agents and --messages must be positive")
    config.drain = min(max(config.drain, 0.0), MAX_DURATION)
    return await LoadTest(config).run()


# -- output -----------------------------------------------------------------------------


def svg_plot(result: Result) -> str:
    """Latency (p50, p99 agent/customer deliveries) and messages/s per second, as one SVG."""
    timeline = result.timeline
    width, height, pad = 800, 220, 50
    n = max(len(timeline) - 1, 1)

    def panel(y0: int, title: str, series: list[tuple[str, str, list[float | None]]], unit: str) -> str:
        top = max((v for _, _, vs in series for v in vs if v is not None), default=1.0) or 1.0
        parts = [
            f'<text x="{pad}" y="{y0 + 15}" font-size="13">{title} (max {top:.1f} {unit})</text>',
            f'<line x1="{pad}" y1="{y0 + height}" x2="{width - 10}" y2="{y0 + height}" stroke="#888"/>',
            f'<line x1="{pad}" y1="{y0 + 20}" x2="{pad}" y2="{y0 + height}" stroke="#888"/>',
        ]
        for k, (name, color, values) in enumerate(series):
            points = " ".join(
                f"{pad + i * (width - pad - 10) / n:.1f},{y0 + height - (v / top) * (height - 25):.1f}"
                for i, v in enumerate(values)
                if v is not None
            )
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"/>')
            parts.append(f'<text x="{width - 150}" y="{y0 + 15 + 14 * k}" font-size="12" fill="{color}">{name}</text>')
        parts.append(f'<text x="{pad}" y="{y0 + height + 14}" font-size="11">0 s</text>')
        parts.append(f'<text x="{width - 40}" y="{y0 + height + 14}" font-size="11">{n} s</text>')
        return "\n".join(parts)

    body = [
        panel(
            0,
            "delivery latency per second, ms",
            [
                ("p50", "#1f77b4", [t["p50_ms"] for t in timeline]),
                ("p99", "#d62728", [t["p99_ms"] for t in timeline]),
            ],
            "ms",
        ),
        panel(
            height + 40,
            "throughput per second",
            [
                ("messages/s", "#2ca02c", [float(t["messages"]) for t in timeline]),
                ("conversations started/s", "#9467bd", [float(t["started"]) for t in timeline]),
            ],
            "/s",
        ),
    ]
    total = 2 * height + 70
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{total}" font-family="sans-serif">\n'
        f'<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(body) + "\n</svg>\n"
    )


def write_outputs(result: Result, json_path: Path) -> Path:
    json_path.write_text(json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n")
    svg_path = json_path.with_suffix(".svg")
    svg_path.write_text(svg_plot(result))
    return svg_path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m kefu.loadtest.contact_center", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="base URL of the node, e.g. http://127.0.0.1:8080")
    p.add_argument("--account", required=True, help="account slug")
    p.add_argument("--admin-email", required=True)
    p.add_argument("--admin-password", required=True)
    p.add_argument("--customers", type=int, default=200, help="conversations to start at most")
    p.add_argument("--agents", type=int, default=20)
    p.add_argument("--capacity", type=int, default=5, help="concurrent conversations per agent")
    p.add_argument("--rate", type=float, default=20.0, help="new conversations per second (Poisson)")
    p.add_argument("--messages", type=int, default=5, help="customer messages per conversation")
    p.add_argument("--duration", type=float, default=60.0, help=f"arrival window in seconds (at most {MAX_DURATION:g})")
    p.add_argument("--ramp", type=float, default=10.0, help="seconds to ramp the rate from 10%% to 100%%")
    p.add_argument("--drain", type=float, default=30.0, help="seconds after --duration for open conversations")
    p.add_argument("--agent-think", type=float, default=0.2)
    p.add_argument("--customer-think", type=float, default=0.5)
    p.add_argument("--reconnect-share", type=float, default=0.1)
    p.add_argument("--allow-host", action="append", default=[], help="a non-loopback host you own (repeatable)")
    p.add_argument("--seed", type=int)
    p.add_argument("--json", type=Path, help="write the result here, and the plot next to it (.svg)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    config = LoadConfig(
        url=args.url,
        account=args.account,
        admin_email=args.admin_email,
        admin_password=args.admin_password,
        customers=args.customers,
        agents=args.agents,
        capacity=args.capacity,
        rate=args.rate,
        messages=args.messages,
        duration=args.duration,
        ramp=args.ramp,
        drain=args.drain,
        agent_think=args.agent_think,
        customer_think=args.customer_think,
        reconnect_share=args.reconnect_share,
        allow_hosts=tuple(args.allow_host),
        seed=args.seed,
    )
    try:
        check_target(config.url, config.allow_hosts)
        result = trio.run(run_load, config)
    except ValueError as e:  # RefusedTarget, or a setting out of bounds
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = {k: v for k, v in result.to_json().items() if k != "timeline"}
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    if args.json:
        svg = write_outputs(result, args.json)
        print(f"wrote {args.json} and {svg}", file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
