"""Business hours: an account's time zone and, per weekday, the intervals it is open.

GET /api/v1/business-hours (any user of the account) and PUT (admin, audited). The time
zone is an IANA name checked with zoneinfo; the schedule has the seven weekdays `mon` … `sun`,
each a list of "HH:MM-HH:MM" intervals (start before end, not overlapping; at most 10 a day).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from uuid import UUID
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from quart import Response, jsonify, request
from quart_trio import QuartTrio

from kefu.server import audit
from kefu.server.auth import SignedInUser
from kefu.server.database import Database
from kefu.server.directory import InvalidInput

if TYPE_CHECKING:
    from kefu.server.node import Node

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MAX_INTERVALS_PER_DAY = 10
_INTERVAL = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")

ErrorResponse = tuple[Response, int]


def _minutes(hours: str, minutes: str) -> int:
    return int(hours) * 60 + int(minutes)


def validate(body: Any) -> tuple[str, dict[str, list[str]]]:
    """The (timezone, schedule) a PUT body asks for; InvalidInput names the faulty field."""
    if not isinstance(body, dict):
        raise InvalidInput("expected a JSON object")
    unknown = sorted(set(body) - {"timezone", "schedule"})
    if unknown:
        raise InvalidInput(f"unknown field {unknown[0]}")
    timezone = body.get("timezone")
    if not isinstance(timezone, str) or not 1 <= len(timezone) <= 64:
        raise InvalidInput("timezone must be an IANA time zone name")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidInput(f"timezone {timezone!r} is not a known IANA time zone") from None
    schedule = body.get("schedule")
    if not isinstance(schedule, dict):
        raise InvalidInput("schedule must be an object with the weekdays mon … sun")
    unknown_days = sorted(set(schedule) - set(WEEKDAYS))
    if unknown_days:
        raise InvalidInput(f"schedule has an unknown weekday {unknown_days[0]}")
    result: dict[str, list[str]] = {}
    for day in WEEKDAYS:
        intervals = schedule.get(day) or []
        if not isinstance(intervals, list) or len(intervals) > MAX_INTERVALS_PER_DAY:
            raise InvalidInput(f"schedule.{day} must be a list of at most {MAX_INTERVALS_PER_DAY} intervals")
        spans: list[tuple[int, int, str]] = []
        for interval in intervals:
            match = _INTERVAL.match(interval.strip()) if isinstance(interval, str) else None
            if match is None:
                raise InvalidInput(f"schedule.{day}: {interval!r} is not an interval HH:MM-HH:MM")
            start, end = _minutes(*match.group(1, 2)), _minutes(*match.group(3, 4))
            if not start < end <= 24 * 60:
                raise InvalidInput(f"schedule.{day}: {interval!r} must start before it ends")
            spans.append((start, end, interval.strip()))
        spans.sort()
        for before, after in itertools.pairwise(spans):
            if after[0] < before[1]:
                raise InvalidInput(f"schedule.{day}: {before[2]} and {after[2]} overlap")
        result[day] = [span[2] for span in spans]
    return timezone, result


def _json(timezone: str, schedule: dict[str, list[str]], updated_at: Any) -> dict[str, Any]:
    return {
        "timezone": timezone,
        "schedule": {day: list(schedule.get(day, [])) for day in WEEKDAYS},
        "updated_at": None if updated_at is None else updated_at.isoformat(),
    }


async def get_business_hours(database: Database, account_id: UUID) -> dict[str, Any]:
    """The account's business hours; UTC and closed every day when none were set."""
    row = await database.fetchrow(
        "SELECT timezone, schedule, updated_at FROM business_hours WHERE account_id = $1", account_id
    )
    if row is None:
        return _json("UTC", {}, None)
    return _json(row["timezone"], row["schedule"], row["updated_at"])


async def set_business_hours(database: Database, user: SignedInUser, body: Any) -> dict[str, Any]:
    """Replace the account's business hours and audit the change, in one transaction."""
    timezone, schedule = validate(body)

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


def register(
    app: QuartTrio,
    node: Node,
    current_user: Callable[[], Awaitable[SignedInUser | None]],
    error_response: Callable[[str, str, int], ErrorResponse],
    unauthenticated: Callable[[], ErrorResponse],
) -> None:
    """GET and PUT /api/v1/business-hours on `app`."""

    @app.get("/api/v1/business-hours")
    async def read_business_hours() -> ErrorResponse:
        user = await current_user()
        if user is None:
            return unauthenticated()
        return jsonify(await get_business_hours(node.database, user.account_id)), 200

    @app.put("/api/v1/business-hours")
    async def write_business_hours() -> ErrorResponse:
        user = await current_user()
        if user is None:
            return unauthenticated()
        if user.role != "admin":
            await audit.record(
                node.database,
                user.account_id,
                user.role,
                user.user_id,
                "forbidden",
                "business_hours",
                user.account_id,
                {"attempted": "business_hours.update", "method": request.method, "path": request.path},
            )
            return error_response("forbidden", "your role may not do this", 403)
        body = await request.get_json(force=True, silent=True)
        return jsonify(await set_business_hours(node.database, user, body)), 200
