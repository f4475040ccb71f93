"""Helpers for end-to-end tests: a running node, accounts, agents, visitors, websocket clients."""

from __future__ import annotations

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

from kefu.protocol import decode_server_frame, encode_frame
from kefu.protocol.server import ServerFrame
from kefu.server.accounts import create_account
from kefu.server.config import Config
from kefu.server.node import Node, serve
from tests.conftest import TEST_DATA_KEY, open_database

PASSWORD = "correct horse battery"
AGENT_PASSWORD = "agent password 1"


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
        self.raw: list[dict[str, Any]] = []
        self.closed_code: int | None = None
        self.paused = False
        """A paused client stops reading, like a browser tab that hangs."""
        self._changed = trio.Event()

    async def reader(self) -> None:
        try:
            while True:
                while self.paused:
                    await trio.sleep(0.05)
                data = await self.ws.get_message()
                self.frames.append(decode_server_frame(data))
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

    async def wait_for(self, frame_type: str, count: int = 1, timeout: float = 10, **match: Any) -> list[Any]:
        with trio.fail_after(timeout):
            while len(self.of(frame_type, **match)) < count:
                if self.closed_code is not None:
                    raise AssertionError(f"closed with {self.closed_code} while waiting for {frame_type} {match}")
                await self._changed.wait()
        return self.of(frame_type, **match)

    async def wait_closed(self, timeout: float = 10) -> int:
        with trio.fail_after(timeout):
            while self.closed_code is None:
                await self._changed.wait()
        return self.closed_code

    def events(self, conversation_id: str) -> list[Any]:
        return [f for f in self.frames if f.TYPE == "event" and f.conversation_id == conversation_id]


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
