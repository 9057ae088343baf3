"""The engagement API: who may read what (on SQLite and PostgreSQL), export, thresholds."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import pytest
from litestar import Litestar

from appliance.accounts import services as accounts
from appliance.engagement.tables import EngagementClassDay, EngagementDay
from tests.helpers.world import ROLES, Client, World, add_user, sign_in_as

DAY = dt.date(2026, 11, 3)
Q = f"date_from={DAY}&date_to={DAY}"

# role -> expected status for the trainer-side routes of world.cohort
STAFF_ROUTES = {"anonymous": 401, "learner": 403, "trainer": 200, "operator": 403, "admin": 200}


async def seed(world: World) -> None:
    """One class day with a row for the learner (and one for a learner removed since)."""
    await EngagementClassDay(cohort=world.cohort.id, day=DAY, final=True).save()
    await EngagementDay(
        cohort=world.cohort.id,
        user=world.learner.id,
        day=DAY,
        minutes_connected=400,
        half_days=2,
        half_days_attended=1,
        half_days_signed=1,
        morning_signed=True,
        messages=4,
        polls=2,
        polls_answered=1,
    ).save()


@pytest.mark.parametrize("role", ROLES)
async def test_who_reads_the_engagement_of_a_cohort(
    app: Litestar, client: Client, world: World, role: str
) -> None:
    await seed(world)
    await sign_in_as(client, world, role)
    c = world.cohort.id
    paths = [
        f"/api/cohorts/{c}/engagement?{Q}",
        f"/api/cohorts/{c}/engagement/learners/{world.learner.id}?{Q}",
        f"/api/cohorts/{c}/engagement/settings",
        f"/api/cohorts/{c}/engagement.csv?{Q}",
    ]
    for path in paths:
        r = await client.get(path)
        assert r.status_code == STAFF_ROUTES[role], (path, r.text)
    r = await client.post(f"/api/cohorts/{c}/engagement/refresh")
    assert r.status_code == STAFF_ROUTES[role]
    r = await client.put(f"/api/cohorts/{c}/engagement/settings", json={"silent_days": 4})
    assert r.status_code == STAFF_ROUTES[role]
    # the other cohort: staff of it only (admins see every cohort; operators still 403)
    other = world.other_cohort.id
    r = await client.get(f"/api/cohorts/{other}/engagement?{Q}")
    expected = {"anonymous": 401, "learner": 404, "trainer": 404, "operator": 403, "admin": 200}
    assert r.status_code == expected[role]
    # a learner's own summary: the learner only
    r = await client.get(f"/api/cohorts/{c}/engagement/me?{Q}")
    me = {"anonymous": 401, "learner": 200, "trainer": 403, "operator": 403, "admin": 403}
    assert r.status_code == me[role]
    if role == "learner":
        assert r.json() == {
            "date_from": str(DAY),
            "date_to": str(DAY),
            "class_days": 1,
            "attendance_rate": 0.5,
            "half_days_signed": 1,
            "half_days": 2,
            "minutes_connected": 400,
            "messages": 4,
            "questions": 0,
            "polls_answered": 1,
            "polls": 2,
            "reactions": 0,
        }
        r = await client.get(f"/api/cohorts/{other}/engagement/me")
        assert r.status_code == 404
    # the page follows the same rules (HTML: a sign-in redirect, 403 or 404 pages)
    r = await client.get(f"/cohorts/{c}/engagement", headers={"accept": "text/html"})
    page = {"anonymous": 303, "learner": 403, "trainer": 200, "operator": 403, "admin": 200}
    assert r.status_code == page[role]


async def test_cohort_view_export_and_thresholds(
    app: Litestar, client: Client, world: World
) -> None:
    await seed(world)
    c = world.cohort.id
    gone = await add_user("=cmd|' /C calc'!A0@example.org", "learner", password=None)
    await accounts.enrol(c, gone.id)
    await EngagementDay(
        cohort=c, user=gone.id, day=DAY, half_days=2, half_days_attended=2, half_days_signed=2
    ).save()
    await accounts.unenrol(c, gone.id)
    await sign_in_as(client, world, "trainer")

    r = await client.get(f"/api/cohorts/{c}/engagement?{Q}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["class_days"] == [str(DAY)]
    assert [x["user_id"] for x in body["learners"]] == [world.learner.id]  # removed: not shown
    row = body["learners"][0]
    assert row["totals"]["attendance_rate"] == 0.5 and row["totals"]["poll_rate"] == 0.5
    assert row["strip"] == [[str(DAY), 2, 1, 400, 5]]
    assert body["thresholds"]["silent_days"] == 3

    r = await client.get(f"/api/cohorts/{c}/engagement/learners/{gone.id}?{Q}")
    assert r.status_code == 404
    r = await client.get(f"/api/cohorts/{c}/engagement/learners/{world.learner.id}?{Q}")
    assert r.json()["days"][0]["messages"] == 4

    r = await client.get(f"/api/cohorts/{c}/engagement.csv?{Q}")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    by_email = {x["email"]: x for x in rows}
    assert by_email[world.learner.email]["attendance_rate"] == "50.0"
    assert by_email[world.learner.email]["minutes_connected"] == "400"
    removed = by_email["'" + gone.email]  # formula-safe, and still in the history
    assert removed["learner"].startswith("'=") and removed["still_enrolled"] == "no"
    assert removed["half_days_signed"] == "2"

    bad: list[tuple[str, Any]] = [
        ("get", f"/api/cohorts/{c}/engagement?date_from={DAY}&date_to=2026-11-01"),
        ("get", f"/api/cohorts/{c}/engagement?date_from=2025-01-01&date_to={DAY}"),
        ("get", f"/api/cohorts/{c}/engagement?date_from=yesterday"),
        ("get", f"/api/cohorts/{c}/engagement.csv"),
        ("put", f"/api/cohorts/{c}/engagement/settings", {"silent_days": 0}),
        ("put", f"/api/cohorts/{c}/engagement/settings", {"silence": 3}),
    ]
    for method, path, *body_ in bad:
        kw = {"json": body_[0]} if body_ else {}
        r = await getattr(client, method)(path, **kw)
        assert r.status_code == 400, (path, r.text)
    r = await client.put(f"/api/cohorts/{c}/engagement/settings", json={"silent_days": 5})
    assert r.status_code == 200 and r.json()["silent_days"] == 5
    assert r.json()["attendance_min_pct"] == 80
    r = await client.get(f"/api/cohorts/{c}/engagement/settings")
    assert r.json()["silent_days"] == 5
