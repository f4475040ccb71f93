"""The life of one conversation, as data.

Rules
-----

1. A conversation is in exactly one ``State`` at a time. It starts ``QUEUED``.
2. It changes state only through an ``Event``, and only as the ``TRANSITIONS`` table says.
   An event the table does not list for the current state is a bug in the caller
   (``LocalProtocolError``), not a decision to make at run time.
3. ``CLOSED`` is terminal: no event leaves it, and no frame but ``resume`` (and ``read``,
   which only tells the other side how far one has read) touches it.
4. At most one agent holds a conversation, and only in ``ASSIGNED``, ``TRANSFERRING`` and
   ``WRAP_UP``. An offer is only a question; the conversation is held after ``ACCEPT``.
5. A conversation is offered to one agent at a time: from ``QUEUED`` (to any agent of the
   queue) or, during a transfer to a named agent, from ``ASSIGNED`` (``TRANSFERRING``).
6. A conversation that an agent held always passes through ``WRAP_UP`` before ``CLOSED``,
   so every handled conversation gets a wrap-up record. One never assigned closes at once.
7. Which frames a peer may send about a conversation depends only on its state and on the
   peer's role: ``CUSTOMER_FRAMES`` and ``AGENT_FRAMES``. A frame outside the set is
   answered with an error (``illegal_state``) and changes nothing.

Theory of operation
-------------------

The conversation's session folds every event of the conversation's log through one
``ConversationState``, live and when it is rebuilt from the log, so a history the table does
not allow is a ``LocalProtocolError``. A conversation enters a queue (``QUEUE``: its start, or
a move to another queue while it waits); the dispatcher, the single writer of assignments,
``OFFER``-s the conversation (an offer is not stored: a session rebuilt from the log
folds an ``assigned`` event found in ``QUEUED`` as ``OFFER`` then ``ACCEPT``); the agent
sent ``offer.accept`` (``ACCEPT``) or ``offer.decline`` (``OFFER_DECLINED``), or the offer
timed out (``OFFER_EXPIRED``). A transfer to a
department puts the conversation back in a queue (``TRANSFER_TO_QUEUE``); a transfer to an
agent offers it to that agent while the current agent keeps it (``TRANSFER_TO_AGENT``), and
the offer's answer either moves it (``ACCEPT``) or leaves it where it was. The same offer
events therefore lead to different states from ``OFFERED`` and from ``TRANSFERRING``.

The customer leaving (``CUSTOMER_LEFT``) or the agent closing (``AGENT_CLOSED``) ends the
talk; the agent's wrap-up (``WRAP_UP_DONE``) ends the conversation. A supervisor or the
system (idle timeout, shutdown of a queue) may ``FORCE_CLOSE`` from any open state.

Nothing here does I/O or knows about time: expiry is an event someone else delivers.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from .errors import LocalProtocolError

__all__ = [
    "AGENT_FRAMES",
    "CUSTOMER_FRAMES",
    "HELD_STATES",
    "TRANSITIONS",
    "ConversationState",
    "Event",
    "State",
]


class State(StrEnum):
    QUEUED = "queued"  # waiting in a queue for an agent
    OFFERED = "offered"  # offered to one agent, who has not answered yet
    ASSIGNED = "assigned"  # held by one agent
    TRANSFERRING = "transferring"  # held by one agent, offered to another
    WRAP_UP = "wrap_up"  # talk ended; the agent classifies it
    CLOSED = "closed"  # finished, read-only


class Event(StrEnum):
    QUEUE = "queue"
    OFFER = "offer"
    OFFER_DECLINED = "offer_declined"
    OFFER_EXPIRED = "offer_expired"
    ACCEPT = "accept"
    TRANSFER_TO_QUEUE = "transfer_to_queue"
    TRANSFER_TO_AGENT = "transfer_to_agent"
    CUSTOMER_LEFT = "customer_left"
    AGENT_CLOSED = "agent_closed"
    WRAP_UP_DONE = "wrap_up_done"
    FORCE_CLOSE = "force_close"


TRANSITIONS: Final[dict[State, dict[Event, State]]] = {
    State.QUEUED: {
        Event.QUEUE: State.QUEUED,  # its start, or a move to another queue (overflow)
        Event.OFFER: State.OFFERED,
        Event.CUSTOMER_LEFT: State.CLOSED,
        Event.FORCE_CLOSE: State.CLOSED,
    },
    State.OFFERED: {
        Event.ACCEPT: State.ASSIGNED,
        Event.OFFER_DECLINED: State.QUEUED,
        Event.OFFER_EXPIRED: State.QUEUED,
        Event.CUSTOMER_LEFT: State.CLOSED,
        Event.FORCE_CLOSE: State.CLOSED,
    },
    State.ASSIGNED: {
        Event.TRANSFER_TO_QUEUE: State.QUEUED,
        Event.TRANSFER_TO_AGENT: State.TRANSFERRING,
        Event.CUSTOMER_LEFT: State.WRAP_UP,
        Event.AGENT_CLOSED: State.WRAP_UP,
        Event.FORCE_CLOSE: State.CLOSED,
    },
    State.TRANSFERRING: {
        Event.ACCEPT: State.ASSIGNED,  # now held by the receiving agent
        Event.OFFER_DECLINED: State.ASSIGNED,  # still held by the transferring agent
        Event.OFFER_EXPIRED: State.ASSIGNED,
        # Ending the talk revokes the pending transfer offer.
        Event.CUSTOMER_LEFT: State.WRAP_UP,
        Event.AGENT_CLOSED: State.WRAP_UP,
        Event.FORCE_CLOSE: State.CLOSED,
    },
    State.WRAP_UP: {
        Event.CUSTOMER_LEFT: State.WRAP_UP,  # the customer closing late changes nothing
        Event.WRAP_UP_DONE: State.CLOSED,
        Event.FORCE_CLOSE: State.CLOSED,
    },
    State.CLOSED: {},
}

# States in which exactly one agent holds the conversation (rule 4).
HELD_STATES: Final = frozenset({State.ASSIGNED, State.TRANSFERRING, State.WRAP_UP})

_TALKING: Final = frozenset({"message.send", "typing", "read", "resume", "conversation.close"})

# Frame types a customer may send about a conversation, by state (rule 7).
CUSTOMER_FRAMES: Final[dict[State, frozenset[str]]] = {
    State.QUEUED: _TALKING,
    State.OFFERED: _TALKING,
    State.ASSIGNED: _TALKING,
    State.TRANSFERRING: _TALKING,
    State.WRAP_UP: frozenset({"read", "resume", "conversation.close"}),
    State.CLOSED: frozenset({"read", "resume"}),
}

# Frame types an agent may send about a conversation, by state (rule 7). The offer frames
# are for the agent the conversation is offered to; the others for the agent holding it.
AGENT_FRAMES: Final[dict[State, frozenset[str]]] = {
    State.QUEUED: frozenset({"resume"}),
    State.OFFERED: frozenset({"offer.accept", "offer.decline", "resume"}),
    State.ASSIGNED: frozenset(
        {"message.send", "note.add", "transfer", "conversation.close", "typing", "read", "resume"}
    ),
    State.TRANSFERRING: frozenset(
        {
            "offer.accept",
            "offer.decline",
            "message.send",
            "note.add",
            "conversation.close",
            "typing",
            "read",
            "resume",
        }
    ),
    State.WRAP_UP: frozenset({"note.add", "conversation.close", "read", "resume"}),
    State.CLOSED: frozenset({"read", "resume"}),
}


class ConversationState:
    """Where one conversation stands; ``handle`` moves it by the table."""

    __slots__ = ("_state",)

    def __init__(self, state: State = State.QUEUED) -> None:
        self._state = state

    @property
    def state(self) -> State:
        return self._state

    @property
    def is_closed(self) -> bool:
        return self._state is State.CLOSED

    @property
    def is_held(self) -> bool:
        """True while an agent holds the conversation (rule 4)."""
        return self._state in HELD_STATES

    def can_handle(self, event: Event) -> bool:
        return event in TRANSITIONS[self._state]

    def handle(self, event: Event) -> State:
        """Apply ``event`` and return the new state; an illegal event changes nothing."""
        new_state = TRANSITIONS[self._state].get(event)
        if new_state is None:
            raise LocalProtocolError(f"conversation in state {self._state.value!r} cannot handle {event.value!r}")
        self._state = new_state
        return new_state

    def customer_may_send(self, frame_type: str) -> bool:
        return frame_type in CUSTOMER_FRAMES[self._state]

    def agent_may_send(self, frame_type: str) -> bool:
        return frame_type in AGENT_FRAMES[self._state]

    def __repr__(self) -> str:
        return f"ConversationState({self._state.value!r})"
