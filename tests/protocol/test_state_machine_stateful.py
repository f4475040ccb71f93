"""A stateful property test of the conversation state machine, driven the way the session and the
dispatcher drive it: the dispatcher offers, agents answer, accept, transfer and close, the
customer writes and leaves, supervisors force-close, all in random order, with the frames each
peer sends checked against ``customer_may_send`` / ``agent_may_send`` first.

The test keeps what the state machine does not: who holds the conversation, who it is offered
to, and the event log with its sequence numbers. The invariants tie the two together: the
holder exists exactly in the held states, one offer at a time, events are numbered 1, 2, 3, …
with no gap, and nothing is written after the talk ended (by the customer) or after the close
(by anyone).
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from kefu.protocol.conversation import HELD_STATES, ConversationState, Event, State

AGENTS = ("anna", "bo", "chen")
agents = st.sampled_from(AGENTS)
# Who acts: mostly the agent the conversation is offered to or held by, sometimes any agent.
actors = st.sampled_from(["offered"] * 4 + ["holder"] * 4 + list(AGENTS))
# Endings are drawn rarely, so that most runs get far into a conversation's life.
rarely = st.integers(0, 5).map(lambda n: n == 0)
WRITES = ("message.send", "note.add")


class Conversation(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.machine = ConversationState()
        self.holder: str | None = None
        self.offered_to: str | None = None
        self.log: list[tuple[int, str, str]] = []  # (seq, kind, by)
        self.refused = 0
        self.path: list[State] = [self.machine.state]
        self.force_closed = False

    @initialize(start=st.sampled_from([State.QUEUED, State.ASSIGNED, State.TRANSFERRING]))
    def start(self, start: State) -> None:
        """Some runs start further in (as a session restarted from storage does), so that every
        state is reached often within a bounded number of steps."""
        self.machine = ConversationState(start)
        self.path = [start]
        if start in HELD_STATES:
            self.holder = "anna"
        if start is State.TRANSFERRING:
            self.offered_to = "bo"

    # -- helpers ----------------------------------------------------------------------------

    def _append(self, kind: str, by: str) -> None:
        self.log.append((len(self.log) + 1, kind, by))

    def _apply(self, event: Event) -> bool:
        """Deliver ``event`` if the table has it; a refused event must change nothing."""
        before = self.machine.state
        if not self.machine.can_handle(event):
            self.refused += 1
            assert self.machine.state is before
            return False
        self.machine.handle(event)
        self.path.append(self.machine.state)
        self._append(event.value, "system")
        return True

    def _end_offer(self) -> None:
        self.offered_to = None

    def _who(self, actor: str) -> str:
        if actor == "offered":
            return self.offered_to or AGENTS[0]
        if actor == "holder":
            return self.holder or AGENTS[0]
        return actor

    # -- the dispatcher ----------------------------------------------------------------------

    @precondition(lambda self: self.machine.state is State.QUEUED)
    @rule(agent=agents)
    def dispatcher_offers(self, agent: str) -> None:
        if self._apply(Event.OFFER):
            self.offered_to = agent

    @precondition(lambda self: self.machine.state is State.QUEUED)
    @rule()
    def dispatcher_moves_it_to_another_queue(self) -> None:
        """Overflow (or a removed queue): the waiting conversation enters another queue."""
        assert self._apply(Event.QUEUE)
        assert self.machine.state is State.QUEUED

    @precondition(lambda self: self.offered_to is not None)
    @rule(really=rarely)
    def offer_expires(self, really: bool) -> None:
        if really and self.offered_to is not None and self._apply(Event.OFFER_EXPIRED):
            self._end_offer()

    # -- agents ------------------------------------------------------------------------------

    @precondition(lambda self: self.offered_to is not None)
    @rule(actor=actors, accept=st.booleans())
    def agent_answers_offer(self, actor: str, accept: bool) -> None:
        agent = self._who(actor)
        frame = "offer.accept" if accept else "offer.decline"
        if agent != self.offered_to or not self.machine.agent_may_send(frame):
            self.refused += 1
            return
        if accept:
            assert self._apply(Event.ACCEPT)
            self.holder = agent
        else:
            assert self._apply(Event.OFFER_DECLINED)
        self._end_offer()

    @rule(actor=actors, frame=st.sampled_from(WRITES))
    def agent_writes(self, actor: str, frame: str) -> None:
        agent = self._who(actor)
        if agent != self.holder or not self.machine.agent_may_send(frame):
            self.refused += 1
            return
        self._append(frame, agent)

    @precondition(lambda self: self.holder is not None)
    @rule(actor=actors, to=st.none() | agents)
    def agent_transfers(self, actor: str, to: str | None) -> None:
        agent = self._who(actor)
        if agent != self.holder or to == agent or not self.machine.agent_may_send("transfer"):
            self.refused += 1
            return
        if to is None:
            assert self._apply(Event.TRANSFER_TO_QUEUE)
            self.holder = None
        else:
            assert self._apply(Event.TRANSFER_TO_AGENT)
            self.offered_to = to

    @precondition(lambda self: self.holder is not None)
    @rule(actor=actors, really=rarely)
    def agent_closes(self, actor: str, really: bool) -> None:
        """``conversation.close`` from the holder: ends the talk, or (in wrap-up) the conversation."""
        agent = self._who(actor)
        if not really and self.machine.state is not State.WRAP_UP:
            return
        if agent != self.holder or not self.machine.agent_may_send("conversation.close"):
            self.refused += 1
            return
        if self.machine.state is State.WRAP_UP:
            assert self._apply(Event.WRAP_UP_DONE)
            self.holder = None
        else:
            assert self._apply(Event.AGENT_CLOSED)
            self._end_offer()  # a pending transfer offer is revoked

    # -- the customer and supervisors --------------------------------------------------------

    @rule()
    def customer_writes(self) -> None:
        if not self.machine.customer_may_send("message.send"):
            self.refused += 1
            return
        self._append("message.send", "customer")

    @precondition(lambda self: not self.machine.is_closed)
    @rule(really=rarely)
    def customer_leaves(self, really: bool) -> None:
        if not really:
            return
        if not self.machine.customer_may_send("conversation.close"):
            self.refused += 1
            return
        if self.machine.state is State.WRAP_UP:
            return  # already ended: acknowledged again, nothing written
        assert self._apply(Event.CUSTOMER_LEFT)
        self._end_offer()
        if not self.machine.is_held:
            self.holder = None

    @precondition(lambda self: not self.machine.is_closed)
    @rule(really=rarely)
    def supervisor_force_closes(self, really: bool) -> None:
        if really and self._apply(Event.FORCE_CLOSE):
            self.holder = self.offered_to = None
            self.force_closed = True

    @rule()
    def anyone_reads_and_resumes(self) -> None:
        """Resuming is allowed in every state, reading once there is an agent's side to read; both write nothing."""
        assert self.machine.customer_may_send("resume") and self.machine.customer_may_send("read")
        assert self.machine.agent_may_send("resume")
        assert self.machine.agent_may_send("read") == (self.machine.is_held or self.machine.is_closed)

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def holder_exactly_in_held_states(self) -> None:
        assert (self.holder is not None) == (self.machine.state in HELD_STATES), (self.machine, self.holder)

    @invariant()
    def one_offer_at_a_time(self) -> None:
        pending = self.machine.state in (State.OFFERED, State.TRANSFERRING)
        assert (self.offered_to is not None) == pending
        assert self.offered_to is None or self.offered_to != self.holder, "never offered to its own holder"

    @invariant()
    def seq_is_gapless_and_increasing(self) -> None:
        assert [seq for seq, _, _ in self.log] == list(range(1, len(self.log) + 1))

    @invariant()
    def nothing_written_after_the_end(self) -> None:
        writes_after: dict[str, bool] = {"talk_end": False, "close": False}
        for _, kind, by in self.log:
            if kind in (Event.CUSTOMER_LEFT.value, Event.AGENT_CLOSED.value):
                writes_after["talk_end"] = True
            if kind in (Event.WRAP_UP_DONE.value, Event.FORCE_CLOSE.value) or (
                kind == Event.CUSTOMER_LEFT.value and self._closed_at_once()
            ):
                writes_after["close"] = True
            if kind == "message.send":
                assert not writes_after["talk_end"], "a message after the talk ended"
                assert not (by == "customer" and writes_after["close"])
            if kind == "note.add":
                assert not writes_after["close"], "a note after the close"
        if self.machine.is_closed:
            assert self.machine.state is State.CLOSED and not self.machine.is_held

    def _closed_at_once(self) -> bool:
        return State.WRAP_UP not in self.path and State.CLOSED in self.path

    @invariant()
    def held_conversations_are_wrapped_up(self) -> None:
        """Closed while an agent held it: through wrap-up, unless a supervisor forced it. (After a
        transfer back to a queue nobody holds it, and it may close at once: rule 6 is about the holder.)"""
        if self.machine.is_closed and not self.force_closed:
            assert self.path[-2] not in (State.ASSIGNED, State.TRANSFERRING), self.path

    @invariant()
    def closed_is_terminal(self) -> None:
        if State.CLOSED in self.path:
            assert self.path[self.path.index(State.CLOSED) :] == [State.CLOSED]


Conversation.TestCase.settings = settings(
    max_examples=200, stateful_step_count=40, deadline=None, database=None, derandomize=True
)
test_conversation_lifecycle = Conversation.TestCase
