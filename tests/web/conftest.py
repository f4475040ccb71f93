"""Browser tests: a real `kefu serve` process, Debian's Chromium driven by Playwright.

The tests here are plain (synchronous) pytest functions using Playwright's sync API; the
server runs as a subprocess on the test's PostgreSQL, exactly as `make run` starts it, and
can be restarted. Every page records its console errors and uncaught exceptions, and a test
fails if any appeared. Screenshots go to `test-artifacts/screenshots/`.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO_ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "screenshots"
ADMIN_PASSWORD = "correct horse battery"
AGENT_PASSWORD = "agent password 1"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class KefuProcess:
    """`kefu serve` on a port of its own; `restart()` stops it with SIGTERM and starts it again."""

    dsn: str
    data_dir: Path
    port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            KEFU_DATABASE_URL=self.dsn,
            KEFU_DATA_DIR=str(self.data_dir),
            KEFU_PORT=str(self.port),
            KEFU_LOG_FORMAT="text",
            KEFU_SHUTDOWN_GRACE="2",
        )
        return env

    def start(self) -> None:
        self.log_path = self.data_dir / "server.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "kefu.server.cli", "serve"], env=self.env(), stdout=log, stderr=log
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"kefu serve exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("kefu serve did not become ready in 30 s")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def create_account(self, name: str = "Acme") -> tuple[str, str]:
        """A new account; returns (slug, admin e-mail). The admin's password is ADMIN_PASSWORD."""
        slug = f"{name.lower()}-{uuid.uuid4().hex[:8]}"
        email = f"admin@{slug}.example"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "kefu.server.cli",
                "account",
                "create",
                "--name",
                name,
                "--slug",
                slug,
                "--admin-email",
                email,
                "--password-stdin",
            ],
            input=ADMIN_PASSWORD.encode(),
            env=self.env(),
            check=True,
            capture_output=True,
        )
        return slug, email


@dataclass
class Tenant:
    """An account on the running server, with helpers to set it up over REST."""

    server: KefuProcess
    slug: str
    admin_email: str
    admin_token: str

    def api(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.request(method, f"{self.server.url}{path}", headers=headers, timeout=10, **kwargs)

    def add_agent(self, name: str, *, role: str = "agent", **extra: Any) -> dict[str, Any]:
        email = f"{name.lower().replace(' ', '-')}-{uuid.uuid4().hex[:6]}@{self.slug}.example"
        body = {"email": email, "display_name": name, "role": role, "password": AGENT_PASSWORD, **extra}
        response = self.api("POST", "/api/v1/agents", json=body)
        assert response.status_code == 201, response.text
        return {**response.json(), "password": AGENT_PASSWORD}


def sign_in(server: KefuProcess, slug: str, email: str, password: str) -> str:
    response = httpx.post(
        f"{server.url}/api/v1/auth/sign-in", json={"account": slug, "email": email, "password": password}, timeout=10
    )
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


@pytest.fixture(scope="module")
def kefu_server(database_dsn: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[KefuProcess]:
    server = KefuProcess(database_dsn, tmp_path_factory.mktemp("kefu-web"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def tenant(kefu_server: KefuProcess) -> Tenant:
    slug, email = kefu_server.create_account()
    return Tenant(kefu_server, slug, email, sign_in(kefu_server, slug, email, ADMIN_PASSWORD))


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # trio-asyncio (imported by the server code) installs its own asyncio policy, whose loops
    # Playwright's sync API cannot drive; Playwright gets a plain asyncio loop of its own.
    trio_policy = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(asyncio.DefaultEventLoopPolicy())
    try:
        manager = sync_playwright()
        playwright = manager.__enter__()
    finally:
        asyncio.set_event_loop_policy(trio_policy)
    try:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
    finally:
        manager.__exit__(None, None, None)


class PageWatch:
    """Console errors and uncaught exceptions of the pages a test opened."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def watch(self, page: Any) -> Any:
        page.on("console", lambda message: message.type == "error" and self.errors.append(f"console: {message.text}"))
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        return page


@pytest.fixture
def new_context(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """`new_context(locale="zh-CN")` gives a fresh browser context (its own storage) whose pages
    are watched for console errors; the test fails if any page logged one."""
    watch = PageWatch()
    contexts: list[Any] = []

    def make(**options: Any) -> Any:
        options.setdefault("locale", "en-US")
        options.setdefault("viewport", {"width": 1280, "height": 800})
        context = browser.new_context(**options)
        context.on("page", watch.watch)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()
    allowed = getattr(request.node, "allowed_console_errors", ())
    errors = [error for error in watch.errors if not any(pattern in error for pattern in allowed)]
    assert not errors, f"the browser logged errors: {errors}"


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


class WebsocketPeer:
    """The other side of a browser test, speaking the websocket protocol from a thread.

    `WebsocketPeer(url)` connects (its own trio run in a background thread); `send(frame)`
    sends a dict; `wait_for(type, **fields)` blocks until a frame of that type whose fields
    match has arrived and returns it; `frames` holds everything received; `close()` ends it.
    """

    def __init__(self, url: str) -> None:
        import queue
        import threading

        self.url = url
        self.frames: list[dict[str, Any]] = []
        self._lock = threading.Condition()
        self._outgoing: queue.Queue[str | None] = queue.Queue()
        self._closed = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="websocket-peer", daemon=True)
        self._thread.start()
        self.wait_for("welcome")

    def _run(self) -> None:
        import json

        import trio
        from trio_websocket import ConnectionClosed, open_websocket_url

        async def main() -> None:
            async with open_websocket_url(self.url) as ws, trio.open_nursery() as nursery:

                async def reader() -> None:
                    try:
                        while True:
                            frame = json.loads(await ws.get_message())
                            with self._lock:
                                self.frames.append(frame)
                                self._lock.notify_all()
                    except ConnectionClosed:
                        pass
                    nursery.cancel_scope.cancel()

                nursery.start_soon(reader)
                while True:
                    data = await trio.to_thread.run_sync(self._outgoing.get)
                    if data is None:
                        break
                    await ws.send_message(data)
                nursery.cancel_scope.cancel()

        try:
            trio.run(main)
        except BaseException as error:  # reported by wait_for
            self._error = error
        finally:
            with self._lock:
                self._closed = True
                self._lock.notify_all()

    def send(self, frame: dict[str, Any]) -> None:
        import json

        self._outgoing.put(json.dumps({"v": 1, **frame}))

    def of(self, frame_type: str, **fields: Any) -> list[dict[str, Any]]:
        with self._lock:
            return [
                f for f in self.frames if f.get("type") == frame_type and all(f.get(k) == v for k, v in fields.items())
            ]

    def wait_for(self, frame_type: str, timeout: float = 15, count: int = 1, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [
                    f
                    for f in self.frames
                    if f.get("type") == frame_type and all(f.get(k) == v for k, v in fields.items())
                ]
                if len(found) >= count:
                    return found[count - 1]
                if self._closed:
                    raise AssertionError(f"connection closed ({self._error!r}) while waiting for {frame_type} {fields}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {frame_type} {fields} within {timeout} s; got {self.frames[-5:]}")
                self._lock.wait(left)

    def close(self) -> None:
        self._outgoing.put(None)
        self._thread.join(timeout=10)


def ws_url(server: KefuProcess, path: str, token: str) -> str:
    return server.url.replace("http://", "ws://") + f"{path}?token={token}"
