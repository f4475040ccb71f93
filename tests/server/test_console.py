"""`kefu chat`: what a typed line becomes, and how a server frame is shown."""

from __future__ import annotations

import argparse

import pytest

from kefu.protocol.agent import AcceptOffer, AddNote, DeclineOffer, SetStatus, Transfer
from kefu.protocol.common import SendMessage
from kefu.protocol.customer import CloseConversation, StartConversation
from kefu.protocol.server import ConversationEvent, CustomerSummary, Offer, Sender, ServerError
from kefu.server.console import ChatClient, _describe


def client(role: str) -> ChatClient:
    args = argparse.Namespace(role=role, url="http://127.0.0.1:8080/", department=None, topic="shoes")
    return ChatClient(args)


@pytest.fixture(autouse=True)
def _no_trio_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("kefu.server.console.trio.current_time", lambda: 0.0)


def test_customer_lines_start_a_conversation_then_become_messages() -> None:
    customer = client("customer")
    assert isinstance(customer.command("hello"), StartConversation)
    assert customer.command("still there?") is None  # waits for the conversation's ack
    assert customer.pending == ["hello", "still there?"]
    customer.current = "c1"
    message = customer.command("thanks")
    assert isinstance(message, SendMessage) and message.conversation_id == "c1" and message.text == "thanks"
    closing = customer.command("/close")
    assert isinstance(closing, CloseConversation) and closing.wrap_up_code is None
    assert customer.command("/online") is None  # an agent's command


def test_agent_commands() -> None:
    agent = client("agent")
    assert agent.command("hello") is None  # no conversation yet
    assert agent.command("/online") == SetStatus("online")
    assert agent.command("/offline") == SetStatus("offline")
    assert agent.command("/break lunch") == SetStatus("break", "lunch")
    assert agent.command("/accept") is None  # no offer
    agent.offer = "o1"
    assert agent.command("/decline") == DeclineOffer("o1")
    agent.offer = "o2"
    assert agent.command("/accept") == AcceptOffer("o2")
    assert agent.command("/use c9") is None and agent.current == "c9"
    note = agent.command("/note call back")
    assert isinstance(note, AddNote) and note.conversation_id == "c9" and note.text == "call back"
    transfer = agent.command("/transfer department d1")
    assert isinstance(transfer, Transfer) and transfer.to_department_id == "d1"
    transfer = agent.command("/transfer agent a2")
    assert isinstance(transfer, Transfer) and transfer.to_agent_id == "a2"
    closing = agent.command("/close billing")
    assert isinstance(closing, CloseConversation) and closing.wrap_up_code == "billing"
    assert agent.command("/nonsense") is None


def test_frames_are_described() -> None:
    sender = Sender(role="customer", id="u1", display_name="Li Wei")
    message = ConversationEvent(
        conversation_id="c1", seq=3, kind="message", at="2026-01-01T00:00:00Z", sender=sender, text="hi"
    )
    assert _describe(message) == "#3 Li Wei: hi"
    assigned = ConversationEvent(
        conversation_id="c1", seq=2, kind="assigned", at="2026-01-01T00:00:00Z", sender=sender, agent_id="a1"
    )
    assert _describe(assigned) == "#2 * assigned {'agent_id': 'a1'}"
    offer = Offer(
        offer_id="o1",
        conversation_id="c1",
        queue_id="q1",
        expires_in_seconds=30,
        customer=CustomerSummary(customer_id="u1", channel="webchat", display_name="Li Wei", topic="shoes"),
    )
    assert _describe(offer) == "offer o1: Li Wei shoes (/accept)"
    assert (
        _describe(ServerError(code="rate_limited", message="slow down", retryable=True)) == "! rate_limited: slow down"
    )
