"""Rules between the fields of one frame, which no single field's type can state.

Each rule is data (``FieldRule``), written once: the decoders check it right after msgspec's
pass (``codec``), and the JSON Schema states it as ``if``/``then`` (``schema``). A field is
*set* when it is present and not ``null`` (the protocol makes ``null`` and absence one thing).
A broken rule is ``missing_field`` when a field it needs is not set, ``invalid_field`` when a
field it forbids is set.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import INVALID_FIELD, MISSING_FIELD, RemoteProtocolError

__all__ = ["FieldRule", "compile_rules"]

_NOT_NULL: dict[str, Any] = {"not": {"type": "null"}}


@dataclass(frozen=True, slots=True)
class FieldRule:
    """When each field named in ``when`` holds one of its values (always, if ``when`` is
    empty): every field of ``required`` is set, no field of ``forbidden`` is, and exactly one
    field of ``one_of`` is."""

    when: Mapping[str, Collection[str]] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()
    one_of: tuple[str, ...] = ()
    # `when` as a tuple, read on every check.
    _conditions: tuple[tuple[str, Collection[str]], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_conditions", tuple(self.when.items()))

    def check(self, frame: object) -> None:
        """Raise ``RemoteProtocolError`` (``ref``: the frame's ``client_id``) if ``frame``
        meets the condition and breaks the rule."""
        for name, values in self._conditions:
            if getattr(frame, name) not in values:
                return
        for name in self.required:
            if getattr(frame, name) is None:
                raise self._refusal(frame, MISSING_FIELD, f"requires {name!r}")
        for name in self.forbidden:
            if getattr(frame, name) is not None:
                raise self._refusal(frame, INVALID_FIELD, f"takes no {name!r}")
        if self.one_of:
            self._check_one_of(frame)

    def _check_one_of(self, frame: object) -> None:
        count = sum(getattr(frame, name) is not None for name in self.one_of)
        if count != 1:
            names = " and ".join(repr(name) for name in self.one_of)
            if count == 0:
                raise self._refusal(frame, MISSING_FIELD, f"requires one of {names}")
            raise self._refusal(frame, INVALID_FIELD, f"takes only one of {names}")

    def _refusal(self, frame: object, code: str, what: str) -> RemoteProtocolError:
        condition = " and ".join(f"{name} {getattr(frame, name)!r}" for name in self.when)
        subject = f"{getattr(frame, 'TYPE', 'frame')!r}" + (f" with {condition}" if condition else "")
        return RemoteProtocolError(code, f"{subject} {what}", ref=getattr(frame, "client_id", None))

    def json_schema(self) -> dict[str, Any]:
        """The rule as a JSON Schema (2020-12) subschema of its frame's object schema."""
        properties: dict[str, Any] = {name: _NOT_NULL for name in self.required}
        properties.update({name: {"type": "null"} for name in self.forbidden})
        then: dict[str, Any] = {}
        if self.required:
            then["required"] = list(self.required)
        if properties:
            then["properties"] = properties
        if self.one_of:
            then["oneOf"] = [{"required": [name], "properties": {name: _NOT_NULL}} for name in self.one_of]
        if not self.when:
            return then
        condition = {
            "required": list(self.when),
            "properties": {name: {"enum": sorted(values)} for name, values in self.when.items()},
        }
        return {"if": condition, "then": then}


def compile_rules(rules: Sequence[FieldRule]) -> Callable[[object], None]:
    """One function that checks all ``rules`` of a frame class.

    When every rule is conditioned first on the same field (``kind``), only the rules for that
    field's value are run: a text message runs one rule, not every kind's.
    """
    first_fields = {next(iter(rule.when), None) for rule in rules}
    if len(first_fields) != 1 or None in first_fields:

        def check_each(frame: object) -> None:
            for rule in rules:
                rule.check(frame)

        return check_each
    (name,) = first_fields
    assert name is not None
    by_value: dict[str, list[FieldRule]] = {}
    for rule in rules:
        for value in rule.when[name]:
            by_value.setdefault(value, []).append(rule)
    table = {value: tuple(group) for value, group in by_value.items()}

    def check_by_value(frame: object) -> None:
        for rule in table.get(getattr(frame, name), ()):
            rule.check(frame)

    return check_by_value
