"""The two kinds of protocol error, in the manner of h11.

``LocalProtocolError`` means *we* misused the protocol: we tried to encode something that
is not a frame, or to drive a conversation through a transition it does not have. It is a
bug in kefu and may crash the actor that made it.

``RemoteProtocolError`` means the *peer* misbehaved: it sent bytes that are not a valid
frame. It carries everything the edge needs to answer: a stable machine ``code``, a
human-readable ``message``, a websocket ``close_code`` when the connection must close (or
``None`` when an ``error`` frame suffices), and ``ref``, the ``client_id`` of the offending
frame when it could be read. ``error_frame`` turns it into the server ``error`` frame.
"""

from __future__ import annotations

from typing import Final

from .server import ServerError

__all__ = [
    "CLOSE_FLOODING",
    "CLOSE_GOING_AWAY",
    "CLOSE_IDLE_TIMEOUT",
    "CLOSE_INVALID_PAYLOAD",
    "CLOSE_MESSAGE_TOO_BIG",
    "CLOSE_NORMAL",
    "CLOSE_POLICY_VIOLATION",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_SERVER_ERROR",
    "CLOSE_SESSION_REPLACED",
    "CLOSE_SLOW_CONSUMER",
    "CLOSE_TOO_MANY_ERRORS",
    "CLOSE_TRY_AGAIN_LATER",
    "CLOSE_UNSUPPORTED_DATA",
    "DO_NOT_RECONNECT",
    "INVALID_ENVELOPE",
    "INVALID_FIELD",
    "MALFORMED_JSON",
    "MISSING_FIELD",
    "OVERSIZED",
    "PROTOCOL_ERROR_CODES",
    "UNKNOWN_TYPE",
    "UNSUPPORTED_VERSION",
    "LocalProtocolError",
    "RemoteProtocolError",
    "error_frame",
]

# Every websocket close code kefu sends, and nowhere else: the edge, the actors and the load
# tests import them from here, and docs/protocol.md's close-code table lists exactly these
# (tests/protocol/test_errors.py holds the two together).
# Websocket close codes (RFC 6455 section 7.4.1) that kefu uses.
CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001  # server shutting down; reconnect and resume
CLOSE_PROTOCOL_ERROR: Final = 1002  # an unsupported protocol version, or a websocket framing error
CLOSE_UNSUPPORTED_DATA: Final = 1003  # a binary frame where text was expected
CLOSE_INVALID_PAYLOAD: Final = 1007  # not UTF-8, not JSON, not a JSON object
CLOSE_POLICY_VIOLATION: Final = 1008  # authentication missing, invalid, expired or revoked
CLOSE_MESSAGE_TOO_BIG: Final = 1009  # a frame larger than max_frame_bytes
CLOSE_SERVER_ERROR: Final = 1011  # the handler failed; reconnect with backoff and resume
CLOSE_TRY_AGAIN_LATER: Final = 1013  # too many connections from the address, or storage unavailable

# Application close codes (4000-4999 are reserved for applications).
CLOSE_SESSION_REPLACED: Final = 4000  # reserved: the same user signed in on another connection (never sent)
CLOSE_SLOW_CONSUMER: Final = 4001  # send buffer full; reconnect and resume
CLOSE_IDLE_TIMEOUT: Final = 4002  # no frame (not even ping) within the heartbeat window
CLOSE_TOO_MANY_ERRORS: Final = 4003  # the peer kept sending invalid frames
CLOSE_FLOODING: Final = 4004  # the peer kept sending over its rate after rate_limited

DO_NOT_RECONNECT: Final = frozenset({CLOSE_POLICY_VIOLATION, CLOSE_SESSION_REPLACED, CLOSE_TOO_MANY_ERRORS})
"""Closes after which a client must not reconnect by itself (docs/protocol.md, "Close codes");
after any other it reconnects with jittered exponential backoff and resumes."""

# Stable machine codes of RemoteProtocolError.
MALFORMED_JSON: Final = "malformed_json"
INVALID_ENVELOPE: Final = "invalid_envelope"
UNSUPPORTED_VERSION: Final = "unsupported_version"
UNKNOWN_TYPE: Final = "unknown_type"
MISSING_FIELD: Final = "missing_field"
INVALID_FIELD: Final = "invalid_field"
OVERSIZED: Final = "oversized"

PROTOCOL_ERROR_CODES: Final = frozenset(
    {
        MALFORMED_JSON,
        INVALID_ENVELOPE,
        UNSUPPORTED_VERSION,
        UNKNOWN_TYPE,
        MISSING_FIELD,
        INVALID_FIELD,
        OVERSIZED,
    }
)


class LocalProtocolError(Exception):
    """We broke the protocol: a bug in kefu, never the peer's fault."""


class RemoteProtocolError(Exception):
    """The peer broke the protocol; answer with an error frame or a close."""

    code: str
    message: str
    close_code: int | None
    ref: str | None

    def __init__(
        self,
        code: str,
        message: str,
        *,
        close_code: int | None = None,
        ref: str | None = None,
    ) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.close_code = close_code
        self.ref = ref

    @property
    def must_close(self) -> bool:
        """True when the connection must be closed with ``close_code``."""
        return self.close_code is not None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"RemoteProtocolError(code={self.code!r}, message={self.message!r}, "
            f"close_code={self.close_code!r}, ref={self.ref!r})"
        )


def error_frame(error: RemoteProtocolError) -> ServerError:
    """The ``error`` frame that answers ``error``.

    A protocol error is never retryable: the same frame would fail the same way.
    """
    return ServerError(code=error.code, message=error.message, ref=error.ref, retryable=False)
