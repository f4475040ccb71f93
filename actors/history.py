"""ConversationHistory: what one conversation's event log says, folded.

Theory of operation
-------------------
A CustomerSession keeps one `ConversationHistory`. It folds every stored event of its
conversation into it with `apply`, in seq order: all of them when it starts (the rebuild from
the log) and each new one after its COMMIT, the same way. The events that move the
conversation go through the protocol's transition table (`kefu.protocol.conversation`), so
a history the table does not allow raises `LocalProtocolError`; `check` asks the same
question of an event before it is stored. Nothing here does I/O, waits or reads a clock.

Rules
-----
1. Only stored events are folded, in seq order, each once. The exceptions are an offer and
   its lapse (`Event.OFFER`, `Event.OFFER_EXPIRED`), which are not stored: the session moves
   `state` itself when the dispatcher says so, and an `assigned` folded while ``QUEUED``
   counts as offered and accepted.
2. A stored event maps to transitions by its kind alone (and its body: the reason of a
   close, the target of a transfer, a transfer's outcome); messages, notes and system texts
   make none, and a message costs one string comparison.
3. A client id is remembered per sender (sender_role, sender_id) with the seq it was stored
   as, and for a message or note, what it said (`same_as_stored`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, TypeAlias
from uuid import UUID

from kefu.actors.ports import StoredEvent
from kefu.protocol.agent import AddNote
from kefu.protocol.common import SendMessage
from kefu.protocol.conversation import ConversationState, Event, State
from kefu.protocol.errors import LocalProtocolError

SenderClientId: TypeAlias = tuple[str, str | None, str]
"""(sender_role, sender_id, client_id): a client id is unique per sender, not per conversation."""

TEXT_KINDS: Final = frozenset({"message", "note"})
"""Events whose retries are compared with what was stored (rule 3)."""

CLOSE_REASONS: Final[Mapping[str, Event]] = {
    "customer_left": Event.CUSTOMER_LEFT,
    "agent_closed": Event.AGENT_CLOSED,
}
"""The `reason` of a stored `closed` event, and the transition it makes."""

_NO_TRANSITION: Final[tuple[Event, ...]] = ()


def transitions(kind: str, body: Mapping[str, Any], state: State) -> tuple[Event, ...]:
    """The transitions of the conversation's state machine a stored event makes, in order (rule 2)."""
    match kind:
        case "queued":
            return (Event.QUEUE,)
        case "assigned":
            return (Event.OFFER, Event.ACCEPT) if state is State.QUEUED else (Event.ACCEPT,)
        case "transferred":
            return (Event.TRANSFER_TO_AGENT,) if body.get("to_agent_id") else (Event.TRANSFER_TO_QUEUE,)
        case "note":
            outcome = body.get("transfer_outcome")
            if not outcome:
                return _NO_TRANSITION
            return (Event.OFFER_DECLINED,) if outcome == "declined" else (Event.OFFER_EXPIRED,)
        case "closed":
            reason = CLOSE_REASONS.get(body.get("reason", ""))
            if reason is None:
                raise LocalProtocolError(f"a closed event with an unknown reason {body.get('reason')!r}")
            return (reason,)
        case "wrapped_up":
            return (Event.WRAP_UP_DONE,)
        case _:
            return _NO_TRANSITION


def _fingerprint(kind: str, message_kind: Any, text: Any, attachment_id: Any) -> int:
    """What a retry of a message or note must repeat. A hash: a collision (2**-64) would only
    answer a changed frame with the original ack, as before this check existed."""
    return hash((kind, message_kind, text, attachment_id))


def frame_fingerprint(frame: object) -> int | None:
    """The fingerprint of a `message.send` or `note.add` frame; None for any other frame."""
    match frame:
        case SendMessage():
            return _fingerprint("message", frame.kind, frame.text, frame.attachment_id)
        case AddNote():
            return _fingerprint("note", None, frame.text, None)
        case _:
            return None


class ConversationHistory:
    """Where a conversation stands after the events folded so far."""

    __slots__ = (
        "agent_id",
        "agent_name",
        "assignees",
        "client_ids",
        "closed_at",
        "closed_seq",
        "fingerprints",
        "last_seq",
        "preview",
        "queue_id",
        "state",
        "told_no_agents",
        "transfer_to",
        "waiting_since",
    )

    def __init__(self, queue_id: UUID | None = None) -> None:
        self.state = ConversationState()
        """The conversation's state machine (`kefu.protocol.conversation`)."""
        self.last_seq = 0
        """The seq of the last event folded (0: none yet)."""
        self.client_ids: dict[SenderClientId, int] = {}
        """The seq each (sender_role, sender_id, client_id) was stored as."""
        self.fingerprints: dict[SenderClientId, int | None] = {}
        """What each stored message or note said (`_fingerprint`; None: erased, not comparable)."""
        self.agent_id: UUID | None = None
        """The agent holding the conversation (or who held it last, after the close)."""
        self.agent_name: str | None = None
        self.transfer_to: UUID | None = None
        """The agent a pending transfer offers the conversation to."""
        self.queue_id: UUID | None = queue_id
        self.waiting_since: datetime | None = None
        """When the conversation started waiting in a queue (None: it does not wait)."""
        self.closed_seq = 0
        self.closed_at: datetime | None = None
        self.assignees: set[UUID] = set()
        """Every agent who ever held the conversation."""
        self.preview: str | None = None
        """The customer's first message, for the offer's summary."""
        self.told_no_agents = False
        """The customer heard that no agent is online, during this wait."""

    def apply(self, event: StoredEvent) -> None:
        """Fold one stored event; `LocalProtocolError` when the table does not allow it here."""
        self.last_seq = event.seq
        if event.client_id is not None:
            self._remember_client_id(event)
        kind = event.kind
        if kind == "message":
            # the hot path: a message moves nothing
            if self.preview is None and event.sender_role == "customer":
                self.preview = event.body.get("text")
            return
        for transition in transitions(kind, event.body, self.state.state):
            self.state.handle(transition)
        self._note(event)

    def check(self, kind: str, body: Mapping[str, Any]) -> None:
        """Raise `LocalProtocolError` when folding an event of `kind` now would; change nothing."""
        moves = transitions(kind, body, self.state.state)
        if moves:
            trial = ConversationState(self.state.state)
            for transition in moves:
                trial.handle(transition)

    def same_as_stored(self, key: SenderClientId, frame: object) -> bool:
        """Whether `frame`, a retry under the client id `key`, may get the original ack: any frame
        but a message or note does; a message or note only when it says what was stored (or
        what was stored is erased)."""
        wanted = frame_fingerprint(frame)
        if wanted is None:
            return True
        # not in `fingerprints`: the id was used for another kind of event (a close, a transfer)
        return key in self.fingerprints and self.fingerprints[key] in (None, wanted)

    def _remember_client_id(self, event: StoredEvent) -> None:
        assert event.client_id is not None
        key = (event.sender_role, event.sender_id, event.client_id)
        self.client_ids[key] = event.seq
        if event.kind in TEXT_KINDS:
            body = event.body
            self.fingerprints[key] = (
                None
                if body.get("erased")
                else _fingerprint(event.kind, body.get("message_kind"), body.get("text"), body.get("attachment_id"))
            )

    def _note(self, event: StoredEvent) -> None:
        """What an event that may move the conversation says besides its state."""
        body = event.body
        match event.kind:
            case "queued":
                self.queue_id = uuid_or_none(body.get("queue_id")) or self.queue_id
                if self.waiting_since is None:
                    self.waiting_since = event.created_at
                self.agent_id = None
                self.transfer_to = None
                self.told_no_agents = False
            case "assigned":
                self.agent_id = uuid_or_none(body.get("agent_id"))
                self.agent_name = body.get("sender_name")
                if self.agent_id is not None:
                    self.assignees.add(self.agent_id)
                self.transfer_to = None
            case "transferred":
                if body.get("to_agent_id"):
                    self.transfer_to = uuid_or_none(body.get("to_agent_id"))
                else:
                    self.agent_id = None
                    self.waiting_since = None  # it waits again from its `queued` event
            case "note" if body.get("transfer_outcome"):
                self.transfer_to = None
            case "closed":
                self.closed_seq = event.seq
                self.transfer_to = None
                self.closed_at = event.created_at

    def __repr__(self) -> str:
        return f"<ConversationHistory {self.state.state.value} last_seq={self.last_seq}>"


def uuid_or_none(value: Any) -> UUID | None:
    if not value:
        return None
    try:
        return UUID(str(value))
    except ValueError:
        return None
