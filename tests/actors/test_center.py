"""ContactCenter (actors/center.py): starting each session and agent actor once, and again after
their supervisor restarted; on the mock clock with in-memory fakes."""

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
from kefu.actors.agent import Agent
from kefu.actors.center import ContactCenter
from kefu.actors.ports import SessionHandle
from kefu.actors.runtime import Actor, Mailbox, MailboxFull
from kefu.actors.supervisor import DynamicSupervisor
from tests.actors.fakes_routing import ACCOUNT, FakeConnection, FakeStorage, drain, make_center, profile, settle


class StandInSession(Actor[Any]):
    """A session actor that only counts its starts (the CustomerSession has tests of its own)."""

    starts: list[UUID] = []

    def __init__(self, handle: SessionHandle) -> None:
        super().__init__(handle.mailbox)
        self.conversation_id = handle.conversation_id

    async def started(self) -> None:
        await trio.sleep(1)  # a start takes a while (it reads the store): callers overlap
        StandInSession.starts.append(self.conversation_id)


@dataclass
class Wired:
    center: ContactCenter
    storage: FakeStorage
    dispatcher: Mailbox[Any]
    nursery: trio.Nursery
    sessions_stop: trio.Event
    agents_stop: trio.Event

    async def restart_supervisors(self) -> None:
        """Stop both dynamic supervisors (their children go with them) and run them again."""
        for stop in (self.sessions_stop, self.agents_stop):
            stop.set()
        await settle()
        self.sessions_stop, self.agents_stop = trio.Event(), trio.Event()
        await self.nursery.start(self.center._session_supervisor.run, self.sessions_stop)
        await self.nursery.start(self.center._agent_supervisor.run, self.agents_stop)
        await settle()


@asynccontextmanager
async def wired() -> AsyncIterator[Wired]:
    StandInSession.starts = []
    storage = FakeStorage()
    agent_profile = profile(1)
    storage.profiles[agent_profile.agent_id] = agent_profile
    center = make_center(storage)

    async def restart_sessions() -> None:
        await center.restart_sessions()

    async def restart_agents() -> None:
        await center.restart_agents()

    sessions: DynamicSupervisor[Any] = DynamicSupervisor("sessions", on_restart=restart_sessions)
    agents: DynamicSupervisor[Any] = DynamicSupervisor("agents", on_restart=restart_agents)
    center._session_supervisor, center._agent_supervisor = sessions, agents
    center.session_factory = StandInSession
    center.agent_factory = lambda handle: Agent(handle, center)
    dispatcher: Mailbox[Any] = Mailbox("dispatcher", 1000)
    center.dispatcher = dispatcher.ref
    async with trio.open_nursery() as nursery:
        await nursery.start(center.timers.run, trio.Event())
        sessions_stop, agents_stop = trio.Event(), trio.Event()
        await nursery.start(sessions.run, sessions_stop)
        await nursery.start(agents.run, agents_stop)
        yield Wired(center, storage, dispatcher, nursery, sessions_stop, agents_stop)
        nursery.cancel_scope.cancel()


async def test_ensure_session_starts_one_session_for_concurrent_callers(autojump_clock: trio.testing.MockClock) -> None:
    async with wired() as w:
        conversation = uuid4()
        handles: list[SessionHandle] = []

        async def ensure() -> None:
            handles.append(await w.center.ensure_session(ACCOUNT, conversation))

        async with trio.open_nursery() as callers:
            for _ in range(5):
                callers.start_soon(ensure)
        assert StandInSession.starts == [conversation]
        assert len({id(handle) for handle in handles}) == 1
        assert await w.center.ensure_session(ACCOUNT, conversation) is handles[0]
        assert w.center._session_supervisor.child_ids() == [f"session:{conversation}"]
        assert StandInSession.starts == [conversation]


async def test_ensure_agent_is_idempotent_and_a_failed_start_is_tried_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with wired() as w:
        agent_id = profile(1).agent_id
        first, second = await w.center.ensure_agent(ACCOUNT, agent_id), await w.center.ensure_agent(ACCOUNT, agent_id)
        assert first is second and w.storage.profile_reads == 1
        assert w.center.agent(agent_id) is first

        unknown = uuid4()  # no profile: the actor cannot start
        with pytest.raises(Exception, match="does not exist"):
            await w.center.ensure_agent(ACCOUNT, unknown)
        assert w.center.agent(unknown) is None
        w.storage.profiles[unknown] = profile(2)
        assert (await w.center.ensure_agent(ACCOUNT, unknown)).agent_id == unknown


async def test_an_agent_that_stopped_starts_afresh_on_its_next_use(autojump_clock: trio.testing.MockClock) -> None:
    async with wired() as w:
        agent_id = profile(1).agent_id
        handle = await w.center.ensure_agent(ACCOUNT, agent_id)
        await handle.tell(m.SignedOut(None))  # offline, no tab, nothing held: it stops
        await settle()
        assert w.center.agent(agent_id) is None
        assert m.AgentLeft(ACCOUNT, agent_id) in drain(w.dispatcher)
        fresh = await w.center.ensure_agent(ACCOUNT, agent_id)
        assert fresh is not handle


async def test_actors_start_again_on_their_handles_after_their_supervisor_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with wired() as w:
        conversation = uuid4()
        session = await w.center.ensure_session(ACCOUNT, conversation)
        agent = await w.center.ensure_agent(ACCOUNT, profile(1).agent_id)
        tab = FakeConnection(agent.agent_id)
        await agent.tell(m.Connected(tab, b"session-1"))
        await agent.tell(m.ChangeStatus("online", None))
        await settle()
        await w.restart_supervisors()
        await trio.sleep(2)
        assert w.center.session(conversation) is session and session.mailbox.starts == 2
        assert w.center.agent(agent.agent_id) is agent and agent.mailbox.starts == 2
        assert StandInSession.starts == [conversation, conversation]
        # the agent's new incarnation kept its status and its tab
        assert await agent.connections() == frozenset({tab})
        assert [update.available for update in drain(w.dispatcher) if isinstance(update, m.AgentUpdate)][-1]


async def test_reannounce_asks_every_actor_and_returns_those_it_could_not_tell(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with wired() as w:
        busy: Mailbox[Any] = Mailbox("session:busy", 1)
        busy.ref.tell_nowait(m.IdleStop())
        w.center.sessions[uuid4()] = SessionHandle(ACCOUNT, uuid4(), busy)
        idle: Mailbox[Any] = Mailbox("session:idle", 4)
        w.center.sessions[uuid4()] = SessionHandle(ACCOUNT, uuid4(), idle)
        assert w.center.reannounce(sessions=False) == []
        assert idle.size == 0
        assert w.center.reannounce(sessions=True) == [busy.ref]
        assert drain(idle) == [m.Reannounce()]
        with pytest.raises(MailboxFull):
            busy.ref.tell_nowait(m.IdleStop())
