"""The policy of one websocket connection, sans-IO: what to do with each message a client sends.

Theory of operation
-------------------
The edge (``kefu.server.sockets``) owns the socket and the clock; a ``ConnectionPolicy`` owns
the rules. For every message the client sends, the edge calls ``receive(message, now)`` and
does what the one decision it gets back says:

- a client frame (a ``CustomerFrame`` on ``/ws/customer``, an ``AgentFrame`` on ``/ws/agent``):
  hand it to the actor that owns what it is about. The frame is its own decision, without a
  wrapper, so delivering a message costs no allocation more than decoding it did;
- an ``Answer`` (a ``ServerError`` or a ``Pong``): send it to the client; nothing else happens;
- a ``Forbidden``: write the refusal to the audit log (action ``forbidden``, what was attempted),
  then send its ``answer``; the frame is not delivered;
- a ``Close``: send its ``error`` first when it has one, then close the socket with ``code``.

When the edge starts waiting for the next message it calls ``listen(now)``, which gives the
time by which one must arrive; when that time has come with nothing, ``tick(now)`` gives the
``Close``. What the websocket layer refuses before a message exists (not UTF-8, too long) goes
to ``refused(code, reason)``.

Rules
-----
1. A binary message closes with 1003, without an ``error``.
2. Frames are metered before they are read, by a token bucket of the connection's ``Rate``
   (``kefu.protocol.throttle``; the edge gives ``max_frames_per_second`` on average and bursts
   of twice as many). A frame that finds the bucket empty is not decoded: it is answered with
   ``rate_limited`` (retryable; ``ref`` is its ``client_id`` when one is easy to see).
3. Refusals are forgiven at twice the rate per second. A client whose unforgiven refusals pass
   ``max(MIN_REFUSED_IN_A_ROW, 2 * burst)`` ignores ``rate_limited``: it gets ``flooding`` and
   the close 4004, since answering a flood frame by frame would cost the neighbours' CPU. A
   client that slows down after ``rate_limited`` never gets there; one that floods gets there
   however slowly the server drains it.
4. A frame the decoder refuses is answered with its error (``RemoteProtocolError``). One whose
   error carries a close code closes with it after the error; the ``MAX_INVALID_FRAMES``th one
   refused without a close code of its own gets its error, then the close 4003.
5. ``ping`` is answered with ``pong``.
6. A frame whose permission (``kefu.protocol.agent.AGENT_FRAME_PERMISSIONS``) the signed-in
   user lacks is a ``Forbidden`` (its answer the error ``forbidden``) and changes nothing: it is
   not delivered and does not count as invalid. It has passed the bucket of rule 2, so the audit
   rows one socket causes are bounded by its rate. A customer's socket checks nothing (a
   customer holds no permission).
7. Silence from ``listen(now)`` for 1.5 times ``heartbeat_seconds`` closes with 4002, without an
   ``error``: ``tick(now)`` at or after the deadline answers the ``Close``, before it ``None``.
8. What the websocket layer refuses closes with its code: a message that is not UTF-8 (1007)
   after ``malformed_json``, one longer than the limit (1009) after ``oversized``, anything
   else (a framing error, 1002) without an ``error``.
9. The first ``Close`` is the last decision: every later input is answered with the same
   ``Close`` and changes nothing.
10. Time is a number the caller passes (seconds, monotonic); nothing here reads a clock. Time
    that runs back counts as no time passing.

Each decision is O(1) work besides the decoding: a few float operations, one dict lookup.
The bucket is kept here in two floats rather than in a ``throttle.Throttle``: that is a table
keyed by client (an ordered dict with an entry per key), which would add about 650 bytes to
every idle socket and three times the work to every frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Generic, Protocol, TypeVar

import orjson

from .common import MAX_CLIENT_ID_CHARS, Ping
from .errors import (
    CLOSE_FLOODING,
    CLOSE_IDLE_TIMEOUT,
    CLOSE_INVALID_PAYLOAD,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_TOO_MANY_ERRORS,
    CLOSE_UNSUPPORTED_DATA,
    MALFORMED_JSON,
    OVERSIZED,
    RemoteProtocolError,
)
from .permissions import Permission
from .server import Pong, ServerError
from .throttle import Rate

__all__ = [
    "BINARY_CLOSE",
    "FORGIVEN_PER_TOKEN",
    "IDLE_CLOSE",
    "IDLE_HEARTBEATS",
    "MAX_INVALID_FRAMES",
    "MIN_REFUSED_IN_A_ROW",
    "Answer",
    "Close",
    "ConnectionLimits",
    "ConnectionPolicy",
    "Forbidden",
    "FrameDecoder",
    "client_id_of",
]

MAX_INVALID_FRAMES: Final = 50
"""A connection's 50th frame refused by the protocol (without a close code of its own) gets its
`error`, then the close 4003 (rule 4)."""
MIN_REFUSED_IN_A_ROW: Final = 100
"""Unforgiven `rate_limited` answers a connection may collect (at least: twice its burst when
that is more) before it is closed with 4004 (rule 3)."""
IDLE_HEARTBEATS: Final = 1.5
"""Silence of this many `heartbeat_seconds` closes with 4002 (rule 7)."""
FORGIVEN_PER_TOKEN: Final = 2.0
"""Refusals forgiven for each token the bucket regains: twice the rate (rule 3)."""

_ONE_TOKEN: Final = 1.0 - 1e-9
"""What a frame needs in the bucket, less floating-point slack: a fifth of a second at 5 frames
a second is one token, not a hair less."""

F = TypeVar("F")
F_co = TypeVar("F_co", covariant=True)


class FrameDecoder(Protocol[F_co]):
    """``decode_customer_frame`` or ``decode_agent_frame`` (``kefu.protocol.codec``): a frame,
    or ``RemoteProtocolError``."""

    def __call__(self, data: bytes | str, *, max_bytes: int) -> F_co: ...


@dataclass(frozen=True, slots=True)
class Close:
    """Close the socket with `code` and `reason`, after sending `error` when there is one."""

    code: int
    """The websocket close code (``kefu.protocol.errors``, ``CLOSE_*``)."""
    reason: str
    """The close frame's reason, for people and logs."""
    error: ServerError | None = None
    """The `error` frame that explains the close, sent before it."""


Answer = ServerError | Pong
"""A frame to send back to the client; the connection goes on."""


@dataclass(frozen=True, slots=True)
class Forbidden:
    """A frame the user lacks the permission for (rule 6): audit the refusal, then send `answer`.
    The connection goes on."""

    answer: ServerError
    """The `error` frame `forbidden` for the client."""
    attempted: str
    """The refused frame's type (``status.set``, ``message.send``, ...)."""
    conversation_id: str | None
    """The conversation the frame names, as the client wrote it; None when it names none."""


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The limits every connection of a node shares; the derived numbers are computed once."""

    max_frame_bytes: int
    """The longest frame the decoder reads (larger ones: `oversized`, 1009)."""
    rate: Rate
    """Frames admitted at once (`burst`) and over time (rule 2)."""
    heartbeat_seconds: float
    """How often clients are told to send at least a ping (rule 7)."""
    burst: float = field(init=False)
    tokens_per_second: float = field(init=False)
    forgiven_per_second: float = field(init=False)
    max_refused: float = field(init=False)
    idle_seconds: float = field(init=False)

    def __post_init__(self) -> None:
        if self.max_frame_bytes < 1 or not self.heartbeat_seconds > 0:
            raise ValueError(
                "connection limits need max_frame_bytes >= 1 and heartbeat_seconds > 0,"
                f" not {self.max_frame_bytes} and {self.heartbeat_seconds}"
            )
        derived = {
            "burst": float(self.rate.burst),
            "tokens_per_second": self.rate.tokens_per_second,
            "forgiven_per_second": FORGIVEN_PER_TOKEN * self.rate.tokens_per_second,
            "max_refused": float(max(MIN_REFUSED_IN_A_ROW, 2 * self.rate.burst)),
            "idle_seconds": IDLE_HEARTBEATS * self.heartbeat_seconds,
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)


BINARY_CLOSE: Final = Close(CLOSE_UNSUPPORTED_DATA, "binary messages are not accepted")
IDLE_CLOSE: Final = Close(CLOSE_IDLE_TIMEOUT, "idle timeout: send a ping at least every heartbeat_seconds")
_NOTHING_FORBIDDEN: Final[Mapping[type, str]] = MappingProxyType({})


def client_id_of(raw: str) -> str | None:
    """The client_id of a frame refused unread (rate limit), when one is easy to see."""
    try:
        value = orjson.loads(raw).get("client_id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return value if isinstance(value, str) and 0 < len(value) <= MAX_CLIENT_ID_CHARS else None


def _forbidden_frames(
    frame_permissions: Mapping[type, Permission | None], permissions: frozenset[Permission]
) -> Mapping[type, str]:
    """The frame types whose permission is not among `permissions`, each with its refusal."""
    forbidden = {
        frame_type: f"{getattr(frame_type, 'TYPE', frame_type.__name__)} needs the permission {needed.value}"
        for frame_type, needed in frame_permissions.items()
        if needed is not None and needed not in permissions
    }
    return forbidden or _NOTHING_FORBIDDEN


def _forbidden(frame: object, refusal: str) -> Forbidden:
    answer = ServerError(code="forbidden", message=refusal, retryable=False, ref=getattr(frame, "client_id", None))
    conversation_id = getattr(frame, "conversation_id", None)
    return Forbidden(
        answer,
        getattr(frame, "TYPE", type(frame).__name__),
        conversation_id if isinstance(conversation_id, str) else None,
    )


class ConnectionPolicy(Generic[F]):
    """The rules of one connection; see the module's theory of operation and rules."""

    __slots__ = (
        "_closed",
        "_deadline",
        "_decode",
        "_forbidden",
        "_invalid",
        "_refilled",
        "_refused",
        "_tokens",
        "limits",
    )

    def __init__(
        self,
        decode: FrameDecoder[F],
        limits: ConnectionLimits,
        now: float,
        *,
        frame_permissions: Mapping[type, Permission | None] | None = None,
        permissions: frozenset[Permission] = frozenset(),
    ) -> None:
        """`frame_permissions` maps each frame type to the one permission it needs (rule 6);
        `permissions` are the signed-in user's. Without a table nothing is checked."""
        self.limits = limits
        self._decode = decode
        self._forbidden = (
            _NOTHING_FORBIDDEN if frame_permissions is None else _forbidden_frames(frame_permissions, permissions)
        )
        self._tokens = limits.burst
        self._refused = 0.0
        self._refilled = now
        self._invalid = 0
        self._deadline = now + limits.idle_seconds
        self._closed: Close | None = None

    @property
    def closed(self) -> Close | None:
        """The decision that closed the connection (rule 9), or None while it is open."""
        return self._closed

    @property
    def deadline(self) -> float:
        """The time by which the next message must arrive (rule 7)."""
        return self._deadline

    def receive(self, message: str | bytes, now: float) -> F | Answer | Forbidden | Close:
        """What to do with one message the client sent at `now` (rules 1-6, 9)."""
        if self._closed is not None:
            return self._closed
        if type(message) is not str:
            return self._close(BINARY_CLOSE)
        # The bucket (rules 2 and 3), written out here: this runs for every frame.
        limits = self.limits
        elapsed = now - self._refilled
        if elapsed > 0:
            tokens = self._tokens + elapsed * limits.tokens_per_second
            self._tokens = tokens if tokens < limits.burst else limits.burst
            if self._refused:
                self._refused = max(0.0, self._refused - elapsed * limits.forgiven_per_second)
            self._refilled = now
        if self._tokens < _ONE_TOKEN:
            return self._rate_limited(message)
        self._tokens -= 1.0
        try:
            frame = self._decode(message, max_bytes=limits.max_frame_bytes)
        except RemoteProtocolError as error:
            return self._refuse(error)
        if isinstance(frame, Ping):
            return Pong(frame.nonce)
        refusal = self._forbidden.get(type(frame))
        if refusal is not None:
            return _forbidden(frame, refusal)
        return frame

    def listen(self, now: float) -> float:
        """The edge waits for the next message from `now`: the time by which it must arrive."""
        self._deadline = now + self.limits.idle_seconds
        return self._deadline

    def tick(self, now: float) -> Close | None:
        """No message came up to `now`: the close when the deadline has come (rule 7)."""
        if self._closed is not None:
            return self._closed
        if now >= self._deadline:
            return self._close(IDLE_CLOSE)
        return None

    def refused(self, code: int, reason: str) -> Close:
        """The websocket layer refused what the client sent, with `code` (rule 8)."""
        if self._closed is not None:
            return self._closed
        error = None
        if code == CLOSE_INVALID_PAYLOAD:
            error = ServerError(code=MALFORMED_JSON, message="frame is not valid UTF-8", retryable=False)
        elif code == CLOSE_MESSAGE_TOO_BIG:
            error = ServerError(code=OVERSIZED, message=reason, retryable=False)
        return self._close(Close(code, reason, error))

    # -- the rules' parts --------------------------------------------------------------------

    def _close(self, close: Close) -> Close:
        self._closed = close
        return close

    def _rate_limited(self, message: str) -> ServerError | Close:
        self._refused += 1
        ref = client_id_of(message)
        if self._refused > self.limits.max_refused:
            flooding = ServerError(code="flooding", message="rate limit ignored: closing", retryable=False, ref=ref)
            return self._close(Close(CLOSE_FLOODING, "rate limit ignored", flooding))
        return ServerError(code="rate_limited", message="too many frames: slow down", retryable=True, ref=ref)

    def _refuse(self, error: RemoteProtocolError) -> ServerError | Close:
        answer = ServerError(code=error.code, message=str(error), retryable=False, ref=error.ref)
        if error.close_code is not None:
            return self._close(Close(error.close_code, error.code, answer))
        self._invalid += 1
        if self._invalid >= MAX_INVALID_FRAMES:
            return self._close(Close(CLOSE_TOO_MANY_ERRORS, "too many invalid frames", answer))
        return answer
