"""What each channel can do, declared once.

A channel's `ChannelCapabilities` say whether the business may write first, the reply window
(how long after the customer's last message the business may answer, and how many answers that
window allows), which message kinds it carries and how large, whether its clients resume a
conversation from a sequence number, and whether it reports delivery and reading. The session
refuses what the conversation's channel cannot carry (`check_outbound`), the dispatcher routes
a conversation only to queues that serve its channel, and the workbench shows the window.

`CHANNELS` holds the channels kefu has; a new channel adds its entry here with its gateway.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

MIB: Final = 1024 * 1024

ALL_MESSAGE_KINDS: Final = ("text", "image", "voice", "video", "file", "location", "link")
"""Every kind of customer or agent message kefu knows, in every channel."""


@dataclass(frozen=True, slots=True)
class ReplyWindow:
    """After the customer's last message the business may answer for `seconds`, at most
    `max_replies` times (None: no count) — WeChat's customer-service messages: 48 hours; QQ's
    passive replies: 60 minutes and 5 replies."""

    seconds: float
    max_replies: int | None = None


@dataclass(frozen=True, slots=True)
class WindowState:
    """Where a conversation stands in its channel's reply window, now."""

    open: bool
    closes_at: datetime | None
    """When the window closes (None: the channel has no window, or nothing opened it yet)."""
    replies_left: int | None
    """Replies the business may still send in this window (None: no count)."""


@dataclass(frozen=True, slots=True)
class ChannelCapabilities:
    name: str
    business_may_start: bool
    """The business may send the first message (or write after the window closed)."""
    reply_window: ReplyWindow | None
    message_kinds: frozenset[str]
    """The message kinds the channel carries, both ways."""
    max_bytes: Mapping[str, int] = field(default_factory=dict)
    """The largest attachment per kind the channel carries (kinds absent: kefu's own limit)."""
    max_text_chars: int = 8000
    resumable: bool = False
    """Its clients reconnect and resume from the last seq they saw (the customer websocket)."""
    delivery_reports: bool = False
    read_reports: bool = False
    typing: bool = False
    """It carries typing indicators."""

    def carries(self, kind: str) -> bool:
        return kind in self.message_kinds

    def window(self, last_customer_message_at: datetime | None, replies_since: int, now: datetime) -> WindowState:
        """The reply window now, given when the customer last wrote and how many business
        messages were sent since."""
        window = self.reply_window
        if window is None:
            return WindowState(True, None, None)
        if last_customer_message_at is None:
            return WindowState(self.business_may_start, None, None)
        closes_at = last_customer_message_at + timedelta(seconds=window.seconds)
        left = None if window.max_replies is None else max(0, window.max_replies - replies_since)
        is_open = now < closes_at and (left is None or left > 0)
        return WindowState(is_open or self.business_may_start, closes_at, left)


class NotCarried(Exception):
    """The channel cannot carry this message; `code` is the error code the sender gets."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def check_outbound(
    capabilities: ChannelCapabilities,
    kind: str,
    *,
    size_bytes: int | None,
    window: WindowState,
) -> None:
    """Raise `NotCarried` when the business may not send a `kind` message (of `size_bytes`, for
    attachments) on this channel now; the message says why, for the agent."""
    name = capabilities.name
    if not capabilities.carries(kind):
        raise NotCarried("kind_not_supported", f"the {name} channel cannot carry {kind} messages")
    limit = capabilities.max_bytes.get(kind)
    if size_bytes is not None and limit is not None and size_bytes > limit:
        raise NotCarried("too_large_for_channel", f"the {name} channel carries {kind} attachments up to {limit} bytes")
    if not window.open:
        raise NotCarried(
            "reply_window_closed",
            f"the {name} channel's reply window is closed: the customer has to write first",
        )


_WEBSOCKET_KINDS = frozenset(ALL_MESSAGE_KINDS)

CHANNELS: Final[Mapping[str, ChannelCapabilities]] = {
    "webchat": ChannelCapabilities(
        name="webchat",
        business_may_start=True,
        reply_window=None,
        message_kinds=_WEBSOCKET_KINDS,
        resumable=True,
        delivery_reports=True,
        read_reports=True,
        typing=True,
    ),
    "app": ChannelCapabilities(
        name="app",
        business_may_start=True,
        reply_window=None,
        message_kinds=_WEBSOCKET_KINDS,
        resumable=True,
        delivery_reports=True,
        read_reports=True,
        typing=True,
    ),
    "api": ChannelCapabilities(
        name="api",
        business_may_start=True,
        reply_window=None,
        message_kinds=_WEBSOCKET_KINDS,
        resumable=False,
        delivery_reports=False,
        read_reports=True,
        typing=True,
    ),
}
"""The channels kefu has. A conversation's `channel` is one of these names."""


def capabilities_of(channel: str) -> ChannelCapabilities:
    """The capabilities of `channel`; an unknown name (a conversation of a channel this build
    lacks) gets web chat's, so nothing is refused by mistake."""
    return CHANNELS.get(channel) or CHANNELS["webchat"]
