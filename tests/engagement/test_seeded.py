"""A generated cohort of 200 learners over 150 class days, read through the page's API.

Speed is measured in benchmarks/engagement.py, not asserted here; this checks the answers.
"""

from __future__ import annotations

import datetime as dt

from appliance.attendance.services import verify_chain
from appliance.engagement import services
from appliance.engagement.generate import seed_cohort
from tests.helpers.world import Client, World


async def test_a_generated_cohort_reads_whole(client: Client, world: World) -> None:
    seeded = await seed_cohort(learners=200, days=150, raw_day=dt.date(2026, 8, 3))
    c, days = seeded.cohort_id, seeded.days
    assert len(days) == 150
    assert await services.aggregate_day(c, dt.date(2026, 8, 3)) == 200
    assert (await verify_chain(c)).ok
    await client.login(world.admin.email)

    r = await client.get(f"/api/cohorts/{c}/engagement?date_from={days[0]}&date_to={days[-1]}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["learners"]) == 200 and len(body["class_days"]) == 150
    rules = {x["user_id"]: {s["rule"] for s in x["signals"]} for x in body["learners"]}
    by_profile: dict[str, list[set[str]]] = {}
    for user, profile in seeded.profiles.items():
        by_profile.setdefault(profile, []).append(rules[user])
    assert all("absent" in r for r in by_profile["dropping"])
    assert all("silent" in r for r in by_profile["silent"])
    assert all("network" in r for r in by_profile["network"])
    assert all("polls_falling" in r for r in by_profile["polls_falling"])
    steady_quiet = sum(not r for r in by_profile["steady"])
    assert steady_quiet > 0.8 * len(by_profile["steady"])
    signals = [len(x["signals"]) for x in body["learners"]]
    assert signals == sorted(signals, reverse=True)
    full = next(x for x in body["learners"] if seeded.profiles[x["user_id"]] == "steady")
    assert len(full["strip"]) == services.STRIP_DAYS
    assert full["totals"]["class_days"] == 150
    assert [d[0] for d in full["strip"]] == body["class_days"][-services.STRIP_DAYS :]
    late = next(u for u, p in seeded.profiles.items() if p == "late_joiner")
    late_row = next(x for x in body["learners"] if x["user_id"] == late)
    assert late_row["totals"]["class_days"] == 75

    # the raw day, aggregated from its records, is on the page too
    r = await client.get(f"/api/cohorts/{c}/engagement?date_from=2026-08-03&date_to=2026-08-03")
    day_rows = [x["strip"] for x in r.json()["learners"]]
    assert sum(1 for s in day_rows if s and s[0][3] > 0) >= 180  # connected that day

    r = await client.get(f"/api/cohorts/{c}/engagement.csv?date_from={days[0]}&date_to={days[-1]}")
    assert r.status_code == 200 and len(r.text.splitlines()) == 201
