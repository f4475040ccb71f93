"""Structured logs: one JSON object per line on stderr (or plain text for people).

Logs never hold message bodies (no log call is given one), tokens or full phone numbers and
e-mail addresses: every line passes `scrub` on its way out, which masks numbers and addresses
and replaces anything shaped like a token, whatever logger wrote it.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any, TextIO

import asyncpg
import orjson

from kefu.protocol.masking import mask_text

_TOKENS = re.compile(
    r"(?<![A-Za-z0-9_-])(?:kv_[A-Za-z0-9_-]{16,}|[A-Za-z0-9_-]{43})(?![A-Za-z0-9_-])"
    r"|(?<=Bearer )[^\s\"']+",
    re.IGNORECASE,
)
"""Visitor tokens (kv_…), session tokens (43 characters of URL-safe base64) and bearer credentials."""


def scrub(line: str) -> str:
    """`line` with tokens replaced and phone numbers and e-mail addresses masked."""
    return mask_text(_TOKENS.sub("[token]", line))


def _scrubbed(value: Any) -> Any:
    """Every string inside a log entry scrubbed (numbers stay numbers, so the line stays JSON)."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {key: _scrubbed(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_scrubbed(item) for item in value]
    return value


_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Writes `time`, `level`, `logger`, `event` and every `extra=` field of the record."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(_scrubbed(entry), default=lambda value: scrub(str(value))).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{k}={v}" for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
        )
        line = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extras:
            line += " " + extras
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return scrub(line)


class ExpectedOutageFilter(logging.Filter):
    """While the database is away, asyncpg's pool retries its connections about once a second
    and logs a full traceback each time. The failure to connect is expected, and already
    reported (`/readyz`, the store's warnings): keep asyncpg's one-line warning, with the
    error's type and text, without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, OSError | TimeoutError | asyncpg.CannotConnectNowError):
            record.error = f"{type(error).__name__}: {error}"
            record.exc_info = None
            record.exc_text = None
        return True


def configure_logging(level: str = "INFO", fmt: str = "json", stream: TextIO | None = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # hypercorn's access log would print every request; its error log stays.
    logging.getLogger("hypercorn.access").setLevel(logging.WARNING)
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # it logs every pg_ctl command at INFO
    pool_log = logging.getLogger("asyncpg.pool")
    if not any(isinstance(f, ExpectedOutageFilter) for f in pool_log.filters):
        pool_log.addFilter(ExpectedOutageFilter())
