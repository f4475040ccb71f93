"""Clients that keep talking through faults: they reconnect, resume and re-send.

A `Peer` is one customer or agent on a real websocket. It behaves as docs/protocol.md asks
of a client: every storable frame carries a `client_id`; a frame without an ack is sent
again, with the same `client_id`, after a reconnect or after a retryable error; after each
reconnect it sends `resume` with the highest `seq` it has seen for each conversation.

It records everything a test needs to judge the server: every `event` frame received over
all its connections (in arrival order), every ack, every error, every close code, and how
many frames it had to send again.
"""

from __future__ import annotations

import itertools
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection, open_websocket_url

from kefu.protocol import decode_server_frame, encode_frame
from kefu.protocol.agent import AcceptOffer, SetStatus
from kefu.protocol.common import Ping, Resume, SendMessage
from kefu.protocol.customer import StartConversation

RECONNECT_PAUSE = 0.1
"""Seconds between connection attempts while the server is away."""
RETRY_PAUSE = 0.2
"""Seconds before a frame refused with a retryable error is sent again."""


@dataclass
class Pending:
    frame: Any
    connection: int
    """The connection it was last sent on (0: not yet sent on any)."""
    retry_at: float | None = None
    """Set after a retryable error: send again at this time."""


@dataclass
class Peer:
    """One customer or agent talking through faults. Run `run()` in a nursery."""

    name: str
    role: str
    """'customer' or 'agent'."""
    url: Callable[[], str]
    window: int = 4
    user_id: str = ""
    """The agent's id (agents)."""
    """Frames in flight (sent, not yet acked) at most."""
    conversations: list[str] = field(default_factory=list)
    received: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    """Every `event` frame received, per conversation, in arrival order, over all connections."""
    acks: dict[str, Any] = field(default_factory=dict)
    duplicate_acks: int = 0
    """Acks received again for a client_id already acked (each must carry the same seq)."""
    pending: dict[str, Pending] = field(default_factory=dict)
    errors: list[Any] = field(default_factory=list)
    """Every error frame received."""
    close_codes: list[int] = field(default_factory=list)
    """How each connection ended, as the server said (1006: no close frame)."""
    refused_connects: int = 0
    resent: int = 0
    """Frames sent again because a connection ended before their ack."""
    retried: int = 0
    """Frames sent again after a retryable error."""
    connections: int = 0
    texts: dict[str, str] = field(default_factory=dict)
    """client_id -> text of each message this peer sent."""
    statuses: list[Any] = field(default_factory=list)
    """`status` frames (agents)."""

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._live: WebSocketConnection | None = None
        self._changed = trio.Event()
        self.connected = trio.Event()

    # -- what the test asks ---------------------------------------------------------------

    def client_id(self) -> str:
        return f"{self.name}-{next(self._ids)}-{uuid.uuid4().hex[:6]}"

    def last_seq(self, conversation_id: str) -> int:
        events = self.received.get(conversation_id)
        return max((e.seq for e in events), default=0) if events else 0

    def retryable_errors(self) -> list[Any]:
        return [e for e in self.errors if e.retryable]

    def fatal_errors(self) -> list[Any]:
        return [e for e in self.errors if not e.retryable]

    async def changed(self) -> None:
        await self._changed.wait()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def send(self, frame: Any) -> None:
        """Send a storable frame; it stays pending (and is re-sent as needed) until acked."""
        with trio.fail_after(60):
            while len(self.pending) >= self.window or self._live is None:
                await self.changed()
        self.pending[frame.client_id] = Pending(frame, self.connections)
        await self._send_on(self._live, frame)

    async def say(self, conversation_id: str, text: str) -> str:
        client_id = self.client_id()
        self.texts[client_id] = text
        await self.send(SendMessage(client_id, conversation_id, "text", text=text))
        return client_id

    async def start_conversation(self) -> str:
        client_id = self.client_id()
        await self.send(StartConversation(client_id))
        with trio.fail_after(30):
            while client_id not in self.acks:
                await self.changed()
        conversation_id: str = self.acks[client_id].conversation_id
        self.conversations.append(conversation_id)
        return conversation_id

    async def drained(self, timeout: float) -> None:
        """Wait until every frame sent was acked."""
        with trio.fail_after(timeout):
            while self.pending:
                await self.changed()

    def kinds(self, conversation_id: str, kind: str) -> list[Any]:
        return [e for e in self.received.get(conversation_id, []) if e.kind == kind]

    # -- the connection loop ----------------------------------------------------------------

    async def run(self) -> None:
        while True:
            try:
                async with open_websocket_url(self.url()) as ws:
                    await self._connected(ws)
            except (OSError, HandshakeError):
                self.refused_connects += 1
            except ConnectionClosed:
                pass
            self._live = None
            self._notify()
            await trio.sleep(RECONNECT_PAUSE)

    async def _send_on(self, ws: WebSocketConnection | None, frame: Any) -> None:
        if ws is None:
            return
        try:
            await ws.send_message(encode_frame(frame).decode())
        except ConnectionClosed:
            pass  # stays pending; the reconnect sends it again

    async def _connected(self, ws: WebSocketConnection) -> None:
        self.connections += 1
        number = self.connections
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._retry_loop, ws, number)
                nursery.start_soon(self._heartbeat, ws)
                try:
                    while True:
                        frame = decode_server_frame(await ws.get_message())
                        await self._on_frame(ws, number, frame)
                        self._notify()
                except ConnectionClosed as closed:
                    code = closed.reason.code if closed.reason is not None else 1006
                    self.close_codes.append(code)
                nursery.cancel_scope.cancel()
        finally:
            # trio-websocket's abort path (the server went away) leaves its TCP stream open
            await trio.aclose_forcefully(ws._stream)

    async def _heartbeat(self, ws: WebSocketConnection) -> None:
        for n in itertools.count():
            await trio.sleep(10)
            await self._send_on(ws, Ping(f"p{n}"))

    async def _retry_loop(self, ws: WebSocketConnection, number: int) -> None:
        while True:
            await trio.sleep(RETRY_PAUSE / 2)
            now = trio.current_time()
            for pending in list(self.pending.values()):
                if pending.retry_at is not None and pending.retry_at <= now and pending.connection == number:
                    pending.retry_at = None
                    self.retried += 1
                    await self._send_on(ws, pending.frame)

    async def _on_frame(self, ws: WebSocketConnection, number: int, frame: Any) -> None:
        kind = frame.TYPE
        if kind == "conversations":
            await self._on_conversation_list(ws, number, frame)
        elif kind == "event":
            self.received[frame.conversation_id].append(frame)
        elif kind == "ack":
            self._on_ack(frame)
        elif kind == "error":
            self._on_error(frame)
        elif kind == "status":
            self.statuses.append(frame)
        elif kind == "offer" and self.role == "agent":
            await self._send_on(ws, AcceptOffer(frame.offer_id))

    async def _on_conversation_list(self, ws: WebSocketConnection, number: int, frame: Any) -> None:
        # what this connection missed, then what was sent without an ack
        known = set(self.conversations) | {c.conversation_id for c in frame.conversations}
        for conversation_id in sorted(known):
            if conversation_id in self.conversations:
                await self._send_on(ws, Resume(conversation_id, self.last_seq(conversation_id)))
        if self.role == "agent" and self.connections == 1:
            await self._send_on(ws, SetStatus("online"))
        for pending in sorted(self.pending.values(), key=lambda p: p.connection):
            if pending.connection < number:
                pending.connection = number
                pending.retry_at = None
                self.resent += 1
                await self._send_on(ws, pending.frame)
        self._live = ws

    def _on_ack(self, frame: Any) -> None:
        earlier = self.acks.get(frame.client_id)
        if earlier is not None:
            self.duplicate_acks += 1
            assert earlier.seq == frame.seq, f"two acks with different seqs for {frame.client_id}"
        self.acks[frame.client_id] = frame
        self.pending.pop(frame.client_id, None)

    def _on_error(self, frame: Any) -> None:
        self.errors.append(frame)
        pending = self.pending.get(frame.ref) if frame.ref else None
        if pending is not None:
            if frame.retryable:
                pending.retry_at = trio.current_time() + RETRY_PAUSE
            else:
                del self.pending[frame.ref]
