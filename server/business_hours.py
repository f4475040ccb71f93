"""Business hours: an account's time zone and, per weekday, the intervals it is open.

GET /api/v1/business-hours (any user of the account) and PUT (`business_hours.manage`, audited).
The time zone is an IANA name checked with zoneinfo; the schedule has the seven weekdays `mon` … `sun`,
each a list of "HH:MM-HH:MM" intervals (start before end, not overlapping; at most 10 a day).
"""

from __future__ import annotations

import itertools
import re
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import msgspec
from msgspec import Meta

from kefu.server import audit
from kefu.server.api.structs import check_text
from kefu.server.auth import SignedInUser
from kefu.server.database import Database

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_INTERVALS_PER_DAY = 10
INTERVAL_PATTERN = r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$"
_INTERVAL = re.compile(INTERVAL_PATTERN)

Interval = Annotated[str, Meta(pattern=INTERVAL_PATTERN, extra={"must": "an interval HH:MM-HH:MM"})]
Day = Annotated[list[Interval], Meta(max_length=MAX_INTERVALS_PER_DAY)]
TimeZone = Annotated[str, Meta(min_length=1, max_length=64, description="an IANA time zone name, e.g. Asia/Shanghai")]


class Schedule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Per weekday, the open intervals; a weekday left out (or null) is closed."""

    mon: Day | None = None
    tue: Day | None = None
    wed: Day | None = None
    thu: Day | None = None
    fri: Day | None = None
    sat: Day | None = None
    sun: Day | None = None

    def __post_init__(self) -> None:
        for day in WEEKDAYS:
            setattr(self, day, _sorted_day(day, getattr(self, day) or []))


class BusinessHoursChange(msgspec.Struct, forbid_unknown_fields=True):
    """The business hours a PUT sets: the time zone and the whole week."""

    timezone: TimeZone
    schedule: Schedule

    def __post_init__(self) -> None:
        self.timezone = check_text(self.timezone, "timezone", BusinessHoursChange)
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"timezone {self.timezone!r} is not a known IANA time zone") from None


class BusinessHours(msgspec.Struct):
    """The account's business hours; UTC and closed every day when none were set."""

    timezone: str
    schedule: dict[str, list[str]]
    updated_at: datetime | None


def _minutes(hours: str, minutes: str) -> int:
    return int(hours) * 60 + int(minutes)


def _sorted_day(day: str, intervals: list[str]) -> list[str]:
    """A weekday's intervals in order; each must start before it ends, and none may overlap."""
    spans: list[tuple[int, int, str]] = []
    for interval in intervals:
        match = _INTERVAL.match(interval)
        assert match is not None  # the declared pattern held
        start, end = _minutes(*match.group(1, 2)), _minutes(*match.group(3, 4))
        if not start < end <= 24 * 60:
            raise ValueError(f"schedule.{day}: {interval!r} must start before it ends")
        spans.append((start, end, interval))
    spans.sort()
    for before, after in itertools.pairwise(spans):
        if after[0] < before[1]:
            raise ValueError(f"schedule.{day}: {before[2]} and {after[2]} overlap")
    return [span[2] for span in spans]


def _json(timezone: str, schedule: dict[str, list[str]], updated_at: datetime | None) -> BusinessHours:
    return BusinessHours(timezone, {day: list(schedule.get(day, [])) for day in WEEKDAYS}, updated_at)


async def get_business_hours(database: Database, account_id: UUID) -> BusinessHours:
    """The account's business hours; UTC and closed every day when none were set."""
    row = await database.fetchrow(
        "SELECT timezone, schedule, updated_at FROM business_hours WHERE account_id = $1", account_id
    )
    if row is None:
        return _json("UTC", {}, None)
    return _json(row["timezone"], row["schedule"], row["updated_at"])


async def set_business_hours(database: Database, user: SignedInUser, body: BusinessHoursChange) -> BusinessHours:
    """Replace the account's business hours and audit the change, in one transaction."""
    timezone = body.timezone
    schedule: dict[str, list[str]] = msgspec.to_builtins(body.schedule)

    async def work(conn: Any) -> Any:
        row = await conn.fetchrow(
            """INSERT INTO business_hours (account_id, timezone, schedule) VALUES ($1, $2, $3)
               ON CONFLICT (account_id) DO UPDATE SET timezone = EXCLUDED.timezone,
                   schedule = EXCLUDED.schedule, updated_at = now()
               RETURNING timezone, schedule, updated_at""",
            user.account_id,
            timezone,
            schedule,
        )
        await audit.record(
            conn,
            user.account_id,
            user.role,
            user.user_id,
            "business_hours.update",
            "business_hours",
            user.account_id,
            {"timezone": timezone, "schedule": schedule},
        )
        return row

    row = await database.run(work)
    return _json(row["timezone"], row["schedule"], row["updated_at"])
