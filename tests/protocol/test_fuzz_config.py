"""Property tests of configuration parsing: whatever the TOML file and the KEFU_* variables say,
``load_config`` either returns a configuration kefu can run with or raises ``ConfigError`` naming
the setting; never another exception, and never a value that fails later at run time.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import fields
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kefu.protocol import decode_server_frame, encode_frame
from kefu.protocol.common import MAX_CLIENT_ID_CHARS, MAX_TEXT_CHARS
from kefu.protocol.server import AgentStatus, Limits
from kefu.server.config import ATTACHMENT_KINDS, Config, ConfigError, load_config

FUZZ = settings(
    max_examples=250,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

SETTINGS = [f.name for f in fields(Config)]

# Values as they come from the environment: numbers of every size and spelling, and junk.
NUMERIC = [f.name for f in fields(Config) if f.type in ("int", "float")]
env_numbers = st.sampled_from(
    ["0", "1", "-1", " 7 ", "1_000", "1e300", "1e12", "1e-300", str(2**31), str(2**40), "nan", "inf", "0x10", "١٢"]
) | st.integers(min_value=-(10**30), max_value=10**30).map(str)
env_values = (
    env_numbers
    | st.floats(allow_nan=True, allow_infinity=True).map(repr)
    | st.sampled_from(["image/png=image", "image/png", "text/plain=file,audio/ogg=voice", "a=b=c", ",,", "x/y=file"])
    | st.sampled_from(["", " ", "true", "12abc", "DEBUG", "text", "json"])
    | st.text(max_size=20)
)


# TOML literals of every kind, valid and not.
toml_literals = st.sampled_from(
    [
        "1",
        "0",
        "-5",
        "99999999999999999999",
        "1.5",
        "1e300",
        "inf",
        "nan",
        "true",
        '"text"',
        '"INFO"',
        '"json"',
        '""',
        "'literal'",
        "[1, 2]",
        "[]",
        '{ "image/png" = "image" }',
        '{ "image/png" = 1 }',
        '{ "IMAGE/PNG " = "image" }',
        "{ }",
        "2024-05-01T12:00:00Z",
        "2024-05-01",
        '"""multi\nline"""',
        "unquoted",
        "[1, ",
    ]
) | st.integers(min_value=-(2**70), max_value=2**70).map(str)


@st.composite
def toml_documents(draw: st.DrawFn) -> str:
    keys = st.sampled_from([*SETTINGS, "unknown", "kefu.port", '"port"'])
    lines = [f"{draw(keys)} = {draw(toml_literals)}" for _ in range(draw(st.integers(0, 5)))]
    if draw(st.booleans()):
        lines.insert(0, "[kefu]")
    if draw(st.integers(0, 9)) == 0:
        lines.append(draw(st.text(max_size=30)))
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def check_usable(config: Config) -> None:
    """What kefu does with a loaded configuration succeeds."""
    assert 0 <= config.port <= 65535
    assert config.database_pool_size >= 2
    for name in ("max_frame_bytes", "max_upload_bytes", "max_frames_per_second", "max_connections_per_address"):
        assert getattr(config, name) >= 1
    # sign-in: the session's expiry
    assert timedelta(hours=config.session_ttl_hours) >= timedelta(0)
    # the welcome frame's limits and the agent's status frame must decode in every client
    limits = Limits(
        max_frame_bytes=config.max_frame_bytes,
        max_text_chars=MAX_TEXT_CHARS,
        max_client_id_chars=MAX_CLIENT_ID_CHARS,
        heartbeat_seconds=config.heartbeat_seconds,
    )
    encode_frame(limits_frame(limits), check=True)
    status = AgentStatus(
        status="wrap_up", active_conversations=1, capacity=5, wrap_up_seconds=int(config.wrap_up_seconds)
    )
    assert decode_server_frame(encode_frame(status)) == status
    assert config.handshake_timeout_seconds > 0 and config.body_timeout_seconds > 0
    for content_type, kind in config.upload_content_types.items():
        assert kind in ATTACHMENT_KINDS and content_type == content_type.strip().lower()


def limits_frame(limits: Limits) -> object:
    from kefu.protocol.server import Welcome

    return Welcome(
        protocol_version=1,
        session_id="ws-1",
        role="agent",
        user_id="u",
        server_time="2024-05-01T12:00:00Z",
        limits=limits,
    )


def loads_or_refuses(path: Path | None, environ: dict[str, str]) -> None:
    try:
        config = load_config(path, environ=environ)
    except ConfigError as error:
        assert str(error)
        return
    check_usable(config)


@FUZZ
@given(st.dictionaries(st.sampled_from(SETTINGS), env_values, max_size=4))
def test_environment_variables(values: dict[str, str]) -> None:
    loads_or_refuses(None, {f"KEFU_{name.upper()}": value for name, value in values.items()})


@FUZZ
@given(st.sampled_from(NUMERIC), env_numbers)
def test_numeric_settings(name: str, value: str) -> None:
    loads_or_refuses(None, {f"KEFU_{name.upper()}": value})


@FUZZ
@given(toml_documents())
def test_configuration_files(folder: Path, document: str) -> None:
    path = folder / "kefu.toml"
    path.write_text(document, encoding="utf-8")
    loads_or_refuses(path, {})


@FUZZ
@given(st.binary(max_size=200))
def test_configuration_files_of_arbitrary_bytes(folder: Path, data: bytes) -> None:
    path = folder / "raw.toml"
    path.write_bytes(data)
    loads_or_refuses(path, {})


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("session_ttl_hours", "1e300"),  # timedelta overflow at sign-in
        ("heartbeat_seconds", str(2**40)),  # the welcome frame's limit would not decode
        ("max_frame_bytes", str(2**40)),
        ("wrap_up_seconds", "1e12"),  # the status frame's countdown would not decode
        ("handshake_timeout_seconds", "0"),
        ("body_timeout_seconds", "-1"),
    ],
)
def test_values_that_would_fail_later_are_refused_at_start(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_config(environ={f"KEFU_{name.upper()}": value})
