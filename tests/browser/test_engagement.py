"""The engagement page in real chromium: a generated cohort, both languages, phone and desktop.

The cohort is written into the running server's SQLite database by a separate process
(appliance.engagement.generate), as the end-of-day runs would have left it.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import (
    ROOT,
    BrowserServer,
    axe_violations,
    screenshot_dir,
    shoot,
    sign_in,
)

pytestmark = pytest.mark.browser

LEARNERS = 24
DAYS = 40
HOSTILE = '<img src=x onerror="document.title=1">Zoé'

SEED = """
import asyncio, datetime as dt, json, sys
from appliance import db
from appliance.accounts.tables import Enrolment, User
from appliance.engagement.generate import seed_cohort
from appliance.settings import load_settings

async def main():
    engine = db.bind(load_settings())
    await db.start(engine, 0)
    s = await seed_cohort(name="Cohorte générée", learners=int(sys.argv[1]), days=int(sys.argv[2]),
                          first_day=dt.date.fromisoformat(sys.argv[3]))
    await User.update({User.display_name: sys.argv[4]}).where(User.id == s.learner_ids[1])
    profiles = {str(k): v for k, v in s.profiles.items()}
    print(json.dumps({"cohort": s.cohort_id, "profiles": profiles}))

asyncio.run(main())
"""


def first_day_for(days: int) -> dt.date:
    """A first day such that ``days`` weekdays end before today."""
    day, count = dt.date.today() - dt.timedelta(days=1), 0
    while count < days:
        if day.weekday() < 5:
            count += 1
        day -= dt.timedelta(days=1)
    return day + dt.timedelta(days=1)


@pytest.fixture(scope="module")
def world(live_server: BrowserServer) -> dict[str, Any]:
    import json

    env = {k: v for k, v in os.environ.items() if not k.startswith("ESTRADE_")}
    env["ESTRADE_DATA_DIR"] = str(live_server.data_dir)
    args = [str(LEARNERS), str(DAYS), first_day_for(DAYS).isoformat(), HOSTILE]
    r = subprocess.run(
        [sys.executable, "-c", SEED, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    seeded = json.loads(r.stdout.strip().splitlines()[-1])
    api = live_server.api()
    trainer = api.user("coach@example.org", "Camille Coach", "trainer")
    api.enrol(seeded["cohort"], trainer["id"])
    learner = api.user("lone@example.org", "Lone Learner", "learner", password=None)
    api.enrol(seeded["cohort"], learner["id"])
    return {"api": api, "cohort": seeded["cohort"], "learner": learner, **seeded}


@pytest.mark.parametrize("locale", ["en-US", "fr-FR"])
def test_the_engagement_page(new_page: Any, world: dict[str, Any], locale: str) -> None:
    lang = locale[:2]
    c = world["cohort"]
    for width in (1440, 360):
        page = new_page(locale=locale, width=width, height=900)
        sign_in(page, "coach@example.org")
        if width == 1440:  # from the trainer's cohorts
            page.locator(f'#my-cohorts a[href="/cohorts/{c}/engagement"]').click()
            page.wait_for_url(f"**/cohorts/{c}/engagement")
        else:
            page.goto(f"/cohorts/{c}/engagement")
        rows = page.locator("#eng-body tr")
        expect(rows).to_have_count(LEARNERS + 1)
        heading = {
            "en": "Learners, most signals first",
            "fr": "Apprenants, les plus signalés d'abord",
        }
        expect(page.locator("#eng-list-title")).to_have_text(heading[lang])
        expect(page.locator("#eng-title")).to_contain_text("Cohorte générée")
        # sorted by signals: the first rows carry reasons, the last has none
        first_signals = rows.nth(0).locator(".eng-signal")
        assert first_signals.count() >= 1
        expect(rows.nth(LEARNERS).locator(".eng-signal")).to_have_count(0)
        assert rows.nth(0).locator(".eng-signal").first.inner_text().strip()
        # each learner with class days has a strip: one square group per class day shown
        strip = page.locator("#eng-body tr svg.eng-strip").first
        assert strip.get_attribute("role") == "img" and strip.get_attribute("aria-label")
        shown = len(world["api"].call("GET", f"/api/cohorts/{c}/engagement")["class_days"])
        assert strip.locator("g").count() == min(20, shown) > 10
        # a name that looks like markup is shown as text, and nothing ran
        expect(page.get_by_text(HOSTILE)).to_have_count(1)
        assert page.evaluate("document.title") != "1"
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        assert page.get_attribute("#eng-csv", "href").startswith(
            f"/api/cohorts/{c}/engagement.csv?"
        )
        assert axe_violations(page) == []
        shoot(page, f"engagement-{lang}-{width}")
        page.screenshot(path=str(screenshot_dir() / f"engagement-{lang}-{width}-top.png"))
        rows.nth(0).screenshot(path=str(screenshot_dir() / f"engagement-{lang}-{width}-row.png"))

        # a learner's detail, with the advice for network trouble when it fires
        network_user = next(u for u, p in world["profiles"].items() if p == "network")
        page.locator(f'#eng-body tr[data-user="{network_user}"] button').click()
        detail = page.locator("#eng-detail")
        expect(detail).to_be_visible()
        expect(detail.locator('.eng-signal[data-rule="network"]')).to_contain_text(
            {"en": "low-bandwidth mode", "fr": "mode bas débit"}[lang]
        )
        expect(page.locator("#eng-days-body tr")).to_have_count(shown)
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        if width == 360:
            shoot(page, f"engagement-detail-{lang}-{width}")
            box = detail.bounding_box()
            assert box is not None
            y = box["y"] + page.evaluate("window.scrollY")  # page coordinates
            top = {"x": box["x"], "y": y, "width": box["width"], "height": 900}
            path = screenshot_dir() / f"engagement-detail-{lang}-360-top.png"
            page.screenshot(path=str(path), clip=top, full_page=True)
        page.locator("#eng-detail-close").click()
        expect(detail).to_be_hidden()


def test_a_narrower_range_and_the_thresholds(new_page: Any, world: dict[str, Any]) -> None:
    c = world["cohort"]
    page = new_page(locale="en-US", width=1440)
    sign_in(page, "coach@example.org")
    page.goto(f"/cohorts/{c}/engagement")
    expect(page.locator("#eng-body tr")).to_have_count(LEARNERS + 1)
    before = page.locator("#eng-status").inner_text()
    to = dt.date.today() - dt.timedelta(days=1)
    page.locator("#eng-from").fill((to - dt.timedelta(days=6)).isoformat())
    page.locator("#eng-to").fill(to.isoformat())
    page.locator("#eng-range button[type=submit]").click()
    expect(page.locator("#eng-status")).not_to_have_text(before)
    assert "engagement.csv?date_from=" in page.get_attribute("#eng-csv", "href")
    # stricter network thresholds: one disconnection on one day is enough, more learners flagged
    flagged = page.locator('.eng-signal[data-rule="network"]')
    before_count = flagged.count()
    page.locator("#eng-settings-box summary").click()
    page.locator("#eng-t-network_bad_days").fill("1")
    page.locator("#eng-t-disconnections_per_day").fill("1")
    page.locator("#eng-settings-save").click()
    expect(flagged).not_to_have_count(before_count)
    assert flagged.count() > before_count
    saved = world["api"].call("GET", f"/api/cohorts/{c}/engagement/settings")
    assert saved["network_bad_days"] == 1 and saved["disconnections_per_day"] == 1
    page.locator("#eng-t-silent_days").fill("0")
    page.locator("#eng-settings-save").click()
    expect(page.locator("#eng-settings-error")).not_to_be_empty()
    world["api"].call("PUT", f"/api/cohorts/{c}/engagement/settings", json={})  # defaults again


def test_learners_and_operators_do_not_see_it(
    new_page: Any, world: dict[str, Any], live_server: BrowserServer
) -> None:
    api = world["api"]
    api.user("ops@example.org", "Olga Ops", "operator")
    page = new_page(locale="en-US")
    sign_in(page, "ops@example.org")
    r = page.goto(f"/cohorts/{world['cohort']}/engagement")
    assert r is not None and r.status == 403
    learner = new_page(locale="en-US")
    learner.goto(api.link(world["cohort"], world["learner"]["id"]))
    learner.wait_for_url(f"**/classroom/{world['cohort']}")  # the link page joins, then goes on
    r = learner.goto(f"/cohorts/{world['cohort']}/engagement")
    assert r is not None and r.status == 403
    # a learner sees their own summary in the classroom, and only theirs
    steady = next(u for u, p in world["profiles"].items() if p == "steady")
    for locale, words in (("en-US", "half-days signed"), ("fr-FR", "demi-journées signées")):
        page = new_page(locale=locale, width=360)
        page.goto(api.link(world["cohort"], int(steady)))
        page.wait_for_url(f"**/classroom/{world['cohort']}")
        expect(page.locator("#my-engagement-text")).to_contain_text(words)
        expect(page.locator("#my-engagement-text")).to_contain_text("%")
        page.locator("#my-engagement").screenshot(
            path=str(screenshot_dir() / f"engagement-mine-{locale[:2]}-360.png")
        )
    lone = new_page(locale="en-US")
    lone.goto(api.link(world["cohort"], world["learner"]["id"]))
    expect(lone.locator("#my-engagement-text")).to_have_text("No class day yet.")
