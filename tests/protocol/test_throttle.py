"""The sans-IO rate limits of unauthenticated requests: time is a number passed in, no clock."""

from __future__ import annotations

import pytest

from kefu.protocol.throttle import FailureCount, Rate, Throttle, admit


def test_a_bucket_admits_its_burst_then_one_per_refill_interval() -> None:
    throttle = Throttle(Rate(burst=5, per_seconds=60))  # one token every 12 s
    assert [admit(100.0, (throttle, "10.0.0.1")) for _ in range(7)] == [0, 0, 0, 0, 0, 12, 12]
    assert admit(105.0, (throttle, "10.0.0.1")) == 7  # 7 s still to wait, whole seconds rounded up
    assert admit(111.5, (throttle, "10.0.0.1")) == 1
    assert admit(112.0, (throttle, "10.0.0.1")) == 0
    assert admit(112.0, (throttle, "10.0.0.1")) == 12
    # Another key has its own bucket; time going backwards refills nothing.
    assert admit(50.0, (throttle, "10.0.0.2")) == 0
    assert admit(40.0, (throttle, "10.0.0.1")) == 12
    stats = throttle.statistics()
    assert (stats.keys, stats.admitted, stats.refused) == (2, 7, 6)


def test_a_request_counted_by_two_buckets_takes_from_neither_when_one_refuses() -> None:
    by_address = Throttle(Rate(burst=3, per_seconds=60))
    by_user = Throttle(Rate(burst=1, per_seconds=30))
    assert admit(0.0, (by_address, "a"), (by_user, ("acme", "ann@acme.example"))) == 0
    # The user's bucket is empty: refused with its wait, and the address keeps its tokens.
    assert admit(0.0, (by_address, "a"), (by_user, ("acme", "ann@acme.example"))) == 30
    assert by_address.retry_after("a", 0.0) == 0
    assert admit(0.0, (by_address, "a"), (by_user, ("acme", "bob@acme.example"))) == 0
    assert admit(0.0, (by_address, "a"), (by_user, ("acme", "cat@acme.example"))) == 0
    # Now both are empty: the answer is the longer wait.
    assert admit(0.0, (by_address, "a"), (by_user, ("acme", "ann@acme.example"))) == 30
    assert admit(0.0, (by_address, "a"), (by_user, ("acme", "dan@acme.example"))) == 20


def test_the_table_is_bounded_and_forgets_the_least_recently_touched_key() -> None:
    throttle = Throttle(Rate(burst=1, per_seconds=60), max_keys=3)
    for n, key in enumerate("abcd"):
        assert admit(float(n), (throttle, key)) == 0
    stats = throttle.statistics()
    assert (stats.keys, stats.max_keys, stats.forgotten) == (3, 3, 1)
    # "a" was forgotten: it starts again from a full bucket; "b" to "d" are still empty.
    assert admit(4.0, (throttle, "a")) == 0
    assert [throttle.retry_after(key, 4.0) for key in "cd"] == [58, 59]
    assert throttle.retry_after("b", 4.0) == 0  # "b" went when "a" came back
    for n in range(10_000):
        admit(5.0, (throttle, f"flood-{n}"))
    assert throttle.statistics().keys == 3


def test_consecutive_failures_lock_a_key_until_the_lock_runs_out() -> None:
    failures = FailureCount(limit=3, lock_seconds=900)
    key = ("acme", "nobody@acme.example")
    assert [failures.failed(key, 10.0) for _ in range(3)] == [False, False, True]
    assert failures.locked_for(key, 10.0) == 900
    assert failures.locked_for(key, 909.5) == 1
    assert failures.locked_for(key, 910.0) == 0
    # After the lock the count starts from zero; a success forgets the key.
    assert [failures.failed(key, 911.0) for _ in range(2)] == [False, False]
    failures.succeeded(key)
    assert [failures.failed(key, 912.0) for _ in range(2)] == [False, False]
    assert failures.locked_for(key, 912.0) == 0


def test_failure_counts_are_bounded() -> None:
    failures = FailureCount(limit=2, lock_seconds=60, max_keys=100)
    for n in range(1_000):
        failures.failed(f"key-{n}", 0.0)
    assert len(failures) == 100


@pytest.mark.parametrize(("burst", "per_seconds"), [(0, 60), (1, 0), (1, -1)])
def test_a_rate_must_admit_something(burst: int, per_seconds: float) -> None:
    with pytest.raises(ValueError):
        Rate(burst, per_seconds)
