"""Configuration: defaults, then an optional TOML file, then `KEFU_*` environment variables."""

from __future__ import annotations

import math
import os
import re
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import phonenumbers

ATTACHMENT_KINDS = ("image", "voice", "video", "file")

DEFAULT_UPLOAD_CONTENT_TYPES: dict[str, str] = {
    "image/png": "image",
    "image/jpeg": "image",
    "image/gif": "image",
    "image/webp": "image",
    "audio/mpeg": "voice",
    "audio/ogg": "voice",
    "audio/wav": "voice",
    "audio/webm": "voice",
    "audio/mp4": "voice",
    "audio/amr": "voice",
    "video/mp4": "video",
    "video/webm": "video",
    "video/quicktime": "video",
    "application/pdf": "file",
    "text/plain": "file",
    "text/csv": "file",
    "application/zip": "file",
    "application/msword": "file",
    "application/vnd.ms-excel": "file",
    "application/vnd.ms-powerpoint": "file",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "file",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "file",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "file",
}
"""Content types an upload may have, and the attachment kind each one is."""


class ConfigError(ValueError):
    """A setting has a value kefu cannot use; the message names the setting."""


@dataclass(frozen=True, slots=True)
class Config:
    data_dir: Path = Path("kefu-data")
    """Folder for the embedded PostgreSQL cluster, attachments and backups."""
    database_url: str = ""
    """PostgreSQL DSN. Empty: start the embedded server in `data_dir/postgres`."""
    host: str = "127.0.0.1"
    """Address the HTTP/websocket server listens on."""
    port: int = 8080
    """Port the HTTP/websocket server listens on (0 picks a free one)."""
    log_level: str = "INFO"
    """DEBUG, INFO, WARNING or ERROR."""
    log_format: str = "json"
    """json (one object a line) or text."""
    database_pool_size: int = 10
    """Connections in the asyncpg pool (the store's writer takes one while it commits)."""
    store_batch_max: int = 2000
    """Most appends the store commits in one transaction (group commit)."""
    shutdown_grace: float = 10.0
    """Seconds open connections get to finish on SIGINT/SIGTERM before they are closed."""
    max_frame_bytes: int = 65536
    """Largest websocket message accepted (at most 16 MiB); a larger one closes the socket with 1009.
    Attachments go over HTTP."""
    session_ttl_hours: float = 12
    """Hours a sign-in session token stays valid (at most 8760, a year)."""
    visitor_ttl_days: float = 90
    """Days a web-chat visitor token stays valid after its last use (at most 3650); the widget
    then starts over as a new visitor."""
    max_upload_bytes: int = 20 * 1024 * 1024
    """Largest attachment accepted by POST /api/v1/attachments."""
    upload_content_types: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_UPLOAD_CONTENT_TYPES))
    """Allowed upload content types, each mapped to its kind (image, voice, video or file)."""
    max_frames_per_second: int = 20
    """Frames one websocket may send per second on average (bursts of twice as many); more get `rate_limited`."""
    max_connections_per_address: int = 1000
    """Open websockets from one client address; more are closed with 1013 (try again later)."""
    widget_origins: str = "*"
    """Comma-separated origins (https://shop.example) whose pages may open /ws/customer; * for any."""
    staff_origins: str = ""
    """Comma-separated extra origins that may open /ws/agent; kefu's own pages always may."""
    tls_certfile: str = ""
    """PEM certificate chain: with `tls_keyfile`, kefu serves HTTPS and WSS only (empty: plain HTTP)."""
    tls_keyfile: str = ""
    """PEM private key of `tls_certfile`."""
    wrap_up_seconds: float = 30
    """After-contact work an agent gets after a conversation ends, before it closes by itself (at most a day)."""
    max_missed_offers: int = 3
    """Offers an agent may let expire in a row before it is put on break."""
    no_agent_message: str = (
        "All our agents are busy or offline right now. Please stay: we answer as soon as one is free."
    )
    """What a customer is told when no agent of its queue is online (a queue may set its own)."""
    heartbeat_seconds: int = 30
    """Clients send a frame at least this often (at most 3600); silence for 1.5 times as long closes with 4002."""
    handshake_timeout_seconds: float = 5
    """Seconds a new (or idle keep-alive) connection has to send a complete HTTP request head, a websocket
    upgrade included; a slower one is dropped (slowloris). hypercorn's `keep_alive_timeout`."""
    body_timeout_seconds: float = 60
    """Seconds a request has to send its whole body (uploads included); a slower one gets 408."""
    send_buffer_frames: int = 1024
    """Frames buffered for one slow connection before it is cut off (4001) to resume later."""
    sign_ins_per_address_per_minute: int = 60
    """Sign-in attempts one client address may make a minute (as a burst after a quiet minute);
    more get 429 `rate_limited` with `Retry-After`, before any password is checked."""
    sign_ins_per_user_per_minute: int = 10
    """Sign-in attempts a minute for one account and e-mail, from any address; more get 429 `rate_limited`."""
    sign_in_lockout_failures: int = 10
    """Wrong passwords in a row that lock the user out: 429 `locked_out`, even with the right password."""
    sign_in_lockout_minutes: float = 15
    """How long a lockout lasts (at most 1440); `kefu account unlock` ends it sooner."""
    password_hashes_at_once: int = 1
    """Password hashes (argon2id, 19 MiB each) computed at once (at most 64); sign-ins beyond wait
    in a bounded line, and beyond that get 503 `busy`. One keeps the other cores for the event
    loop and PostgreSQL while a flood of sign-ins lasts; a machine with more cores may raise it
    (to one less than its cores)."""
    refusal_delay_seconds: float = 1.0
    """Seconds a refused request of the unauthenticated endpoints (sign-in, visitor creation,
    uploads: 429, and 503 `busy`) waits before its answer, at most `MAX_HELD_REFUSALS` at once
    (beyond, at once): a client that waits for its answers, as a flooding script does, can then
    cost at most one cheap answer a second per connection. 0 answers at once."""
    visitors_per_address_per_minute: int = 120
    """Web-chat visitors one client address may create a minute; more get 429 `rate_limited`."""
    uploads_per_address_per_minute: int = 120
    """Attachments one client address may upload a minute; more get 429 `rate_limited`."""
    data_key: str = field(default="", repr=False)
    """32 bytes in base64 that encrypt customers' personal data (empty: `data_dir/data.key`, made on first start)."""
    phone_region: str = "CN"
    """Region (ISO 3166 code) of phone numbers written without +country code; also how numbers are masked."""

    @property
    def embedded_database(self) -> bool:
        return not self.database_url

    @property
    def postgres_dir(self) -> Path:
        return self.data_dir / "postgres"


ENV_PREFIX = "KEFU_"


def _coerce(name: str, raw: Any, kind: Any) -> Any:
    """Turn `raw` (a string from the environment, or a TOML/CLI value) into the setting's type.

    Strings are parsed; other values must already have the right type: a TOML `port = 1.5`
    or `log_level = 5` is an error, never silently truncated or stringified.
    """
    kind_name = getattr(kind, "__name__", kind)
    try:
        if isinstance(raw, bool):
            raise TypeError
        if kind in (int, "int"):
            return _int(raw)
        if kind in (float, "float"):
            return _float(raw)
        if kind == "dict[str, str]":
            return _content_type_map(raw)
        if not isinstance(raw, str | Path):
            raise TypeError
        if kind in (Path, "Path"):
            return Path(raw).expanduser()
        return str(raw)
    except (TypeError, ValueError):
        raise ConfigError(f"setting {name!r}: cannot use {raw!r} as {kind_name}") from None


def _int(raw: Any) -> int:
    if isinstance(raw, str):
        return int(raw.strip())
    if not isinstance(raw, int):
        raise TypeError
    return raw


def _float(raw: Any) -> float:
    if isinstance(raw, str):
        value = float(raw.strip())
    elif isinstance(raw, int | float):
        value = float(raw)
    else:
        raise TypeError
    if not math.isfinite(value):
        raise ValueError
    return value


def _content_type_map(raw: Any) -> dict[str, str]:
    """A TOML table `{"image/png" = "image", …}` or, from the environment, `image/png=image,…`."""
    if isinstance(raw, str):
        pairs = [item.partition("=") for item in raw.split(",") if item.strip()]
        if any(not sep for _, sep, _ in pairs):
            raise ValueError
        raw = {key: value for key, _, value in pairs}
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in raw.items()):
        raise TypeError
    return {key.strip().lower(): value.strip() for key, value in raw.items()}


def load_config(path: Path | None = None, environ: dict[str, str] | None = None, **overrides: Any) -> Config:
    """Build the configuration. `path` (or KEFU_CONFIG) names an optional TOML file."""
    env = dict(os.environ if environ is None else environ)
    config = Config()
    known = {f.name: f.type for f in fields(Config)}
    values: dict[str, Any] = {}
    file_path = path or (Path(env["KEFU_CONFIG"]) if env.get("KEFU_CONFIG") else None)
    if file_path is not None:
        values |= _file_settings(Path(file_path), known)
    for key, kind in known.items():
        raw_env = env.get(ENV_PREFIX + key.upper())
        if raw_env is not None and raw_env != "":
            values[key] = _coerce(key, raw_env, kind)
    for key, raw in overrides.items():
        if key not in known:
            raise ConfigError(f"unknown setting {key!r}")
        if raw is not None:
            values[key] = _coerce(key, raw, known[key])
    config = replace(config, **values)
    _validate(config)
    return config


def _file_settings(file_path: Path, known: dict[str, Any]) -> dict[str, Any]:
    """The settings of a TOML file: its `[kefu]` table, or its top level."""
    try:
        data = tomllib.loads(file_path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read configuration file {file_path}: {error.strerror}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"configuration file {file_path} is not UTF-8 text: {error.reason}") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"configuration file {file_path} is not valid TOML: {error}") from None
    section = data.get("kefu", data)
    if not isinstance(section, dict):
        raise ConfigError(f"configuration file {file_path}: 'kefu' must be a table of settings")
    values: dict[str, Any] = {}
    for key, raw in section.items():
        if key not in known:
            raise ConfigError(f"unknown setting {key!r} in {file_path}")
        values[key] = _coerce(key, raw, known[key])
    return values


_MAXIMA: dict[str, float] = {
    "max_frame_bytes": 16 * 1024 * 1024,
    "heartbeat_seconds": 3600,
    "session_ttl_hours": 8760,
    "visitor_ttl_days": 3650,
    "wrap_up_seconds": 86400,
    "shutdown_grace": 3600,
    "handshake_timeout_seconds": 3600,
    "body_timeout_seconds": 3600,
    "sign_in_lockout_minutes": 1440,
    "password_hashes_at_once": 64,
    "refusal_delay_seconds": 60,
}


def _validate(config: Config) -> None:
    _validate_names(config)
    _validate_counts(config)
    _validate_uploads(config)
    _validate_bounds(config)
    _validate_tls(config)
    _validate_rest(config)


def _validate_names(config: Config) -> None:
    if config.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"setting 'log_level': {config.log_level!r} is not DEBUG, INFO, WARNING or ERROR")
    if config.log_format not in ("json", "text"):
        raise ConfigError(f"setting 'log_format': {config.log_format!r} is not json or text")
    if not 0 <= config.port <= 65535:
        raise ConfigError(f"setting 'port': {config.port} is out of range")


def _validate_counts(config: Config) -> None:
    for name in (
        "database_pool_size",
        "store_batch_max",
        "max_frame_bytes",
        "max_missed_offers",
        "heartbeat_seconds",
        "send_buffer_frames",
        "max_frames_per_second",
        "max_connections_per_address",
        "sign_ins_per_address_per_minute",
        "sign_ins_per_user_per_minute",
        "sign_in_lockout_failures",
        "password_hashes_at_once",
        "visitors_per_address_per_minute",
        "uploads_per_address_per_minute",
    ):
        if getattr(config, name) < 1:
            raise ConfigError(f"setting {name!r} must be at least 1")


def _validate_uploads(config: Config) -> None:
    if config.max_upload_bytes < 1:
        raise ConfigError("setting 'max_upload_bytes' must be at least 1")
    for content_type, kind in config.upload_content_types.items():
        if kind not in ATTACHMENT_KINDS:
            raise ConfigError(
                f"setting 'upload_content_types': {content_type!r} maps to {kind!r}, not one of "
                + ", ".join(ATTACHMENT_KINDS)
            )
        if not re.fullmatch(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*", content_type):
            raise ConfigError(f"setting 'upload_content_types': {content_type!r} is not a content type")


def _validate_bounds(config: Config) -> None:
    # Upper bounds: beyond them a value would fail later, in a frame clients cannot decode or a
    # date that overflows, rather than at start.
    for name, high in _MAXIMA.items():
        if getattr(config, name) > high:
            raise ConfigError(f"setting {name!r} must be at most {high}")
    for name in (
        "session_ttl_hours",
        "visitor_ttl_days",
        "handshake_timeout_seconds",
        "body_timeout_seconds",
        "sign_in_lockout_minutes",
    ):
        if getattr(config, name) <= 0:
            raise ConfigError(f"setting {name!r} must be positive")


def _validate_tls(config: Config) -> None:
    if bool(config.tls_certfile) != bool(config.tls_keyfile):
        raise ConfigError("settings 'tls_certfile' and 'tls_keyfile' go together: set both or neither")
    for name in ("tls_certfile", "tls_keyfile"):
        value = getattr(config, name)
        if value and not Path(value).is_file():
            raise ConfigError(f"setting {name!r}: no file at {value}")


def _validate_rest(config: Config) -> None:
    for name in ("wrap_up_seconds", "refusal_delay_seconds", "shutdown_grace"):
        if getattr(config, name) < 0:
            raise ConfigError(f"setting {name!r} must not be negative")
    if not config.host:
        raise ConfigError("setting 'host' must not be empty")
    if config.data_key:
        from kefu.server.privacy import DataKeyError, decode_data_key

        try:
            decode_data_key(config.data_key, "setting 'data_key'")
        except DataKeyError as error:
            raise ConfigError(f"{error} (make one with: openssl rand -base64 32)") from None
    if config.phone_region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(f"setting 'phone_region': {config.phone_region!r} is not a region code such as CN or US")
    if config.database_pool_size < 2:
        raise ConfigError("setting 'database_pool_size' must be at least 2 (one writer, one reader)")
