"""A real recording replayed in chromium: the trainer's console publishes chromium's fake
camera and microphone through the relay of a real ``estrade serve``, records a few seconds
from its buttons (the recorder writes what the relay forwards), stops; a learner opens that
replay and the video plays (tests/browser/test_replays.py covers the page with written files)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import BrowserServer, sign_in

pytestmark = pytest.mark.browser


def test_a_recorded_class_plays_in_the_replay_page(
    new_page: Any, live_server: BrowserServer
) -> None:
    api = live_server.api()
    trainer_user = api.user("rec-trainer@example.org", "Rémi Formateur", "trainer")
    learner_user = api.user("rec-learner@example.org", "Lou Apprenant", "learner", password=None)
    cohort = api.cohort("Enregistrée")
    cid = cohort["id"]
    api.enrol(cid, trainer_user["id"])
    api.enrol(cid, learner_user["id"])
    api.call("PUT", f"/api/admin/cohorts/{cid}/recording", json={"enabled": True})

    trainer = new_page(width=1440)
    sign_in(trainer, trainer_user["email"])
    trainer.goto(f"/cohorts/{cid}/console")
    trainer.locator("#media-camera").click()
    trainer.locator("#media-mic").click()
    expect(trainer.locator("#media-camera")).to_have_attribute("aria-pressed", "true")
    trainer.locator("#session-start").click()
    trainer.wait_for_function(
        "() => document.querySelector('#self-view').videoWidth > 0", timeout=15_000
    )
    trainer.wait_for_timeout(1500)  # the class is live: the relay forwards the camera
    trainer.locator("#rec-start").click()
    expect(trainer.locator("#rec-badge")).to_be_visible()
    started = time.monotonic()
    trainer.wait_for_timeout(5000)
    trainer.locator("#rec-stop").click()
    wall = time.monotonic() - started
    expect(trainer.locator("#rec-badge")).to_be_hidden()
    deadline = time.monotonic() + 30
    while (got := api.call("GET", f"/api/cohorts/{cid}/replays/"))[0]["status"] == "recording":
        assert time.monotonic() < deadline, got
        time.sleep(0.2)
    [replay] = got
    assert replay["status"] == "ready", replay
    assert set(replay["files"]) == {"audio", "camera"}, replay
    assert replay["duration_s"] == pytest.approx(wall, abs=1.0), (replay, wall)

    learner = new_page(width=1440)
    learner.goto(api.link(cid, learner_user["id"]))
    learner.wait_for_url(f"**/classroom/{cid}")
    learner.goto(f"/cohorts/{cid}/replays#replay-{replay['id']}")
    expect(learner.locator("#rp-view")).to_be_visible()
    learner.locator("#rp-play").click()
    learner.wait_for_function(
        "() => document.querySelector('#rp-main').currentTime > 1.0", timeout=15_000
    )
    js = """() => { const v = document.querySelector('#rp-main');
        return {t: v.currentTime, w: v.videoWidth, src: v.currentSrc,
                frames: v.getVideoPlaybackQuality().totalVideoFrames,
                audio: document.querySelector('#rp-audio').currentTime}; }"""
    first = learner.evaluate(js)
    learner.wait_for_timeout(1000)
    second = learner.evaluate(js)
    assert "/files/camera" in second["src"], second
    assert second["t"] > first["t"] + 0.5 and second["frames"] > first["frames"] > 0, (
        first,
        second,
    )
    assert second["w"] > 0 and abs(second["audio"] - second["t"]) < 0.6, second
