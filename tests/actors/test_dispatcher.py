"""The Dispatcher (actors/dispatcher.py) alone, on the mock clock: agents and sessions are
mailboxes the test reads and tells for them, storage is in memory (tests/actors/fakes_routing.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID, uuid4

import trio
import trio.testing

from kefu.actors import messages as m
from kefu.actors.agent import AgentHandle
from kefu.actors.center import ContactCenter
from kefu.actors.dispatcher import DISPATCHER_MAILBOX_CAPACITY, Dispatcher
from kefu.actors.ports import QueueSettings
from kefu.actors.runtime import Mailbox
from kefu.protocol import decode_server_frame
from tests.actors.fakes_routing import (
    ACCOUNT,
    CUSTOMER,
    DEFAULT_QUEUE,
    FakeConnection,
    FakeStorage,
    drain,
    enqueue,
    make_center,
    of_type,
    profile,
    queue,
    session_box,
    settle,
)

SALES = UUID(int=3)
SALES_DEPARTMENT = UUID(int=4)


@dataclass
class FakeAgent:
    """An agent as the dispatcher sees it: its handle's mailbox (what the dispatcher hands its
    actor) and a connection to accept or decline offers with."""

    number: int
    box: Mailbox[m.AgentMessage]
    connection: FakeConnection
    frames: list[Any] = field(default_factory=list)
    other: list[Any] = field(default_factory=list)

    @property
    def agent_id(self) -> UUID:
        return UUID(int=100 + self.number)

    def read(self) -> None:
        for message in drain(self.box):
            if isinstance(message, m.Deliver):
                self.frames.append(decode_server_frame(message.frame))
            else:
                self.other.append(message)

    def offers(self) -> list[Any]:
        self.read()
        return [frame for frame in self.frames if frame.TYPE == "offer"]

    def told(self, kind: type[Any]) -> list[Any]:
        """The messages of one type its actor was told (besides frames)."""
        self.read()
        return of_type(self.other, kind)

    def revoked(self) -> list[tuple[str, str]]:
        self.read()
        return [(frame.offer_id, frame.reason) for frame in self.frames if frame.TYPE == "offer.revoked"]


@dataclass
class Routing:
    center: ContactCenter
    mailbox: Mailbox[m.DispatcherMessage]
    dispatcher: Dispatcher
    stop_dispatcher: trio.Event
    storage: FakeStorage
    sessions: dict[UUID, Mailbox[Any]] = field(default_factory=dict)

    async def tell(self, message: m.DispatcherMessage) -> None:
        await self.mailbox.ref.tell(message)
        await settle()

    async def agent(
        self,
        number: int,
        *,
        capacity: int = 1,
        held: frozenset[UUID] = frozenset(),
        departments: frozenset[UUID] = frozenset(),
        available: bool = True,
    ) -> FakeAgent:
        agent_profile = profile(number, capacity=capacity, departments=departments)
        box: Mailbox[m.AgentMessage] = Mailbox(f"agent:{number}", 64)
        self.center.agents[agent_profile.agent_id] = AgentHandle(ACCOUNT, agent_profile.agent_id, box)
        await self.tell(m.AgentUpdate(agent_profile, available, len(held), held))
        return FakeAgent(number, box, FakeConnection(agent_profile.agent_id))

    async def update(
        self, agent: FakeAgent, *, capacity: int = 1, held: frozenset[UUID], available: bool = True
    ) -> None:
        await self.tell(m.AgentUpdate(profile(agent.number, capacity=capacity), available, len(held), held))

    async def customer(self, queue_id: UUID = DEFAULT_QUEUE) -> UUID:
        conversation_id = uuid4()
        self.sessions[conversation_id] = session_box(self.center, conversation_id)
        await self.tell(enqueue(conversation_id, queue_id))
        return conversation_id

    def told(self, conversation_id: UUID) -> list[Any]:
        """What the conversation's session was told since the last look (queue positions aside)."""
        return [message for message in drain(self.sessions[conversation_id]) if not isinstance(message, m.QueueStatus)]

    async def accept(self, agent: FakeAgent, offer_id: str) -> None:
        await self.tell(m.AcceptOffer(ACCOUNT, agent.agent_id, offer_id, agent.connection))

    def load(self, agent: FakeAgent) -> int:
        return self.dispatcher.routers[ACCOUNT].load(agent.agent_id)


def _queues(*extra: QueueSettings) -> FakeStorage:
    storage = FakeStorage()
    storage.account_queues[ACCOUNT] = [queue(), *extra]
    return storage


async def _start(
    center: ContactCenter, mailbox: Mailbox[m.DispatcherMessage], nursery: trio.Nursery, stop: trio.Event
) -> Dispatcher:
    dispatcher = Dispatcher(mailbox, center)
    await nursery.start(dispatcher.run, stop)
    return dispatcher


@asynccontextmanager
async def routing(storage: FakeStorage | None = None, **settings: Any) -> AsyncIterator[Routing]:
    storage = storage or _queues()
    center = make_center(storage, **settings)
    mailbox: Mailbox[m.DispatcherMessage] = Mailbox("dispatcher", DISPATCHER_MAILBOX_CAPACITY)
    center.dispatcher = mailbox.ref
    async with trio.open_nursery() as nursery:
        await nursery.start(center.timers.run, trio.Event())
        stop = trio.Event()
        yield Routing(center, mailbox, await _start(center, mailbox, nursery, stop), stop, storage)
        nursery.cancel_scope.cancel()


async def test_a_conversation_is_offered_to_the_least_loaded_agent(autojump_clock: trio.testing.MockClock) -> None:
    async with routing() as r:
        busy = await r.agent(1, capacity=3, held=frozenset({uuid4(), uuid4()}))
        idle = await r.agent(2, capacity=3, held=frozenset({uuid4()}))
        first = await r.customer()
        assert [o.conversation_id for o in idle.offers()] == [str(first)]
        assert busy.offers() == []
        assert r.told(first) == [m.Offered(idle.agent_id)]
        # now both hold two: the next goes to either, and the one after to the other
        second, third = await r.customer(), await r.customer()
        offered = {o.conversation_id for o in busy.offers()} | {o.conversation_id for o in idle.offers()}
        assert offered == {str(first), str(second), str(third)}
        assert (r.load(busy), r.load(idle)) == (3, 3)


async def test_capacity_is_never_exceeded_under_concurrent_accepts(autojump_clock: trio.testing.MockClock) -> None:
    async with routing() as r:
        ann, bob = await r.agent(1), await r.agent(2)
        first, second, third = await r.customer(), await r.customer(), await r.customer()
        (ann_offer,), (bob_offer,) = ann.offers(), bob.offers()
        assert r.told(third) == [], "every slot is reserved by an offer: the third waits"
        # both accept at once, and Ann's second tab accepts the same offer again
        r.mailbox.ref.tell_nowait(m.AcceptOffer(ACCOUNT, ann.agent_id, ann_offer.offer_id, ann.connection))
        r.mailbox.ref.tell_nowait(m.AcceptOffer(ACCOUNT, bob.agent_id, bob_offer.offer_id, bob.connection))
        again = FakeConnection(ann.agent_id)
        r.mailbox.ref.tell_nowait(m.AcceptOffer(ACCOUNT, ann.agent_id, ann_offer.offer_id, again))
        await settle()
        assigned = {c: r.told(c) for c in (first, second)}
        assert sorted(str(told[0].agent_id) for told in assigned.values()) == [str(ann.agent_id), str(bob.agent_id)]
        assert [frame.code for frame in again.of("error")] == ["offer_gone"]
        # the agents report what they hold: each slot still counts once
        await r.update(ann, held=frozenset({UUID(ann_offer.conversation_id)}))
        await r.update(bob, held=frozenset({UUID(bob_offer.conversation_id)}))
        assert (r.load(ann), r.load(bob)) == (1, 1)
        assert r.told(third) == [] and ann.offers() == [ann_offer] and bob.offers() == [bob_offer]
        # a slot frees: the third is offered to that agent
        await r.tell(m.Released(ACCOUNT, ann.agent_id, UUID(ann_offer.conversation_id)))
        assert r.told(third) == [m.Offered(ann.agent_id)]
        assert r.load(ann) == 1


async def test_an_expired_offer_goes_to_the_next_agent(autojump_clock: trio.testing.MockClock) -> None:
    async with routing() as r:
        ann = await r.agent(1, capacity=2)
        bob = await r.agent(2, capacity=2, held=frozenset({uuid4()}))
        waiting = await r.customer()
        (offer,) = ann.offers()
        assert offer.expires_in_seconds == 20
        await trio.sleep(19.5)
        assert ann.revoked() == [] and bob.offers() == []
        await trio.sleep(1)
        await settle()
        assert ann.revoked() == [(offer.offer_id, "expired")]
        # Ann is still the least loaded, but the agent who let it expire is skipped for it
        assert r.told(waiting) == [m.Offered(ann.agent_id), m.OfferLapsed(), m.Offered(bob.agent_id)]
        assert [o.conversation_id for o in bob.offers()] == [str(waiting)]
        assert (r.load(ann), r.load(bob)) == (0, 2)


async def test_missed_offers_in_a_row_take_the_agent_out_of_routing(autojump_clock: trio.testing.MockClock) -> None:
    async with routing(max_missed_offers=2) as r:
        ann = await r.agent(1)
        waiting = await r.customer()
        await trio.sleep(20.5)
        await settle()
        assert r.told(waiting) == [m.Offered(ann.agent_id), m.OfferLapsed(), m.Offered(ann.agent_id)]
        assert ann.told(m.MissedOffers) == []
        await trio.sleep(20)
        await settle()
        assert ann.told(m.MissedOffers) == [m.MissedOffers(2)]
        # never offered again before its actor reports the break (its tabs would see an offer after it)
        await trio.sleep(60)
        assert len(ann.offers()) == 2 and r.told(waiting) == [m.OfferLapsed()]
        await r.update(ann, held=frozenset(), available=True)
        assert len(ann.offers()) == 3, "back online: offered again"


async def test_a_declined_offer_goes_to_the_next_agent(autojump_clock: trio.testing.MockClock) -> None:
    async with routing() as r:
        ann = await r.agent(1)
        waiting = await r.customer()
        bob = await r.agent(2)
        (offer,) = ann.offers()
        await r.tell(m.DeclineOffer(ACCOUNT, ann.agent_id, offer.offer_id, ann.connection))
        assert ann.revoked() == [], "the agent who declined knows"
        assert r.told(waiting) == [m.Offered(ann.agent_id), m.OfferLapsed(), m.Offered(bob.agent_id)]
        # declining it again, or someone else's offer: refused, changes nothing, and audited
        (bobs_offer,) = bob.offers()
        await r.tell(m.DeclineOffer(ACCOUNT, ann.agent_id, bobs_offer.offer_id, ann.connection))
        assert [frame.code for frame in ann.connection.of("error")] == ["offer_gone"]
        assert ann.told(m.Denied) == [m.Denied("offer.decline", "conversation", waiting)]
        assert bob.revoked() == [] and r.told(waiting) == []


async def test_a_transfer_to_an_agent_is_offered_and_assigned(autojump_clock: trio.testing.MockClock) -> None:
    async with routing() as r:
        conversation = uuid4()
        r.sessions[conversation] = session_box(r.center, conversation)
        ann = await r.agent(1, held=frozenset({conversation}))
        bob = await r.agent(2)
        away = await r.agent(3, available=False)
        full = await r.agent(4, held=frozenset({uuid4()}))
        for target, outcome in ((away, "unavailable"), (full, "capacity_full")):
            await r.tell(m.TransferToAgent(ACCOUNT, conversation, ann.agent_id, target.agent_id, CUSTOMER))
            assert r.told(conversation) == [m.TransferLapsed(target.agent_id, outcome)]
        await r.tell(m.TransferToAgent(ACCOUNT, conversation, ann.agent_id, bob.agent_id, CUSTOMER))
        (offer,) = bob.offers()
        assert r.load(bob) == 1, "the transfer offer reserves a slot"
        await r.accept(bob, offer.offer_id)
        assert r.told(conversation) == [m.Assign(bob.agent_id, "Agent 2")]


async def test_an_unanswered_transfer_lapses(autojump_clock: trio.testing.MockClock) -> None:
    async with routing() as r:
        conversation = uuid4()
        r.sessions[conversation] = session_box(r.center, conversation)
        ann = await r.agent(1, held=frozenset({conversation}))
        bob = await r.agent(2)
        await r.tell(m.TransferToAgent(ACCOUNT, conversation, ann.agent_id, bob.agent_id, CUSTOMER))
        await trio.sleep(21)
        await settle()
        assert r.told(conversation) == [m.TransferLapsed(bob.agent_id, "expired")]
        assert r.load(bob) == 0


async def test_a_transfer_to_a_queue_is_offered_to_that_queues_agents(autojump_clock: trio.testing.MockClock) -> None:
    sales = queue(SALES, department_id=SALES_DEPARTMENT)
    async with routing(_queues(sales)) as r:
        ann = await r.agent(1, capacity=2)
        first = await r.customer()
        (offer,) = ann.offers()
        await r.accept(ann, offer.offer_id)
        seller = await r.agent(2, capacity=2, departments=frozenset({SALES_DEPARTMENT}))
        r.told(first)
        # the session lets Ann go and queues the conversation in the sales queue
        await r.tell(m.Released(ACCOUNT, ann.agent_id, first))
        await r.tell(enqueue(first, SALES))
        assert [o.conversation_id for o in seller.offers()] == [str(first)]
        assert [o.queue_id for o in seller.offers()] == [str(SALES)]
        assert ann.offers() == [offer]


async def test_a_restarted_dispatcher_rebuilds_from_what_agents_and_sessions_reannounce(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with routing() as r:
        held = uuid4()
        r.sessions[held] = session_box(r.center, held)
        ann = await r.agent(1, held=frozenset({held}), capacity=2)
        waiting = await r.customer()
        (stranded,) = ann.offers()
        r.told(waiting)
        # the incarnation ends (a crash ends it the same way for its successor: nothing is kept)
        r.stop_dispatcher.set()
        await settle()
        async with trio.open_nursery() as nursery:
            fresh = await _start(r.center, r.mailbox, nursery, trio.Event())
            await settle()
            # the dead incarnation's offer is withdrawn, everyone is asked to tell its state again
            assert ann.revoked() == [(stranded.offer_id, "cancelled")]
            assert ann.told(m.Reannounce) == [m.Reannounce()]
            assert of_type(drain(r.sessions[waiting]), m.Reannounce) == [m.Reannounce()]
            bob = await r.agent(2, capacity=1)
            await r.update(ann, capacity=2, held=frozenset({held}))
            await r.tell(enqueue(waiting, DEFAULT_QUEUE))
            # Ann holds one of two, Bob none of one: least load first is Bob
            assert [o.conversation_id for o in bob.offers()] == [str(waiting)]
            assert fresh.routers[ACCOUNT].load(ann.agent_id) == 1
            assert fresh.holder == {held: ann.agent_id}
            nursery.cancel_scope.cancel()
