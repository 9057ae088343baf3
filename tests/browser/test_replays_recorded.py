"""A real recording replayed in chromium: the trainer's console publishes chromium's fake
camera, microphone and screen through the relay of a real ``estrade serve`` and records from
its buttons (the recorder writes what the relay forwards), with the screen share stopped ~3 s,
then the camera off ~2.5 s; the files decode cleanly, presence has both gaps, and a learner
opening that replay sees the video play and the camera take the main view in the screen's gap
(tests/browser/test_replays.py covers the page with written files)."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import BrowserServer, sign_in
from tests.media.test_recording import decode_errors

pytestmark = pytest.mark.browser


def test_a_recorded_class_plays_in_the_replay_page(
    new_page: Any, live_server: BrowserServer, tmp_path: Path
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
    trainer.locator("#media-screen").click()  # chromium's fake screen
    expect(trainer.locator("#media-screen")).to_have_attribute("aria-pressed", "true")
    trainer.wait_for_timeout(1500)  # the class is live: the relay forwards what it sends
    trainer.locator("#rec-start").click()
    expect(trainer.locator("#rec-badge")).to_be_visible()
    started = time.monotonic()
    trainer.wait_for_timeout(2500)
    # The trainer stops sharing for ~3 s (a renegotiation, as the console does), then again.
    trainer.locator("#media-screen").click()
    expect(trainer.locator("#media-screen")).to_have_attribute("aria-pressed", "false")
    stopped_at = time.monotonic() - started
    trainer.wait_for_timeout(3000)
    trainer.locator("#media-screen").click()
    expect(trainer.locator("#media-screen")).to_have_attribute("aria-pressed", "true")
    resumed_at = time.monotonic() - started
    trainer.wait_for_timeout(2000)
    # Then the camera is off ~2.5 s (the same renegotiation; its RTP clock runs on meanwhile).
    trainer.locator("#media-camera").click()
    expect(trainer.locator("#media-camera")).to_have_attribute("aria-pressed", "false")
    camera_off_at = time.monotonic() - started
    trainer.wait_for_timeout(2500)
    trainer.locator("#media-camera").click()
    expect(trainer.locator("#media-camera")).to_have_attribute("aria-pressed", "true")
    camera_on_at = time.monotonic() - started
    trainer.wait_for_timeout(2000)
    trainer.locator("#rec-stop").click()
    wall = time.monotonic() - started
    expect(trainer.locator("#rec-badge")).to_be_hidden()
    deadline = time.monotonic() + 30
    while (got := api.call("GET", f"/api/cohorts/{cid}/replays/"))[0]["status"] == "recording":
        assert time.monotonic() < deadline, got
        time.sleep(0.2)
    [replay] = got
    assert replay["status"] == "ready", replay
    assert set(replay["files"]) == {"audio", "camera", "screen"}, replay
    assert replay["duration_s"] == pytest.approx(wall, abs=1.0), (replay, wall)

    for kind, url in replay["files"].items():  # the real files decode cleanly
        path = tmp_path / f"{kind}.webm"
        path.write_bytes(api.http.get(url).content)
        assert decode_errors(path) == "", kind
    detail = api.call("GET", f"/api/cohorts/{cid}/replays/{replay['id']}")
    presence = detail["presence"]
    [(a, b), (c, d)] = presence["camera"]
    assert a < 0.6 and b == pytest.approx(camera_off_at, abs=0.6), presence
    assert c == pytest.approx(camera_on_at, abs=1.0) and d > wall - 1.0, presence
    [(a, b), (c, d)] = presence["screen"]
    # chromium's 5 fps screen sends sparse frames (0.8 s apart seen): its last one before the
    # stop can be that early, as with the camera's tolerance below.
    assert a < 0.6 and b == pytest.approx(stopped_at, abs=1.0), presence
    assert c == pytest.approx(resumed_at, abs=1.0) and d > wall - 1.0, presence

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
    assert "/files/screen" in second["src"], second
    assert second["t"] > first["t"] + 0.5 and second["frames"] > first["frames"] > 0, (
        first,
        second,
    )
    assert second["w"] > 0 and abs(second["audio"] - second["t"]) < 0.6, second
    # Where the screen was off, the camera is the main view, as learners saw it.
    wrap = learner.locator("#rp-video-wrap")
    expect(wrap).not_to_have_class(re.compile("rp-flip"))
    learner.evaluate(
        "(t) => { const s = document.querySelector('#rp-seek');"
        " s.value = String(t); s.dispatchEvent(new Event('input')); }",
        (stopped_at + resumed_at) / 2,
    )
    expect(wrap).to_have_class(re.compile("rp-flip"))
