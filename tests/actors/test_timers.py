"""The node's timer service (actors/timers.py), on the mock clock."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from kefu.actors.runtime import Mailbox
from kefu.actors.timers import RETRY_FULL_MAILBOX_SECONDS, Timers


async def _next(box: Mailbox[Any]) -> Any:
    """The next message of `box`, within an hour of mock time (a timer that never fires fails)."""
    with trio.fail_after(3600):
        return await box.receive()


async def test_a_message_comes_at_its_deadline_and_same_moment_ones_in_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timers = Timers()
    box: Mailbox[str] = Mailbox("agent:1", 8)
    async with trio.open_nursery() as nursery:
        stop = trio.Event()
        await nursery.start(timers.run, stop)
        start = trio.current_time()
        timers.call_later(5, box.ref, "late")
        timers.call_later(2, box.ref, "first")
        timers.call_later(2, box.ref, "second")
        assert await _next(box) == "first"
        assert trio.current_time() - start == pytest.approx(2)
        assert await _next(box) == "second"
        assert await _next(box) == "late"
        assert trio.current_time() - start == pytest.approx(5)
        assert timers.fired == 3
        stop.set()


async def test_a_cancelled_timer_never_fires_and_a_late_cancel_changes_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    timers = Timers()
    box: Mailbox[str] = Mailbox("agent:1", 8)
    async with trio.open_nursery() as nursery:
        stop = trio.Event()
        await nursery.start(timers.run, stop)
        cancelled = timers.call_later(1, box.ref, "cancelled")
        fired = timers.call_later(2, box.ref, "fired")
        cancelled.cancel()
        assert await _next(box) == "fired"
        fired.cancel()  # after it fired
        await trio.sleep(10)
        assert box.size == 0 and timers.fired == 1
        stop.set()


async def test_a_full_mailbox_gets_the_message_on_a_later_attempt(autojump_clock: trio.testing.MockClock) -> None:
    timers = Timers()
    box: Mailbox[str] = Mailbox("agent:1", 1)
    box.ref.tell_nowait("filler")
    async with trio.open_nursery() as nursery:
        stop = trio.Event()
        await nursery.start(timers.run, stop)
        start = trio.current_time()
        timers.call_later(1, box.ref, "timed")
        await trio.sleep(1 + RETRY_FULL_MAILBOX_SECONDS / 2)
        assert box.receive_nowait() == "filler"  # the timer found it full: nothing was lost
        assert await _next(box) == "timed"
        assert trio.current_time() - start == pytest.approx(1 + RETRY_FULL_MAILBOX_SECONDS)
        stop.set()


async def test_a_stopped_actors_message_is_dropped_and_the_next_still_fires(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    timers = Timers()
    gone: Mailbox[str] = Mailbox("gone", 8)
    gone.close()
    box: Mailbox[str] = Mailbox("agent:1", 8)
    async with trio.open_nursery() as nursery:
        stop = trio.Event()
        await nursery.start(timers.run, stop)
        timers.call_later(1, gone.ref, "lost")
        timers.call_later(2, box.ref, "kept")
        assert await _next(box) == "kept"
        assert timers.fired == 1
        stop.set()


async def test_deadlines_outlive_a_crash_of_the_task(autojump_clock: trio.testing.MockClock) -> None:
    timers = Timers()
    box: Mailbox[str] = Mailbox("agent:1", 8)
    start = trio.current_time()
    timers.call_later(3, box.ref, "before the crash")
    with pytest.RaisesGroup(pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="injected crash"))):
        async with trio.open_nursery() as nursery:
            await nursery.start(timers.run, trio.Event())
            await trio.sleep(1)
            timers.inject_crash()
    await trio.sleep(5)  # came due while no task ran
    async with trio.open_nursery() as nursery:
        stop = trio.Event()
        await nursery.start(timers.run, stop)
        assert await _next(box) == "before the crash"
        assert trio.current_time() - start == pytest.approx(6)
        stop.set()


async def test_stop_requested_ends_the_service(autojump_clock: trio.testing.MockClock) -> None:
    timers = Timers()
    box: Mailbox[str] = Mailbox("agent:1", 8)
    timers.call_later(60, box.ref, "never")
    stop = trio.Event()
    with trio.fail_after(1):
        async with trio.open_nursery() as nursery:
            await nursery.start(timers.run, stop)
            stop.set()
    assert len(timers) == 1 and box.size == 0
