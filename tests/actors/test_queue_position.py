"""Queue position and estimated wait (actors/dispatcher.py, "Queue position and estimated wait";
docs/protocol.md, `queue.position`), in a deterministic simulation on the mock clock.

The running `Dispatcher` routes one auto-accepting queue served by six agents whose handle
times come from a seeded generator; customers arrive in a burst and then faster than they are
served, so a line builds. Each conversation's session is a mailbox this test reads: it records
every `QueueStatus` with the (mock) time it came, and when the conversation was assigned.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import trio
import trio.testing

from kefu.actors import messages as m
from kefu.actors.center import CenterSettings, ContactCenter
from kefu.actors.dispatcher import Dispatcher
from kefu.actors.ports import AgentProfile, QueueSettings, SessionHandle
from kefu.actors.runtime import Mailbox
from kefu.actors.supervisor import DynamicSupervisor
from kefu.actors.timers import Timers
from kefu.protocol.permissions import AGENT
from kefu.protocol.server import CustomerSummary

ACCOUNT = uuid.UUID(int=1)
QUEUE = uuid.UUID(int=2)
AGENTS = 6
BURST = 40
ARRIVALS = 90
MEAN_HANDLE_SECONDS = 8.0
MEAN_ARRIVAL_GAP = 1.0  # faster than the 0.75 a second the six agents serve: the line grows
NOW_ON_ANY_WALL_CLOCK = datetime.now(UTC) + timedelta(days=1)
"""A waiting start the dispatcher takes as "now" (it subtracts the wall-clock time waited, and
the wall clock moves while the mock clock stands still: arrivals would reorder)."""


class _Queues:
    """The one read the dispatcher makes of storage while routing: the account's queues."""

    async def queues(self, account_id: uuid.UUID) -> list[QueueSettings]:
        return [QueueSettings(ACCOUNT, QUEUE, "Support", "least_load", auto_accept=True, is_default=True)]


@dataclass
class Customer:
    conversation_id: uuid.UUID
    arrived: float
    statuses: list[tuple[float, int, int | None]] = field(default_factory=list)
    assigned: float | None = None


async def _simulate(seed: int) -> list[Customer]:
    rng = random.Random(seed)
    center = ContactCenter(
        store=Mailbox("store").ref,
        storage=_Queues(),  # type: ignore[arg-type]
        timers=Timers(),
        sessions=DynamicSupervisor("sessions"),
        agents=DynamicSupervisor("agents"),
        settings=CenterSettings(),
    )
    mailbox: Mailbox[Any] = Mailbox("dispatcher", 10_000)
    center.dispatcher = mailbox.ref
    dispatcher = Dispatcher(mailbox, center)
    customers: list[Customer] = []
    summary = CustomerSummary(customer_id="c", channel="webchat")
    async with trio.open_nursery() as nursery:
        stop = trio.Event()
        nursery.start_soon(center.timers.run, stop)
        nursery.start_soon(dispatcher.run, stop)
        for i in range(AGENTS):
            profile = AgentProfile(ACCOUNT, uuid.UUID(int=100 + i), f"Agent {i}", AGENT, 1, frozenset(), {})
            await mailbox.ref.tell(m.AgentUpdate(profile, True, 0))

        async def handle(agent_id: uuid.UUID, conversation_id: uuid.UUID) -> None:
            await trio.sleep(rng.expovariate(1 / MEAN_HANDLE_SECONDS))
            await mailbox.ref.tell(m.Released(ACCOUNT, agent_id, conversation_id))

        async def session(customer: Customer, inbox: Mailbox[Any]) -> None:
            while customer.assigned is None:
                message = await inbox.receive()
                if isinstance(message, m.QueueStatus):
                    customer.statuses.append((trio.current_time(), message.position, message.estimated_wait_seconds))
                elif isinstance(message, m.Assign):
                    customer.assigned = trio.current_time()
                    nursery.start_soon(handle, message.agent_id, customer.conversation_id)

        async def arrive() -> None:
            conversation_id = uuid.uuid4()
            inbox: Mailbox[Any] = Mailbox(f"session:{conversation_id}", 512)
            center.sessions[conversation_id] = SessionHandle(ACCOUNT, conversation_id, inbox)
            customer = Customer(conversation_id, trio.current_time())
            customers.append(customer)
            nursery.start_soon(session, customer, inbox)
            await mailbox.ref.tell(m.Enqueue(ACCOUNT, conversation_id, QUEUE, NOW_ON_ANY_WALL_CLOCK, summary))

        for _ in range(BURST):
            await arrive()
        for _ in range(ARRIVALS):
            await trio.sleep(rng.expovariate(1 / MEAN_ARRIVAL_GAP))
            await arrive()
        with trio.fail_after(10_000):
            while any(c.assigned is None for c in customers):
                await trio.sleep(1)
        stop.set()
        nursery.cancel_scope.cancel()
    return customers


async def test_the_position_comes_at_once_and_on_every_change(autojump_clock: trio.testing.MockClock) -> None:
    customers = await _simulate(seed=11)
    waited = [c for c in customers if c.assigned is not None and c.assigned > c.arrived]
    assert len(waited) > BURST
    for customer in waited:
        times = [at for at, _, _ in customer.statuses]
        positions = [position for _, position, _ in customer.statuses]
        # told its place the moment it was queued, not on a later tick
        assert times[0] == customer.arrived
        # and every place after, one by one, down to 1
        assert sorted(set(positions), reverse=True) == list(range(positions[0], 0, -1))
        assert positions == sorted(positions, reverse=True)
    # a customer served at once (a free agent) is never told a place
    for customer in customers:
        if customer.assigned == customer.arrived:
            assert customer.statuses == [] or customer.statuses[0][0] == customer.arrived


async def test_the_estimated_wait_matches_the_measured_waits(autojump_clock: trio.testing.MockClock) -> None:
    customers = await _simulate(seed=11)
    pairs = []
    for customer in customers:
        assert customer.assigned is not None
        if not customer.statuses:
            continue
        _, position, estimate = customer.statuses[0]
        if estimate is None:
            continue  # no service interval measured yet (the first burst)
        pairs.append((position, estimate, customer.assigned - customer.arrived))
    assert len(pairs) >= ARRIVALS // 2
    # deep in the line the estimate is seconds per place, not the 0-1 s of a bursty average
    assert all(estimate > 1 for position, estimate, _ in pairs if position >= 10)
    # over the run, the estimates add up to the measured waits within a fifth, either way
    estimated = sum(estimate for _, estimate, _ in pairs)
    measured = sum(wait for _, _, wait in pairs)
    assert 0.8 <= estimated / measured <= 1.25, (estimated, measured)
    # and most are within half of their own wait
    close = [abs(estimate - wait) <= 0.5 * wait for _, estimate, wait in pairs]
    assert sum(close) >= 0.7 * len(close), sum(close) / len(close)
