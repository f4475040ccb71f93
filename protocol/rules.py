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
from typing import Any, TypeVar

from .errors import INVALID_FIELD, MISSING_FIELD, RemoteProtocolError

__all__ = ["FieldRule", "compile_rules"]

F = TypeVar("F")

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

    def check(self, frame: F) -> F:
        """``frame``, or ``RemoteProtocolError`` (``ref``: the frame's ``client_id``) if it
        meets the condition and breaks the rule."""
        return compile_rules((self,))(frame)

    def refusal(self, frame: object, code: str, what: str) -> RemoteProtocolError:
        """The error for ``frame``, which breaks this rule: ``what`` it needed."""
        condition = " and ".join(f"{name} {getattr(frame, name)!r}" for name in self.when)
        subject = f"{getattr(frame, 'TYPE', 'frame')!r}" + (f" with {condition}" if condition else "")
        return RemoteProtocolError(code, f"{subject} {what}", ref=getattr(frame, "client_id", None))

    def check_one_of(self, frame: object) -> None:
        """Exactly one field of ``one_of`` is set."""
        count = sum(getattr(frame, name) is not None for name in self.one_of)
        if count != 1:
            names = " and ".join(repr(name) for name in self.one_of)
            if count == 0:
                raise self.refusal(frame, MISSING_FIELD, f"requires one of {names}")
            raise self.refusal(frame, INVALID_FIELD, f"takes only one of {names}")

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


def _meets(frame: object, conditions: tuple[tuple[str, Collection[str]], ...]) -> bool:
    for name, values in conditions:
        if getattr(frame, name) not in values:
            return False
    return True


# (rule, the conditions of it still to check)
_Plan = tuple[tuple[FieldRule, tuple[tuple[str, Collection[str]], ...]], ...]


def compile_rules(rules: Sequence[FieldRule]) -> Callable[[F], F]:
    """One function that checks all ``rules`` of a frame class and returns the frame.

    This runs for every frame with rules (every ``message.send``), so it loops over nothing
    it does not need: when every rule is conditioned first on the same field (``kind``), only
    the rules for that field's value are looked at, and that condition is not checked again.
    """
    everything: _Plan = tuple((rule, tuple(rule.when.items())) for rule in rules)
    first_fields = {next(iter(rule.when), None) for rule in rules}
    dispatch = first_fields.pop() if len(first_fields) == 1 else None
    by_value: dict[str, _Plan] = {}
    if dispatch is not None:
        for rule, conditions in everything:
            for value in conditions[0][1]:
                by_value[value] = (*by_value.get(value, ()), (rule, conditions[1:]))

    def check(frame: F) -> F:
        plan = everything if dispatch is None else by_value.get(getattr(frame, dispatch), ())
        for rule, conditions in plan:
            if conditions and not _meets(frame, conditions):
                continue
            for name in rule.required:
                if getattr(frame, name) is None:
                    raise rule.refusal(frame, MISSING_FIELD, f"requires {name!r}")
            for name in rule.forbidden:
                if getattr(frame, name) is not None:
                    raise rule.refusal(frame, INVALID_FIELD, f"takes no {name!r}")
            if rule.one_of:
                rule.check_one_of(frame)
        return frame

    return check
