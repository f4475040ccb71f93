"""`ConversationHistory` (actors/history.py): a conversation's event log folded through the
protocol's transition table. Sans-IO: plain functions, no trio."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from kefu.actors.history import ConversationHistory, transitions
from kefu.protocol.agent import AddNote
from kefu.protocol.common import SendMessage
from kefu.protocol.conversation import Event, State
from kefu.protocol.errors import LocalProtocolError
from tests.actors.fakes import stored_event

ANNA, BO = UUID(int=7), UUID(int=8)
QUEUE = UUID(int=2)


def _fold(*events: tuple[str, dict[str, Any]]) -> ConversationHistory:
    history = ConversationHistory()
    for seq, (kind, body) in enumerate(events, start=1):
        history.apply(stored_event(seq, kind, body=body))
    return history


def test_a_transfer_and_its_outcome_fold_back_to_the_holder() -> None:
    history = _fold(
        ("queued", {"queue_id": str(QUEUE)}),
        ("assigned", {"agent_id": str(ANNA), "sender_name": "Anna"}),
        ("transferred", {"from_agent_id": str(ANNA), "to_agent_id": str(BO)}),
    )
    assert (history.state.state, history.agent_id, history.transfer_to) == (State.TRANSFERRING, ANNA, BO)
    history.apply(stored_event(4, "note", body={"text": "transfer expired", "transfer_outcome": "expired"}))
    assert (history.state.state, history.agent_id, history.transfer_to) == (State.ASSIGNED, ANNA, None)
    assert history.last_seq == 4 and history.assignees == {ANNA} and history.agent_name == "Anna"


def test_a_transfer_to_a_department_waits_again_from_its_queued_event() -> None:
    history = _fold(
        ("queued", {"queue_id": str(QUEUE)}),
        ("assigned", {"agent_id": str(ANNA)}),
        ("transferred", {"from_agent_id": str(ANNA), "to_department_id": str(UUID(int=3))}),
    )
    assert (history.state.state, history.agent_id, history.waiting_since) == (State.QUEUED, None, None)
    queued = stored_event(4, "queued", body={"queue_id": str(UUID(int=4))})
    history.apply(queued)
    assert (history.queue_id, history.waiting_since) == (UUID(int=4), queued.created_at)


def test_messages_move_nothing_and_the_first_customer_message_is_the_preview() -> None:
    history = _fold(("queued", {"queue_id": str(QUEUE)}))
    history.apply(stored_event(2, "message", sender_role="customer", body={"text": "my order?"}))
    history.apply(stored_event(3, "message", sender_role="customer", body={"text": "hello?"}))
    assert history.state.state is State.QUEUED and history.preview == "my order?" and history.last_seq == 3


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("wrapped_up", {"reason": "timeout"}),
        ("closed", {"reason": "agent_closed"}),
        ("transferred", {"to_agent_id": str(BO)}),
        ("note", {"transfer_outcome": "declined"}),
        ("closed", {"reason": "no such reason"}),
    ],
)
def test_check_refuses_what_the_table_does_not_allow_and_changes_nothing(kind: str, body: dict[str, Any]) -> None:
    history = _fold(("queued", {"queue_id": str(QUEUE)}))
    with pytest.raises(LocalProtocolError):
        history.check(kind, body)
    assert history.state.state is State.QUEUED and history.last_seq == 1
    with pytest.raises(LocalProtocolError):
        history.apply(stored_event(2, kind, body=body))


def test_check_changes_nothing_when_it_allows() -> None:
    history = _fold(("queued", {"queue_id": str(QUEUE)}))
    history.check("assigned", {"agent_id": str(ANNA)})
    assert history.state.state is State.QUEUED and history.agent_id is None


def test_an_assignment_while_queued_was_offered_and_accepted() -> None:
    assert transitions("assigned", {}, State.QUEUED) == (Event.OFFER, Event.ACCEPT)
    assert transitions("assigned", {}, State.OFFERED) == (Event.ACCEPT,)
    assert transitions("message", {"text": "hi"}, State.ASSIGNED) == ()


def test_a_retry_must_say_what_was_stored() -> None:
    history = _fold(("queued", {"queue_id": str(QUEUE)}))
    history.apply(
        stored_event(
            2,
            "message",
            sender_role="customer",
            sender_id="c",
            client_id="m-1",
            body={"message_kind": "text", "text": "hello"},
        )
    )
    history.apply(
        stored_event(
            3, "closed", sender_role="customer", sender_id="c", client_id="x-1", body={"reason": "customer_left"}
        )
    )
    key = ("customer", "c", "m-1")
    assert history.client_ids[key] == 2
    assert history.same_as_stored(key, SendMessage("m-1", "conv", "text", text="hello"))
    assert not history.same_as_stored(key, SendMessage("m-1", "conv", "text", text="bye"))
    # an id stored for a close: a message under it is another frame, a close is a retry
    assert not history.same_as_stored(("customer", "c", "x-1"), SendMessage("x-1", "conv", "text", text="hello"))
    assert not history.same_as_stored(("customer", "c", "x-1"), AddNote("x-1", "conv", "hello"))
    assert history.same_as_stored(("customer", "c", "x-1"), object())


def test_an_erased_message_matches_any_retry() -> None:
    history = ConversationHistory()
    history.apply(stored_event(1, "queued", body={"queue_id": str(QUEUE)}))
    history.apply(
        stored_event(2, "message", sender_role="customer", sender_id="c", client_id="m-1", body={"erased": True})
    )
    assert history.same_as_stored(("customer", "c", "m-1"), SendMessage("m-1", "conv", "text", text="anything"))
