"""Field readers for the decoders: each checks one field of a parsed JSON object.

They raise ``RemoteProtocolError`` with ``missing_field`` or ``invalid_field`` and leave
``ref`` to the caller. Types are checked with ``type(x) is T``, not ``isinstance``, so that
``true`` is never an integer and ``1.0`` never a sequence number.
"""

from __future__ import annotations

from collections.abc import Callable, Set
from datetime import datetime, timedelta
from typing import Final, TypeVar

from .errors import INVALID_FIELD, MISSING_FIELD, RemoteProtocolError

__all__ = [
    "Decoder",
    "JsonObject",
    "optional_choice",
    "optional_int",
    "optional_str",
    "require_bool",
    "require_choice",
    "require_int",
    "require_object",
    "require_str",
    "require_timestamp",
]

JsonObject = dict[str, object]
F = TypeVar("F")
# A decoder turns the parsed object of one frame type into its frame.
Decoder = Callable[[JsonObject], F]

_MAX_TIMESTAMP_CHARS: Final = 40
_ZERO: Final = timedelta(0)


def _missing(name: str) -> RemoteProtocolError:
    return RemoteProtocolError(MISSING_FIELD, f"field {name!r} is required")


def _invalid(name: str, expected: str) -> RemoteProtocolError:
    return RemoteProtocolError(INVALID_FIELD, f"field {name!r} must be {expected}")


def require_str(obj: JsonObject, name: str, max_chars: int) -> str:
    """A string of 1 to ``max_chars`` characters."""
    value = obj.get(name)
    if value is None:
        raise _missing(name)
    if type(value) is not str or not 0 < len(value) <= max_chars:
        raise _invalid(name, f"a string of 1 to {max_chars} characters")
    return value


def optional_str(obj: JsonObject, name: str, max_chars: int) -> str | None:
    """Like ``require_str``, but absent or ``null`` gives ``None``."""
    value = obj.get(name)
    if value is None:
        return None
    if type(value) is not str or not 0 < len(value) <= max_chars:
        raise _invalid(name, f"a string of 1 to {max_chars} characters")
    return value


def require_int(obj: JsonObject, name: str, minimum: int, maximum: int) -> int:
    """An integer (not a boolean, not a float) from ``minimum`` to ``maximum``."""
    value = obj.get(name)
    if value is None:
        raise _missing(name)
    if type(value) is not int or not minimum <= value <= maximum:
        raise _invalid(name, f"an integer from {minimum} to {maximum}")
    return value


def optional_int(obj: JsonObject, name: str, minimum: int, maximum: int) -> int | None:
    """Like ``require_int``, but absent or ``null`` gives ``None``."""
    value = obj.get(name)
    if value is None:
        return None
    if type(value) is not int or not minimum <= value <= maximum:
        raise _invalid(name, f"an integer from {minimum} to {maximum}")
    return value


def require_bool(obj: JsonObject, name: str) -> bool:
    """``true`` or ``false``."""
    value = obj.get(name)
    if value is None:
        raise _missing(name)
    if type(value) is not bool:
        raise _invalid(name, "true or false")
    return value


def require_choice(obj: JsonObject, name: str, choices: Set[str]) -> str:
    """One of the strings in ``choices``."""
    value = obj.get(name)
    if value is None:
        raise _missing(name)
    if type(value) is not str or value not in choices:
        raise _invalid(name, "one of " + ", ".join(sorted(choices)))
    return value


def optional_choice(obj: JsonObject, name: str, choices: Set[str]) -> str | None:
    """Like ``require_choice``, but absent or ``null`` gives ``None``."""
    if obj.get(name) is None:
        return None
    return require_choice(obj, name, choices)


def require_object(obj: JsonObject, name: str) -> JsonObject:
    """A nested JSON object."""
    value = obj.get(name)
    if value is None:
        raise _missing(name)
    if type(value) is not dict:
        raise _invalid(name, "an object")
    return value


def require_timestamp(obj: JsonObject, name: str) -> str:
    """An ISO-8601 date and time in UTC, e.g. ``2024-05-01T12:00:00.123Z``."""
    value = require_str(obj, name, _MAX_TIMESTAMP_CHARS)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise _invalid(name, "an ISO-8601 UTC timestamp") from None
    if moment.utcoffset() != _ZERO:
        raise _invalid(name, "an ISO-8601 UTC timestamp")
    return value
