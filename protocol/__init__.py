"""kefu's wire protocol, sans-IO: frames, their codec, and the conversation state machine.

Nothing here does I/O or imports anything async; the server's websocket handlers feed it
bytes and send the bytes it returns. Every frame class and limit of `frames` is exported
here too.
"""

from __future__ import annotations

from . import frames
from .codec import decode_agent_frame, decode_customer_frame, decode_server_frame, encode_frame
from .conversation import ConversationState
from .errors import LocalProtocolError, RemoteProtocolError, error_frame
from .frames import *  # noqa: F403  (the names are frames.__all__)

__all__ = [
    *frames.__all__,
    "ConversationState",
    "LocalProtocolError",
    "RemoteProtocolError",
    "decode_agent_frame",
    "decode_customer_frame",
    "decode_server_frame",
    "encode_frame",
    "error_frame",
]
