"""Business hours over REST on a real database: read by anyone, written by admins, audited."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kefu.server.api.route import decode_json
from kefu.server.business_hours import BusinessHoursChange
from kefu.server.directory import InvalidInput
from tests.server.test_auth import bearer
from tests.server.test_contact_center import _account_id, _actions, node_and_database
from tests.server.test_directory import _admin_token, _user_token

WEEK = {"mon": ["09:00-12:00", "13:00-18:00"], "tue": ["09:00-18:00"], "sat": ["10:00-24:00"]}


async def test_admin_sets_business_hours_others_read_them(database_dsn: str, tmp_path: Path) -> None:
    async with node_and_database(database_dsn, tmp_path) as (_node, client, database):
        slug, admin = await _admin_token(client, database, "hours")
        account_id = await _account_id(client, admin)
        _agent_id, agent = await _user_token(client, admin, slug, "agent")
        _sup_id, supervisor = await _user_token(client, admin, slug, "supervisor")

        response = await client.get("/api/v1/business-hours", headers=bearer(agent))
        assert response.status_code == 200
        assert response.json()["timezone"] == "UTC" and response.json()["updated_at"] is None
        assert response.json()["schedule"]["mon"] == []

        body = {"timezone": "Asia/Shanghai", "schedule": WEEK}
        response = await client.put("/api/v1/business-hours", json=body, headers=bearer(admin))
        assert response.status_code == 200, response.text
        saved = response.json()
        assert saved["timezone"] == "Asia/Shanghai" and saved["updated_at"] is not None
        assert saved["schedule"]["mon"] == ["09:00-12:00", "13:00-18:00"] and saved["schedule"]["sun"] == []

        for token in (agent, supervisor):
            read = (await client.get("/api/v1/business-hours", headers=bearer(token))).json()
            assert read["timezone"] == "Asia/Shanghai" and read["schedule"] == saved["schedule"]

        response = await client.put("/api/v1/business-hours", json=body, headers=bearer(supervisor))
        assert response.status_code == 403
        response = await client.put(
            "/api/v1/business-hours", json={"timezone": "Mars/Olympus", "schedule": {}}, headers=bearer(admin)
        )
        assert response.status_code == 400 and "timezone" in response.json()["error"]["message"]
        assert (await client.get("/api/v1/business-hours")).status_code == 401

        actions = await _actions(database, account_id)
        assert ("business_hours.update", "business_hours", "admin") in actions
        assert ("forbidden", "business_hours", "supervisor") in actions


@pytest.mark.parametrize(
    "body",
    [
        None,
        {"timezone": "UTC"},
        {"timezone": "Not/AZone", "schedule": {}},
        {"timezone": "UTC", "schedule": {"monday": []}},
        {"timezone": "UTC", "schedule": {"mon": ["9:00-12:00"]}},
        {"timezone": "UTC", "schedule": {"mon": ["12:00-09:00"]}},
        {"timezone": "UTC", "schedule": {"mon": ["09:00-12:00", "11:00-13:00"]}},
        {"timezone": "UTC", "schedule": {"mon": "09:00-12:00"}},
        {"timezone": "UTC", "schedule": {}, "extra": 1},
    ],
)
def test_invalid_business_hours_are_refused(body: object) -> None:
    with pytest.raises(InvalidInput) as refused:
        decode_json(json.dumps(body).encode(), BusinessHoursChange)
    assert any(word in str(refused.value) for word in ("timezone", "schedule", "JSON object", "extra"))


def test_valid_business_hours_are_sorted() -> None:
    body = {"timezone": "Europe/Paris", "schedule": {"fri": ["14:00-18:00", "08:00-12:00"]}}
    hours = decode_json(json.dumps(body).encode(), BusinessHoursChange)
    assert hours.timezone == "Europe/Paris" and hours.schedule.fri == ["08:00-12:00", "14:00-18:00"]
    assert hours.schedule.mon == []
