"""Helpers for end-to-end tests: a running node, accounts, agents, visitors, websocket clients."""

from __future__ import annotations

import inspect
import itertools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from kefu.actors.messages import RouteProbe
from kefu.actors.runtime import Reply
from kefu.protocol import decode_server_frame, encode_frame
from kefu.protocol.common import Ping
from kefu.protocol.server import ServerFrame
from kefu.server.accounts import create_account
from kefu.server.config import Config
from kefu.server.node import Node, serve
from tests.conftest import TEST_DATA_KEY, open_database

PASSWORD = "correct horse battery"
AGENT_PASSWORD = "agent password 1"
WAIT_SECONDS = 30
"""How long a test waits for something the server should do at once. Generous: CI machines are
slow and shared, and a wait that is long enough costs nothing when the thing happens."""


@dataclass
class Center:
    node: Node
    http: httpx.AsyncClient
    slug: str
    admin_token: str
    ws_base: str
    dsn: str
    restart: Callable[[], Awaitable[None]] = field(default=None)  # type: ignore[assignment]
    """Stop the node and start a new one on the same database (new port)."""

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        async with open_database(self.dsn) as database:
            return await database.fetch(query, *args)

    def auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    async def add_agent(self, name: str, *, capacity: int = 5, role: str = "agent", **extra: Any) -> Agent:
        email = f"{name.lower().replace(' ', '-')}-{uuid.uuid4().hex[:6]}@{self.slug}.example"
        body = {
            "email": email,
            "display_name": name,
            "role": role,
            "password": AGENT_PASSWORD,
            "max_concurrent_conversations": capacity,
            **extra,
        }
        response = await self.http.post("/api/v1/agents", json=body, headers=self.auth(self.admin_token))
        assert response.status_code == 201, response.text
        agent_id = response.json()["id"]
        response = await self.http.post(
            "/api/v1/auth/sign-in", json={"account": self.slug, "email": email, "password": AGENT_PASSWORD}
        )
        assert response.status_code == 200, response.text
        return Agent(self, agent_id, response.json()["token"], name)

    async def add_agent_session(self, agent: Agent) -> str:
        """Sign the agent in once more (another device): a token of a session of its own."""
        (row,) = await self.fetch("SELECT email FROM users WHERE id = $1", uuid.UUID(agent.id))
        response = await self.http.post(
            "/api/v1/auth/sign-in", json={"account": self.slug, "email": row["email"], "password": AGENT_PASSWORD}
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token

    async def add_visitor(self, name: str | None = None) -> Visitor:
        body: dict[str, Any] = {"account": self.slug}
        if name:
            body["display_name"] = name
        response = await self.http.post("/api/v1/webchat/visitors", json=body)
        assert response.status_code == 201, response.text
        data = response.json()
        return Visitor(self, data["customer_id"], data["token"])


class Client:
    """One websocket: sends frames, collects what the server sends, waits for conditions."""

    _ids = itertools.count(1)

    def __init__(self, ws: WebSocketConnection) -> None:
        self.ws = ws
        self.frames: list[ServerFrame] = []
        self.arrivals: list[float] = []
        """`trio.current_time()` at which each of `frames` arrived."""
        self.raw: list[dict[str, Any]] = []
        self.closed_code: int | None = None
        self._changed = trio.Event()
        self._resumed: trio.Event | None = None

    @property
    def paused(self) -> bool:
        """A paused client stops reading, like a browser tab that hangs."""
        return self._resumed is not None

    @paused.setter
    def paused(self, value: bool) -> None:
        if value and self._resumed is None:
            self._resumed = trio.Event()
        elif not value and self._resumed is not None:
            self._resumed.set()
            self._resumed = None

    async def reader(self) -> None:
        try:
            while True:
                if self._resumed is not None:
                    await self._resumed.wait()
                data = await self.ws.get_message()
                self.frames.append(decode_server_frame(data))
                self.arrivals.append(trio.current_time())
                self._changed.set()
                self._changed = trio.Event()
        except ConnectionClosed as closed:
            self.closed_code = closed.reason.code if closed.reason is not None else 1006
            self._changed.set()

    async def send(self, frame: Any) -> None:
        await self.ws.send_message(encode_frame(frame).decode())

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send_message(data)

    def client_id(self) -> str:
        return f"c-{next(self._ids)}-{uuid.uuid4().hex[:6]}"

    def of(self, frame_type: str, **match: Any) -> list[Any]:
        return [
            f
            for f in self.frames
            if f.TYPE == frame_type and all(getattr(f, key, None) == value for key, value in match.items())
        ]

    def position(self, frame: Any) -> int:
        """Where `frame` (the object itself) is in the order the frames arrived."""
        return next(n for n, received in enumerate(self.frames) if received is frame)

    def arrival(self, frame: Any) -> float:
        """`trio.current_time()` when `frame` arrived."""
        return self.arrivals[self.position(frame)]

    def after(self, frame: Any, frame_type: str, **match: Any) -> list[Any]:
        """The frames like `of(frame_type, **match)` that arrived after `frame`."""
        later = self.frames[self.position(frame) + 1 :]
        return [f for f in self.of(frame_type, **match) if any(f is other for other in later)]

    async def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = WAIT_SECONDS) -> None:
        """Wait (without polling) until `condition()` holds after a frame arrived; fails saying `what`."""
        with trio.move_on_after(timeout):
            while not condition():
                if self.closed_code is not None:
                    raise AssertionError(f"closed with {self.closed_code} while waiting for {what}")
                await self._changed.wait()
            return
        recent = [f.TYPE for f in self.frames[-8:]]
        raise AssertionError(f"{what}: not within {timeout} s (the last frames: {recent})")

    async def wait_for(self, frame_type: str, count: int = 1, timeout: float = WAIT_SECONDS, **match: Any) -> list[Any]:
        what = f"{count} {frame_type} frame(s) with {match}"
        await self.wait_until(lambda: len(self.of(frame_type, **match)) >= count, what, timeout)
        return self.of(frame_type, **match)

    async def wait_closed(self, timeout: float = WAIT_SECONDS) -> int:
        with trio.move_on_after(timeout):
            while self.closed_code is None:
                await self._changed.wait()
            return self.closed_code
        raise AssertionError(f"the server did not close the socket within {timeout} s")

    async def round_trip(self) -> None:
        """A barrier: every frame the server had queued for this socket before now has arrived.

        The server answers a ping on the socket's own send buffer, behind what is already in it.
        """
        nonce = uuid.uuid4().hex
        await self.send(Ping(nonce))
        await self.wait_for("pong", nonce=nonce)

    def events(self, conversation_id: str) -> list[Any]:
        return [f for f in self.frames if f.TYPE == "event" and f.conversation_id == conversation_id]


async def poll(
    condition: Callable[[], bool | Awaitable[bool]], what: str, timeout: float = WAIT_SECONDS, interval: float = 0.02
) -> None:
    """Check `condition` every `interval` seconds until it holds; fail after `timeout` saying `what`.

    For conditions no one socket signals (the database, several clients); on one client's
    frames, `Client.wait_until` wakes at each frame instead.
    """
    deadline = trio.current_time() + timeout
    while True:
        held = condition()
        if inspect.isawaitable(held):
            held = await held
        if held:
            return
        if trio.current_time() >= deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await trio.sleep(interval)


async def routing_settled(center: Center, *clients: Client) -> None:
    """A barrier: the dispatcher handled every message told to it before now (and made every
    offer it would make of them), and each of `clients` received what it sent them meanwhile.

    Tests that assert something was NOT offered wait on this instead of sleeping.
    """
    reply: Reply[None] = Reply()
    await center.node.center.tell_dispatcher(RouteProbe(reply))
    with trio.fail_after(WAIT_SECONDS):
        await reply.wait()
    for client in clients:
        await client.round_trip()


@dataclass
class Agent:
    center: Center
    id: str
    token: str
    name: str
    clients: list[Client] = field(default_factory=list)


@dataclass
class Visitor:
    center: Center
    customer_id: str
    token: str


@asynccontextmanager
async def connect(nursery: trio.Nursery, url: str) -> AsyncIterator[Client]:
    async with open_websocket_url(url) as ws:
        client = Client(ws)
        nursery.start_soon(client.reader)
        try:
            yield client
        finally:
            # trio-websocket's abort path (the server closed the connection) forgets to close
            # its TCP stream, which the garbage collector would then report.
            await trio.aclose_forcefully(ws._stream)


@asynccontextmanager
async def live_center(database_dsn: str, tmp_path: Path, **settings: Any) -> AsyncIterator[Center]:
    """A running node with a fresh account; `center.restart()` stops it and starts another."""
    config = Config(
        port=0,
        database_url=database_dsn,
        data_dir=tmp_path,
        database_pool_size=6,
        shutdown_grace=1.0,
        **{"data_key": TEST_DATA_KEY, **settings},
    )
    async with open_database(database_dsn) as database:
        slug = f"acme-{uuid.uuid4().hex[:8]}"
        account = await create_account(
            database, name="Acme", slug=slug, admin_email=f"admin@{slug}.example", admin_password=PASSWORD
        )
    async with trio.open_nursery() as nursery:

        async def start() -> tuple[Node, trio.CancelScope, trio.Event]:
            scope = trio.CancelScope()
            done = trio.Event()

            async def scoped(task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
                try:
                    with scope:
                        await serve(config, task_status=task_status)
                finally:
                    done.set()

            with trio.fail_after(20):
                node: Node = await nursery.start(scoped)
            return node, scope, done

        node, scope, done = await start()
        base = node.urls[0]
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            response = await http.post(
                "/api/v1/auth/sign-in", json={"account": slug, "email": account.admin_email, "password": PASSWORD}
            )
            assert response.status_code == 200, response.text
            center = Center(node, http, slug, response.json()["token"], base.replace("http://", "ws://"), database_dsn)

            async def restart() -> None:
                nonlocal scope, done
                scope.cancel()
                with trio.fail_after(20):
                    await done.wait()
                center.node, scope, done = await start()
                center.http.base_url = httpx.URL(center.node.urls[0])
                center.ws_base = center.node.urls[0].replace("http://", "ws://")

            center.restart = restart
            yield center
        nursery.cancel_scope.cancel()
