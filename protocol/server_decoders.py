"""What clients read from the server (the load generator, the console and the tests do): the
msgspec decoder of server frames and the rules between their fields."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import msgspec

from .client_decoders import message_rules
from .rules import FieldRule
from .server import SERVER_FRAME_TYPES, ConversationEvent, ServerFrame

__all__ = ["EVENT_RULES", "SERVER_DECODER", "SERVER_RULES", "SERVER_WIRE_TYPES"]

_MESSAGE: Final = MappingProxyType({"kind": frozenset({"message"})})

EVENT_RULES: Final[tuple[FieldRule, ...]] = (
    FieldRule(when=_MESSAGE, required=("message_kind",)),
    *message_rules("message_kind", when=_MESSAGE),
    FieldRule(when={"kind": frozenset({"note", "system"})}, required=("text",)),
    FieldRule(when={"kind": frozenset({"queued"})}, required=("queue_id",)),
    FieldRule(when={"kind": frozenset({"assigned"})}, required=("agent_id",)),
    FieldRule(when={"kind": frozenset({"transferred"})}, one_of=("to_agent_id", "to_department_id")),
)
"""The body an event of each known ``kind`` needs (an unknown kind, from a newer server,
needs nothing)."""

SERVER_RULES: Final[Mapping[type, tuple[FieldRule, ...]]] = MappingProxyType({ConversationEvent: EVENT_RULES})

SERVER_DECODER: Final[msgspec.json.Decoder[Any]] = msgspec.json.Decoder(ServerFrame)

SERVER_WIRE_TYPES: Final = MappingProxyType({cls.TYPE: cls for cls in SERVER_FRAME_TYPES})
