"""Business hours: read by every user, replaced with `business_hours.manage` (audited)."""

from __future__ import annotations

from quart import Blueprint

from kefu.protocol.permissions import Permission
from kefu.server import business_hours
from kefu.server.api.route import SIGNED_IN, Call, route
from kefu.server.business_hours import BusinessHours, BusinessHoursChange

bp = Blueprint("business_hours", __name__)
PATH = "/api/v1/business-hours"


@route(
    bp,
    "GET",
    PATH,
    permission=SIGNED_IN,
    answer=BusinessHours,
    tag="business hours",
    summary="The account's time zone and weekly open intervals (UTC and closed when unset)",
)
async def read_business_hours(call: Call[None, None]) -> BusinessHours:
    return await business_hours.get_business_hours(call.node.database, call.user.account_id)


@route(
    bp,
    "PUT",
    PATH,
    permission=Permission.BUSINESS_HOURS_MANAGE,
    body=BusinessHoursChange,
    answer=BusinessHours,
    tag="business hours",
    summary="Replace the business hours (audited)",
    target="business_hours",
    action="business_hours.update",
    errors=(400,),
)
async def write_business_hours(call: Call[BusinessHoursChange, None]) -> BusinessHours:
    return await business_hours.set_business_hours(call.node.database, call.user, call.body)
