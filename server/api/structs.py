"""Helpers of the declared Structs: the message of a refused body, said the way kefu always said
it, from the declared types; the fields a partial change gave.

msgspec says "Expected `str` of length <= 100 - at `$.name`"; clients have always read
"name must be a string of 1 to 100 characters". The message is made from the field's declared
type and `Meta` limits, so a limit is written once, in the Struct.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import msgspec.inspect as mi

_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<name>[^`]+)`$")
_UNKNOWN = re.compile(r"^Object contains unknown field `(?P<name>[^`]+)`$")
_MSGSPEC = ("Expected ", "Invalid ", "Object ")
_STEP = re.compile(r"\.(\w+)|\[(\d+)\]")


def invalid_input_message(kind: type, error: str) -> str:
    """The client's message for msgspec's `error` decoding a body (or query) as `kind`."""
    found = _AT.match(error)
    assert found is not None
    what, path = found["what"], found["path"] or ""
    if unknown := _UNKNOWN.match(what):
        return f"unknown field {_name(path + '.' + unknown['name'])}"
    if missing := _MISSING.match(what):
        path = f"{path}.{missing['name']}"
    elif not what.startswith(_MSGSPEC):
        return what  # raised by the Struct's own __post_init__ check: already the client's message
    if not path:
        return "expected a JSON object"
    field = _field_at(mi.type_info(kind), path)
    return f"{_name(path)} {describe(field)}" if field is not None else f"{_name(path)} is not valid"


def _name(path: str) -> str:
    return path.removeprefix(".")


def _field_at(info: mi.Type, path: str) -> mi.Type | None:
    for name, index in _STEP.findall(path):
        info = _unwrap(info)
        if name and isinstance(info, mi.StructType):
            matches = [f.type for f in info.fields if f.encode_name == name]
            if not matches:
                return None
            info = matches[0]
        elif index and isinstance(info, mi.ListType):
            info = info.item_type
        elif name and isinstance(info, mi.DictType):
            info = info.value_type
        else:
            return None
    return info


def _bare(info: mi.Type) -> mi.Type:
    """The type under its description, unless the description says what it must be."""
    if isinstance(info, mi.Metadata) and not (info.extra or {}).get("must"):
        return info.type
    return info


def _unwrap(info: mi.Type) -> mi.Type:
    """The one type of a field that is a type, null, or unset."""
    info = _bare(info)
    if isinstance(info, mi.UnionType):
        kinds = [t for t in info.types if not isinstance(t, mi.NoneType)]
        if len(kinds) == 1:
            return _bare(kinds[0])
    return info


def describe(info: mi.Type) -> str:
    """What a value of `info` must be, in the words of kefu's messages."""
    info = _bare(info)
    nullable = isinstance(info, mi.UnionType) and any(isinstance(t, mi.NoneType) for t in info.types)
    said = _describe_one(_unwrap(info))
    return f"{said} or null" if nullable else said


def _describe_one(info: mi.Type) -> str:
    match info:
        case mi.Metadata(extra=extra) if extra and "must" in extra:
            return f"must be {extra['must']}"
        case mi.StrType() | mi.IntType():
            return _describe_scalar(info)
        case mi.BoolType():
            return "must be true or false"
        case mi.UUIDType():
            return "must be a UUID string"
        case mi.DateTimeType():
            return "must be an ISO 8601 time with its offset, e.g. 2026-01-31T08:00:00+00:00"
        case mi.LiteralType(values=values):
            return f"must be one of {', '.join(str(v) for v in values)}"
        case mi.EnumType(cls=kind):
            return f"must be one of {', '.join(str(member.value) for member in kind)}"
        case mi.ListType(max_length=high):
            return f"must be a list of at most {high} items" if high is not None else "must be a list"
        case mi.StructType() | mi.DictType():
            return "must be an object"
    return "is not valid"


def _describe_scalar(info: mi.StrType | mi.IntType) -> str:
    match info:
        case mi.StrType(min_length=low, max_length=high) if high is not None:
            return f"must be a string of {low or 0} to {high} characters"
        case mi.StrType():
            return "must be a string"
        case mi.IntType(ge=low, le=high) if low is not None and high is not None:
            return f"must be an integer from {low} to {high}"
        case mi.IntType():
            return "must be an integer"
    return "is not valid"


def check_text(value: str, name: str, kind: type[msgspec.Struct]) -> str:
    """`value` without surrounding spaces, still within the field's declared length."""
    stripped = value.strip()
    if not stripped:
        field = _field_at(mi.type_info(kind), f".{name}")
        raise ValueError(f"{name} {describe(field) if field is not None else 'must not be blank'}")
    return stripped


def given(change: msgspec.Struct) -> dict[str, Any]:
    """The fields a body gave (those not UNSET), by name."""
    return {name: value for name, value in msgspec.structs.asdict(change).items() if value is not msgspec.UNSET}
