"""Personal data is not cached; blank or invisible-only names and reasons are refused."""

from __future__ import annotations

import pytest

from appliance.attendance.tables import AttendanceRecord
from tests.helpers.world import Client, World

INVISIBLE = [
    "   ",
    "\u200b\u200b\u200b",
    "\u3164\u3164\u3164",
    "\u00a0\u2060\u200d",
    "\u2800\u2800\u2800",
]


async def test_api_answers_are_not_cached(client: Client, world: World) -> None:
    await client.login(world.admin.email)
    for path in (
        "/api/me",
        "/api/admin/users",
        f"/api/admin/cohorts/{world.cohort.id}",
        f"/api/admin/cohorts/{world.cohort.id}/join-links",
        f"/api/cohorts/{world.cohort.id}/attendance.csv?date_from=2026-11-02&date_to=2026-11-03",
    ):
        r = await client.get(path)
        assert r.status_code in (200, 404), (path, r.status_code)
        assert r.headers.get("cache-control") == "no-store", (path, r.status_code)
    r = await client.post(f"/api/admin/cohorts/{world.cohort.id}/join-links/export")
    assert r.status_code == 200 and r.headers.get("cache-control") == "no-store"
    # Pages and static files keep their own caching.
    r = await client.get("/static/css/estrade.css")
    assert r.headers.get("cache-control") != "no-store"


@pytest.mark.parametrize("name", INVISIBLE)
async def test_blank_display_names_are_refused(client: Client, world: World, name: str) -> None:
    await client.login(world.admin.email)
    r = await client.post(
        "/api/admin/users",
        json={"email": "new@example.org", "display_name": name, "role": "learner"},
    )
    assert r.status_code == 422, r.text
    assert r.json()["extra"] == [
        {"key": "display_name", "message": "must contain visible characters"}
    ]
    assert (await client.get("/api/admin/users")).text.count("new@example.org") == 0
    r = await client.patch(f"/api/admin/users/{world.learner.id}", json={"display_name": name})
    assert r.status_code == 422, r.text
    assert r.json()["extra"][0]["key"] == "display_name"
    users = (await client.get("/api/admin/users")).json()
    assert any(u["display_name"] == "Learner" for u in users)


async def test_blank_names_in_a_csv_import_are_errors(client: Client, world: World) -> None:
    await client.login(world.admin.email)
    csv = "name,email\n\u200b\u200b,zw@example.org\nAda,ada@example.org\n"
    r = await client.post(
        f"/api/admin/cohorts/{world.cohort.id}/learners/import",
        content=csv.encode(),
        headers={"content-type": "text/csv"},
    )
    report = r.json()
    assert report["imported"] is False
    assert report["rows"][0]["error"] == "the name is empty"


@pytest.mark.parametrize("reason", INVISIBLE)
async def test_blank_correction_reasons_are_refused(
    client: Client, world: World, reason: str
) -> None:
    await client.login(world.trainer.email)
    before = await AttendanceRecord.count()
    r = await client.post(
        f"/api/cohorts/{world.cohort.id}/attendance/corrections",
        json={
            "user_id": world.learner.id,
            "day": "2026-11-03",
            "half": "morning",
            "present": True,
            "reason": reason,
        },
    )
    assert r.status_code == 422, r.text
    assert r.json()["extra"] == [{"key": "reason", "message": "must contain visible characters"}]
    assert await AttendanceRecord.count() == before
