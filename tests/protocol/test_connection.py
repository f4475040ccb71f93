# Invariant: any sequence of messages, refusals, ticks and times gives only valid decisions (a
# client frame, an `error` or `pong` answer, or a close with one of kefu's close codes), never an
# exception; the first close is the last decision; the rate, invalid-frame and heartbeat limits
# hold; and ticks and listens between messages change nothing but the idle close.
"""The sans-IO policy of one websocket connection: time is a number passed in, no clock."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kefu.protocol import errors
from kefu.protocol.agent import AGENT_FRAME_PERMISSIONS, AcceptOffer, SetStatus
from kefu.protocol.codec import decode_agent_frame, decode_customer_frame, encode_frame
from kefu.protocol.common import MarkRead, Ping, Resume, SendMessage
from kefu.protocol.connection import (
    MAX_INVALID_FRAMES,
    MIN_REFUSED_IN_A_ROW,
    Close,
    ConnectionLimits,
    ConnectionPolicy,
    Forbidden,
    client_id_of,
)
from kefu.protocol.errors import (
    CLOSE_FLOODING,
    CLOSE_IDLE_TIMEOUT,
    CLOSE_INVALID_PAYLOAD,
    CLOSE_MESSAGE_TOO_BIG,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_MANY_ERRORS,
    CLOSE_UNSUPPORTED_DATA,
    PROTOCOL_ERROR_CODES,
)
from kefu.protocol.frames import AGENT_FRAME_TYPES, CUSTOMER_FRAME_TYPES, AgentFrame, ClientFrame, CustomerFrame
from kefu.protocol.permissions import ALL_PERMISSIONS, Permission
from kefu.protocol.server import Pong, ServerError
from kefu.protocol.throttle import Rate

from .samples import agent_frames, customer_frames

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

LIMITS = ConnectionLimits(max_frame_bytes=4096, rate=Rate(burst=10, per_seconds=2.0), heartbeat_seconds=30)
"""5 frames a second, bursts of 10 (kefu's defaults are 20 and 40); idle after 45 s."""
CLOSE_CODES = {value for name, value in vars(errors).items() if name.startswith("CLOSE_")}
ANSWER_CODES = {*PROTOCOL_ERROR_CODES, "rate_limited", "flooding", "forbidden"}


def customer_policy(now: float = 0.0, limits: ConnectionLimits = LIMITS) -> ConnectionPolicy[CustomerFrame]:
    return ConnectionPolicy(decode_customer_frame, limits, now)


def agent_policy(
    permissions: frozenset[Permission] = ALL_PERMISSIONS, now: float = 0.0, limits: ConnectionLimits = LIMITS
) -> ConnectionPolicy[AgentFrame]:
    return ConnectionPolicy(
        decode_agent_frame, limits, now, frame_permissions=AGENT_FRAME_PERMISSIONS, permissions=permissions
    )


def wire(frame: ClientFrame) -> str:
    return encode_frame(frame).decode()


def message(number: int) -> str:
    return wire(SendMessage(f"c-{number}", "conv-1", "text", text=f"hello {number}"))


def is_error(decision: object, code: str) -> bool:
    return isinstance(decision, ServerError) and decision.code == code


def is_forbidden(decision: object, attempted: str, conversation_id: str | None = None) -> bool:
    """A `Forbidden` the edge audits as `attempted` on `conversation_id`, answered `forbidden`."""
    return (
        isinstance(decision, Forbidden)
        and decision.answer.code == "forbidden"
        and (decision.attempted, decision.conversation_id) == (attempted, conversation_id)
    )


# --- one rule at a time ------------------------------------------------------------------------


def test_a_frame_within_the_rate_is_delivered_as_itself_and_ping_is_answered() -> None:
    policy = customer_policy()
    assert policy.receive(message(1), 0.0) == SendMessage("c-1", "conv-1", "text", text="hello 1")
    assert policy.receive(wire(Ping("n-1")), 0.0) == Pong("n-1")
    assert policy.closed is None


def test_a_burst_then_rate_limited_then_one_token_per_fifth_of_a_second() -> None:
    policy = customer_policy()
    decisions = [policy.receive(message(n), 0.0) for n in range(12)]
    assert all(isinstance(decision, SendMessage) for decision in decisions[:10])
    for number, refused in enumerate(decisions[10:], start=10):
        assert refused == ServerError("rate_limited", "too many frames: slow down", retryable=True, ref=f"c-{number}")
    assert is_error(policy.receive(message(12), 0.19), "rate_limited")
    assert isinstance(policy.receive(message(13), 0.2), SendMessage)  # one token back after 1/5 s
    assert is_error(policy.receive("not json at all", 0.2), "rate_limited")  # refused unread: no ref
    assert policy.receive("not json at all", 0.2) == ServerError(
        "rate_limited", "too many frames: slow down", retryable=True, ref=None
    )


def test_a_client_that_ignores_rate_limited_is_closed_with_4004_and_nothing_after() -> None:
    policy = customer_policy()
    for number in range(10):
        assert isinstance(policy.receive(message(number), 0.0), SendMessage)
    # 100 refusals are answered; the 101st unforgiven one closes (2 * burst is only 20)
    for number in range(10, 10 + MIN_REFUSED_IN_A_ROW):
        assert is_error(policy.receive(message(number), 0.0), "rate_limited")
    close = policy.receive(message(999), 0.0)
    assert close == Close(
        CLOSE_FLOODING,
        "rate limit ignored",
        ServerError("flooding", "rate limit ignored: closing", retryable=False, ref="c-999"),
    )
    assert policy.closed is close
    # the first close is the last decision, whatever comes after
    assert policy.receive(message(1000), 100.0) is close
    assert policy.receive(b"binary", 100.0) is close
    assert policy.refused(CLOSE_INVALID_PAYLOAD, "not UTF-8") is close
    assert policy.tick(1e9) is close


def test_refusals_are_forgiven_at_twice_the_rate_so_a_client_that_slows_down_stays() -> None:
    policy = customer_policy()
    now = 0.0
    for number in range(10):
        policy.receive(message(number), now)
    for number in range(MIN_REFUSED_IN_A_ROW):
        assert is_error(policy.receive(message(number), now), "rate_limited")
    # Slowed down to the rate: each frame gets its token, and the refusals are forgiven.
    for number in range(60):
        now += 0.2
        assert isinstance(policy.receive(message(number), now), SendMessage)
    # 10 s at the rate forgave 10 s * 10/s = 100 refusals: a new burst of refusals starts from
    # nothing again.
    for number in range(MIN_REFUSED_IN_A_ROW):
        assert is_error(policy.receive(message(number), now), "rate_limited")
    assert policy.closed is None


def test_the_fiftieth_invalid_frame_is_answered_then_closes_4003() -> None:
    policy = customer_policy(limits=ConnectionLimits(4096, Rate(burst=1000, per_seconds=1.0), 30))
    unknown = [json.dumps({"type": "no.such.frame", "client_id": f"n{n}"}) for n in range(MAX_INVALID_FRAMES)]
    for number, raw in enumerate(unknown[:-1]):
        refused = policy.receive(raw, 0.0)
        assert isinstance(refused, ServerError) and (refused.code, refused.ref) == ("unknown_type", f"n{number}")
        assert isinstance(policy.receive(wire(Ping()), 0.0), Pong)  # valid frames forgive nothing, close nothing
    close = policy.receive(unknown[-1], 0.0)
    assert isinstance(close, Close) and close.code == CLOSE_TOO_MANY_ERRORS
    assert close.error is not None and (close.error.code, close.error.ref) == (
        "unknown_type",
        f"n{MAX_INVALID_FRAMES - 1}",
    )


@pytest.mark.parametrize(
    ("raw", "code", "close_code"),
    [
        ("{not json", "malformed_json", CLOSE_INVALID_PAYLOAD),
        ("[1, 2]", "invalid_envelope", CLOSE_INVALID_PAYLOAD),
        ('{"v": 2, "type": "ping", "client_id": "c-1"}', "unsupported_version", CLOSE_PROTOCOL_ERROR),
        (json.dumps({"type": "ping", "nonce": "x" * 5000}), "oversized", CLOSE_MESSAGE_TOO_BIG),
    ],
)
def test_a_protocol_error_with_a_close_code_is_answered_then_closes(raw: str, code: str, close_code: int) -> None:
    close = customer_policy().receive(raw, 0.0)
    assert isinstance(close, Close) and (close.code, close.reason) == (close_code, code)
    assert close.error is not None and close.error.code == code and not close.error.retryable


def test_a_binary_message_closes_1003_without_an_error() -> None:
    assert customer_policy().receive(b'{"type": "ping"}', 0.0) == Close(
        CLOSE_UNSUPPORTED_DATA, "binary messages are not accepted"
    )


def test_silence_from_listen_for_one_and_a_half_heartbeats_closes_4002() -> None:
    policy = customer_policy(now=100.0)
    assert policy.deadline == 145.0
    assert policy.tick(144.9) is None
    assert policy.listen(120.0) == 165.0  # waiting again from 120 s
    assert policy.tick(145.0) is None
    assert policy.tick(164.99) is None
    close = policy.tick(165.0)
    assert close == Close(CLOSE_IDLE_TIMEOUT, "idle timeout: send a ping at least every heartbeat_seconds")
    assert close is not None and close.error is None
    assert policy.receive(wire(Ping()), 165.0) is close


@pytest.mark.parametrize(
    ("code", "reason", "error"),
    [
        (CLOSE_INVALID_PAYLOAD, "invalid UTF-8", ServerError("malformed_json", "frame is not valid UTF-8", False)),
        (CLOSE_MESSAGE_TOO_BIG, "larger than 10 bytes", ServerError("oversized", "larger than 10 bytes", False)),
        (CLOSE_PROTOCOL_ERROR, "reserved bits set", None),
    ],
)  # fmt: skip
def test_what_the_websocket_layer_refuses_closes_with_its_code(
    code: int, reason: str, error: ServerError | None
) -> None:
    policy = customer_policy()
    assert policy.refused(code, reason) == Close(code, reason, error)
    assert policy.receive(wire(Ping()), 0.0) is policy.closed


def test_a_frame_whose_permission_the_user_lacks_is_forbidden_and_changes_nothing() -> None:
    policy = agent_policy(permissions=frozenset())
    forbidden = policy.receive(message(1), 0.0)
    # a decision the edge tells apart from other answers: it audits what was attempted, and where
    assert forbidden == Forbidden(
        ServerError("forbidden", "message.send needs the permission conversations.handle", retryable=False, ref="c-1"),
        "message.send",
        "conv-1",
    )
    assert is_forbidden(policy.receive(wire(SetStatus("online")), 0.0), "status.set")
    assert is_forbidden(policy.receive(wire(AcceptOffer("offer-1")), 0.0), "offer.accept")
    # frames that need only a signed-in user pass
    assert policy.receive(wire(Resume("conv-1", 3)), 0.0) == Resume("conv-1", 3)
    assert policy.receive(wire(Ping("p")), 0.0) == Pong("p")
    # forbidden frames are not invalid ones: many of them close nothing
    many = agent_policy(permissions=frozenset())
    for number in range(2 * MAX_INVALID_FRAMES):
        assert is_forbidden(many.receive(wire(MarkRead("conv-1", number)), number * 0.2), "read", "conv-1")
    assert many.closed is None
    # with the permission, the same frame is delivered
    allowed = agent_policy(permissions=frozenset({Permission.CONVERSATIONS_HANDLE}))
    assert allowed.receive(wire(SetStatus("online")), 0.0) == SetStatus("online")


def test_every_agent_frame_has_its_one_permission_declared() -> None:
    assert set(AGENT_FRAME_PERMISSIONS) == set(AGENT_FRAME_TYPES)


def test_time_that_runs_back_refills_nothing() -> None:
    policy = customer_policy(now=50.0)
    for number in range(10):
        policy.receive(message(number), 50.0)
    assert is_error(policy.receive(message(10), 10.0), "rate_limited")
    assert is_error(policy.receive(message(11), 50.1), "rate_limited")  # 0.1 s after 50 s: half a token
    assert isinstance(policy.receive(message(12), 50.2), SendMessage)


def test_the_limits_are_checked() -> None:
    with pytest.raises(ValueError):
        ConnectionLimits(0, Rate(1, 1.0), 30)
    with pytest.raises(ValueError):
        ConnectionLimits(100, Rate(1, 1.0), 0)
    assert ConnectionLimits(100, Rate(burst=40, per_seconds=2.0), 30).max_refused == 100
    assert ConnectionLimits(100, Rate(burst=80, per_seconds=2.0), 30).max_refused == 160


# --- fuzz: any inputs at any times ----------------------------------------------------------------


@dataclass(frozen=True)
class Receive:
    message: str | bytes
    at: float


@dataclass(frozen=True)
class Tick:
    at: float


@dataclass(frozen=True)
class Listen:
    at: float


@dataclass(frozen=True)
class Refused:
    code: int
    reason: str


Event = Receive | Tick | Listen | Refused

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=10,
)
customer_messages = st.one_of(
    customer_frames.map(wire),
    st.sampled_from(["{not json", "[]", '{"type": "no.such"}', '{"type": "ping", "v": 2}']),
    st.dictionaries(st.sampled_from(["type", "client_id", "conversation_id", "v"]), json_values).map(json.dumps),
    st.text(max_size=40),
    st.binary(max_size=20),
)
agent_messages = st.one_of(customer_messages, agent_frames.map(wire))
# Times in 1/16 s steps (exact in binary), mostly forward, now and then back.
steps = st.integers(min_value=-16, max_value=160).map(lambda sixteenths: sixteenths / 16)


@st.composite
def events(draw: st.DrawFn, messages: st.SearchStrategy[str | bytes]) -> list[Event]:
    now = 0.0
    drawn: list[Event] = []
    for _ in range(draw(st.integers(min_value=0, max_value=40))):
        now += draw(st.sampled_from([0.0, 0.0, 0.0, 1 / 16]) | steps)
        kind = draw(st.sampled_from(["receive"] * 8 + ["tick", "listen", "refused"]))
        if kind == "receive":
            # now and then the same message many times at once: a flood, or a stream of errors
            drawn.extend([Receive(draw(messages), now)] * draw(st.sampled_from([1, 1, 1, 1, 1, 1, 30, 160])))
        elif kind == "tick":
            drawn.append(Tick(now))
        elif kind == "listen":
            drawn.append(Listen(now))
        else:
            code = draw(st.sampled_from([CLOSE_INVALID_PAYLOAD, CLOSE_MESSAGE_TOO_BIG, CLOSE_PROTOCOL_ERROR]))
            drawn.append(Refused(code, draw(st.text(max_size=20))))
    return drawn


def run(policy: ConnectionPolicy[Any], inputs: Sequence[Event]) -> list[object]:
    decisions: list[object] = []
    for event in inputs:
        match event:
            case Receive(raw, at):
                decisions.append(policy.receive(raw, at))
            case Tick(at):
                decisions.append(policy.tick(at))
            case Listen(at):
                decisions.append(policy.listen(at))
            case Refused(code, reason):
                decisions.append(policy.refused(code, reason))
    return decisions


def check_decisions(
    policy: ConnectionPolicy[Any], inputs: Sequence[Event], decisions: list[object], frame_types: tuple[type, ...]
) -> None:
    """Each decision is one of the valid kinds, the first close is the last, and the limits hold."""
    closed: Close | None = None
    passed = refusals = invalid = 0
    latest = 0.0
    limits = policy.limits
    deadline = limits.idle_seconds
    for event, decision in zip(inputs, decisions, strict=True):
        if closed is not None:
            assert decision is closed or isinstance(event, Listen)
            continue
        match event:
            case Listen(at):
                assert decision == at + limits.idle_seconds
                deadline = at + limits.idle_seconds
                continue
            case Tick(at):
                assert (decision is None) == (at < deadline)
            case Receive(_, at):
                latest = max(latest, at)
        match decision:
            case Close(code, reason, error):
                assert code in CLOSE_CODES and isinstance(reason, str)
                assert error is None or error.code in ANSWER_CODES
                passed += isinstance(event, Receive) and code not in (CLOSE_FLOODING, CLOSE_UNSUPPORTED_DATA)
                closed = decision
            case ServerError(code=code):
                assert code in ANSWER_CODES
                refusals += code == "rate_limited"
                invalid += code in PROTOCOL_ERROR_CODES
                passed += code != "rate_limited"
            case Pong():
                passed += 1
            case Forbidden(answer=answer):
                assert answer.code == "forbidden"
                passed += 1
            case None:
                pass
            case _:
                assert isinstance(decision, frame_types)
                passed += 1
        # the limits: frames read, refusals answered, invalid frames let go
        assert passed <= limits.burst + limits.tokens_per_second * latest + 1e-9
        assert refusals <= limits.max_refused + limits.forgiven_per_second * latest + 1
        assert invalid < MAX_INVALID_FRAMES
    assert policy.closed is closed


# kefu's default rate and a generous one (so that 50 invalid frames get through); a long and a
# short heartbeat (so that ticks find the deadline)
limits = st.sampled_from(
    [
        LIMITS,
        ConnectionLimits(4096, Rate(burst=1000, per_seconds=1.0), 30),
        ConnectionLimits(256, Rate(burst=40, per_seconds=2.0), 1),
    ]
)


@FUZZ
@given(events(customer_messages), limits)
def test_any_inputs_on_a_customer_socket_give_valid_decisions(inputs: list[Event], limits: ConnectionLimits) -> None:
    policy = customer_policy(limits=limits)
    check_decisions(policy, inputs, run(policy, inputs), CUSTOMER_FRAME_TYPES)


@FUZZ
@given(events(agent_messages), st.sets(st.sampled_from(list(Permission))), limits)
def test_any_inputs_on_an_agent_socket_give_valid_decisions(
    inputs: list[Event], permissions: set[Permission], limits: ConnectionLimits
) -> None:
    policy = agent_policy(frozenset(permissions), limits=limits)
    decisions = run(policy, inputs)
    check_decisions(policy, inputs, decisions, AGENT_FRAME_TYPES)
    for decision in decisions:
        # what is delivered is what the user may do
        if isinstance(decision, AGENT_FRAME_TYPES):
            needed = AGENT_FRAME_PERMISSIONS[type(decision)]
            assert needed is None or needed in permissions


@FUZZ
@given(events(agent_messages), limits)
def test_ticks_and_listens_between_messages_change_nothing_but_the_idle_close(
    inputs: list[Event], limits: ConnectionLimits
) -> None:
    """The same messages give the same decisions whether the edge ticks and listens between
    them or not, as long as no tick comes at the deadline."""
    plain = agent_policy(limits=limits)
    messages = [event for event in inputs if isinstance(event, Receive | Refused)]
    expected = run(plain, messages)
    watched = agent_policy(limits=limits)
    deadline = limits.idle_seconds
    got: list[object] = []
    for event in inputs:
        if isinstance(event, Listen):
            deadline = watched.listen(event.at)
        elif isinstance(event, Tick):
            if watched.closed is None and event.at < deadline:
                assert watched.tick(event.at) is None
        else:
            got.extend(run(watched, [event]))
    assert got == expected


@FUZZ
@given(st.lists(st.integers(min_value=0, max_value=64), max_size=200))
def test_within_the_rate_every_frame_is_delivered(sixteenths: list[int]) -> None:
    """A client that never sends faster than the rate (one frame a fifth of a second or slower)
    is never refused, whatever its rhythm."""
    policy = customer_policy()
    now = 0.0
    for number, wait in enumerate(sixteenths):
        now += 0.2 + wait / 16
        assert isinstance(policy.receive(message(number), now), SendMessage)


@FUZZ
@given(st.text(max_size=100) | json_values.map(json.dumps))
def test_the_client_id_of_a_rate_limited_frame(raw: str) -> None:
    ref = client_id_of(raw)
    assert ref is None or (isinstance(ref, str) and 0 < len(ref) <= 64)


invalid_messages = st.sampled_from(
    [
        '{"type": "no.such.frame"}',
        '{"type": "message.send", "client_id": "c-1"}',
        '{"type": "ping", "nonce": 7}',
        '{"client_id": "c-2"}',
        '{"type": "status.set", "status": "online"}',  # not a customer frame
    ]
)
valid_messages = st.sampled_from([wire(Ping("p")), message(1), wire(Resume("conv-1", 0))])


@FUZZ
@given(st.lists(st.tuples(st.booleans(), invalid_messages, valid_messages), min_size=1, max_size=120))
def test_the_close_4003_comes_with_exactly_the_fiftieth_invalid_frame(sent: list[tuple[bool, str, str]]) -> None:
    policy = customer_policy(limits=ConnectionLimits(4096, Rate(burst=1000, per_seconds=1.0), 30))
    invalid = 0
    for is_invalid, bad, good in sent:
        decision = policy.receive(bad if is_invalid else good, 0.0)
        invalid += is_invalid
        if is_invalid and invalid == MAX_INVALID_FRAMES:
            assert isinstance(decision, Close) and decision.code == CLOSE_TOO_MANY_ERRORS
            return
        assert not isinstance(decision, Close)
        assert isinstance(decision, ServerError) == is_invalid


@FUZZ
@given(
    limits,
    st.integers(min_value=0, max_value=10_000).map(lambda sixteenths: sixteenths / 16),
    st.lists(st.integers(min_value=-32, max_value=32 * 16).map(lambda sixteenths: sixteenths / 16), max_size=20),
)
def test_the_idle_close_comes_at_the_deadline_and_not_before(
    limits: ConnectionLimits, listened: float, offsets: list[float]
) -> None:
    policy = customer_policy(limits=limits)
    deadline = policy.listen(listened)
    assert deadline == listened + limits.idle_seconds
    for offset in sorted(offsets):
        decision = policy.tick(deadline + offset)
        if offset < 0:
            assert decision is None
        else:
            assert decision == Close(CLOSE_IDLE_TIMEOUT, "idle timeout: send a ping at least every heartbeat_seconds")
            assert policy.tick(deadline - 100) is decision  # and stays closed
            return
