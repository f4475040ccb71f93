"""The one deadline heap (actors/deadlines.py): ask deadlines kept by one system task instead of
a cancel scope per ask, and timers in the same heap."""

from __future__ import annotations

import pytest
import trio

from kefu.actors.deadlines import COMPACT_AT, DeadlineHeap, ask_deadlines
from kefu.actors.runtime import AskTimeout, Mailbox, Reply

pytestmark = pytest.mark.trio


async def test_a_shorter_deadline_registered_later_still_fires_first(autojump_clock: trio.abc.Clock) -> None:
    keeper = ask_deadlines()
    start = trio.current_time()
    long_reply: Reply[int] = Reply()
    short_reply: Reply[int] = Reply()
    keeper.register(start + 60, long_reply, "slow-actor")
    await trio.testing.wait_all_tasks_blocked()
    keeper.register(start + 2, short_reply, "fast-actor")
    with pytest.raises(AskTimeout, match="fast-actor"), trio.fail_after(3600):
        await short_reply.wait()
    assert trio.current_time() - start == pytest.approx(2)
    assert not long_reply.done
    with pytest.raises(AskTimeout):
        await long_reply.wait()
    assert trio.current_time() - start == pytest.approx(60)


async def test_an_answered_reply_is_never_failed_later(autojump_clock: trio.abc.Clock) -> None:
    keeper = ask_deadlines()
    reply: Reply[str] = Reply()
    keeper.register(trio.current_time() + 1, reply, "actor")
    reply.set("answer")
    await trio.sleep(5)
    assert await reply.wait() == "answer"


async def test_answered_entries_do_not_pile_up() -> None:
    keeper = ask_deadlines()
    for _ in range(COMPACT_AT * 20):
        reply: Reply[int] = Reply()
        keeper.register(trio.current_time() + 3600, reply, "actor")
        reply.set(1)
    assert len(keeper._heap) <= COMPACT_AT * 2


async def test_asks_and_timers_share_one_heap_in_deadline_order(autojump_clock: trio.abc.Clock) -> None:
    heap = DeadlineHeap()
    box: Mailbox[str] = Mailbox("agent:1", 8)
    reply: Reply[int] = Reply()
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(heap.run_forever)
        heap.call_at(start + 3, box.ref, "after the ask")
        heap.register(start + 2, reply, "slow-actor")
        heap.call_at(start + 1, box.ref, "before the ask")
        with trio.fail_after(3600):
            assert await box.receive() == "before the ask"
            assert trio.current_time() - start == pytest.approx(1)
            with pytest.raises(AskTimeout, match="slow-actor"):
                await reply.wait()
            assert trio.current_time() - start == pytest.approx(2)
            assert await box.receive() == "after the ask"
            assert trio.current_time() - start == pytest.approx(3)
        nursery.cancel_scope.cancel()


async def test_cancelled_timers_do_not_pile_up() -> None:
    heap = DeadlineHeap()
    box: Mailbox[str] = Mailbox("agent:1", 8)
    for _ in range(COMPACT_AT * 20):
        heap.call_later(3600, box.ref, "never").cancel()
    assert len(heap) <= COMPACT_AT * 2
