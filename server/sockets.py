"""The websocket edge: `/ws/customer` and `/ws/agent`.

Handlers translate between the wire and the actors and decide nothing: each connection is
authenticated on the handshake, gets `welcome`, and then every text message is decoded by
`kefu.protocol` and handed to the actor that owns what it is about (the conversation's
CustomerSession, the Agent, or the dispatcher for offers). What goes back to the client
is put by the actors into the connection's bounded send buffer; one writer task per
connection drains it onto the socket.

Rules
-----
1. A missing or bad token closes the socket with 1008 before anything else is sent; an
   agent's socket is closed with 1008 when its session token expires (sign-out, disabling
   and a role change close it through the Agent actor).
2. A frame the protocol refuses is answered with an `error` frame (and, for the errors
   that carry one, a close code); it never reaches an actor.
3. A connection whose send buffer is full is closed with 4001 (slow consumer); the
   client reconnects and resumes. Nobody else waits for it.
4. What the websocket layer refuses before the protocol sees it is answered the same way:
   a text message that is not UTF-8 gets `malformed_json` and 1007, one of more than
   `max_frame_bytes` characters `oversized` and 1009; a framing error closes with 1002.
   Whenever it arrives, `welcome` goes first (it is buffered before the socket opens).
5. Silence longer than 1.5 × `heartbeat_seconds` closes with 4002; the `MAX_INVALID_FRAMES`th
   frame refused by the protocol (with no close code of its own) is answered, then closes
   4003; a client that keeps sending over its rate (its unforgiven `rate_limited` answers pass
   `MIN_REFUSED_IN_A_ROW`) closes with 4004.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import orjson
import trio

from kefu.actors import messages as m
from kefu.actors.ports import AgentHandle
from kefu.protocol import RemoteProtocolError, decode_agent_frame, decode_customer_frame, encode_frame
from kefu.protocol.agent import AcceptOffer, DeclineOffer, SetStatus
from kefu.protocol.common import MAX_CLIENT_ID_CHARS, MAX_TEXT_CHARS, Ping
from kefu.protocol.customer import StartConversation
from kefu.protocol.errors import CLOSE_INVALID_PAYLOAD, CLOSE_MESSAGE_TOO_BIG, MALFORMED_JSON, OVERSIZED
from kefu.protocol.server import (
    ConversationList,
    ConversationSummary,
    Limits,
    LiveStats,
    Pong,
    ServerError,
    Welcome,
    utc_timestamp,
)
from kefu.server import auth, privacy
from kefu.server.database import DatabaseUnavailable
from kefu.server.webchat import authenticate_visitor
from kefu.server.websocket_asgi import WebsocketRoutes, websocket

if TYPE_CHECKING:
    from quart_trio import QuartTrio

    from kefu.server.node import Node

log = logging.getLogger("kefu.sockets")

CLOSE_GOING_AWAY = 1001
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_POLICY = 1008
CLOSE_INTERNAL = 1011
CLOSE_SLOW_CONSUMER = 4001
CLOSE_IDLE = 4002
CLOSE_TOO_MANY_INVALID = 4003
CLOSE_FLOODING = 4004
MAX_INVALID_FRAMES = 50
"""A connection's 50th frame refused by the protocol gets its `error`, then close 4003."""
WRITE_BATCH_BYTES = 64 * 1024
"""The writer takes buffered frames up to about this many bytes into one write."""
MIN_REFUSED_IN_A_ROW = 100
"""A connection refused for its rate more than this many times (at least; twice its burst when
that is more) ignores `rate_limited` and is closed with 4004: answering a flood frame by frame
would cost the neighbours' CPU. Refusals are forgiven at twice the rate per second, so a client
that slows down after `rate_limited` never gets there, while one that floods gets there however
slowly the server drains it (a single frame let through by a refilled token forgives nothing
more than the time it took)."""


class Connection:
    """One websocket's identity and bounded send buffer (the actors' `Outbox`).

    Actors put frames in with `send`, which never waits. A writer task drains the buffer
    onto the socket; it runs only while there is something to write, so an idle socket
    holds no task for it (an idle contact center holds tens of thousands of sockets).
    """

    __slots__ = (
        "_buffer",
        "_capacity",
        "_closed",
        "_flushed",
        "_nursery",
        "_send_texts",
        "_writing",
        "account_id",
        "close_code",
        "close_reason",
        "peer_gone",
        "reading",
        "role",
        "sees_contact_details",
        "user_id",
        "user_role",
    )

    def __init__(self, role: str, user_id: UUID, account_id: UUID, capacity: int) -> None:
        self.role = role
        """Which side of a conversation the socket is on: "customer" or "agent"."""
        self.user_role = role
        """Who signed in, for the audit log: "customer", or the user's role (agent, supervisor, admin)."""
        self.user_id = user_id
        self.account_id = account_id
        self.sees_contact_details = role == "customer"
        """Texts show phone numbers and e-mail addresses as written; agents: set from the permission."""
        self._buffer: deque[bytes] = deque()
        self._capacity = capacity
        self._nursery: trio.Nursery | None = None
        self._send_texts: Callable[[list[str]], Awaitable[None]] | None = None
        self._writing = False
        self._flushed: trio.Event | None = None
        self.reading = trio.CancelScope()
        """Around the connection's reader: `close` cancels it, so reading stops at once."""
        self.close_code: int | None = None
        self.close_reason = ""
        self._closed = False
        self.peer_gone = False

    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, data: bytes) -> bool:
        if self._closed:
            return False
        if len(self._buffer) >= self._capacity:
            self.close(CLOSE_SLOW_CONSUMER, "slow consumer: reconnect and resume from the last seq you saw")
            return False
        self._buffer.append(data)
        self._start_writer()
        return True

    def room(self) -> int:
        if self._closed:
            return 0
        return self._capacity - len(self._buffer)

    def close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self.close_code = code
        self.close_reason = reason
        self.reading.cancel()

    def refused(self, code: int, reason: str) -> None:
        """The websocket layer refused what the client sent (rule 4): answer as the protocol's
        decoder does, then close. Called from hypercorn's reader; never waits."""
        if code == CLOSE_INVALID_PAYLOAD:
            self.send(_error(MALFORMED_JSON, "frame is not valid UTF-8"))
        elif code == CLOSE_MESSAGE_TOO_BIG:
            self.send(_error(OVERSIZED, reason))
        self.close(code, reason)

    def mark_gone(self) -> None:
        """The peer went away: nothing more is sent."""
        self.peer_gone = True
        self.close(1001, "gone")

    # -- the writer ----------------------------------------------------------------------

    def attach(self, nursery: trio.Nursery, send_texts: Callable[[list[str]], Awaitable[None]]) -> None:
        """Start writing through `send_texts` (several messages, in order, at once), with writer
        tasks in `nursery`."""
        self._nursery = nursery
        self._send_texts = send_texts
        self._start_writer()

    def _start_writer(self) -> None:
        if not self._writing and self._nursery is not None and self._buffer:
            self._writing = True
            self._nursery.start_soon(self._write)

    async def _write(self) -> None:
        assert self._send_texts is not None
        try:
            # After `close` what was buffered before still goes out (the error that explains
            # a close goes first); a slow consumer is not waited for. Everything buffered
            # (up to WRITE_BATCH_BYTES) is written at once: one system call, not one a frame.
            buffer = self._buffer
            while buffer and self.close_code != CLOSE_SLOW_CONSUMER:
                texts = [buffer.popleft().decode()]
                size = len(texts[0])
                while buffer and size < WRITE_BATCH_BYTES:
                    text = buffer.popleft().decode()
                    size += len(text)
                    texts.append(text)
                await self._send_texts(texts)
        finally:
            self._writing = False
            if self._flushed is not None:
                self._flushed.set()

    async def flushed(self) -> None:
        """Wait until the writer has sent what is buffered (or gave up on a slow consumer)."""
        while self._writing:
            self._flushed = trio.Event()
            await self._flushed.wait()


def _error(code: str, message: str, *, ref: str | None = None, retryable: bool = False) -> bytes:
    return encode_frame(ServerError(code=code, message=message, retryable=retryable, ref=ref))


def _client_id_of(raw: str) -> str | None:
    """The client_id of a frame that is refused unread (rate limit), when one is easy to see."""
    try:
        value = orjson.loads(raw).get("client_id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) and 0 < len(value) <= MAX_CLIENT_ID_CHARS else None


def _uuid(value: str | None) -> UUID | None:
    if value is None:
        return None
    try:
        return UUID(value)
    except ValueError:
        return None


class SupervisorFeeds:
    """Connections of supervisors and admins, by account, fed with live statistics."""

    def __init__(self) -> None:
        self.by_account: dict[UUID, set[Connection]] = defaultdict(set)

    def wants(self, account_id: UUID) -> bool:
        return bool(self.by_account.get(account_id))

    def publish(self, account_id: UUID, frame: LiveStats) -> None:
        connections = self.by_account.get(account_id)
        if not connections:
            return
        data = encode_frame(frame)
        for connection in list(connections):
            if not connection.send(data):
                connections.discard(connection)


def register_websockets(app: QuartTrio, node: Node) -> None:
    config = node.config
    # served in front of Quart, straight from hypercorn's ASGI interface (see websocket_asgi)
    routes = WebsocketRoutes(app.asgi_app)
    app.asgi_app = routes  # type: ignore[method-assign]
    limits = Limits(
        max_frame_bytes=config.max_frame_bytes,
        max_text_chars=MAX_TEXT_CHARS,
        max_client_id_chars=MAX_CLIENT_ID_CHARS,
        heartbeat_seconds=config.heartbeat_seconds,
    )
    idle_seconds = config.heartbeat_seconds * 1.5

    def welcome(role: str, user_id: UUID, display_name: str | None) -> bytes:
        return encode_frame(
            Welcome(
                protocol_version=1,
                session_id=f"ws-{secrets.token_hex(8)}",
                role=role,  # type: ignore[arg-type]
                user_id=str(user_id),
                server_time=utc_timestamp(datetime.now(UTC)),
                limits=limits,
                display_name=display_name,
            )
        )

    async def refuse(reason: str) -> None:
        await websocket.accept()
        await websocket.close(CLOSE_POLICY, reason)

    staff_origins = {origin.strip().rstrip("/") for origin in config.staff_origins.split(",") if origin.strip()}
    widget_origins = {origin.strip().rstrip("/") for origin in config.widget_origins.split(",") if origin.strip()}

    connections_by_address: dict[str, int] = defaultdict(int)
    open_connections: set[Connection] = set()

    def going_away() -> None:
        for connection in list(open_connections):
            connection.close(CLOSE_GOING_AWAY, "server restarting: reconnect and resume")

    node.on_closing.append(going_away)

    def client_address() -> str:
        remote = websocket.scope.get("client") or ("unknown", 0)
        return str(remote[0])

    async def over_connection_limit() -> bool:
        if connections_by_address[client_address()] >= config.max_connections_per_address:
            await websocket.accept()
            await websocket.close(CLOSE_TRY_AGAIN_LATER, "too many connections from this address")
            return True
        return False

    def origin_allowed(allowed: set[str]) -> bool:
        """Browsers send Origin; other clients (apps, the load test) do not and are let through.
        kefu's own pages (same scheme, host and port) are always allowed."""
        origin = websocket.headers.get("Origin")
        if origin is None or "*" in allowed:
            return True
        origin = origin.rstrip("/")
        own = f"{'https' if websocket.scheme in ('wss', 'https') else 'http'}://{websocket.headers.get('Host', '')}"
        return origin == own or origin in allowed

    async def pump(connection: Connection, on_frame: Any, decode: Any) -> None:
        """Run one connection (counted against its address's limit) until it closes."""
        address = client_address()
        connections_by_address[address] += 1
        try:
            await _pump(connection, on_frame, decode)
        finally:
            connections_by_address[address] -= 1
            if connections_by_address[address] <= 0:
                del connections_by_address[address]

    def reading_ended(connection: Connection) -> None:
        """The reader stopped: when it was its deadline that cancelled it (not `close`), the
        client was silent too long."""
        if connection.reading.cancelled_caught and not connection.closed:
            connection.close(CLOSE_IDLE, "idle timeout: send a ping at least every heartbeat_seconds")

    async def _pump(connection: Connection, on_frame: Any, decode: Any) -> None:
        """Run one connection: the reader feeds `on_frame`; writers drain the send buffer."""

        async def reader() -> None:
            invalid = 0
            # Token bucket: `max_frames_per_second` on average, bursts of twice as many.
            rate = float(config.max_frames_per_second)
            tokens = burst = 2 * rate
            refused = 0.0  # unforgiven `rate_limited` answers; forgiven at `burst` per second
            max_refused = max(MIN_REFUSED_IN_A_ROW, 2 * burst)
            refilled = trio.current_time()
            # The idle timeout is the deadline of `connection.reading` (the scope the reader runs
            # in) while it waits for a frame, not a scope of its own per wait: memory each idle
            # socket would hold. `reading_ended` tells it from `close`.
            reading = connection.reading
            while True:
                reading.deadline = trio.current_time() + idle_seconds
                raw = await websocket.receive()
                reading.deadline = math.inf
                if isinstance(raw, bytes):
                    connection.close(1003, "binary messages are not accepted")
                    return
                now = trio.current_time()
                tokens = min(burst, tokens + (now - refilled) * rate)
                refused = max(0.0, refused - (now - refilled) * burst)
                refilled = now
                if tokens < 1:
                    refused += 1
                    ref = _client_id_of(raw)
                    if refused > max_refused:
                        connection.send(_error("flooding", "rate limit ignored: closing", ref=ref))
                        connection.close(CLOSE_FLOODING, "rate limit ignored")
                        return
                    connection.send(_error("rate_limited", "too many frames: slow down", ref=ref, retryable=True))
                    continue
                tokens -= 1
                try:
                    frame = decode(raw, max_bytes=config.max_frame_bytes)
                except RemoteProtocolError as error:
                    connection.send(_error(error.code, str(error), ref=error.ref))
                    if error.close_code is not None:
                        connection.close(error.close_code, error.code)
                        return
                    invalid += 1
                    if invalid >= MAX_INVALID_FRAMES:
                        connection.close(CLOSE_TOO_MANY_INVALID, "too many invalid frames")
                        return
                    continue
                if isinstance(frame, Ping):
                    connection.send(encode_frame(Pong(frame.nonce)))
                    continue
                await on_frame(frame)

        # This task reads; a writer task runs only while there is something to send (every
        # task is memory an idle socket would hold). Shutdown and `close` reach the reader
        # through `connection.reading`.
        async with trio.open_nursery() as nursery:
            connection.attach(nursery, websocket.send_many)
            open_connections.add(connection)
            try:
                if node.closing.is_set():
                    connection.close(CLOSE_GOING_AWAY, "server restarting: reconnect and resume")
                with connection.reading:
                    await reader()
                reading_ended(connection)
            finally:
                open_connections.discard(connection)
            connection.close(1000, "")
            with trio.move_on_after(2):
                await connection.flushed()
            nursery.cancel_scope.cancel()
        if connection.close_code is not None and not connection.peer_gone:
            with trio.move_on_after(2), trio.CancelScope(shield=True):
                await websocket.close(connection.close_code, connection.close_reason)

    async def session_for(connection: Connection, conversation_id: UUID) -> Any:
        """The running session of a conversation the connection's account owns, or None."""
        center = node.center
        handle = center.session(conversation_id)
        if handle is not None:
            return handle if handle.account_id == connection.account_id else None
        row = await center.storage.conversation(conversation_id)
        if row is None or row.account_id != connection.account_id:
            return None
        return await center.ensure_session(row.account_id, conversation_id)

    async def to_session(connection: Connection, frame: Any, message: Any) -> None:
        conversation_id = _uuid(frame.conversation_id)
        handle = None
        if conversation_id is not None:
            try:
                handle = await session_for(connection, conversation_id)
            except DatabaseUnavailable:
                connection.send(
                    _error(
                        "unavailable", "storage is unavailable", ref=getattr(frame, "client_id", None), retryable=True
                    )
                )
                return
        if handle is None:
            if conversation_id is not None:
                await node.center.audit_denial(
                    connection.account_id, connection.user_role, connection.user_id, frame.TYPE, conversation_id
                )
            connection.send(_error("not_found", "no such conversation", ref=getattr(frame, "client_id", None)))
            return
        await handle.ref.tell(message)

    # -- customers -------------------------------------------------------------------------

    @routes.route("/ws/customer")
    async def customer_socket() -> None:
        if await over_connection_limit():
            return
        if not origin_allowed(widget_origins):
            await refuse("this site may not open the chat (widget_origins)")
            return
        token = websocket.args.get("token", "")
        storage = node.conversations
        try:
            visitor = await authenticate_visitor(node.database, token, node.privacy, ttl_days=config.visitor_ttl_days)
            rows = await storage.open_conversations_of_customer(visitor.customer_id) if visitor is not None else []
        except DatabaseUnavailable:
            await websocket.accept()
            await websocket.close(CLOSE_TRY_AGAIN_LATER, "storage is unavailable: try again later")
            return
        if visitor is None:
            await refuse("a valid visitor token is required")
            return
        # What the socket says first is buffered before it opens, and refusals are watched from
        # then: a client that sends at once is answered after `welcome` (rule 4).
        connection = Connection("customer", visitor.customer_id, visitor.account_id, config.send_buffer_frames)
        connection.send(welcome("customer", visitor.customer_id, visitor.display_name))
        connection.send(
            encode_frame(
                ConversationList(
                    tuple(
                        ConversationSummary(
                            conversation_id=str(row["id"]),
                            state=row["status"],
                            last_seq=row["last_seq"],
                            customer_id=str(row["customer_id"]),
                            channel=row["channel"],
                            queue_id=str(row["queue_id"]) if row["queue_id"] else None,
                            agent_id=str(row["agent_id"]) if row["agent_id"] else None,
                            topic=row["topic"],
                        )
                        for row in rows
                    )
                )
            )
        )
        websocket.report_refusals(connection.refused)
        await websocket.accept()

        async def on_frame(frame: Any) -> None:
            if isinstance(frame, StartConversation):
                department = None
                if frame.department is not None:
                    department = _uuid(frame.department)
                    if department is None:
                        connection.send(_error("not_found", "no such department", ref=frame.client_id))
                        return
                try:
                    conversation_id = await storage.open_conversation(
                        account_id=visitor.account_id,
                        customer_id=visitor.customer_id,
                        channel="webchat",
                        start_client_id=frame.client_id,
                        department_id=department,
                        topic=frame.topic,
                    )
                except LookupError:
                    connection.send(_error("not_found", "no such department", ref=frame.client_id))
                    return
                except DatabaseUnavailable:
                    connection.send(
                        _error("unavailable", "storage is unavailable", ref=frame.client_id, retryable=True)
                    )
                    return
                handle = await node.center.ensure_session(visitor.account_id, conversation_id)
                await handle.ref.tell(m.Begin(connection, frame.client_id))
                return
            await to_session(connection, frame, m.CustomerInput(connection, frame))

        try:
            await pump(connection, on_frame, decode_customer_frame)
        finally:
            connection.mark_gone()

    # -- agents ----------------------------------------------------------------------------

    @routes.route("/ws/agent")
    async def agent_socket() -> None:
        if await over_connection_limit():
            return
        if not origin_allowed(staff_origins):
            await refuse("the workbench may only be opened from kefu's own pages (staff_origins)")
            return
        token = websocket.args.get("token", "")
        try:
            user = await auth.authenticate(node.database, token)
            sees_contact_details = user is not None and privacy.sees_unmasked(user.permissions)
        except DatabaseUnavailable:
            await websocket.accept()
            await websocket.close(CLOSE_TRY_AGAIN_LATER, "storage is unavailable: try again later")
            return
        if user is None:
            await refuse("a valid session token is required")
            return
        center = node.center
        try:
            agent: AgentHandle = await center.ensure_agent(user.account_id, user.user_id)
        except Exception:
            # its actor could not start: it reads the agent's profile and held conversations
            log.warning("agent actor could not start", exc_info=True, extra={"agent_id": str(user.user_id)})
            await websocket.accept()
            await websocket.close(CLOSE_TRY_AGAIN_LATER, "storage is unavailable: try again later")
            return
        connection = Connection("agent", user.user_id, user.account_id, config.send_buffer_frames)
        connection.user_role = user.role
        connection.sees_contact_details = sees_contact_details
        connection.send(welcome("agent", user.user_id, user.display_name))
        websocket.report_refusals(connection.refused)  # as for customers: `welcome` goes first
        await websocket.accept()
        await agent.ref.tell(m.Connected(connection, auth.token_hash(token)))
        watching = user.role in ("supervisor", "admin")
        if watching:
            node.supervisor_feeds.by_account[user.account_id].add(connection)

        async def on_frame(frame: Any) -> None:
            nonlocal agent
            if isinstance(frame, SetStatus):
                agent = await center.ensure_agent(user.account_id, user.user_id)
                await agent.ref.tell(m.ChangeStatus(frame.status, frame.reason, connection))
            elif isinstance(frame, AcceptOffer):
                await center.tell_dispatcher(m.AcceptOffer(user.account_id, user.user_id, frame.offer_id, connection))
            elif isinstance(frame, DeclineOffer):
                await center.tell_dispatcher(m.DeclineOffer(user.account_id, user.user_id, frame.offer_id, connection))
            else:
                await to_session(
                    connection, frame, m.AgentInput(connection, user.user_id, user.display_name, user.role, frame)
                )

        async def expire() -> None:
            # The session token's end ends the socket too; sign-out, disabling and a role change
            # close it earlier through the Agent actor.
            await trio.sleep(max(0.0, (user.expires_at - datetime.now(UTC)).total_seconds()))
            connection.send(_error("session_expired", "your session expired: sign in again"))
            connection.close(CLOSE_POLICY, "session expired")

        try:
            async with trio.open_nursery() as guard:
                guard.start_soon(expire)
                await pump(connection, on_frame, decode_agent_frame)
                guard.cancel_scope.cancel()
        finally:
            connection.mark_gone()
            if watching:
                node.supervisor_feeds.by_account[user.account_id].discard(connection)
            handle = center.agent(user.user_id)
            if handle is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await handle.ref.tell(m.Disconnected(connection))
