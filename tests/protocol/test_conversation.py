"""The conversation state machine: its table, its rules, and a stateful property test."""

from __future__ import annotations

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kefu.protocol.codec import AGENT_DECODERS, CUSTOMER_DECODERS
from kefu.protocol.conversation import (
    AGENT_FRAMES,
    CUSTOMER_FRAMES,
    HELD_STATES,
    TRANSITIONS,
    ConversationState,
    Event,
    State,
)
from kefu.protocol.errors import LocalProtocolError

LEGAL_PATHS = [
    # offered, accepted, closed by the agent, wrapped up
    [Event.OFFER, Event.ACCEPT, Event.AGENT_CLOSED, Event.WRAP_UP_DONE],
    # the session's fold of a stored life: queued, moved to another queue, taken, transferred back
    # to a queue (and queued there), taken again, the customer leaves
    [
        Event.QUEUE,
        Event.QUEUE,
        Event.OFFER,
        Event.ACCEPT,
        Event.TRANSFER_TO_QUEUE,
        Event.QUEUE,
        Event.OFFER,
        Event.ACCEPT,
        Event.CUSTOMER_LEFT,
        Event.WRAP_UP_DONE,
    ],
    # declined twice, then accepted; the customer leaves
    [
        Event.OFFER,
        Event.OFFER_DECLINED,
        Event.OFFER,
        Event.OFFER_EXPIRED,
        Event.OFFER,
        Event.ACCEPT,
        Event.CUSTOMER_LEFT,
        Event.WRAP_UP_DONE,
    ],
    # transferred to a department's queue, then to a named agent who accepts
    [
        Event.OFFER,
        Event.ACCEPT,
        Event.TRANSFER_TO_QUEUE,
        Event.OFFER,
        Event.ACCEPT,
        Event.TRANSFER_TO_AGENT,
        Event.ACCEPT,
        Event.AGENT_CLOSED,
        Event.WRAP_UP_DONE,
    ],
    # the customer gives up while waiting
    [Event.CUSTOMER_LEFT],
    [Event.OFFER, Event.CUSTOMER_LEFT],
    # a supervisor closes it
    [Event.OFFER, Event.ACCEPT, Event.TRANSFER_TO_AGENT, Event.FORCE_CLOSE],
]


@pytest.mark.parametrize("path", LEGAL_PATHS)
def test_legal_paths_end_closed(path: list[Event]) -> None:
    conversation = ConversationState()
    for event in path:
        conversation.handle(event)
    assert conversation.state is State.CLOSED
    assert conversation.is_closed


def test_queueing_again_keeps_a_waiting_conversation_waiting() -> None:
    """``QUEUE`` is a conversation entering a queue: its start (it is ``QUEUED`` from birth) or a
    move to another queue while it waits; nothing else changes."""
    conversation = ConversationState()
    assert conversation.handle(Event.QUEUE) is State.QUEUED
    assert conversation.handle(Event.QUEUE) is State.QUEUED
    assert not conversation.is_held


def test_declined_transfer_stays_with_the_agent() -> None:
    conversation = ConversationState(State.ASSIGNED)
    assert conversation.handle(Event.TRANSFER_TO_AGENT) is State.TRANSFERRING
    assert conversation.is_held
    assert conversation.handle(Event.OFFER_DECLINED) is State.ASSIGNED


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (State.QUEUED, Event.ACCEPT),  # nothing was offered
        (State.OFFERED, Event.QUEUE),  # an offer is answered first
        (State.ASSIGNED, Event.QUEUE),  # a held conversation is transferred to a queue, not queued
        (State.WRAP_UP, Event.QUEUE),
        (State.QUEUED, Event.AGENT_CLOSED),  # no agent holds it
        (State.OFFERED, Event.OFFER),  # one offer at a time
        (State.ASSIGNED, Event.WRAP_UP_DONE),  # the talk has not ended
        (State.TRANSFERRING, Event.TRANSFER_TO_QUEUE),  # one transfer at a time
        (State.WRAP_UP, Event.OFFER),
        (State.CLOSED, Event.FORCE_CLOSE),
        (State.CLOSED, Event.CUSTOMER_LEFT),
    ],
)
def test_illegal_transitions_raise_and_change_nothing(state: State, event: Event) -> None:
    conversation = ConversationState(state)
    assert not conversation.can_handle(event)
    with pytest.raises(LocalProtocolError):
        conversation.handle(event)
    assert conversation.state is state


def test_table_covers_every_state_and_event() -> None:
    assert set(TRANSITIONS) == set(State)
    assert {event for row in TRANSITIONS.values() for event in row} == set(Event)
    assert set(CUSTOMER_FRAMES) == set(State) == set(AGENT_FRAMES)


def test_every_state_is_reachable_and_can_reach_closed() -> None:
    reachable = {State.QUEUED}
    frontier = [State.QUEUED]
    while frontier:
        for target in TRANSITIONS[frontier.pop()].values():
            if target not in reachable:
                reachable.add(target)
                frontier.append(target)
    assert reachable == set(State)
    for state in State:
        assert state is State.CLOSED or Event.FORCE_CLOSE in TRANSITIONS[state]


def test_frame_sets_name_real_frames() -> None:
    for frame_types in CUSTOMER_FRAMES.values():
        assert frame_types <= set(CUSTOMER_DECODERS)
    for frame_types in AGENT_FRAMES.values():
        assert frame_types <= set(AGENT_DECODERS)


def test_who_may_send_what() -> None:
    assert ConversationState().customer_may_send("message.send")
    assert not ConversationState().agent_may_send("message.send")
    assert ConversationState(State.ASSIGNED).agent_may_send("transfer")
    assert not ConversationState(State.WRAP_UP).customer_may_send("message.send")
    assert ConversationState(State.WRAP_UP).agent_may_send("conversation.close")
    assert repr(ConversationState()) == "ConversationState('queued')"


class ConversationMachine(RuleBasedStateMachine):
    """Random event streams; illegal events must raise and leave the state unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.conversation = ConversationState()
        self.was_closed = False
        self.offers_open = 0  # offers made and not yet answered

    @rule(event=st.sampled_from(list(Event)))
    def deliver(self, event: Event) -> None:
        before = self.conversation.state
        if not self.conversation.can_handle(event):
            with pytest.raises(LocalProtocolError):
                self.conversation.handle(event)
            assert self.conversation.state is before
            return
        after = self.conversation.handle(event)
        assert after is TRANSITIONS[before][event] is self.conversation.state
        if event in (Event.OFFER, Event.TRANSFER_TO_AGENT):
            self.offers_open += 1
        elif event in (Event.ACCEPT, Event.OFFER_DECLINED, Event.OFFER_EXPIRED):
            self.offers_open -= 1
        elif event in (Event.CUSTOMER_LEFT, Event.AGENT_CLOSED, Event.FORCE_CLOSE) and before in (
            State.OFFERED,
            State.TRANSFERRING,
        ):
            self.offers_open -= 1  # the pending offer is revoked
        # An agent who held the conversation when the talk ended wraps it up (rule 6).
        if after is State.CLOSED and before in HELD_STATES and event is not Event.FORCE_CLOSE:
            assert before is State.WRAP_UP

    @precondition(lambda self: self.conversation.is_closed)
    @rule(event=st.sampled_from(list(Event)))
    def closed_refuses_everything(self, event: Event) -> None:
        with pytest.raises(LocalProtocolError):
            self.conversation.handle(event)

    @invariant()
    def closed_is_terminal(self) -> None:
        if self.was_closed:
            assert self.conversation.state is State.CLOSED
        self.was_closed = self.conversation.is_closed

    @invariant()
    def at_most_one_pending_offer(self) -> None:
        pending = self.conversation.state in (State.OFFERED, State.TRANSFERRING)
        assert self.offers_open == (1 if pending else 0)

    @invariant()
    def frames_follow_the_state(self) -> None:
        conversation = self.conversation
        assert conversation.customer_may_send("resume")
        assert conversation.agent_may_send("resume")
        if conversation.is_closed:
            assert CUSTOMER_FRAMES[State.CLOSED] == AGENT_FRAMES[State.CLOSED] == {"read", "resume"}
        # Only the agent holding the conversation writes to the customer.
        assert conversation.agent_may_send("message.send") == (
            conversation.state in (State.ASSIGNED, State.TRANSFERRING)
        )
        # The customer writes until the talk ends.
        assert conversation.customer_may_send("message.send") == (
            conversation.state not in (State.WRAP_UP, State.CLOSED)
        )


ConversationMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=30, deadline=None, database=None)
test_conversation_machine = ConversationMachine.TestCase
