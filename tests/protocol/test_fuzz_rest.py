"""Property tests of the REST edge's input checks: any decoded JSON body either passes or is
refused with the documented error (``InvalidInput``, answered 400), and what passes is what the
check promises. The whole endpoints are fuzzed live in ``tests/server/test_limits.py``.
"""

from __future__ import annotations

import itertools
import json
import unicodedata
from typing import Any
from uuid import UUID, uuid4

import msgspec
import msgspec.inspect
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kefu.actors.history import uuid_or_none
from kefu.protocol.connection import client_id_of
from kefu.protocol.permissions import AGENT, BUILT_IN_ROLES
from kefu.server import business_hours, canned, directory, queues, webchat
from kefu.server.api.blueprints import BLUEPRINTS
from kefu.server.api.route import ROUTES, Refused, decode_json, parse_id
from kefu.server.attachments import MAX_FILENAME_CHARS, content_disposition, content_matches, sanitize_filename
from kefu.server.config import DEFAULT_UPLOAD_CONTENT_TYPES
from kefu.server.directory import InvalidInput
from kefu.server.roles import MAX_ROLE_NAME_CHARS
from kefu.server.webchat import CustomerChange, VisitorChange, VisitorStart

FUZZ = settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

uuids = st.uuids().map(str)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | uuids
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=20,
)


def bodies(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Objects mixing the endpoint's own fields (plausible or arbitrary values) with junk; or not an object."""
    plausible = st.fixed_dictionaries({}, optional={name: strategy | json_values for name, strategy in fields.items()})
    junk = st.dictionaries(st.sampled_from([*fields, "id", "extra", ""]), json_values, max_size=4)
    return (
        st.builds(lambda a, b: {**b, **a}, plausible, junk | st.just({}))
        | plausible
        | json_values
        | st.lists(json_values, max_size=3)
    )


def decoded(body: Any, kind: type) -> Any:
    """`body` sent as JSON and decoded as the route's declared Struct."""
    return decode_json(json.dumps(body).encode(), kind)


def passes_or_invalid(check: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``check``; ``InvalidInput`` with a message is the only acceptable refusal."""
    try:
        return check(*args, **kwargs)
    except InvalidInput as error:
        assert str(error)
        return None


# --- business hours ------------------------------------------------------------------------

intervals = st.builds(
    lambda a, b, c, d: f"{a:02}:{b:02}-{c:02}:{d:02}",
    st.integers(0, 25),
    st.integers(0, 61),
    st.integers(0, 25),
    st.integers(0, 61),
)
schedules = st.dictionaries(
    st.sampled_from([*business_hours.WEEKDAYS, "Mon", "holiday"]),
    st.lists(intervals | json_values, max_size=4) | json_values,
    max_size=8,
)
timezones = st.sampled_from(
    ["UTC", "Asia/Shanghai", "Europe/Berlin", "America", "Etc/", "../etc/passwd", "/UTC", "zone.tab", "", "a\x00b"]
)


@FUZZ
@given(bodies({"timezone": timezones, "schedule": schedules}))
def test_business_hours(body: Any) -> None:
    result = passes_or_invalid(decoded, body, business_hours.BusinessHoursChange)
    if result is None:
        return
    assert result.timezone == body["timezone"].strip()
    for day in business_hours.WEEKDAYS:
        day_intervals = getattr(result.schedule, day)
        spans = [tuple(int(x) for x in span.replace("-", ":").split(":")) for span in day_intervals]
        minutes = [(h1 * 60 + m1, h2 * 60 + m2) for h1, m1, h2, m2 in spans]
        assert all(start < end <= 24 * 60 for start, end in minutes)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(minutes)), "sorted, not overlapping"


# --- queues --------------------------------------------------------------------------------

queue_fields = {
    "name": st.text(max_size=120),
    "department_id": uuids | st.none(),
    "skill_id": uuids,
    "strategy": st.sampled_from([*queues.STRATEGIES, "random"]),
    "min_skill_level": st.integers(-1, 12),
    "widen_after_seconds": st.integers(0, 4000),
    "offer_timeout_seconds": st.integers(0, 700),
    "auto_accept": st.booleans(),
    "overflow_after_seconds": st.integers(0, 90000) | st.none(),
    "overflow_queue_id": uuids,
    "no_agent_message": st.text(max_size=30),
    "is_default": st.booleans(),
}


@FUZZ
@given(bodies(queue_fields), st.booleans())
def test_queue_bodies(body: Any, create: bool) -> None:
    kind = queues.QueueCreate if create else queues.QueueChange
    change = passes_or_invalid(decoded, body, kind)
    if change is None:
        return
    values = queues.given(change)
    assert set(values) <= set(queues.FIELDS)
    if create:
        assert values["name"] and values["name"] == values["name"].strip()
    limits = {"min_skill_level": (1, 10), "widen_after_seconds": (1, 3600), "offer_timeout_seconds": (1, 600)}
    for field, (low, high) in {**limits, "overflow_after_seconds": (1, 86400)}.items():
        if values.get(field) is not None:
            assert type(values[field]) is int and low <= values[field] <= high
    for field in ("department_id", "skill_id", "overflow_queue_id"):
        assert values.get(field) is None or isinstance(values[field], UUID)
    assert values.get("strategy", "least_load") in queues.STRATEGIES


# --- the directory: departments, skills, agents -------------------------------------------

agent_fields = {
    "email": st.emails() | st.text(max_size=20),
    "display_name": st.text(max_size=220),
    "role": st.sampled_from([*BUILT_IN_ROLES, "root"]),
    "password": st.text(min_size=8, max_size=12),
    "max_concurrent_conversations": st.integers(-1, 120),
    "disabled": st.booleans(),
    "departments": st.lists(uuids, max_size=3),
    "skills": st.lists(st.fixed_dictionaries({"id": uuids, "level": st.integers(0, 11)}), max_size=3),
}


@FUZZ
@given(bodies(agent_fields))
def test_agent_bodies(body: Any) -> None:
    created = passes_or_invalid(decoded, body, directory.AgentCreate)
    if created is not None:
        assert 1 <= len(created.display_name) <= directory.MAX_DISPLAY_NAME_CHARS
        assert created.display_name == created.display_name.strip() and "@" in created.email
        # which names exist (built-in or the account's custom roles) is checked in the change's transaction
        assert 1 <= len(created.role) <= MAX_ROLE_NAME_CHARS
    changed = passes_or_invalid(decoded, body, directory.AgentChange)
    if changed is None:
        return
    values = directory.given(changed)
    assert 1 <= len(values.get("role", AGENT)) <= MAX_ROLE_NAME_CHARS
    capacity = values.get("max_concurrent_conversations", directory.MIN_CAPACITY)
    assert type(capacity) is int and directory.MIN_CAPACITY <= capacity <= directory.MAX_CAPACITY
    departments = values.get("departments", [])
    assert len(set(departments)) == len(departments)
    skills = values.get("skills", [])
    assert all(directory.MIN_LEVEL <= skill.level <= directory.MAX_LEVEL for skill in skills)


@FUZZ
@given(uuids | st.text(max_size=40))
def test_ids_in_urls_are_found_or_not_found(value: str) -> None:
    try:
        parsed = parse_id(value, "resource")
    except Refused as refused:
        assert (refused.status, refused.code) == (404, "not_found")
        return
    assert parsed == UUID(value)


# --- canned responses and the web-chat visitor ----------------------------------------------

canned_fields = {
    "scope": st.sampled_from(["account", "personal", "team"]),
    "shortcut": st.text(max_size=60),
    "title": st.text(max_size=30),
    "body": st.text(max_size=30),
}


@FUZZ
@given(bodies(canned_fields))
def test_canned_bodies(body: Any) -> None:
    created = passes_or_invalid(decoded, body, canned.CannedCreate)
    if created is not None:
        assert created.scope in ("account", "personal")
        assert created.shortcut and not any(c.isspace() for c in created.shortcut)
        assert 1 <= len(created.body) <= canned.MAX_BODY_CHARS and created.body == created.body.strip()
    changed = passes_or_invalid(decoded, body, canned.CannedChange)
    if changed is not None:
        assert set(canned.given(changed)) <= {"shortcut", "title", "body"}


customer_fields = {
    "display_name": st.text(max_size=210) | st.text(" \t", max_size=3).map(lambda pad: f"{pad}Ann{pad}") | st.none(),
    "level": st.integers(-2, 12) | st.booleans(),
    "phone": st.text(max_size=45) | st.none(),
    "email": st.text(max_size=30) | st.none(),
}


@FUZZ
@given(bodies(customer_fields))
def test_visitor_and_customer_change_bodies(body: Any) -> None:
    """A change names only its own fields, within their limits, with a trimmed display name; a
    visitor's change names at least one."""
    for kind in (VisitorChange, CustomerChange):
        change = passes_or_invalid(decoded, body, kind)
        if change is None:
            continue
        fields = webchat.given(change)
        assert set(fields) <= set(body) & set(customer_fields)
        if isinstance(change, VisitorChange):
            assert fields
        if isinstance(name := fields.get("display_name"), str):
            assert 1 <= len(name) <= webchat.MAX_DISPLAY_NAME_CHARS and name == name.strip()
        if "level" in fields:
            assert webchat.MIN_CUSTOMER_LEVEL <= fields["level"] <= webchat.MAX_CUSTOMER_LEVEL


# --- every declared body and query, through the routes' own decoding -------------------------

assert BLUEPRINTS  # importing them declares every route
DECLARED = sorted(
    {kind for spec in ROUTES for kind in (spec.body, spec.query) if kind is not None}, key=lambda kind: kind.__name__
)


def _field_names(kind: type) -> list[str]:
    return [field.encode_name for field in msgspec.inspect.type_info(kind).fields]  # type: ignore[attr-defined]


@FUZZ
@given(
    st.sampled_from(DECLARED).flatmap(
        lambda kind: st.tuples(st.just(kind), bodies(dict.fromkeys(_field_names(kind), json_values)))
    )
)
def test_every_declared_body_decodes_or_is_refused_with_a_message(case: tuple[type, Any]) -> None:
    """Any JSON body (or query) either decodes into the route's Struct, which encodes back to
    JSON, or is refused with `InvalidInput` and a message that names what is wrong."""
    kind, body = case
    value = passes_or_invalid(decoded, body, kind)
    if value is not None:
        assert isinstance(value, kind)
        msgspec.json.encode(value)


@FUZZ
@given(bodies({"account": st.text(max_size=10), "display_name": st.text(max_size=210) | st.none()}))
def test_visitor_start_bodies(body: Any) -> None:
    started = passes_or_invalid(decoded, body, VisitorStart)
    if started is not None and started.display_name is not None:
        assert 1 <= len(started.display_name) <= webchat.MAX_DISPLAY_NAME_CHARS


def test_the_declared_bodies_cover_every_route_with_a_body() -> None:
    assert len(DECLARED) >= 12
    assert {spec.body for spec in ROUTES if spec.body is not None} <= set(DECLARED)


# --- attachments: names, headers, content sniffing -------------------------------------------

filenames = (
    st.text(max_size=300)
    | st.text(st.sampled_from("./\\ \t\r\n\x00\u202e\u200bab.é漢"), max_size=30)
    | st.builds(lambda s, n: s * n, st.sampled_from(["a", "漢", ". ", "x.pdf"]), st.integers(250, 300))
    | st.none()
)


@FUZZ
@given(filenames)
def test_uploaded_file_names_are_made_safe(name: str | None) -> None:
    safe = sanitize_filename(name)
    assert 0 < len(safe) <= MAX_FILENAME_CHARS
    assert "/" not in safe and "\\" not in safe
    assert all(unicodedata.category(c)[0] != "C" for c in safe), "no control or format characters"
    assert safe not in (".", "..")
    for kind in ("file", "image"):
        header = content_disposition(kind, safe)
        header.encode("ascii")  # a header value the server can send
        assert "\r" not in header and "\n" not in header
        assert header.count('"') == 2


@FUZZ
@given(
    st.sampled_from([*DEFAULT_UPLOAD_CONTENT_TYPES, "image/svg+xml", "application/x-msdownload"]),
    st.binary(max_size=64),
)
def test_content_sniffing_answers_yes_or_no(content_type: str, head: bytes) -> None:
    assert content_matches(content_type, head) in (True, False)
    if content_type.startswith("image/") and content_type not in DEFAULT_UPLOAD_CONTENT_TYPES:
        assert not content_matches(content_type, head), "an image type kefu cannot check is refused"


# --- the websocket edge's own peeks at refused frames ----------------------------------------


@FUZZ
@given(st.text(max_size=100) | json_values.map(lambda v: __import__("json").dumps(v)))
def test_the_client_id_of_a_rate_limited_frame(raw: str) -> None:
    ref = client_id_of(raw)
    assert ref is None or (isinstance(ref, str) and 0 < len(ref) <= 64)


@FUZZ
@given(st.text(max_size=50) | uuids | st.none())
def test_conversation_ids_of_frames(value: str | None) -> None:
    parsed = uuid_or_none(value)
    assert parsed is None or (isinstance(parsed, UUID) and value is not None and parsed == UUID(value))


def test_a_valid_body_passes_every_check() -> None:
    """The strategies above do reach the accepting side of each check."""
    hours = decoded(
        {"timezone": "UTC", "schedule": {"mon": ["17:00-18:00", "09:00-12:00"]}}, business_hours.BusinessHoursChange
    )
    assert hours.schedule.mon == ["09:00-12:00", "17:00-18:00"] and hours.schedule.tue == []
    assert decoded({"name": " Sales ", "skill_id": str(uuid4())}, queues.QueueCreate).name == "Sales"
    assert decoded({"skills": [{"id": str(uuid4()), "level": 3}]}, directory.AgentChange).skills
    hello = {"scope": "personal", "shortcut": " /hi ", "title": "Hi", "body": "Hello"}
    assert decoded(hello, canned.CannedCreate).shortcut == "/hi"
    assert sanitize_filename("../../etc/passwd") == "passwd"
