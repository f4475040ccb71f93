"""The websocket edge: `/ws/customer` and `/ws/agent`.

Handlers translate between the wire and the actors and decide nothing: each connection is
authenticated on the handshake, gets `welcome`, and then every message goes through the
connection's `ConnectionPolicy` (`kefu.protocol.connection`: rate, invalid frames, heartbeat,
permissions), and each frame it lets through is handed to the actor that owns what it is about
(the conversation's CustomerSession, the Agent, or the dispatcher for offers). What goes back
to the client is put by the actors into the connection's bounded send buffer; one writer task
per connection drains it onto the socket.

Rules
-----
1. A missing or bad token closes the socket with 1008 before anything else is sent; an
   agent's socket is closed with 1008 when its session token expires (sign-out, disabling
   and a role change close it through the Agent actor).
2. What the policy refuses is answered with its `error` frame (and, when it decides so, a
   close code); it never reaches an actor. A frame refused for a permission the user lacks
   (`Forbidden`) is written to the audit log as `forbidden` first, with the frame type as
   `attempted` (docs/security.md, "Permissions and roles").
3. A connection whose send buffer is full is closed with 4001 (slow consumer); the
   client reconnects and resumes. Nobody else waits for it.
4. What the websocket layer refuses before the protocol sees it goes to the policy too: a text
   message that is not UTF-8 gets `malformed_json` and 1007, one of more than `max_frame_bytes`
   characters `oversized` and 1009; a framing error closes with 1002. Whenever it arrives,
   `welcome` goes first (it is buffered before the socket opens).
5. The idle timeout (4002) is the deadline of the scope the reader waits in, set from the
   policy's `listen`; when it fires, the policy's `tick` gives the close.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Generic, Literal, TypeVar, cast
from uuid import UUID

import trio

from kefu.actors import messages as m
from kefu.actors.history import uuid_or_none
from kefu.actors.ports import Outbox, SessionHandle
from kefu.protocol.agent import AGENT_FRAME_PERMISSIONS, AcceptOffer, AddNote, AgentFrame, DeclineOffer, SetStatus
from kefu.protocol.agent import Transfer as TransferFrame
from kefu.protocol.codec import decode_agent_frame, decode_customer_frame, encode_error, encode_frame
from kefu.protocol.common import MAX_CLIENT_ID_CHARS, MAX_TEXT_CHARS, MarkRead, Ping, Resume, SendMessage, SetTyping
from kefu.protocol.connection import (
    Close,
    ConnectionLimits,
    ConnectionPolicy,
    Forbidden,
    FrameDecoder,
)
from kefu.protocol.customer import CloseConversation, CustomerFrame, StartConversation
from kefu.protocol.errors import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    CLOSE_SLOW_CONSUMER,
    CLOSE_TRY_AGAIN_LATER,
)
from kefu.protocol.permissions import Permission
from kefu.protocol.server import (
    Ack,
    ConversationList,
    ConversationSummary,
    Limits,
    LiveStats,
    Pong,
    ServerError,
    Welcome,
    utc_timestamp,
)
from kefu.protocol.throttle import Rate
from kefu.server import audit, auth
from kefu.server.database import DatabaseUnavailable
from kefu.server.webchat import Visitor, authenticate_visitor
from kefu.server.websocket_asgi import ASGIApp, WebsocketRoutes, websocket

if TYPE_CHECKING:
    import asyncpg
    from quart_trio import QuartTrio

    from kefu.server.node import Node

log = logging.getLogger("kefu.sockets")

WRITE_BATCH_BYTES = 64 * 1024
"""The writer takes buffered frames up to about this many bytes into one write."""
FLUSH_SECONDS = 2
"""A closing connection's writer and close frame get this long; a slow consumer is not waited for."""
DISCONNECT_SECONDS = 5
"""An agent's socket waits this long for room in its Agent actor's mailbox to say it is gone."""
BURST_SECONDS = 2.0
"""A connection may send `max_frames_per_second` frames on average and bursts of this many seconds' worth."""
GOING_AWAY = "server restarting: reconnect and resume"
STORAGE_UNAVAILABLE = "storage is unavailable: try again later"
SESSION_EXPIRED = Close(
    CLOSE_POLICY_VIOLATION,
    "session expired",
    ServerError(code="session_expired", message="your session expired: sign in again", retryable=False),
)

ParticipantRole = Literal["customer", "agent"]
ConversationFrame = SendMessage | AddNote | TransferFrame | CloseConversation | SetTyping | MarkRead | Resume
"""The frames a conversation's CustomerSession handles."""
F = TypeVar("F")


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
    )

    def __init__(
        self,
        role: ParticipantRole,
        user_id: UUID,
        account_id: UUID,
        capacity: int,
        *,
        sees_contact_details: bool | None = None,
    ) -> None:
        self.role: str = role
        """Which side of a conversation the socket is on: "customer" or "agent"."""
        self.user_id = user_id
        self.account_id = account_id
        self.sees_contact_details = role == "customer" if sees_contact_details is None else sees_contact_details
        """Texts show phone numbers and e-mail addresses as written: a customer's; an agent's from
        the permission at the handshake. Once the Agent actor has the socket, it alone changes
        this (`ContactDetailsVisibility`)."""
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

    def acked(self, ack: Ack) -> None:
        self.send(encode_frame(ack))

    def refused(self, error: ServerError) -> None:
        self.send(encode_frame(error))

    def close(self, code: int, reason: str) -> None:
        if self._closed:
            return
        self._closed = True
        self.close_code = code
        self.close_reason = reason
        self.reading.cancel()

    def apply(self, close: Close) -> None:
        """Do what a policy's `Close` says: its error first, then the close. Never waits."""
        if close.error is not None:
            self.send(encode_frame(close.error))
        self.close(close.code, close.reason)

    def mark_gone(self) -> None:
        """The peer went away: nothing more is sent."""
        self.peer_gone = True
        self.close(CLOSE_GOING_AWAY, "gone")

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


def _origins(setting: str) -> set[str]:
    return {origin.strip().rstrip("/") for origin in setting.split(",") if origin.strip()}


def _client_address() -> str:
    remote = websocket.scope.get("client") or ("unknown", 0)
    return str(remote[0])


def _origin_allowed(allowed: set[str]) -> bool:
    """Browsers send Origin; other clients (apps, the load test) do not and are let through.
    kefu's own pages (same scheme, host and port) are always allowed."""
    origin = websocket.headers.get("Origin")
    if origin is None or "*" in allowed:
        return True
    origin = origin.rstrip("/")
    own = f"{'https' if websocket.scheme in ('wss', 'https') else 'http'}://{websocket.headers.get('Host', '')}"
    return origin == own or origin in allowed


async def _close_at_once(code: int, reason: str) -> None:
    """Refuse a socket before anything is sent on it (rule 1)."""
    await websocket.accept()
    await websocket.close(code, reason)


class SupervisorFeeds:
    """Connections of users who watch the live feed (`conversations.monitor`), by account, fed
    with live statistics: the aggregator's `LiveFeeds`.

    Written only by the aggregator, from its task (it owns the watchers, see
    `kefu.actors.aggregator`, rule 9): the edge asks it with `WatchStarted` and `WatchEnded`.
    The node keeps this object, so a restarted aggregator still knows who watches."""

    def __init__(self) -> None:
        self.by_account: dict[UUID, set[Outbox]] = {}
        """Only accounts somebody watches: an account's last watcher takes its set away."""

    def watch(self, account_id: UUID, connection: Outbox) -> None:
        self.by_account.setdefault(account_id, set()).add(connection)

    def unwatch(self, account_id: UUID, connection: Outbox) -> None:
        connections = self.by_account.get(account_id)
        if connections is not None:
            connections.discard(connection)
            if not connections:
                del self.by_account[account_id]

    def wants(self, account_id: UUID) -> bool:
        return account_id in self.by_account

    def publish(self, account_id: UUID, frame: LiveStats) -> None:
        connections = self.by_account.get(account_id)
        if not connections:
            return
        data = encode_frame(frame)
        for connection in list(connections):
            if not connection.send(data):
                self.unwatch(account_id, connection)  # closed, or too slow: it is being closed


class Socket(Generic[F]):
    """One open websocket: its send buffer, its policy, and where the frames it lets through go."""

    __slots__ = ("connection", "edge", "policy")

    def __init__(self, edge: Edge, connection: Connection, policy: ConnectionPolicy[F]) -> None:
        self.edge = edge
        self.connection = connection
        self.policy = policy

    def refused(self, code: int, reason: str) -> None:
        """The websocket layer refused what the client sent (rule 4). Called from hypercorn's
        reader; never waits."""
        self.connection.apply(self.policy.refused(code, reason))

    async def deliver(self, frame: F) -> None:
        """Hand a frame the policy let through to the actor that owns what it is about."""
        raise NotImplementedError

    async def forbid(self, refusal: Forbidden) -> None:
        """A frame the user lacks the permission for: audited (by sockets with a user), then
        answered `forbidden`."""
        self.connection.send(encode_frame(refusal.answer))


class Edge:
    """What the sockets of one node share: limits, allowed origins and the open connections."""

    def __init__(self, node: Node) -> None:
        config = node.config
        self.node = node
        self.limits = Limits(
            max_frame_bytes=config.max_frame_bytes,
            max_text_chars=MAX_TEXT_CHARS,
            max_client_id_chars=MAX_CLIENT_ID_CHARS,
            heartbeat_seconds=config.heartbeat_seconds,
        )
        """What `welcome` tells clients."""
        rate = Rate(burst=round(BURST_SECONDS * config.max_frames_per_second), per_seconds=BURST_SECONDS)
        self.connection_limits = ConnectionLimits(config.max_frame_bytes, rate, config.heartbeat_seconds)
        self.staff_origins = _origins(config.staff_origins)
        self.widget_origins = _origins(config.widget_origins)
        self.connections_by_address: defaultdict[str, int] = defaultdict(int)
        self.open_connections: set[Connection] = set()

    def going_away(self) -> None:
        for connection in list(self.open_connections):
            connection.close(CLOSE_GOING_AWAY, GOING_AWAY)

    def welcome(self, role: ParticipantRole, user_id: UUID, display_name: str | None) -> bytes:
        return encode_frame(
            Welcome(
                protocol_version=1,
                session_id=f"ws-{secrets.token_hex(8)}",
                role=role,
                user_id=str(user_id),
                server_time=utc_timestamp(datetime.now(UTC)),
                limits=self.limits,
                display_name=display_name,
            )
        )

    def policy(self, decode: FrameDecoder[F], permissions: frozenset[Permission] | None = None) -> ConnectionPolicy[F]:
        """A new connection's policy; with `permissions`, agent frames are checked against them."""
        if permissions is None:
            return ConnectionPolicy(decode, self.connection_limits, trio.current_time())
        return ConnectionPolicy(
            decode,
            self.connection_limits,
            trio.current_time(),
            frame_permissions=AGENT_FRAME_PERMISSIONS,
            permissions=permissions,
        )

    async def admit(self, allowed_origins: set[str], refusal: str) -> bool:
        """Whether a new socket may go on: under its address's limit (else 1013) and from an
        allowed origin (else 1008)."""
        if self.connections_by_address[_client_address()] >= self.node.config.max_connections_per_address:
            await _close_at_once(CLOSE_TRY_AGAIN_LATER, "too many connections from this address")
            return False
        if not _origin_allowed(allowed_origins):
            await _close_at_once(CLOSE_POLICY_VIOLATION, refusal)
            return False
        return True

    # -- running a connection ---------------------------------------------------------------

    async def serve(self, socket: Socket[F]) -> None:
        """Run one connection (counted against its address's limit) until it closes."""
        address = _client_address()
        self.connections_by_address[address] += 1
        try:
            await self._run(socket)
        finally:
            self.connections_by_address[address] -= 1
            if self.connections_by_address[address] <= 0:
                del self.connections_by_address[address]

    async def _run(self, socket: Socket[F]) -> None:
        """The reader feeds the policy and the actors; writers drain the send buffer."""
        connection = socket.connection
        # This task reads; a writer task runs only while there is something to send (every
        # task is memory an idle socket would hold). Shutdown and `close` reach the reader
        # through `connection.reading`.
        async with trio.open_nursery() as nursery:
            connection.attach(nursery, websocket.send_many)
            self.open_connections.add(connection)
            try:
                if self.node.closing.is_set():
                    connection.close(CLOSE_GOING_AWAY, GOING_AWAY)
                with connection.reading:
                    await _read(socket)
                _reading_ended(socket)
            finally:
                self.open_connections.discard(connection)
            connection.close(CLOSE_NORMAL, "")
            with trio.move_on_after(FLUSH_SECONDS):
                await connection.flushed()
            nursery.cancel_scope.cancel()
        if connection.close_code is not None and not connection.peer_gone:
            with trio.move_on_after(FLUSH_SECONDS), trio.CancelScope(shield=True):
                await websocket.close(connection.close_code, connection.close_reason)

    # -- conversations ------------------------------------------------------------------------

    async def _session_for(self, connection: Connection, conversation_id: UUID) -> SessionHandle | None:
        """The running session of a conversation the connection's account owns, or None."""
        center = self.node.center
        handle = center.session(conversation_id)
        if handle is not None:
            return handle if handle.account_id == connection.account_id else None
        row = await center.storage.conversation(conversation_id)
        if row is None or row.account_id != connection.account_id:
            return None
        return await center.ensure_session(row.account_id, conversation_id)

    async def to_session(
        self,
        connection: Connection,
        frame: ConversationFrame,
        message: m.CustomerInput | m.AgentInput,
        actor_role: str,
    ) -> None:
        """Hand `message` to the session of the frame's conversation; `not_found` (audited as
        a refusal of `actor_role`) when the connection's account has no such conversation."""
        conversation_id = uuid_or_none(frame.conversation_id)
        ref = getattr(frame, "client_id", None)
        handle = None
        if conversation_id is not None:
            try:
                handle = await self._session_for(connection, conversation_id)
            except DatabaseUnavailable:
                connection.send(encode_error("unavailable", "storage is unavailable", ref=ref, retryable=True))
                return
        if handle is None:
            if conversation_id is not None:
                await self.node.center.audit_denial(
                    connection.account_id, actor_role, connection.user_id, frame.TYPE, conversation_id
                )
            connection.send(encode_error("not_found", "no such conversation", ref=ref))
            return
        await handle.ref.tell(message)

    # -- the two routes ------------------------------------------------------------------------

    async def customer_socket(self) -> None:
        if not await self.admit(self.widget_origins, "this site may not open the chat (widget_origins)"):
            return
        socket = await CustomerSocket.open(self)
        if socket is None:
            return
        try:
            await self.serve(socket)
        finally:
            socket.connection.mark_gone()

    async def agent_socket(self) -> None:
        if not await self.admit(
            self.staff_origins, "the workbench may only be opened from kefu's own pages (staff_origins)"
        ):
            return
        socket = await AgentSocket.open(self)
        if socket is not None:
            await socket.serve()


async def _read(socket: Socket[F]) -> None:
    """Read until the policy or `close` ends the connection: each message goes through the
    policy, and what it lets through to the actors."""
    connection, policy, deliver = socket.connection, socket.policy, socket.deliver
    # The idle timeout is the deadline of `connection.reading` (the scope the reader runs in)
    # while it waits for a message, not a scope of its own per wait: memory each idle socket
    # would hold. `_reading_ended` tells it from `close` (rule 5).
    reading = connection.reading
    receive = websocket.receive
    while True:
        reading.deadline = policy.listen(trio.current_time())
        message = await receive()
        reading.deadline = math.inf
        decision = policy.receive(message, trio.current_time())
        match decision:
            case Close():
                connection.apply(decision)
                return
            case ServerError() | Pong():
                connection.send(encode_frame(decision))
            case Forbidden():
                await socket.forbid(decision)
            case _:
                await deliver(decision)


def _reading_ended(socket: Socket[F]) -> None:
    """The reader stopped: when it was its deadline that cancelled it (not `close`), the
    client was silent too long (rule 5)."""
    connection = socket.connection
    if connection.reading.cancelled_caught and not connection.closed:
        close = socket.policy.tick(trio.current_time())
        assert close is not None, "the reader's deadline is the policy's"
        connection.apply(close)


# -- customers -------------------------------------------------------------------------------


def _conversation_list(rows: list[asyncpg.Record]) -> bytes:
    return encode_frame(
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


class CustomerSocket(Socket[CustomerFrame]):
    """A visitor's `/ws/customer`: its conversations' frames go to their sessions."""

    __slots__ = ("visitor",)

    def __init__(self, edge: Edge, connection: Connection, visitor: Visitor) -> None:
        super().__init__(edge, connection, edge.policy(decode_customer_frame))
        self.visitor = visitor

    @classmethod
    async def open(cls, edge: Edge) -> CustomerSocket | None:
        """Authenticate the visitor and open the socket; None when it was refused (and closed)."""
        node = edge.node
        try:
            visitor = await authenticate_visitor(
                node.database, websocket.args.get("token", ""), node.privacy, ttl_days=node.config.visitor_ttl_days
            )
            conversations = node.conversations
            rows = [] if visitor is None else await conversations.open_conversations_of_customer(visitor.customer_id)
        except DatabaseUnavailable:
            await _close_at_once(CLOSE_TRY_AGAIN_LATER, STORAGE_UNAVAILABLE)
            return None
        if visitor is None:
            await _close_at_once(CLOSE_POLICY_VIOLATION, "a valid visitor token is required")
            return None
        # What the socket says first is buffered before it opens, and refusals are watched from
        # then: a client that sends at once is answered after `welcome` (rule 4).
        connection = Connection("customer", visitor.customer_id, visitor.account_id, node.config.send_buffer_frames)
        socket = cls(edge, connection, visitor)
        connection.send(edge.welcome("customer", visitor.customer_id, visitor.display_name))
        connection.send(_conversation_list(rows))
        websocket.report_refusals(socket.refused)
        await websocket.accept()
        return socket

    async def deliver(self, frame: CustomerFrame) -> None:
        match frame:
            case StartConversation():
                await self._start(frame)
            case Ping():
                pass  # answered by the policy
            case _:
                connection = self.connection
                await self.edge.to_session(connection, frame, m.CustomerInput(connection, frame), "customer")

    async def _start(self, frame: StartConversation) -> None:
        connection, visitor, node = self.connection, self.visitor, self.edge.node
        department = None
        if frame.department is not None:
            department = uuid_or_none(frame.department)
            if department is None:
                connection.send(encode_error("not_found", "no such department", ref=frame.client_id))
                return
        try:
            conversation_id = await node.conversations.open_conversation(
                account_id=visitor.account_id,
                customer_id=visitor.customer_id,
                channel="webchat",
                start_client_id=frame.client_id,
                department_id=department,
                topic=frame.topic,
            )
        except LookupError:
            connection.send(encode_error("not_found", "no such department", ref=frame.client_id))
            return
        except DatabaseUnavailable:
            connection.send(encode_error("unavailable", "storage is unavailable", ref=frame.client_id, retryable=True))
            return
        handle = await node.center.ensure_session(visitor.account_id, conversation_id)
        await handle.ref.tell(m.Begin(connection, frame.client_id))


# -- agents ------------------------------------------------------------------------------------


class AgentSocket(Socket[AgentFrame]):
    """A signed-in user's `/ws/agent`: status and offers go to the Agent actor and the
    dispatcher, conversation frames to their sessions; each frame is checked against the
    user's permissions by the policy."""

    __slots__ = ("user",)

    def __init__(self, edge: Edge, connection: Connection, user: auth.SignedInUser) -> None:
        super().__init__(edge, connection, edge.policy(decode_agent_frame, user.permissions))
        self.user = user

    @classmethod
    async def open(cls, edge: Edge) -> AgentSocket | None:
        """Authenticate the user, start their Agent actor and open the socket; None when it
        was refused (and closed)."""
        node, token = edge.node, websocket.args.get("token", "")
        try:
            user = await auth.authenticate(node.database, token)
        except DatabaseUnavailable:
            await _close_at_once(CLOSE_TRY_AGAIN_LATER, STORAGE_UNAVAILABLE)
            return None
        if user is None:
            await _close_at_once(CLOSE_POLICY_VIOLATION, "a valid session token is required")
            return None
        try:
            agent = await node.center.ensure_agent(user.account_id, user.user_id)
        except Exception:
            # its actor could not start: it reads the agent's profile and held conversations
            log.warning("agent actor could not start", exc_info=True, extra={"agent_id": str(user.user_id)})
            await _close_at_once(CLOSE_TRY_AGAIN_LATER, STORAGE_UNAVAILABLE)
            return None
        connection = Connection(
            "agent",
            user.user_id,
            user.account_id,
            node.config.send_buffer_frames,
            sees_contact_details=user.may(Permission.CONTACTS_VIEW_UNMASKED),
        )
        socket = cls(edge, connection, user)
        connection.send(edge.welcome("agent", user.user_id, user.display_name))
        websocket.report_refusals(socket.refused)  # as for customers: `welcome` goes first
        await websocket.accept()
        await agent.ref.tell(m.Connected(connection, auth.token_hash(token)))
        return socket

    async def serve(self) -> None:
        """Run the socket until it closes or the user's session expires; then tell the Agent."""
        user, connection, node = self.user, self.connection, self.edge.node
        watching = user.may(Permission.CONVERSATIONS_MONITOR)
        if watching:
            await node.start_watching(user.account_id, connection)
        try:
            async with trio.open_nursery() as guard:
                guard.start_soon(self._expire)
                await self.edge.serve(self)
                guard.cancel_scope.cancel()
        finally:
            connection.mark_gone()
            if watching:
                await node.stop_watching(user.account_id, connection)
            handle = node.center.agent(user.user_id)
            if handle is not None:
                with trio.CancelScope(shield=True), trio.move_on_after(DISCONNECT_SECONDS):
                    await handle.ref.tell(m.Disconnected(connection))

    async def _expire(self) -> None:
        # The session token's end ends the socket too; sign-out, disabling and a role change
        # close it earlier through the Agent actor.
        await trio.sleep(max(0.0, (self.user.expires_at - datetime.now(UTC)).total_seconds()))
        self.connection.apply(SESSION_EXPIRED)

    async def forbid(self, refusal: Forbidden) -> None:
        # Audited before the answer, as REST's `refuse` does; the policy's rate limit bounds
        # how many rows one socket can write (each refused frame took a token).
        user = self.user
        target: tuple[str, UUID | None] = ("agent", user.user_id)  # a frame about no conversation: themself
        if refusal.conversation_id is not None:
            target = ("conversation", uuid_or_none(refusal.conversation_id))
        try:
            await audit.record(
                self.edge.node.database,
                user.account_id,
                user.role,
                user.user_id,
                "forbidden",
                *target,
                {"attempted": refusal.attempted},
            )
        except Exception:
            log.warning("could not write an audit record", extra={"action": "forbidden"}, exc_info=True)
        self.connection.send(encode_frame(refusal.answer))

    async def deliver(self, frame: AgentFrame) -> None:
        user, connection, center = self.user, self.connection, self.edge.node.center
        match frame:
            case SetStatus():
                agent = await center.ensure_agent(user.account_id, user.user_id)
                await agent.ref.tell(m.ChangeStatus(frame.status, frame.reason, connection))
            case AcceptOffer():
                await center.tell_dispatcher(m.AcceptOffer(user.account_id, user.user_id, frame.offer_id, connection))
            case DeclineOffer():
                await center.tell_dispatcher(m.DeclineOffer(user.account_id, user.user_id, frame.offer_id, connection))
            case Ping():
                pass  # answered by the policy
            case _:
                message = m.AgentInput(connection, user.user_id, user.display_name, user.role, user.permissions, frame)
                await self.edge.to_session(connection, frame, message, user.role)


def register_websockets(app: QuartTrio, node: Node) -> None:
    """Serve `/ws/customer` and `/ws/agent` in front of Quart, straight from hypercorn's ASGI
    interface (see websocket_asgi)."""
    routes = WebsocketRoutes(cast(ASGIApp, app.asgi_app))
    app.asgi_app = routes  # type: ignore[assignment, method-assign]
    edge = Edge(node)
    node.on_closing.append(edge.going_away)
    routes.route("/ws/customer")(edge.customer_socket)
    routes.route("/ws/agent")(edge.agent_socket)
