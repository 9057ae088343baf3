"""Every order a class really starts in, in real chromium: learners who wait before the trainer
starts, who join after the start but before the camera, after it; the trainer turning camera,
microphone and screen on and off while they watch; a learner reloading; the trainer reloading the
console mid-class.

Each learner's page is checked as a person sees it: the main ``<video>`` plays (a size, not
paused, its time advancing) and the ``<audio>`` element holds a live audio track and plays — not
only the peer connection's ``getStats``.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import LiveServer, sign_in

pytestmark = pytest.mark.browser

TEXT = {
    "en-US": {"waiting": "not started yet", "no_video": "not sending video"},
    "fr-FR": {"waiting": "pas encore commencé", "no_video": "pas de vidéo"},
}

# What the learner sees and hears, read from the elements themselves.
SEEN_JS = """() => {
  const v = document.querySelector('#main-video');
  const pip = document.querySelector('#pip-video');
  const a = document.querySelector('#class-audio');
  const live = (el, kind) => el.srcObject
    ? el.srcObject.getTracks().filter((t) => t.kind === kind && t.readyState === 'live').length : 0;
  return {
    width: v.videoWidth, height: v.videoHeight, time: v.currentTime, paused: v.paused,
    shown: !document.querySelector('#video-wrap').hidden,
    pipWidth: pip.hidden ? 0 : pip.videoWidth, pipTime: pip.currentTime,
    audio: live(a, 'audio'), audioPaused: a.paused,
  };
}"""


def world(server: LiveServer, tag: str, learners: int = 4) -> dict[str, Any]:
    api = server.api()
    trainer = api.user(f"orders-t-{tag}@example.org", f"Trainer {tag}", "trainer")
    people = [
        api.user(f"orders-l{i}-{tag}@example.org", f"Learner {i} {tag}", "learner", password=None)
        for i in range(learners)
    ]
    cohort = api.cohort(f"Orders {tag}")
    for u in (trainer, *people):
        api.enrol(cohort["id"], u["id"])
    links = [api.link(cohort["id"], u["id"]) for u in people]
    return {"trainer": trainer, "cohort": cohort, "links": links}


def seen(page: Any) -> dict[str, Any]:
    return dict(page.evaluate(SEEN_JS))


def wait_for(page: Any, what: str, check: Any, within: float = 25.0) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        state = seen(page)
        if check(state):
            return state
        if time.monotonic() > deadline:
            stage = page.locator("#classroom").inner_text()[:400]
            raise AssertionError(f"{what}: not within {within}s: {state} {stage!r}")
        page.wait_for_timeout(150)


def plays(page: Any, *, audio: bool = True, min_width: int = 1) -> dict[str, Any]:
    """The main video plays (size, not paused, time advancing) and, if ``audio``, the audio
    element holds a live track and plays."""
    first = wait_for(
        page,
        "video playing" + (" with sound" if audio else ""),
        lambda s: (
            s["shown"]
            and s["width"] >= min_width
            and not s["paused"]
            and (not audio or (s["audio"] > 0 and not s["audioPaused"]))
        ),
    )
    later = wait_for(page, "video time advancing", lambda s: s["time"] > first["time"] + 0.3, 10)
    assert later["width"] >= min_width and not later["paused"], later
    return later


def open_classroom(page: Any, link: str, cohort_id: int) -> None:
    page.goto(link)
    page.wait_for_url(re.compile(f"/classroom/{cohort_id}$"))


def join(page: Any) -> None:
    expect(page.locator("#join-class")).to_be_visible()
    page.locator("#join-class").click()
    expect(page.locator("#video-wrap")).to_be_visible()


def open_console(page: Any, cohort_id: int) -> None:
    page.goto(f"/cohorts/{cohort_id}/console")
    # Connected once the welcome filled the badge ("Not started" or "Live since").
    expect(page.locator("#session-badge")).not_to_be_empty()


def press(console: Any, button: str, pressed: bool) -> None:
    console.locator(button).click()
    expect(console.locator(button)).to_have_attribute("aria-pressed", str(pressed).lower())


@pytest.mark.parametrize("locale", ["en-US", "fr-FR"])
def test_learners_see_and_hear_the_trainer_in_every_order(
    new_page: Any, live_server: LiveServer, locale: str
) -> None:
    text = TEXT[locale]
    w = world(live_server, locale[:2])
    cid = w["cohort"]["id"]

    # Two learners open their link before the class starts and wait.
    waiter, eager = new_page(locale=locale), new_page(locale=locale)
    for page, link in ((waiter, w["links"][0]), (eager, w["links"][1])):
        open_classroom(page, link, cid)
        expect(page.locator("#stage-state")).to_contain_text(text["waiting"])

    console = new_page(locale=locale)
    sign_in(console, w["trainer"]["email"])
    open_console(console, cid)
    console.locator("#session-start").click()
    expect(console.locator("#session-end")).to_be_visible()

    # One joins at once, before the camera is on: told there is no video yet.
    join(eager)
    expect(eager.locator("#video-note")).to_contain_text(text["no_video"])
    # Another arrives after the start, before the camera, and does not join yet.
    arrived = new_page(locale=locale)
    open_classroom(arrived, w["links"][2], cid)
    expect(arrived.locator("#join-class")).to_be_visible()

    press(console, "#media-camera", True)
    press(console, "#media-mic", True)
    plays(eager)
    # The learners who waited (before the start, or after it but before the camera) join now.
    for page in (waiter, arrived):
        join(page)
        plays(page)

    # The last one arrives once the camera is on.
    late = new_page(locale=locale)
    open_classroom(late, w["links"][3], cid)
    join(late)
    plays(late)
    learners = (waiter, eager, arrived, late)

    # The trainer shares the screen: it becomes the main view (1280 px fake screen), the camera
    # the small one.
    press(console, "#media-screen", True)
    for page in learners:
        plays(page, min_width=1000)
        wait_for(page, "camera in the small view", lambda s: s["pipWidth"] > 0)

    # Camera off: the screen stays, the small view goes.
    press(console, "#media-camera", False)
    for page in learners:
        wait_for(page, "no small view", lambda s: s["pipWidth"] == 0)
        plays(page, min_width=1000)

    # Microphone off then on: the audio element is emptied, then plays again.
    press(console, "#media-mic", False)
    for page in learners:
        wait_for(page, "no sound", lambda s: s["audio"] == 0)
    press(console, "#media-mic", True)
    # Screen off, camera on: the camera is the main view again.
    press(console, "#media-screen", False)
    press(console, "#media-camera", True)
    for page in learners:
        state = plays(page)
        assert state["width"] < 1000, state  # the 640 px fake camera, not the screen

    # A learner reloads the page: one click and they see and hear the class again.
    arrived.reload()
    join(arrived)
    plays(arrived)
    for page in learners:
        plays(page)
