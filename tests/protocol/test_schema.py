"""The protocol's JSON Schema (protocol/schema.py): a valid 2020-12 document, generated from the
frame classes with their limits, holding every example of docs/protocol.md, and agreeing with
kefu's own decoders on what is a frame."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from kefu.protocol.codec import (
    AGENT_WIRE_TYPES,
    CUSTOMER_WIRE_TYPES,
    SERVER_WIRE_TYPES,
    decode_agent_frame,
    decode_customer_frame,
    decode_server_frame,
    encode_frame,
)
from kefu.protocol.customer import CloseConversationAsCustomer
from kefu.protocol.errors import RemoteProtocolError
from kefu.protocol.frames import (
    AGENT_FRAME_TYPES,
    AGENT_PRESENCES,
    CONVERSATION_STATES,
    CUSTOMER_FRAME_TYPES,
    EVENT_KINDS,
    MAX_CLIENT_ID_CHARS,
    MAX_CODE_CHARS,
    MAX_ID_CHARS,
    MAX_LABEL_CHARS,
    MAX_SEQ,
    MAX_TEXT_CHARS,
    MESSAGE_KINDS,
    OFFER_REVOKED_REASONS,
    SERVER_FRAME_TYPES,
)
from kefu.protocol.schema import JSON_SCHEMA_DIALECT, protocol_json_schema

from .samples import agent_frames, conversation_events, customer_frames, send_messages, server_frames, transfers

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
SCHEMA = protocol_json_schema()

Decode = Callable[[bytes], object]
RECEIVERS: dict[str, Decode] = {
    "CustomerFrame": decode_customer_frame,
    "AgentFrame": decode_agent_frame,
    "ServerFrame": decode_server_frame,
}
WIRE_TYPES = {"CustomerFrame": CUSTOMER_WIRE_TYPES, "AgentFrame": AGENT_WIRE_TYPES, "ServerFrame": SERVER_WIRE_TYPES}


@cache
def validator(union: str) -> Draft202012Validator:
    """The schema with only ``union`` at its root (the ``$defs`` unchanged)."""
    return Draft202012Validator({**SCHEMA, "anyOf": [{"$ref": f"#/$defs/{union}"}]})


def decoder_accepts(union: str, obj: object) -> bool:
    try:
        RECEIVERS[union](json.dumps(obj, ensure_ascii=False).encode())
    except RemoteProtocolError:
        return False
    return True


def schema_refusal(union: str, obj: object) -> str | None:
    """Why the schema refuses ``obj`` as a ``union`` (``None``: it does not)."""
    error = best_match(validator(union).iter_errors(obj))
    return None if error is None else f"{error.json_path}: {error.message}"


def assert_agree(union: str, obj: object) -> None:
    refusal = schema_refusal(union, obj)
    assert (refusal is None) == decoder_accepts(union, obj), f"{union}: schema says {refusal or 'valid'} of {obj!r}"


# --- the document --------------------------------------------------------------------------


def test_is_a_valid_2020_12_schema() -> None:
    assert SCHEMA["$schema"] == JSON_SCHEMA_DIALECT
    Draft202012Validator.check_schema(SCHEMA)
    assert json.loads(json.dumps(SCHEMA)) == SCHEMA  # plain JSON, ready to serve


def test_every_frame_class_has_its_titled_and_described_definition() -> None:
    classes = {*CUSTOMER_FRAME_TYPES, *AGENT_FRAME_TYPES, *SERVER_FRAME_TYPES, CloseConversationAsCustomer}
    for cls in classes:
        definition = SCHEMA["$defs"][cls.__name__]
        assert definition["title"] == cls.__name__
        assert definition["description"].split("\n")[0] in (cls.__doc__ or "").replace("``", "`")
        assert definition["properties"]["type"] == {"enum": [cls.TYPE]}
        assert cls.TYPE == cls.__struct_config__.tag
        assert "type" in definition["required"]
        assert "v" not in definition["required"]
    for union, wire_types in WIRE_TYPES.items():
        mapping = SCHEMA["$defs"][union]["discriminator"]["mapping"]
        assert set(mapping) == set(wire_types)


def test_limits_are_written_once_and_appear_in_the_schema() -> None:
    defs = SCHEMA["$defs"]
    send = defs["SendMessage"]["properties"]
    assert send["client_id"]["maxLength"] == MAX_CLIENT_ID_CHARS
    assert send["conversation_id"]["maxLength"] == MAX_ID_CHARS
    assert send["text"]["anyOf"][0] == {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS}
    assert set(send["kind"]["enum"]) == MESSAGE_KINDS
    assert defs["MarkRead"]["properties"]["seq"] == {"type": "integer", "minimum": 0, "maximum": MAX_SEQ}
    assert defs["Ack"]["properties"]["seq"]["minimum"] == 1
    assert defs["ConversationEvent"]["properties"]["kind"]["maxLength"] == MAX_CODE_CHARS
    assert defs["SetStatus"]["properties"]["reason"]["anyOf"][0]["maxLength"] == MAX_LABEL_CHARS
    assert set(defs["OfferRevoked"]["properties"]["reason"]["enum"]) == OFFER_REVOKED_REASONS
    assert set(defs["ConversationSummary"]["properties"]["state"]["enum"]) == CONVERSATION_STATES
    assert set(defs["AgentLoad"]["properties"]["status"]["enum"]) == AGENT_PRESENCES


def test_rules_between_fields_are_in_the_schema() -> None:
    text = {"v": 1, "type": "message.send", "client_id": "c", "conversation_id": "x", "kind": "text"}
    assert not validator("CustomerFrame").is_valid(text)
    assert validator("CustomerFrame").is_valid({**text, "text": "hi"})
    assert not validator("CustomerFrame").is_valid({**text, "text": "hi", "attachment_id": "a"})
    transfer = {"type": "transfer", "client_id": "c", "conversation_id": "x"}
    assert not validator("AgentFrame").is_valid(transfer)
    assert not validator("AgentFrame").is_valid({**transfer, "to_agent_id": "a", "to_department_id": "d"})
    assert validator("AgentFrame").is_valid({**transfer, "to_department_id": "d"})


# --- every example of docs/protocol.md -----------------------------------------------------


@dataclass(frozen=True)
class Example:
    section: str  # the `##` heading it is under
    heading: str  # the `###` heading (empty when none)
    line: int
    frame: dict[str, Any]

    def receivers(self) -> set[str]:
        """Who reads this frame, by where the page shows it."""
        if self.section.startswith(("Server frames", "Errors")):
            return {"ServerFrame"}
        if self.section.startswith("Agent frames"):
            return {"AgentFrame"}
        if self.section.startswith("Customer frames"):
            both = "(customers and agents)" in self.heading
            return {"CustomerFrame", "AgentFrame"} if both else {"CustomerFrame"}
        if self.section.startswith("Envelope"):
            return {"CustomerFrame", "AgentFrame"}
        raise AssertionError(f"docs/protocol.md:{self.line}: an example under {self.section!r}: whose frame is it?")


def doc_examples(text: str) -> Iterator[Example]:
    """The frames in the page's ```json blocks (one or more per block, each may span lines)."""
    section = heading = ""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"^(#{2,3}) ([^\n]*)$|^```json\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        if match[1] == "##":
            section, heading = match[2], ""
            continue
        if match[1] == "###":
            heading = match[2]
            continue
        block, position = match[3], 0
        line = text.count("\n", 0, match.start(3)) + 1
        while block[position:].strip():
            position += len(block[position:]) - len(block[position:].lstrip())
            frame, end = decoder.raw_decode(block, position)
            yield Example(section, heading, line + block.count("\n", 0, position), frame)
            position = end


EXAMPLES = list(doc_examples(DOC.read_text(encoding="utf-8")))


def test_the_page_has_examples_of_every_frame_type() -> None:
    for union, wire_types in WIRE_TYPES.items():
        shown = {example.frame["type"] for example in EXAMPLES if union in example.receivers()}
        assert shown == set(wire_types), union


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: f"line {e.line} {e.frame.get('type')}")
def test_doc_example_is_valid_and_the_decoders_agree(example: Example) -> None:
    for union in example.receivers():
        refusal = schema_refusal(union, example.frame)
        assert refusal is None, f"docs/protocol.md:{example.line} is not a valid {union}: {refusal}"
        frame = RECEIVERS[union](json.dumps(example.frame, ensure_ascii=False).encode())
        # what kefu writes for that frame is the example, exactly
        assert orjson.loads(encode_frame(frame)) == example.frame  # type: ignore[arg-type]
    for union in RECEIVERS:
        assert_agree(union, example.frame)


# --- the schema and the decoders agree -----------------------------------------------------

AGREE = settings(
    max_examples=500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def strings_around(limit: int) -> st.SearchStrategy[str]:
    return st.sampled_from([0, 1, limit, limit + 1]).map(lambda length: "字" * length)


# Values both sides check. Floats with an integral value are left out: JSON Schema counts 1.0
# as the integer 1, kefu refuses it (docs/protocol.md says so).
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([-1, 0, 1, 2**31 - 1, 2**31, MAX_SEQ, MAX_SEQ + 1]),
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda number: not number.is_integer()),
    st.text(max_size=12),
    st.sampled_from(sorted(MESSAGE_KINDS | EVENT_KINDS | CONVERSATION_STATES | OFFER_REVOKED_REASONS)),
    st.sampled_from(sorted(AGENT_PRESENCES | {"customer", "agent", "system"})),
    st.sampled_from(["2024-05-01T12:00:00Z", "2024-05-01T12:00:00.123+00:00", "2024-05-01T12:00:00+02:00"]),
    *(strings_around(limit) for limit in (MAX_CLIENT_ID_CHARS, MAX_ID_CHARS, MAX_LABEL_CHARS)),
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)
FIELD_NAMES = sorted(
    {name for cls in (*CUSTOMER_FRAME_TYPES, *AGENT_FRAME_TYPES, *SERVER_FRAME_TYPES) for name in cls.__struct_fields__}
)

frames = st.one_of(
    customer_frames.map(lambda frame: ("CustomerFrame", frame)),
    agent_frames.map(lambda frame: ("AgentFrame", frame)),
    server_frames.map(lambda frame: ("ServerFrame", frame)),
)


def objects_in(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """``obj`` and every object nested in it (a sender, a customer, the items of lists)."""
    found = [obj]
    for value in obj.values():
        if isinstance(value, dict):
            found.extend(objects_in(value))
        elif isinstance(value, list):
            found.extend(item for item in value if isinstance(item, dict))
    return found


@AGREE
@given(frames, st.data())
def test_schema_and_decoders_agree_on_mutated_frames(receiver_frame: tuple[str, Any], data: st.DataObject) -> None:
    union, frame = receiver_frame
    obj = orjson.loads(encode_frame(frame))
    assert_agree(union, obj)
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        target = data.draw(st.sampled_from(objects_in(obj)))
        own = type(frame).__struct_fields__ if target is obj else tuple(target)
        name = data.draw(st.sampled_from(sorted(own) or FIELD_NAMES) | st.sampled_from(FIELD_NAMES))
        if data.draw(st.booleans()):
            target.pop(name, None)
        else:
            target[name] = data.draw(values)
    assert_agree(union, obj)


RULE_FIELDS = [
    "kind",
    "message_kind",
    "text",
    "attachment_id",
    "to_agent_id",
    "to_department_id",
    "queue_id",
    "agent_id",
]
rule_values = st.one_of(
    st.none(),
    st.sampled_from(sorted(MESSAGE_KINDS | EVENT_KINDS)),
    st.text(min_size=1, max_size=8),
    st.just(""),
)


@AGREE
@given(
    st.one_of(
        send_messages().map(lambda frame: (("CustomerFrame", "AgentFrame"), frame)),
        transfers().map(lambda frame: (("AgentFrame",), frame)),
        conversation_events().map(lambda frame: (("ServerFrame",), frame)),
    ),
    st.dictionaries(st.sampled_from(RULE_FIELDS), rule_values, min_size=1, max_size=3),
    st.sets(st.sampled_from(RULE_FIELDS), max_size=2),
)
def test_schema_and_decoders_agree_on_the_rules_between_fields(
    receivers_frame: tuple[tuple[str, ...], Any], changes: dict[str, Any], dropped: set[str]
) -> None:
    unions, frame = receivers_frame
    obj = {name: value for name, value in orjson.loads(encode_frame(frame)).items() if name not in dropped}
    obj.update(changes)
    for union in unions:
        assert_agree(union, obj)


@AGREE
@given(st.sampled_from(sorted(RECEIVERS)), st.dictionaries(st.sampled_from(FIELD_NAMES), values, max_size=8))
def test_schema_and_decoders_agree_on_arbitrary_fields(union: str, fields: dict[str, Any]) -> None:
    assert_agree(union, fields)
    wire_type = sorted(WIRE_TYPES[union])[len(fields) % len(WIRE_TYPES[union])]
    assert_agree(union, {**fields, "type": wire_type})


def test_known_differences_are_the_documented_ones() -> None:
    """JSON Schema cannot say these; the decoders refuse them (docs/protocol.md, JSON Schema)."""
    read = {"type": "read", "conversation_id": "x", "seq": 1.0}
    assert validator("CustomerFrame").is_valid(read)
    assert not decoder_accepts("CustomerFrame", read)
    event = {
        "type": "event",
        "conversation_id": "x",
        "seq": 1,
        "kind": "closed",
        "at": "2024-05-01T12:00:00Z",
        "sender": {"role": "system", "id": "system"},
    }
    assert decoder_accepts("ServerFrame", event)
    event["at"] = "2024-02-30T12:00:00Z"
    assert validator("ServerFrame").is_valid(event)
    assert not decoder_accepts("ServerFrame", event)


def test_schema_follows_the_struct_declarations() -> None:
    """The JSON Schema is msgspec's, from the same types the decoders use."""
    _, components = msgspec.json.schema_components([cls for cls in SERVER_FRAME_TYPES])
    assert components["Ack"]["properties"] == SCHEMA["$defs"]["Ack"]["properties"]
