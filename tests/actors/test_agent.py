"""The Agent actor (actors/agent.py) alone, on the mock clock, with in-memory fakes: what it
tells the dispatcher and what its tabs see."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import pytest
import trio
import trio.testing

from kefu.actors import messages as m
from kefu.actors.agent import Agent, AgentHandle
from kefu.actors.center import AGENT_MAILBOX_CAPACITY, RECONNECT_GRACE_SECONDS, ContactCenter
from kefu.actors.runtime import Mailbox
from kefu.protocol import encode_frame
from kefu.protocol.permissions import AGENT
from kefu.protocol.server import OfferRevoked
from tests.actors.fakes_routing import (
    ACCOUNT,
    FakeConnection,
    FakeStorage,
    conversation_row,
    drain,
    make_center,
    of_type,
    profile,
    settle,
)


@dataclass
class Running:
    center: ContactCenter
    handle: AgentHandle
    dispatcher: Mailbox[Any]
    storage: FakeStorage
    nursery: trio.Nursery
    stop: trio.Event

    @property
    def agent_id(self) -> UUID:
        return self.handle.agent_id

    async def start_incarnation(self) -> Agent:
        agent = Agent(self.handle, self.center)
        await self.nursery.start(agent.run, self.stop)
        return agent

    async def tab(self, token_hash: bytes | None = b"session-1") -> FakeConnection:
        connection = FakeConnection(self.agent_id)
        await self.handle.tell(m.Connected(connection, token_hash))
        await settle()
        return connection

    async def tell(self, message: m.AgentMessage) -> None:
        await self.handle.tell(message)
        await settle()

    def updates(self) -> list[m.AgentUpdate]:
        return of_type(drain(self.dispatcher), m.AgentUpdate)


@asynccontextmanager
async def running_agent(
    capacity: int = 2, held: list[UUID] | None = None, **settings: Any
) -> AsyncIterator[tuple[Running, Agent]]:
    async with agent_set_up(capacity, held, **settings) as run:
        yield run, await run.start_incarnation()


@asynccontextmanager
async def agent_set_up(capacity: int = 2, held: list[UUID] | None = None, **settings: Any) -> AsyncIterator[Running]:
    """Everything but the Agent actor itself, which the test starts."""
    storage = FakeStorage()
    agent_profile = profile(1, capacity=capacity)
    storage.profiles[agent_profile.agent_id] = agent_profile
    storage.held[agent_profile.agent_id] = list(held or [])
    for conversation_id in held or []:
        storage.rows[conversation_id] = conversation_row(conversation_id, topic="call me at 13812345678")
    center = make_center(storage, **settings)
    dispatcher: Mailbox[Any] = Mailbox("dispatcher", 1000)
    center.dispatcher = dispatcher.ref
    handle = AgentHandle(ACCOUNT, agent_profile.agent_id, Mailbox("agent:1", AGENT_MAILBOX_CAPACITY))
    center.agents[handle.agent_id] = handle
    async with trio.open_nursery() as nursery:
        stop = trio.Event()
        await nursery.start(center.timers.run, stop)
        yield Running(center, handle, dispatcher, storage, nursery, stop)
        stop.set()
        nursery.cancel_scope.cancel()


async def test_status_changes_reach_every_tab_and_the_dispatcher(autojump_clock: trio.testing.MockClock) -> None:
    async with running_agent() as (run, agent):
        (first,) = run.updates()
        assert (first.available, first.held) == (False, 0)
        tab = await run.tab()
        assert [f.TYPE for f in tab.frames] == ["conversations", "status"]
        assert tab.of("status")[-1].status == "offline"

        await run.tell(m.ChangeStatus("online", "ignored unless on break"))
        assert [u.available for u in run.updates()][-1] is True
        status = tab.of("status")[-1]
        assert (status.status, status.reason, status.capacity) == ("online", None, 2)

        await run.tell(m.ChangeStatus("break", "lunch"))
        assert [u.available for u in run.updates()] == [False]
        assert (tab.of("status")[-1].status, tab.of("status")[-1].reason) == ("break", "lunch")

        # a second tab gets every status frame too
        second = await run.tab()
        await run.tell(m.ChangeStatus("online", None))
        assert tab.of("status")[-1].status == second.of("status")[-1].status == "online"
        assert agent.available


async def test_a_held_conversation_keeps_its_slot_through_wrap_up(autojump_clock: trio.testing.MockClock) -> None:
    conversation = uuid4()
    async with running_agent(capacity=1, wrap_up_seconds=30.0) as (run, _agent):
        tab = await run.tab()
        await run.tell(m.ChangeStatus("online", None))
        run.updates()
        await run.tell(m.Held(conversation))
        (update,) = run.updates()
        assert (update.held, update.held_ids) == (1, frozenset({conversation}))
        assert tab.of("status")[-1].active_conversations == 1

        await run.tell(m.WrapUpStarted(conversation, 30.0))
        (update,) = run.updates()
        assert update.held_ids == frozenset({conversation}), "the slot stays taken during wrap-up"
        status = tab.of("status")[-1]
        assert (status.status, status.wrap_up_seconds) == ("wrap_up", 30)

        await trio.sleep(12)
        await run.tell(m.Reannounce())
        assert tab.of("status")[-1].wrap_up_seconds == 18, "the wrap-up counts down on the clock"
        assert run.updates()[-1].held_ids == frozenset({conversation})

        await run.tell(m.Let(conversation))
        (update,) = run.updates()
        assert (update.held, update.held_ids, update.available) == (0, frozenset(), True)
        assert tab.of("status")[-1].status == "online"


async def test_a_new_tab_hears_the_held_conversations_to_resume(autojump_clock: trio.testing.MockClock) -> None:
    held = [uuid4(), uuid4()]
    async with running_agent(held=held) as (run, _agent):
        await run.tell(m.WrapUpStarted(held[0], 30.0))
        tab = await run.tab()
        (listing,) = tab.of("conversations")
        states = {summary.conversation_id: summary.state for summary in listing.conversations}
        assert states == {str(held[0]): "wrap_up", str(held[1]): "assigned"}
        assert all(s.topic is not None and "13812345678" not in s.topic for s in listing.conversations)


async def test_the_last_tab_closing_keeps_the_status_for_the_reconnect_grace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    assert RECONNECT_GRACE_SECONDS == 30.0
    async with running_agent() as (run, agent):
        tab = await run.tab()
        await run.tell(m.ChangeStatus("online", None))
        run.updates()
        await run.tell(m.Disconnected(tab))
        assert [u.available for u in run.updates()] == [False], "no tab: no offers"
        assert agent.status == "online"

        await trio.sleep(29)
        reload = await run.tab()
        assert reload.of("status")[-1].status == "online", "a reload within the grace keeps the status"
        assert [u.available for u in run.updates()] == [True]

        await run.tell(m.Disconnected(reload))
        await trio.sleep(RECONNECT_GRACE_SECONDS - 0.5)
        assert agent.status == "online"
        await trio.sleep(1)
        await settle()
        assert agent.status == "offline"
        messages = drain(run.dispatcher)
        assert of_type(messages, m.AgentLeft) == [m.AgentLeft(ACCOUNT, run.agent_id)], "offline, no tab: it stops"
        assert run.center.agent(run.agent_id) is None


async def test_frames_for_the_agent_go_to_every_open_tab(autojump_clock: trio.testing.MockClock) -> None:
    async with running_agent() as (run, _agent):
        first, second = await run.tab(), await run.tab()
        second.close(1000, "tab closed")
        run.handle.deliver_nowait(encode_frame(OfferRevoked("offer-1", "expired")))
        await settle()
        assert [f.offer_id for f in first.of("offer.revoked")] == ["offer-1"]
        assert second.of("offer.revoked") == []
        assert await run.handle.connections() == frozenset({first}), "a closed tab is forgotten"


async def test_signing_out_one_session_closes_only_its_sockets(autojump_clock: trio.testing.MockClock) -> None:
    async with running_agent() as (run, agent):
        mine, other = await run.tab(b"session-1"), await run.tab(b"session-2")
        await run.tell(m.ChangeStatus("online", None))
        await run.tell(m.SignedOut(b"session-1"))
        assert (mine.close_code, other.close_code) == (1008, None)
        assert agent.status == "online"
        await run.tell(m.SignedOut(None))
        assert other.close_code == 1008
        assert agent.status == "offline"


async def test_missed_offers_put_an_online_agent_on_break(autojump_clock: trio.testing.MockClock) -> None:
    async with running_agent() as (run, agent):
        tab = await run.tab()
        await run.tell(m.MissedOffers(3))
        assert agent.status == "offline", "an agent not online stays as it is"
        await run.tell(m.ChangeStatus("online", None))
        await run.tell(m.MissedOffers(3))
        assert (tab.of("status")[-1].status, tab.of("status")[-1].reason) == ("break", "missed_offers")


async def test_a_denial_is_audited_with_the_users_role(autojump_clock: trio.testing.MockClock) -> None:
    async with running_agent() as (run, _agent):
        conversation = uuid4()
        await run.tell(m.Denied("offer.accept", "conversation", conversation))
        (denial,) = run.storage.denials
        assert denial == (ACCOUNT, AGENT, run.agent_id, "offer.accept", conversation, "conversation")


async def test_a_crash_keeps_the_status_the_tabs_and_the_wrap_up(autojump_clock: trio.testing.MockClock) -> None:
    conversation = uuid4()
    async with agent_set_up(held=[conversation]) as run:
        with pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="injected crash")):
            async with trio.open_nursery() as crashing:
                await crashing.start(Agent(run.handle, run.center).run, trio.Event())
                tab = await run.tab(b"session-1")
                await run.tell(m.ChangeStatus("break", "lunch"))
                await run.tell(m.WrapUpStarted(conversation, 30.0))
                await run.handle.tell(m.InjectCrash())
        successor = await run.start_incarnation()
        assert conversation in successor.kept.wrap_up
        assert (successor.status, successor.reason) == ("break", "lunch")
        assert await run.handle.connections() == frozenset({tab})
        await run.tell(m.SignedOut(b"session-1"))
        assert tab.close_code == 1008, "it still knows which session opened the tab"


async def test_the_handle_never_waits_on_a_full_mailbox(caplog: pytest.LogCaptureFixture) -> None:
    agent_id = profile(1).agent_id
    handle = AgentHandle(ACCOUNT, agent_id, Mailbox("agent:1", 1))
    mine, other = FakeConnection(agent_id), FakeConnection(agent_id)
    handle.kept.tabs.update({mine: b"session-1", other: b"session-2"})
    handle.tell_nowait(m.Reannounce())  # full now: the actor is stuck
    handle.deliver_nowait(encode_frame(OfferRevoked("offer-1", "expired")))
    assert "frame for its tabs was dropped" in caplog.text
    # a revoked session's sockets close at once all the same
    handle.sign_out_nowait(b"session-1")
    assert (mine.close_code, other.close_code) == (1008, None)
    assert handle.mailbox.size == 1
