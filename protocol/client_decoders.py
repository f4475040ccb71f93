"""What the server reads from clients: one msgspec decoder per socket, and the rules between
fields it checks after them.

Each decoder is one tagged union on ``type``: msgspec picks the frame class by its tag and
checks every field's type and limits in the same C pass. ``codec`` runs it, then the frame's
``FieldRule``s, and turns any refusal into ``RemoteProtocolError``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final

import msgspec

from .agent import AGENT_FRAME_TYPES, AgentFrame, Transfer
from .common import MESSAGE_KINDS, SendMessage
from .customer import CUSTOMER_FRAME_TYPES, CloseConversation, CloseConversationAsCustomer, CustomerWireFrame
from .rules import FieldRule

__all__ = [
    "AGENT_DECODER",
    "AGENT_WIRE_TYPES",
    "CLIENT_RULES",
    "CUSTOMER_CONVERSIONS",
    "CUSTOMER_DECODER",
    "CUSTOMER_WIRE_TYPES",
    "message_rules",
]


def message_rules(kind_field: str, when: Mapping[str, frozenset[str]] = MappingProxyType({})) -> tuple[FieldRule, ...]:
    """A message's body: ``text`` kind requires ``text`` and forbids ``attachment_id``; every
    other kind requires ``attachment_id`` (``text`` is then an optional caption)."""
    return (
        FieldRule(when={**when, kind_field: frozenset({"text"})}, required=("text",), forbidden=("attachment_id",)),
        FieldRule(when={**when, kind_field: MESSAGE_KINDS - {"text"}}, required=("attachment_id",)),
    )


CLIENT_RULES: Final[Mapping[type, tuple[FieldRule, ...]]] = MappingProxyType(
    {
        SendMessage: message_rules("kind"),
        Transfer: (FieldRule(one_of=("to_agent_id", "to_department_id")),),
    }
)

CUSTOMER_DECODER: Final[msgspec.json.Decoder[Any]] = msgspec.json.Decoder(CustomerWireFrame)
AGENT_DECODER: Final[msgspec.json.Decoder[Any]] = msgspec.json.Decoder(AgentFrame)


def _close_as_customer(frame: CloseConversationAsCustomer) -> CloseConversation:
    return CloseConversation(frame.client_id, frame.conversation_id)


CUSTOMER_CONVERSIONS: Final[Mapping[type, Callable[[Any], Any]]] = MappingProxyType(
    {CloseConversationAsCustomer: _close_as_customer}
)
"""The wire structs of ``/ws/customer`` that are not the frame the decoder returns."""

CUSTOMER_WIRE_TYPES: Final = MappingProxyType({cls.TYPE: cls for cls in CUSTOMER_FRAME_TYPES})
AGENT_WIRE_TYPES: Final = MappingProxyType({cls.TYPE: cls for cls in AGENT_FRAME_TYPES})
