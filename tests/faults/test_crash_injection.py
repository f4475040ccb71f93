"""Crashes injected into CustomerSession and Agent actors while many conversations run.

`InjectCrash` makes an actor raise while handling it, as a bug would. The supervisor
restarts the actor on its surviving handle (mailbox, subscribed sockets, agent status) and
it rebuilds its state from the event log. Past the restart intensity of its supervisor
(more than N restarts in T seconds) the supervisor gives up and escalates to its parent, the
root, which restarts that supervisor, and with it every actor of the group.
"""

from __future__ import annotations

import time
from contextlib import AsyncExitStack
from pathlib import Path
from uuid import UUID

import httpx
import trio

from kefu.actors.messages import InjectCrash
from kefu.actors.supervisor import SupervisorEscalation
from kefu.server.accounts import create_account
from kefu.server.config import Config
from kefu.server.node import ROOT_INTENSITY, serve
from tests.conftest import open_database
from tests.faults.common import (
    STORED_EVENTS,
    all_delivered,
    assert_delivered_once_in_order,
    assert_exactly_once,
    conversations_in_progress,
    talk,
)
from tests.faults.peers import Peer
from tests.server.live import connect, live_center, poll

CUSTOMERS = 12
AGENTS = 3
CUSTOMER_MESSAGES = 30
AGENT_MESSAGES = 6
CRASH_ROUNDS = 5
VICTIMS = 3


def _statistics(center: object) -> dict[str, tuple[int, int]]:
    node = center.node  # type: ignore[attr-defined]
    return {s.name: (s.restarts, s.child_crashes) for s in node.supervisor_statistics()}


async def test_crashed_sessions_and_agents_recover_and_no_other_conversation_notices(
    database_dsn: str, tmp_path: Path
) -> None:
    async with (
        live_center(database_dsn, tmp_path, max_frames_per_second=10_000) as center,
        trio.open_nursery() as nursery,
    ):
        agents, customers = await conversations_in_progress(center, nursery, AGENTS, CUSTOMERS)
        peers = agents + customers
        node_center = center.node.center
        victims = customers[:VICTIMS]
        victim_conversations = {c.conversations[0] for c in victims}
        sessions = {c.conversations[0]: node_center.session(UUID(c.conversations[0])) for c in customers}
        crashed_agent = node_center.agent(UUID(agents[0].user_id))
        assert crashed_agent is not None and all(sessions.values())
        starts_before = {conversation: handle.mailbox.starts for conversation, handle in sessions.items()}

        async def crasher() -> None:
            # spread over the load: well under the intensity of both supervisors
            for _ in range(CRASH_ROUNDS):
                await trio.sleep(0.15)
                for conversation in victim_conversations:
                    sessions[conversation].ref.tell_nowait(InjectCrash())
                crashed_agent.ref.tell_nowait(InjectCrash())

        with trio.fail_after(90):
            async with trio.open_nursery() as talkers:
                for customer in customers:
                    talkers.start_soon(talk, customer, CUSTOMER_MESSAGES, 0.02)
                for agent in agents:
                    talkers.start_soon(talk, agent, AGENT_MESSAGES, 0.02)
                talkers.start_soon(crasher)
            for peer in peers:
                await peer.drained(timeout=30)
        rows = await center.fetch(STORED_EVENTS, center.slug)
        await all_delivered(peers, rows)

        # the crashed ones crashed, were restarted, and lost nothing
        for conversation in victim_conversations:
            assert sessions[conversation].mailbox.crashes == CRASH_ROUNDS
            assert node_center.session(UUID(conversation)) is sessions[conversation], "same handle, new actor"
        assert crashed_agent.mailbox.crashes == CRASH_ROUNDS
        # A supervisor counts a restart when it has handled the exit, a moment after the crash:
        # the last one may still be under way when the peers are drained.
        await poll(
            lambda: (
                _statistics(center)["sessions"][0] >= VICTIMS * CRASH_ROUNDS
                and _statistics(center)["agents"][0] >= CRASH_ROUNDS
            ),
            "the supervisors to restart every crashed actor",
        )
        assert _statistics(center)["sessions"] == (VICTIMS * CRASH_ROUNDS, VICTIMS * CRASH_ROUNDS)
        assert _statistics(center)["agents"] == (CRASH_ROUNDS, CRASH_ROUNDS)
        assert _statistics(center)["root"] == (0, 0), "nothing escalated"
        # the agent whose actor crashed is still online, on the same socket
        assert agents[0].statuses[-1].status == "online" and agents[0].connections == 1
        assert_exactly_once(rows, peers)
        assert_delivered_once_in_order(rows, peers)
        # the other conversations did not notice: no error, no reconnect, their session never restarted
        for customer in customers[VICTIMS:]:
            conversation = customer.conversations[0]
            assert customer.errors == [] and customer.connections == 1, customer.name
            assert sessions[conversation].mailbox.crashes == 0
            assert sessions[conversation].mailbox.starts == starts_before[conversation]
        # an error an agent saw (a frame that met a crash) was retryable, and about a crashed conversation
        for agent in agents:
            for error in agent.errors:
                assert error.retryable and error.code == "unavailable"
        nursery.cancel_scope.cancel()
    retried = sum(p.retried for p in peers)
    print(f"crash injection: {VICTIMS * CRASH_ROUNDS} session crashes, {CRASH_ROUNDS} agent crashes, retried={retried}")


async def _crash_until_escalation(center: object, handle: object, supervisor: object) -> float:
    """Inject one crash more than `supervisor` tolerates into `handle`'s actor; wait for the root to
    restart the supervisor. Returns how long the crashes took."""
    node = center.node  # type: ignore[attr-defined]
    root_restarts = node.root.statistics().restarts
    started = time.monotonic()
    for _ in range(supervisor.intensity + 1):  # type: ignore[attr-defined]
        handle.ref.tell_nowait(InjectCrash())  # type: ignore[attr-defined]
    with trio.fail_after(30):
        while node.root.statistics().restarts == root_restarts:
            await trio.sleep(0.01)
    return time.monotonic() - started


async def test_past_its_restart_intensity_a_supervisor_escalates_and_its_group_restarts(
    database_dsn: str, tmp_path: Path
) -> None:
    async with (
        live_center(database_dsn, tmp_path, max_frames_per_second=10_000) as center,
        trio.open_nursery() as nursery,
    ):
        agents, customers = await conversations_in_progress(center, nursery, 2, 4)
        peers = agents + customers
        node = center.node
        node_center = node.center
        sessions = [node_center.session(UUID(c.conversations[0])) for c in customers]
        agent_handles = [node_center.agent(UUID(a.user_id)) for a in agents]
        statuses = [len(a.statuses) for a in agents]

        async with trio.open_nursery() as talkers:
            for customer in customers:
                talkers.start_soon(talk, customer, 20, 0.05)
            for agent in agents:
                talkers.start_soon(talk, agent, 5, 0.1)

            # agents: more than N restarts in T seconds -> the root restarts the whole group
            assert (node.agents.intensity, node.agents.period) == (10, 5.0)
            agents_took = await _crash_until_escalation(center, agent_handles[0], node.agents)
            with trio.fail_after(30):  # generous: CI machines are slow and shared
                # the agent whose actor never crashed was restarted too, and says so on its socket
                while agent_handles[1].mailbox.starts < 2 or len(agents[1].statuses) == statuses[1]:
                    await trio.sleep(0.01)
            assert agent_handles[1].mailbox.crashes == 0
            assert node_center.agent(UUID(agents[1].user_id)) is agent_handles[1]
            assert [a.statuses[-1].status for a in agents] == ["online", "online"]

            # sessions: the same, one level up; every conversation's session restarts from its log
            assert (node.sessions.intensity, node.sessions.period) == (100, 5.0)
            sessions_took = await _crash_until_escalation(center, sessions[0], node.sessions)
            with trio.fail_after(30):  # generous: CI machines are slow and shared
                while any(s.mailbox.starts < 2 for s in sessions[1:]):
                    await trio.sleep(0.01)
            assert all(s.mailbox.crashes == 0 for s in sessions[1:])
            assert node.root.statistics().restarts == 2
            assert node.root.statistics().child_crashes == 2

        for peer in peers:
            await peer.drained(timeout=30)
        rows = await center.fetch(STORED_EVENTS, center.slug)
        await all_delivered(peers, rows)
        # through both escalations: nothing lost, nothing doubled, every socket kept
        assert_exactly_once(rows, peers)
        assert_delivered_once_in_order(rows, peers)
        assert all(p.connections == 1 for p in peers)
        # and the node took new work all along
        assert (await center.http.get("/readyz")).status_code == 200
        newcomer = Peer("late", "customer", customers[0].url)
        nursery.start_soon(newcomer.run)
        conversation = await newcomer.start_conversation()
        with trio.fail_after(10):
            while not newcomer.kinds(conversation, "assigned"):
                await newcomer.changed()
        nursery.cancel_scope.cancel()
    print(f"escalation: agents group after {agents_took:.2f} s of crashes, sessions group after {sessions_took:.2f} s")


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


async def test_past_the_root_intensity_the_node_stops(database_dsn: str, tmp_path: Path) -> None:
    """More than 5 restarts of the root's children within 30 s: the node gives up (`kefu serve` exits 1)."""
    intensity, _ = ROOT_INTENSITY
    config = Config(port=0, database_url=database_dsn, data_dir=tmp_path, database_pool_size=4, shutdown_grace=1.0)
    async with open_database(database_dsn) as database:
        account = await create_account(
            database, name="Root", slug="root-test", admin_email="admin@root.example", admin_password="p" * 12
        )
    escalations = 0
    started = False
    with trio.fail_after(60):
        try:
            async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
                node = await nursery.start(serve, config)
                async with httpx.AsyncClient(base_url=node.urls[0]) as http:
                    response = await http.post(
                        "/api/v1/auth/sign-in",
                        json={"account": "root-test", "email": "admin@root.example", "password": "p" * 12},
                    )
                token = response.json()["token"]
                # a signed-in workbench: its Agent actor is what crashes
                ws_url = node.urls[0].replace("http://", "ws://")
                client = await stack.enter_async_context(connect(nursery, f"{ws_url}/ws/agent?token={token}"))
                await client.wait_for("status")
                started = True
                # escalate the agents supervisor again and again: each is one restart of a root child
                for _ in range(intensity + 1):
                    handle = node.center.agent(account.admin_user_id)
                    restarts = node.root.statistics().restarts
                    for _ in range(node.agents.intensity + 1):
                        handle.ref.tell_nowait(InjectCrash())
                    while node.root.statistics().restarts == restarts:
                        await trio.sleep(0.01)
                    escalations += 1
                await trio.sleep_forever()
        except BaseException as error:
            failures = _leaves(error)
        else:
            failures = []
    assert started, failures
    assert escalations == intensity, failures
    assert [(type(f), getattr(f, "supervisor", None)) for f in failures] == [(SupervisorEscalation, "root")]


async def test_a_frame_whose_handling_crashes_the_session_is_answered_and_stored_once_on_retry(
    database_dsn: str, tmp_path: Path
) -> None:
    """A bug met while handling a frame (here: the log moved under the session, as when an
    earlier incarnation's append committed after it timed out) crashes the session; the sender
    hears a retryable error instead of silence, and its retry is stored once by the rebuilt session."""
    async with (
        live_center(database_dsn, tmp_path, max_frames_per_second=10_000) as center,
        trio.open_nursery() as nursery,
    ):
        _, (customer,) = await conversations_in_progress(center, nursery, 1, 1)
        conversation = customer.conversations[0]
        session = center.node.center.session(UUID(conversation))
        assert session is not None
        async with open_database(database_dsn) as database:
            await database.execute(
                "INSERT INTO conversation_events"
                " (account_id, conversation_id, seq, kind, sender_role, body, created_at)"
                " SELECT account_id, conversation_id, max(seq) + 1, 'message', 'system', '{\"text\": \"late\"}', now()"
                " FROM conversation_events WHERE conversation_id = $1 GROUP BY account_id, conversation_id",
                UUID(conversation),
            )
        client_id = await customer.say(conversation, "hello after the move")
        await customer.drained(timeout=15)
        assert session.mailbox.crashes == 1
        (error,) = customer.errors
        assert (error.code, error.retryable, error.ref) == ("unavailable", True, client_id)
        rows = await center.fetch(STORED_EVENTS, center.slug)
        assert [r["seq"] for r in rows if r["client_id"] == client_id] == [customer.acks[client_id].seq]
        assert [r["text"] for r in rows if r["kind"] == "message"] == ["late", "hello after the move"]
        nursery.cancel_scope.cancel()
