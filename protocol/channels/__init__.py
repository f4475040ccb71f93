"""Channels: what each one can carry (`capabilities`), the channel-neutral events every gateway
speaks to the sessions (`events`), and one sans-IO codec per channel's wire format
(`protocol/channels/<name>.py`). Like the rest of `kefu.protocol`, nothing here does I/O."""

from __future__ import annotations
