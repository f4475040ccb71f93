"""`queue.position` over real websockets (docs/protocol.md): at once when queued, at every change,
and to a customer who comes back while waiting, right after its resume."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

import trio

from kefu.protocol.common import Resume
from kefu.protocol.customer import CloseConversation, StartConversation
from tests.server.live import Center, Client, Visitor, connect, live_center


async def _start(stack: AsyncExitStack, nursery: trio.Nursery, center: Center) -> tuple[Visitor, Client, str]:
    visitor = await center.add_visitor()
    client = await stack.enter_async_context(connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}"))
    await client.send(StartConversation(client.client_id()))
    (ack,) = await client.wait_for("ack")
    return visitor, client, ack.conversation_id


async def test_the_place_comes_at_once_at_every_change_and_after_a_reconnect(database_dsn: str, tmp_path: Path) -> None:
    async with live_center(database_dsn, tmp_path) as center, trio.open_nursery() as nursery, AsyncExitStack() as stack:
        # nobody is online: both wait, each told its place as it is queued (no tick to wait for)
        _, first, first_id = await _start(stack, nursery, center)
        await first.wait_for("queue.position", position=1, conversation_id=first_id)
        visitor, second, second_id = await _start(stack, nursery, center)
        await second.wait_for("queue.position", position=2, conversation_id=second_id)

        # the second customer reloads: right after its resume it hears its place again
        async with connect(nursery, f"{center.ws_base}/ws/customer?token={visitor.token}") as again:
            await again.send(Resume(second_id, 0))
            await again.wait_for("resumed", conversation_id=second_id)
            (told,) = await again.wait_for("queue.position", conversation_id=second_id)
            assert told.position == 2
            frames = [f.TYPE for f in again.frames]
            assert frames.index("queue.position") > frames.index("resumed")
            # the first one leaves: the second moves up, and is told so
            await first.send(CloseConversation(first.client_id(), first_id))
            await again.wait_for("queue.position", position=1, conversation_id=second_id)
        nursery.cancel_scope.cancel()
