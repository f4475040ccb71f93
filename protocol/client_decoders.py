"""Decoders of the frames clients send: one function per frame type, in two tables.

Each decoder receives the parsed JSON object whose envelope ``codec`` already checked and
returns the frame or raises ``RemoteProtocolError`` (``codec`` fills in ``ref``).
"""

from __future__ import annotations

from typing import Final, Literal, cast

from ._fields import (
    Decoder,
    JsonObject,
    optional_str,
    require_bool,
    require_choice,
    require_int,
    require_str,
)
from .agent import (
    AGENT_STATUSES,
    AcceptOffer,
    AddNote,
    AgentFrame,
    DeclineOffer,
    SetStatus,
    Transfer,
)
from .common import (
    MAX_CLIENT_ID_CHARS,
    MAX_ID_CHARS,
    MAX_LABEL_CHARS,
    MAX_NONCE_CHARS,
    MAX_SEQ,
    MAX_TEXT_CHARS,
    MESSAGE_KINDS,
    MarkRead,
    MessageKind,
    Ping,
    Resume,
    SendMessage,
    SetTyping,
)
from .customer import CloseConversation, CustomerFrame, StartConversation
from .errors import INVALID_FIELD, MISSING_FIELD, RemoteProtocolError

__all__ = ["AGENT_DECODERS", "CUSTOMER_DECODERS", "message_body", "transfer_target"]


def message_body(obj: JsonObject, kind_field: str) -> tuple[MessageKind, str | None, str | None]:
    """The ``kind``, ``text`` and ``attachment_id`` of a message, checked together."""
    kind = require_choice(obj, kind_field, MESSAGE_KINDS)
    text = optional_str(obj, "text", MAX_TEXT_CHARS)
    attachment_id = optional_str(obj, "attachment_id", MAX_ID_CHARS)
    if kind == "text":
        if text is None:
            raise RemoteProtocolError(MISSING_FIELD, "a text message requires 'text'")
        if attachment_id is not None:
            raise RemoteProtocolError(INVALID_FIELD, "a text message takes no 'attachment_id'")
    elif attachment_id is None:
        raise RemoteProtocolError(MISSING_FIELD, f"a {kind} message requires 'attachment_id'")
    return cast(MessageKind, kind), text, attachment_id


def _conversation_start(obj: JsonObject) -> StartConversation:
    return StartConversation(
        client_id=require_str(obj, "client_id", MAX_CLIENT_ID_CHARS),
        department=optional_str(obj, "department", MAX_ID_CHARS),
        topic=optional_str(obj, "topic", MAX_LABEL_CHARS),
    )


def _message_send(obj: JsonObject) -> SendMessage:
    client_id = require_str(obj, "client_id", MAX_CLIENT_ID_CHARS)
    conversation_id = require_str(obj, "conversation_id", MAX_ID_CHARS)
    kind, text, attachment_id = message_body(obj, "kind")
    return SendMessage(client_id, conversation_id, kind, text, attachment_id)


def _typing(obj: JsonObject) -> SetTyping:
    return SetTyping(
        conversation_id=require_str(obj, "conversation_id", MAX_ID_CHARS),
        active=require_bool(obj, "active"),
    )


def _read(obj: JsonObject) -> MarkRead:
    return MarkRead(
        conversation_id=require_str(obj, "conversation_id", MAX_ID_CHARS),
        seq=require_int(obj, "seq", 0, MAX_SEQ),
    )


def _resume(obj: JsonObject) -> Resume:
    return Resume(
        conversation_id=require_str(obj, "conversation_id", MAX_ID_CHARS),
        last_seq=require_int(obj, "last_seq", 0, MAX_SEQ),
    )


def _customer_close(obj: JsonObject) -> CloseConversation:
    # A customer's wrap_up_code is ignored like any unknown field.
    return CloseConversation(
        client_id=require_str(obj, "client_id", MAX_CLIENT_ID_CHARS),
        conversation_id=require_str(obj, "conversation_id", MAX_ID_CHARS),
    )


def _agent_close(obj: JsonObject) -> CloseConversation:
    return CloseConversation(
        client_id=require_str(obj, "client_id", MAX_CLIENT_ID_CHARS),
        conversation_id=require_str(obj, "conversation_id", MAX_ID_CHARS),
        wrap_up_code=optional_str(obj, "wrap_up_code", MAX_LABEL_CHARS),
    )


def _ping(obj: JsonObject) -> Ping:
    return Ping(nonce=optional_str(obj, "nonce", MAX_NONCE_CHARS))


def _status_set(obj: JsonObject) -> SetStatus:
    status = require_choice(obj, "status", AGENT_STATUSES)
    return SetStatus(
        status=cast(Literal["online", "break", "offline"], status),
        reason=optional_str(obj, "reason", MAX_LABEL_CHARS),
    )


def _offer_accept(obj: JsonObject) -> AcceptOffer:
    return AcceptOffer(offer_id=require_str(obj, "offer_id", MAX_ID_CHARS))


def _offer_decline(obj: JsonObject) -> DeclineOffer:
    return DeclineOffer(
        offer_id=require_str(obj, "offer_id", MAX_ID_CHARS),
        reason=optional_str(obj, "reason", MAX_LABEL_CHARS),
    )


def _note_add(obj: JsonObject) -> AddNote:
    return AddNote(
        client_id=require_str(obj, "client_id", MAX_CLIENT_ID_CHARS),
        conversation_id=require_str(obj, "conversation_id", MAX_ID_CHARS),
        text=require_str(obj, "text", MAX_TEXT_CHARS),
    )


def transfer_target(obj: JsonObject) -> tuple[str | None, str | None]:
    to_agent_id = optional_str(obj, "to_agent_id", MAX_ID_CHARS)
    to_department_id = optional_str(obj, "to_department_id", MAX_ID_CHARS)
    if to_agent_id is None and to_department_id is None:
        raise RemoteProtocolError(MISSING_FIELD, "a transfer requires 'to_agent_id' or 'to_department_id'")
    if to_agent_id is not None and to_department_id is not None:
        raise RemoteProtocolError(INVALID_FIELD, "a transfer takes only one of 'to_agent_id' and 'to_department_id'")
    return to_agent_id, to_department_id


def _transfer(obj: JsonObject) -> Transfer:
    client_id = require_str(obj, "client_id", MAX_CLIENT_ID_CHARS)
    conversation_id = require_str(obj, "conversation_id", MAX_ID_CHARS)
    to_agent_id, to_department_id = transfer_target(obj)
    note = optional_str(obj, "note", MAX_TEXT_CHARS)
    return Transfer(client_id, conversation_id, to_agent_id, to_department_id, note)


CUSTOMER_DECODERS: Final[dict[str, Decoder[CustomerFrame]]] = {
    "conversation.start": _conversation_start,
    "message.send": _message_send,
    "typing": _typing,
    "read": _read,
    "resume": _resume,
    "conversation.close": _customer_close,
    "ping": _ping,
}

AGENT_DECODERS: Final[dict[str, Decoder[AgentFrame]]] = {
    "status.set": _status_set,
    "offer.accept": _offer_accept,
    "offer.decline": _offer_decline,
    "message.send": _message_send,
    "note.add": _note_add,
    "transfer": _transfer,
    "conversation.close": _agent_close,
    "typing": _typing,
    "read": _read,
    "resume": _resume,
    "ping": _ping,
}
