"""Rate limits and lockouts for requests nobody has authenticated yet (sans-IO).

Theory of operation:

1. A `Throttle` is a table of token buckets, one per key (a client address, an account and
   e-mail pair). A bucket holds at most `Rate.burst` tokens and gains `Rate.burst` of them
   evenly over `Rate.per_seconds`; a request takes one token, and a request that finds none is
   refused with the whole seconds until the next token (HTTP `Retry-After`).
2. `admit` checks every bucket a request counts against before it takes from any, so a refused
   request costs nothing: the answer is 429 before any password is hashed or row written.
3. Time is a number the caller passes (`now`, in seconds, monotonic). Nothing here reads a clock,
   so tests drive it with plain numbers.
4. Tables are bounded (`max_keys`). Overflow policy: the bucket touched least recently is
   forgotten. A full bucket is the same as no bucket, so nothing is lost while the table holds
   only clients that have stopped; a flood from more than `max_keys` addresses can make the
   table forget a throttled key, which then starts again from a full bucket (at worst `burst`
   more requests from it) — the bound on memory wins over exactness.
5. `FailureCount` counts consecutive failures per key and locks the key for `lock_seconds` after
   `limit` of them; a success forgets the key. Same table bound and overflow policy.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass

DEFAULT_MAX_KEYS = 10_000
"""Keys a table keeps at most (a bucket is about 200 bytes: 10,000 are about 2 MB)."""

_ROUNDING = 1e-9
"""Floating-point slack: 5 tokens a minute for 5 s is 0.41666… tokens, not a hair less."""


@dataclass(frozen=True, slots=True)
class Rate:
    """`burst` requests at once, and `burst` more every `per_seconds` after that."""

    burst: int
    """Tokens a full bucket holds: requests admitted at once after a quiet time."""
    per_seconds: float
    """Seconds over which a bucket refills from empty to full."""

    def __post_init__(self) -> None:
        if self.burst < 1 or not self.per_seconds > 0:
            raise ValueError(f"a rate needs burst >= 1 and per_seconds > 0, not {self}")

    @property
    def tokens_per_second(self) -> float:
        return self.burst / self.per_seconds


@dataclass(frozen=True, slots=True)
class ThrottleStatistics:
    keys: int
    """Buckets in the table now."""
    max_keys: int
    """The table's bound."""
    admitted: int
    """Requests that took a token."""
    refused: int
    """Requests refused because this table's bucket was empty."""
    forgotten: int
    """Buckets dropped to keep the table within `max_keys` (least recently touched first)."""


class Throttle:
    """Token buckets keyed by who asks; see the module's rules 1, 3 and 4."""

    def __init__(self, rate: Rate, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.rate = rate
        self.max_keys = max_keys
        self._buckets: OrderedDict[Hashable, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)
        self._admitted = self._refused = self._forgotten = 0

    def _tokens(self, key: Hashable, now: float) -> float:
        held = self._buckets.get(key)
        if held is None:
            return float(self.rate.burst)
        tokens, at = held
        return min(float(self.rate.burst), tokens + max(0.0, now - at) * self.rate.tokens_per_second)

    def retry_after(self, key: Hashable, now: float) -> int:
        """0 when `key` may make a request now; else the whole seconds until it may (at least 1)."""
        missing = 1.0 - self._tokens(key, now)
        if missing <= _ROUNDING:
            return 0
        return max(1, math.ceil(missing / self.rate.tokens_per_second - _ROUNDING))

    def take(self, key: Hashable, now: float) -> None:
        """Take one token of `key`'s bucket (the caller checked `retry_after` first)."""
        tokens = max(0.0, self._tokens(key, now) - 1.0)
        held = self._buckets.get(key)
        self._buckets[key] = (tokens, now if held is None else max(now, held[1]))  # time never runs back
        self._buckets.move_to_end(key)
        self._admitted += 1
        while len(self._buckets) > self.max_keys:
            self._buckets.popitem(last=False)
            self._forgotten += 1

    def statistics(self) -> ThrottleStatistics:
        return ThrottleStatistics(len(self._buckets), self.max_keys, self._admitted, self._refused, self._forgotten)


def admit(now: float, *claims: tuple[Throttle, Hashable]) -> int:
    """Admit a request that counts against each (throttle, key) of `claims`: 0 when it may go on
    (a token was taken from every bucket), else the seconds to wait (`Retry-After`), nothing taken."""
    wait = 0
    for throttle, key in claims:
        needed = throttle.retry_after(key, now)
        if needed:
            throttle._refused += 1
            wait = max(wait, needed)
    if wait == 0:
        for throttle, key in claims:
            throttle.take(key, now)
    return wait


class FailureCount:
    """Consecutive failures per key; `limit` of them lock the key for `lock_seconds` (rule 5)."""

    def __init__(self, limit: int, lock_seconds: float, *, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        if limit < 1 or not lock_seconds > 0 or max_keys < 1:
            raise ValueError("a failure count needs limit >= 1, lock_seconds > 0 and max_keys >= 1")
        self.limit = limit
        self.lock_seconds = lock_seconds
        self.max_keys = max_keys
        self._entries: OrderedDict[Hashable, tuple[int, float]] = OrderedDict()  # key -> (failures, locked until)

    def locked_for(self, key: Hashable, now: float) -> int:
        """0 when `key` is not locked; else the whole seconds its lock still lasts (at least 1)."""
        entry = self._entries.get(key)
        if entry is None or entry[1] <= now:
            return 0
        return max(1, math.ceil(entry[1] - now))

    def failed(self, key: Hashable, now: float) -> bool:
        """Count one failure of `key`; True when this one locks it. Failures after a lock ran out
        count from zero again."""
        failures, until = self._entries.pop(key, (0, 0.0))
        if until and until <= now:
            failures, until = 0, 0.0
        failures += 1
        locked_now = failures == self.limit
        if locked_now:
            until = now + self.lock_seconds
        self._entries[key] = (failures, until)
        while len(self._entries) > self.max_keys:
            self._entries.popitem(last=False)
        return locked_now

    def succeeded(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
