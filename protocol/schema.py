"""The JSON Schema of the websocket protocol, generated from the frame classes.

Nothing here is written by hand but the document's title: each frame's schema comes from its
struct (its docstring gives the title and description, its field types the limits), and the
rules between fields from the same ``FieldRule``s the decoders check. The server serves the
document at ``/api/v1/protocol.schema.json``; ``tests/protocol/test_schema.py`` validates every
example of ``docs/protocol.md`` against it and holds it to what the decoders accept.

What JSON Schema cannot say and the decoders still check: that a timestamp's day exists, and
that an integer is written without a fraction (JSON Schema counts ``1.0`` as the integer 1;
kefu refuses it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

from .agent import AgentFrame
from .client_decoders import CLIENT_RULES
from .common import PROTOCOL_VERSION
from .customer import CustomerWireFrame
from .rules import FieldRule
from .server import ServerFrame
from .server_decoders import SERVER_RULES

__all__ = ["JSON_SCHEMA_DIALECT", "protocol_json_schema"]

JSON_SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"

_REF_TEMPLATE: Final = "#/$defs/{name}"

# The three unions, by the name they get in `$defs`, with their description.
_UNIONS: Final[tuple[tuple[str, Any, str], ...]] = (
    ("CustomerFrame", CustomerWireFrame, "A frame a customer sends to the server on /ws/customer."),
    ("AgentFrame", AgentFrame, "A frame an agent (or a supervisor or an admin) sends to the server on /ws/agent."),
    ("ServerFrame", ServerFrame, "A frame the server sends, on /ws/customer or /ws/agent."),
)


def _with_rules(components: dict[str, Any], rules: Mapping[type, tuple[FieldRule, ...]]) -> None:
    """State each frame's rules between fields in its schema, as ``allOf`` of ``if``/``then``."""
    for cls, frame_rules in rules.items():
        components[cls.__name__]["allOf"] = [rule.json_schema() for rule in frame_rules]


def _markdown(node: Any) -> Any:
    """Docstrings quote code as reStructuredText does (````x````); JSON Schema readers expect
    Markdown (```x```)."""
    if isinstance(node, dict):
        return {
            key: value.replace("``", "`") if key == "description" and isinstance(value, str) else _markdown(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_markdown(item) for item in node]
    return node


def protocol_json_schema() -> dict[str, Any]:
    """One JSON Schema (2020-12) document of the protocol: a frame is valid when it is a
    customer's, an agent's or the server's frame. Each is also in ``$defs`` by name
    (``CustomerFrame``, ``AgentFrame``, ``ServerFrame``, and every frame class)."""
    unions, components = msgspec.json.schema_components([union for _, union, _ in _UNIONS], ref_template=_REF_TEMPLATE)
    _with_rules(components, CLIENT_RULES)
    _with_rules(components, SERVER_RULES)
    defs: dict[str, Any] = {}
    for (name, _, description), union in zip(_UNIONS, unions, strict=True):
        defs[name] = {"title": name, "description": description, **union}
    defs.update(sorted(components.items()))
    document: dict[str, Any] = _markdown(
        {
            "$schema": JSON_SCHEMA_DIALECT,
            "title": f"kefu websocket protocol, version {PROTOCOL_VERSION}",
            "description": (
                "Every websocket message is one text message holding one frame: a JSON object whose "
                "'type' names the frame. Fields a receiver does not know are ignored; null is the same "
                "as leaving a field out. Generated from kefu.protocol; see docs/protocol.md."
            ),
            "anyOf": [{"$ref": _REF_TEMPLATE.format(name=name)} for name, _, _ in _UNIONS],
            "$defs": defs,
        }
    )
    return document
