"""Valid frames for the protocol tests: fixed examples and hypothesis strategies."""

from __future__ import annotations

from datetime import UTC

from hypothesis import strategies as st

from kefu.protocol.frames import (
    AGENT_PRESENCES,
    AGENT_STATUSES,
    CONVERSATION_STATES,
    MAX_CLIENT_ID_CHARS,
    MAX_CODE_CHARS,
    MAX_ID_CHARS,
    MAX_LABEL_CHARS,
    MAX_NONCE_CHARS,
    MAX_SEQ,
    MAX_TEXT_CHARS,
    OFFER_REVOKED_REASONS,
    AcceptOffer,
    Ack,
    AddNote,
    AgentFrame,
    AgentLoad,
    AgentStatus,
    CloseConversation,
    ConversationEvent,
    ConversationList,
    ConversationSummary,
    CustomerFrame,
    CustomerSummary,
    DeclineOffer,
    Limits,
    LiveStats,
    MarkRead,
    Offer,
    OfferRevoked,
    PeerRead,
    PeerTyping,
    Ping,
    Pong,
    QueuePosition,
    QueueStats,
    Resume,
    Resumed,
    Sender,
    SendMessage,
    ServerError,
    ServerFrame,
    SetStatus,
    SetTyping,
    StartConversation,
    Transfer,
    Welcome,
    utc_timestamp,
)

AT = "2024-05-01T12:00:00.123Z"
CUSTOMER = Sender(role="customer", id="cust-7", display_name="Li Wei")
AGENT = Sender(role="agent", id="agent-3", display_name="Anna")
SYSTEM = Sender(role="system", id="system")

CUSTOMER_SAMPLES: list[CustomerFrame] = [
    StartConversation(client_id="c-1", department="billing", topic="Invoice 2024-17"),
    StartConversation(client_id="c-2"),
    SendMessage(client_id="c-3", conversation_id="conv-1", kind="text", text="Hello, 你好 👋"),
    SendMessage(client_id="c-4", conversation_id="conv-1", kind="image", attachment_id="att-9"),
    SendMessage(client_id="c-5", conversation_id="conv-1", kind="file", text="my receipt", attachment_id="a"),
    SetTyping(conversation_id="conv-1", active=True),
    SetTyping(conversation_id="conv-1", active=False),
    MarkRead(conversation_id="conv-1", seq=12),
    Resume(conversation_id="conv-1", last_seq=0),
    CloseConversation(client_id="c-6", conversation_id="conv-1"),
    Ping(nonce="n-1"),
    Ping(),
]

AGENT_SAMPLES: list[AgentFrame] = [
    SetStatus(status="online"),
    SetStatus(status="break", reason="lunch"),
    AcceptOffer(offer_id="offer-1"),
    DeclineOffer(offer_id="offer-2", reason="language"),
    DeclineOffer(offer_id="offer-3"),
    SendMessage(client_id="a-1", conversation_id="conv-1", kind="voice", attachment_id="att-2"),
    SendMessage(client_id="a-2", conversation_id="conv-1", kind="text", text="How can I help?"),
    AddNote(client_id="a-3", conversation_id="conv-1", text="VIP, handle with care"),
    Transfer(client_id="a-4", conversation_id="conv-1", to_agent_id="agent-9", note="billing"),
    Transfer(client_id="a-5", conversation_id="conv-1", to_department_id="returns"),
    CloseConversation(client_id="a-6", conversation_id="conv-1", wrap_up_code="resolved"),
    CloseConversation(client_id="a-7", conversation_id="conv-1"),
    SetTyping(conversation_id="conv-1", active=True),
    MarkRead(conversation_id="conv-1", seq=0),
    Resume(conversation_id="conv-1", last_seq=41),
    Ping(),
]

SERVER_SAMPLES: list[ServerFrame] = [
    Welcome(
        protocol_version=1,
        session_id="sess-1",
        role="agent",
        user_id="agent-3",
        server_time=AT,
        limits=Limits(max_frame_bytes=65536, max_text_chars=8000, max_client_id_chars=64, heartbeat_seconds=30),
        display_name="Anna",
    ),
    Ack(client_id="c-3", conversation_id="conv-1", seq=7),
    ConversationEvent(
        conversation_id="conv-1",
        seq=7,
        kind="message",
        at=AT,
        sender=CUSTOMER,
        client_id="c-3",
        message_kind="text",
        text="Hello",
    ),
    ConversationEvent(
        conversation_id="conv-1",
        seq=8,
        kind="message",
        at=AT,
        sender=AGENT,
        message_kind="image",
        attachment_id="att-1",
    ),
    ConversationEvent(conversation_id="conv-1", seq=1, kind="queued", at=AT, sender=SYSTEM, queue_id="q-billing"),
    ConversationEvent(conversation_id="conv-1", seq=2, kind="assigned", at=AT, sender=SYSTEM, agent_id="agent-3"),
    ConversationEvent(conversation_id="conv-1", seq=9, kind="note", at=AT, sender=AGENT, text="VIP", client_id="a-3"),
    ConversationEvent(
        conversation_id="conv-1",
        seq=10,
        kind="transferred",
        at=AT,
        sender=AGENT,
        from_agent_id="agent-3",
        to_department_id="returns",
        text="returns",
    ),
    ConversationEvent(conversation_id="conv-1", seq=11, kind="closed", at=AT, sender=CUSTOMER, reason="customer_left"),
    ConversationEvent(
        conversation_id="conv-1", seq=12, kind="wrapped_up", at=AT, sender=AGENT, wrap_up_code="resolved"
    ),
    ConversationEvent(
        conversation_id="conv-1", seq=13, kind="system", at=AT, sender=SYSTEM, text="Our office hours are 9 to 18."
    ),
    QueuePosition(conversation_id="conv-1", position=3, estimated_wait_seconds=90),
    QueuePosition(conversation_id="conv-1", position=1),
    PeerTyping(conversation_id="conv-1", role="agent", active=True),
    PeerRead(conversation_id="conv-1", role="customer", seq=8),
    Offer(
        offer_id="offer-1",
        conversation_id="conv-1",
        queue_id="q-billing",
        expires_in_seconds=20,
        customer=CustomerSummary(
            customer_id="cust-7",
            channel="webchat",
            display_name="Li Wei",
            level=2,
            topic="Invoice",
            preview="Hello, my invoice is wrong",
        ),
    ),
    OfferRevoked(offer_id="offer-1", reason="expired"),
    AgentStatus(status="online", active_conversations=2, capacity=5),
    AgentStatus(status="break", active_conversations=0, capacity=5, reason="lunch"),
    AgentStatus(status="wrap_up", active_conversations=1, capacity=5, wrap_up_seconds=25),
    ConversationList(
        conversations=(
            ConversationSummary("conv-1", "assigned", 12, "cust-7", "webchat", queue_id="q-1", agent_id="agent-3"),
            ConversationSummary("conv-2", "queued", 1, "cust-8", "webchat", topic="Invoice", display_name="Li Wei"),
        )
    ),
    ConversationList(conversations=()),
    LiveStats(
        at=AT,
        queues=(
            QueueStats("q-1", "Billing", 3, 42, 10, 7, 1, 2, service_level=0.875, average_speed_of_answer_seconds=12.5),
            QueueStats("q-2", "Returns", 0, 0, 0, 0, 0, 0),
        ),
        agents=(
            AgentLoad("agent-3", "Anna", "online", 2, 5),
            AgentLoad("agent-4", "Bo", "break", 0, 3, reason="lunch"),
        ),
    ),
    Resumed(conversation_id="conv-1", from_seq=5, to_seq=13),
    ServerError(code="invalid_field", message="field 'seq' must be ...", retryable=False, ref="c-3"),
    ServerError(code="rate_limited", message="slow down", retryable=True),
    Pong(nonce="n-1"),
    Pong(),
]

# --- strategies ------------------------------------------------------------------------------

# st.text() never produces lone surrogates, which JSON in UTF-8 cannot carry.
ids = st.text(min_size=1, max_size=MAX_ID_CHARS)
client_ids = st.text(min_size=1, max_size=MAX_CLIENT_ID_CHARS)
labels = st.text(min_size=1, max_size=MAX_LABEL_CHARS)
codes = st.text(min_size=1, max_size=MAX_CODE_CHARS)
texts = st.text(min_size=1, max_size=MAX_TEXT_CHARS)
nonces = st.text(min_size=1, max_size=MAX_NONCE_CHARS)
seqs = st.integers(min_value=0, max_value=MAX_SEQ)
positive_seqs = st.integers(min_value=1, max_value=MAX_SEQ)
counts = st.integers(min_value=0, max_value=2**31 - 1)
timestamps = st.datetimes(timezones=st.just(UTC)).map(utc_timestamp)


@st.composite
def send_messages(draw: st.DrawFn) -> SendMessage:
    kind = draw(st.sampled_from(["text", "image", "voice", "video", "file"]))
    if kind == "text":
        return SendMessage(draw(client_ids), draw(ids), "text", text=draw(texts))
    return SendMessage(draw(client_ids), draw(ids), kind, text=draw(st.none() | texts), attachment_id=draw(ids))


@st.composite
def transfers(draw: st.DrawFn) -> Transfer:
    target = draw(ids)
    to_agent = draw(st.booleans())
    return Transfer(
        client_id=draw(client_ids),
        conversation_id=draw(ids),
        to_agent_id=target if to_agent else None,
        to_department_id=None if to_agent else target,
        note=draw(st.none() | texts),
    )


shared_client_frames = st.one_of(
    send_messages(),
    st.builds(SetTyping, conversation_id=ids, active=st.booleans()),
    st.builds(MarkRead, conversation_id=ids, seq=seqs),
    st.builds(Resume, conversation_id=ids, last_seq=seqs),
    st.builds(Ping, nonce=st.none() | nonces),
)

customer_frames: st.SearchStrategy[CustomerFrame] = st.one_of(
    shared_client_frames,
    st.builds(
        StartConversation,
        client_id=client_ids,
        department=st.none() | ids,
        topic=st.none() | labels,
    ),
    st.builds(CloseConversation, client_id=client_ids, conversation_id=ids),
)

agent_frames: st.SearchStrategy[AgentFrame] = st.one_of(
    shared_client_frames,
    st.builds(
        SetStatus,
        status=st.sampled_from(sorted(AGENT_STATUSES)),
        reason=st.none() | labels,
    ),
    st.builds(AcceptOffer, offer_id=ids),
    st.builds(DeclineOffer, offer_id=ids, reason=st.none() | labels),
    st.builds(AddNote, client_id=client_ids, conversation_id=ids, text=texts),
    transfers(),
    st.builds(
        CloseConversation,
        client_id=client_ids,
        conversation_id=ids,
        wrap_up_code=st.none() | labels,
    ),
)

senders = st.builds(
    Sender,
    role=st.sampled_from(["customer", "agent", "system"]),
    id=ids,
    display_name=st.none() | labels,
)


@st.composite
def conversation_events(draw: st.DrawFn) -> ConversationEvent:
    kind = draw(
        st.sampled_from(["message", "note", "queued", "assigned", "transferred", "closed", "wrapped_up", "system"])
        | codes
    )
    body: dict[str, object] = {}
    if kind == "message":
        message = draw(send_messages())
        body = {
            "client_id": message.client_id,
            "message_kind": message.kind,
            "text": message.text,
            "attachment_id": message.attachment_id,
        }
    elif kind in ("note", "system"):
        body = {"text": draw(texts)}
    elif kind == "queued":
        body = {"queue_id": draw(ids)}
    elif kind == "assigned":
        body = {"agent_id": draw(ids)}
    elif kind == "transferred":
        transfer = draw(transfers())
        body = {
            "from_agent_id": draw(st.none() | ids),
            "to_agent_id": transfer.to_agent_id,
            "to_department_id": transfer.to_department_id,
        }
    elif kind == "closed":
        body = {"reason": draw(st.none() | labels)}
    elif kind == "wrapped_up":
        body = {"wrap_up_code": draw(st.none() | labels)}
    return ConversationEvent(
        conversation_id=draw(ids),
        seq=draw(positive_seqs),
        kind=kind,
        at=draw(timestamps),
        sender=draw(senders),
        **body,  # type: ignore[arg-type]
    )


server_frames: st.SearchStrategy[ServerFrame] = st.one_of(
    st.builds(
        Welcome,
        protocol_version=st.just(1),
        session_id=ids,
        role=st.sampled_from(["customer", "agent"]),
        user_id=ids,
        server_time=timestamps,
        limits=st.builds(
            Limits,
            max_frame_bytes=counts.filter(bool),
            max_text_chars=counts.filter(bool),
            max_client_id_chars=counts.filter(bool),
            heartbeat_seconds=counts.filter(bool),
        ),
        display_name=st.none() | labels,
    ),
    st.builds(Ack, client_id=client_ids, conversation_id=ids, seq=positive_seqs),
    conversation_events(),
    st.builds(
        QueuePosition,
        conversation_id=ids,
        position=counts.filter(bool),
        estimated_wait_seconds=st.none() | counts,
    ),
    st.builds(
        PeerTyping,
        conversation_id=ids,
        role=st.sampled_from(["customer", "agent"]),
        active=st.booleans(),
    ),
    st.builds(PeerRead, conversation_id=ids, role=st.sampled_from(["customer", "agent"]), seq=seqs),
    st.builds(
        Offer,
        offer_id=ids,
        conversation_id=ids,
        queue_id=ids,
        expires_in_seconds=counts,
        customer=st.builds(
            CustomerSummary,
            customer_id=ids,
            channel=codes,
            display_name=st.none() | labels,
            level=st.none() | counts,
            topic=st.none() | labels,
            preview=st.none() | texts,
        ),
    ),
    st.builds(OfferRevoked, offer_id=ids, reason=st.sampled_from(sorted(OFFER_REVOKED_REASONS))),
    st.builds(
        AgentStatus,
        status=st.sampled_from(sorted(AGENT_PRESENCES)),
        active_conversations=counts,
        capacity=counts,
        reason=st.none() | labels,
        wrap_up_seconds=st.none() | counts,
    ),
    st.builds(
        ConversationList,
        conversations=st.lists(
            st.builds(
                ConversationSummary,
                conversation_id=ids,
                state=st.sampled_from(sorted(CONVERSATION_STATES)),
                last_seq=seqs,
                customer_id=ids,
                channel=codes,
                queue_id=st.none() | ids,
                agent_id=st.none() | ids,
                topic=st.none() | labels,
                display_name=st.none() | labels,
            ),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(
        LiveStats,
        at=timestamps,
        queues=st.lists(
            st.builds(
                QueueStats,
                queue_id=ids,
                name=labels,
                waiting=counts,
                longest_wait_seconds=counts,
                offered=counts,
                answered=counts,
                abandoned=counts,
                agents_available=counts,
                service_level=st.none() | st.floats(0, 1),
                average_speed_of_answer_seconds=st.none() | st.floats(0, 1e6),
            ),
            max_size=3,
        ).map(tuple),
        agents=st.lists(
            st.builds(
                AgentLoad,
                agent_id=ids,
                display_name=labels,
                status=st.sampled_from(sorted(AGENT_PRESENCES)),
                load=counts,
                capacity=counts,
                reason=st.none() | labels,
            ),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(Resumed, conversation_id=ids, from_seq=seqs, to_seq=seqs),
    st.builds(
        ServerError,
        code=codes,
        message=texts,
        retryable=st.booleans(),
        ref=st.none() | client_ids,
    ),
    st.builds(Pong, nonce=st.none() | nonces),
)
