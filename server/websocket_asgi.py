"""kefu's websockets served straight from hypercorn's ASGI interface, in front of Quart.

Why not Quart's ``@app.websocket``
----------------------------------
Quart wraps every websocket in a request context, a task of its own, channels for what
goes in and out, and a wrapper object per message. For a contact center that holds tens of
thousands of mostly idle sockets this is the largest cost of a connection: measured with
2,000 idle sockets (see docs/benchmarks.md), a bare quart-trio echo server takes about
36 KB a socket and the same echo on hypercorn's ASGI interface about 22 KB. Each message
sent also goes through three more layers. kefu's two websocket routes need none of what
Quart adds (no templates, sessions or blueprints), so they are served here: `WebsocketRoutes`
is installed as Quart's ``asgi_app`` middleware, takes the websocket scopes of its paths and
hands everything else (REST, pages, other websockets) to Quart unchanged.

The handlers keep Quart's shape: a coroutine without arguments that uses the module-level
`websocket` proxy (``websocket.args``, ``.headers``, ``.scheme``, ``.scope``, ``accept()``,
``receive()``, ``send()``, ``close()``), which reads the connection of the running handler
from a context variable, as Quart's own proxy does.

Rules
-----
1. ``receive()`` answers the next text (``str``) or binary (``bytes``) message. When the
   peer goes away the handler is cancelled, as Quart does, so its ``finally`` blocks run.
2. A handler that returns after ``accept()`` without closing closes with 1000.
3. A handler that fails is logged; the socket is closed with 1011 if it was accepted.
4. ``send_many(texts)`` sends several text messages, in order, as separate websocket
   messages. On hypercorn's own websocket stream (the version pinned in pyproject.toml) they
   are framed by its wsproto connection and written with one lock and one system call, which
   is most of what a message costs to send (docs/benchmarks.md); on any other ASGI server it
   falls back to one ``websocket.send`` each. `coalesces` says which.
5. What the websocket layer refuses of what the peer sent is reported to the handler, and
   the socket stays open until the handler closes it, so the handler can answer first: a
   text message that is not UTF-8 (1007), a message of more than hypercorn's
   ``websocket_max_message_size`` characters (1009), a framing error (1002). Hypercorn would
   drop the TCP connection without a close frame for the first and the last (and race the
   handler's writes while it does), and close 1009 at once for the second. The handler
   registers with ``report_refusals(callback)``, before ``accept()`` to hear of a message
   sent at once; ``callback(code, reason)`` is called at once (from hypercorn's reader: it
   must not wait) and must close the socket. A handler that
   registers nothing is cancelled, as if the peer had gone, and the socket is closed with the
   code. After a refusal nothing more the peer sends is read.
6. A write that finds hypercorn closing the TCP connection (it sends its end of stream
   outside the lock that orders writes: ``BusyResourceError``) is dropped as if the peer had
   gone: the connection is ending, and the close that ends it is hypercorn's.
7. Everything else goes to Quart, with one change to HTTP requests: the message that ends a
   response is sent shielded from cancellation. quart-trio cancels a request's tasks as soon
   as the response is sent, and hypercorn does its bookkeeping for the connection (ending the
   stream, arming the keep-alive timeout) inside that last ``send``: cancelled there, an idle
   keep-alive connection is never timed out, and a graceful stop waits the whole grace for
   the browser that holds it (tests/server/test_process.py). Hypercorn shields the socket
   write itself already, so the shield adds no wait of its own.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import trio
from hypercorn.protocol.events import Data
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from wsproto.connection import Connection as WsprotoConnection
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection, Event, Message, TextMessage
from wsproto.utilities import LocalProtocolError

from kefu.protocol.errors import CLOSE_MESSAGE_TOO_BIG, CLOSE_NORMAL, CLOSE_SERVER_ERROR

log = logging.getLogger("kefu.websocket")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Handler = Callable[[], Awaitable[None]]


class Headers:
    """Request headers, looked up without regard to case (the first value of a name).

    Looked up in the scope's own list, which the connection keeps anyway: a handler reads a
    header or two once, and a dict of them all would stay with every open socket.
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self._raw = raw

    def get(self, name: str, default: str | None = None) -> str | None:
        wanted = name.lower()
        for key, value in self._raw:
            if key.decode("latin-1").lower() == wanted:
                return value.decode("latin-1")
        return default


class WebsocketConnection:
    """One websocket on hypercorn's ASGI interface."""

    __slots__ = (
        "_cancel",
        "_headers",
        "_on_refused",
        "_receive",
        "_send",
        "_stream",
        "accepted",
        "closed",
        "refused",
        "scope",
    )

    def __init__(self, scope: Scope, receive: Receive, send: Send, cancel: trio.CancelScope) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        stream = getattr(send, "__self__", None)
        self._stream: WSStream | None = stream if isinstance(stream, WSStream) else None
        self._cancel = cancel
        self._headers: Headers | None = None
        self.accepted = False
        self.closed = False
        self.refused: tuple[int, str] | None = None
        """What the websocket layer refused of what the peer sent: (close code, reason) (rule 5)."""
        self._on_refused: Callable[[int, str], None] | None = None

    @property
    def args(self) -> dict[str, str]:
        """The query string's arguments (the first value of a name), parsed on each use: a
        handler reads them once, and a cached dict would stay with every open socket."""
        args: dict[str, str] = {}
        for name, value in parse_qsl(self.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True):
            args.setdefault(name, value)
        return args

    @property
    def headers(self) -> Headers:
        if self._headers is None:
            self._headers = Headers(self.scope.get("headers", []))
        return self._headers

    @property
    def scheme(self) -> str:
        return str(self.scope.get("scheme", "ws"))

    async def accept(self) -> None:
        if self.accepted:
            return
        message = await self._receive()
        if message["type"] != "websocket.connect":
            await self._gone()
        stream = self._stream
        if stream is not None:
            # The wsproto connection is made while the 101 is sent, and the peer may send at once:
            # it is watched from its making (rule 5).
            handshake = stream.handshake
            accept_handshake = handshake.accept

            def accept_and_watch(*args: Any) -> Any:
                status_code, headers, connection = accept_handshake(*args)
                self._watch(connection, stream.config.websocket_max_message_size)
                return status_code, headers, connection

            handshake.accept = accept_and_watch  # type: ignore[assignment, method-assign]
            try:
                await self._send({"type": "websocket.accept"})
            finally:
                del handshake.accept  # the socket keeps its handshake: not the wrapper too
        else:
            await self._send({"type": "websocket.accept"})
        self.accepted = True

    def _watch(self, connection: WsprotoConnection, max_characters: int) -> None:
        """Pass on the events of `connection` up to the first thing it refuses (rule 5)."""
        events = connection.events
        size = 0

        def watched_events() -> Iterator[Event]:
            nonlocal size
            for event in events():
                if isinstance(event, Message):
                    size += len(event.data)
                    if size > max_characters:
                        self._refuse(connection, CLOSE_MESSAGE_TOO_BIG, f"frame is larger than {max_characters} bytes")
                        return
                    if event.message_finished:
                        size = 0
                elif isinstance(event, CloseConnection) and connection.state is ConnectionState.OPEN:
                    # wsproto refused what arrived (a close from the peer leaves OPEN first)
                    self._refuse(connection, event.code, event.reason or "")
                    return
                yield event

        connection.events = watched_events  # type: ignore[assignment, method-assign]

    def _refuse(self, connection: WsprotoConnection, code: int, reason: str) -> None:
        # Nothing more is read: after a parse failure wsproto's reader is lost, and what the
        # peer still sends is not kept.
        connection.receive_data = _discard  # type: ignore[method-assign]
        self.refused = (code, reason[:100])
        if self._on_refused is not None:
            self._on_refused(*self.refused)
        else:
            self._cancel.cancel()

    def report_refusals(self, callback: Callable[[int, str], None]) -> None:
        """Call `callback(code, reason)` when the websocket layer refuses what the peer sent
        (now, if it already has); it must close the socket (rule 5)."""
        self._on_refused = callback
        if self.refused is not None:
            callback(*self.refused)

    async def receive(self) -> str | bytes:
        message = await self._receive()
        if message["type"] == "websocket.receive":
            text = message.get("text")
            return text if text is not None else bytes(message.get("bytes") or b"")
        await self._gone()
        raise AssertionError("unreachable")

    async def send(self, data: str) -> None:
        try:
            await self._send({"type": "websocket.send", "text": data})
        except trio.BusyResourceError:  # hypercorn is closing the connection (rule 6)
            pass

    @property
    def coalesces(self) -> bool:
        """Whether `send_many` writes its messages at once (rule 4)."""
        return self._stream is not None

    async def send_many(self, texts: list[str]) -> None:
        stream = self._stream
        if stream is None or len(texts) == 1:
            try:
                for text in texts:
                    await self._send({"type": "websocket.send", "text": text})
            except trio.BusyResourceError:  # hypercorn is closing the connection (rule 6)
                pass
            return
        # What hypercorn's `app_send` does for one "websocket.send", for all of them at once.
        if stream.closed or stream.state != ASGIWebsocketState.CONNECTED:
            return
        framed = []
        try:
            for text in texts:
                framed.append(stream.connection.send(TextMessage(data=text)))
        except LocalProtocolError:  # the connection is closing: what is framed still goes
            pass
        if framed:
            try:
                await stream.send(Data(stream_id=stream.stream_id, data=b"".join(framed)))
            except trio.BusyResourceError:  # hypercorn is closing the connection (rule 6)
                pass

    async def close(self, code: int = CLOSE_NORMAL, reason: str = "") -> None:
        if self.closed:
            return
        self.closed = True
        try:
            await self._send({"type": "websocket.close", "code": code, "reason": reason})
        except trio.BusyResourceError:  # hypercorn is closing the connection (rule 6)
            pass

    async def _gone(self) -> None:
        """The peer disconnected: cancel the handler (rule 1)."""
        self.closed = True
        self._cancel.cancel()
        await trio.lowlevel.checkpoint()


def _discard(data: bytes | None) -> None:
    """What a refused peer still sends (rule 5)."""


_current: contextvars.ContextVar[WebsocketConnection] = contextvars.ContextVar("kefu_websocket")


class _CurrentWebsocket:
    """The websocket of the running handler (like Quart's ``websocket`` proxy)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(_current.get(), name)


websocket: Any = _CurrentWebsocket()


def _shield_the_end_of_responses(send: Send) -> Send:
    """`send`, with the message that ends a response shielded from cancellation (rule 5)."""

    async def send_response(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            with trio.CancelScope(shield=True):
                await send(message)
        else:
            await send(message)

    return send_response


class WebsocketRoutes:
    """ASGI middleware: serves the websocket paths registered with `route`, passes on the rest."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.handlers: dict[str, Handler] = {}

    def route(self, path: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.handlers[path] = handler
            return handler

        return register

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        handler = self.handlers.get(scope.get("path", "")) if kind == "websocket" else None
        if handler is None:
            await self.app(scope, receive, _shield_the_end_of_responses(send) if kind == "http" else send)
            return
        cancel = trio.CancelScope()
        connection = WebsocketConnection(scope, receive, send, cancel)
        token = _current.set(connection)
        with cancel:
            try:
                await handler()
                if connection.accepted and not connection.closed:
                    await connection.close(CLOSE_NORMAL)
            except Exception:
                log.exception("websocket handler failed", extra={"path": scope.get("path")})
                if connection.accepted and not connection.closed:
                    with trio.move_on_after(2):
                        await connection.close(CLOSE_SERVER_ERROR, "internal error")
            finally:
                _current.reset(token)
        if connection.refused is not None and connection.accepted and not connection.closed:
            # cancelled by a refusal nobody was told of (rule 5)
            with trio.move_on_after(2):
                await connection.close(*connection.refused)
