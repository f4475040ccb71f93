"""`kefu serve` as a process: it becomes ready, and SIGTERM stops it cleanly with exit code 0."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

KEFU = Path(sys.executable).with_name("kefu")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_serve(
    dsn: str, tmp_path: Path, port: int, log_path: Path, settings: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEFU_")}
    env |= {
        "KEFU_DATABASE_URL": dsn,
        "KEFU_DATA_DIR": str(tmp_path / "data"),
        "KEFU_PORT": str(port),
        "KEFU_HOST": "127.0.0.1",
        "KEFU_SHUTDOWN_GRACE": "2",
        "KEFU_DATABASE_POOL_SIZE": "3",
    }
    env |= settings or {}
    command = [str(KEFU)] if KEFU.exists() else [sys.executable, "-m", "kefu.server.cli"]
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [*command, "serve"], env=env, cwd=tmp_path, stdin=subprocess.DEVNULL, stdout=log, stderr=log
        )


def wait_ready(process: subprocess.Popen[bytes], url: str, log_path: Path, timeout: float = 20) -> httpx.Response:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"kefu serve exited with {process.returncode}:\n{log_path.read_text()}")
            try:
                response = client.get(url)
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code == 200:
                return response
            time.sleep(0.1)
    raise AssertionError(f"kefu serve not ready within {timeout} s:\n{log_path.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
        process.wait(timeout=10)


def test_serve_becomes_ready_and_stops_on_sigterm(database_dsn: str, tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "kefu.log"
    process = start_serve(database_dsn, tmp_path, port, log_path)
    try:
        response = wait_ready(process, f"http://127.0.0.1:{port}/readyz", log_path)
        assert response.json()["ready"] is True
        # the startup heap is out of the garbage collector's reach, and its pauses are measured
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        frozen = next(line for line in metrics.splitlines() if line.startswith("kefu_gc_frozen_objects "))
        assert float(frozen.split()[1]) > 10_000
        assert 'kefu_gc_pause_seconds_count{generation="0"}' in metrics
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0, log_path.read_text()
    finally:
        stop(process)

    lines = [line for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert lines, "kefu serve wrote no log"
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"log line is not JSON: {line!r}") from None
    for entry in entries:
        assert {"time", "level", "logger", "event"} <= set(entry), entry
    events = [entry["event"] for entry in entries]
    assert "kefu is serving" in events
    assert events.index("startup heap frozen") < events.index("kefu is serving")
    assert "shutting down" in events
    assert events[-1] == "kefu stopped"
    assert events.index("kefu is serving") < events.index("shutting down") < events.index("kefu stopped")
    serving = entries[events.index("kefu is serving")]
    assert serving["urls"] == [f"http://127.0.0.1:{port}"]
    assert serving["embedded_database"] is False
    assert next(e for e in entries if e["event"] == "shutting down")["signal"] == "SIGTERM"
    assert not any(entry["level"] in ("error", "critical") for entry in entries), entries
    # The port is free again.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def test_serve_on_a_taken_port_fails_with_one_line(database_dsn: str, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        log_path = tmp_path / "kefu.log"
        process = start_serve(database_dsn, tmp_path, port, log_path)
        try:
            code = process.wait(timeout=20)
        finally:
            stop(process)
    output = log_path.read_text(encoding="utf-8")
    assert code == 1, output
    assert f"kefu: cannot listen on 127.0.0.1:{port}" in output
    assert "Traceback" not in output
    assert "kefu is serving" not in output


def _read_http_response(sock: socket.socket) -> bytes:
    """One whole HTTP/1.1 response with a Content-Length (what kefu's JSON endpoints send)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed mid-body: {data!r}"
        body += chunk
    return head + b"\r\n\r\n" + body


def test_sigterm_closes_idle_keep_alive_connections_at_once_and_finishes_requests_in_flight(
    database_dsn: str, tmp_path: Path
) -> None:
    """Every browser keeps an idle keep-alive connection: it must not hold the stop for the whole
    grace. The grace (60 s) and the keep-alive timeout (120 s) are long enough that "waited" and
    "closed at once" cannot be confused; the order is held by probes, not by time: the idle
    connection's end of stream is seen first, while a request whose body is still arriving stays
    open and is answered after it."""
    port = free_port()
    log_path = tmp_path / "kefu.log"
    grace = 60.0
    process = start_serve(
        database_dsn,
        tmp_path,
        port,
        log_path,
        {"KEFU_SHUTDOWN_GRACE": str(grace), "KEFU_HANDSHAKE_TIMEOUT_SECONDS": "120"},
    )
    stack = contextlib.ExitStack()
    try:
        wait_ready(process, f"http://127.0.0.1:{port}/readyz", log_path)
        idle = stack.enter_context(socket.create_connection(("127.0.0.1", port)))
        busy = stack.enter_context(socket.create_connection(("127.0.0.1", port)))
        # A browser's connection: one request answered, then kept alive and idle.
        idle.sendall(b"GET /readyz HTTP/1.1\r\nHost: kefu\r\n\r\n")
        assert _read_http_response(idle).startswith(b"HTTP/1.1 200 ")
        # A request in flight: its head is in, half of its body still to come.
        body = b'{"account": "nobody"}'
        busy.sendall(
            b"POST /api/v1/auth/sign-in HTTP/1.1\r\nHost: kefu\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body[:7]
        )
        stopping_at = time.monotonic()
        process.send_signal(signal.SIGTERM)
        idle.settimeout(grace / 2)
        assert idle.recv(1) == b"", "the idle keep-alive connection got data instead of being closed"
        assert time.monotonic() - stopping_at < grace / 2
        # The request in flight is still honoured after the idle connection went.
        busy.sendall(body[7:])
        busy.settimeout(grace / 2)
        answer = _read_http_response(busy)
        assert answer.startswith(b"HTTP/1.1 400 "), answer
        assert b"invalid_request" in answer
        assert process.wait(timeout=grace / 2) == 0, log_path.read_text()
        assert time.monotonic() - stopping_at < grace / 2
    finally:
        stack.close()
        stop(process)
