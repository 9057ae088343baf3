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

from tests.helpers.browser import BrowserServer, shoot, sign_in

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


def world(server: BrowserServer, tag: str, learners: int = 4) -> dict[str, Any]:
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
            stage += " | notices: " + page.locator("#notices").inner_text()
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
    expect(page.locator("#session-start, #session-end").locator("visible=true")).to_be_enabled()


def press(console: Any, button: str, pressed: bool) -> None:
    console.locator(button).click()
    expect(console.locator(button)).to_have_attribute("aria-pressed", str(pressed).lower())


@pytest.mark.parametrize("locale", ["en-US", "fr-FR"])
def test_learners_see_and_hear_the_trainer_in_every_order(
    new_page: Any, live_server: BrowserServer, locale: str
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


SELF_JS = """(sel) => { const v = document.querySelector(sel);
  return { width: v.videoWidth, paused: v.paused, hidden: v.hidden, time: v.currentTime }; }"""


def previews(console: Any, selector: str, min_width: int = 1) -> None:
    deadline = time.monotonic() + 15
    while True:
        v = console.evaluate(SELF_JS, selector)
        if v["width"] >= min_width and not v["paused"] and not v["hidden"]:
            return
        assert time.monotonic() < deadline, (selector, v)
        console.wait_for_timeout(150)


def test_trainer_previews_then_reloads_the_console_mid_class(
    new_page: Any, live_server: BrowserServer
) -> None:
    w = world(live_server, "reload", learners=1)
    cid = w["cohort"]["id"]
    learner = new_page()
    open_classroom(learner, w["links"][0], cid)
    expect(learner.locator("#cohort-name")).to_contain_text("Orders reload")

    console = new_page()
    sign_in(console, w["trainer"]["email"])
    open_console(console, cid)
    expect(console.locator("#cohort-name")).to_contain_text("Orders reload")
    # Before the class: camera and screen previewed on the console only.
    press(console, "#media-camera", True)
    press(console, "#media-screen", True)
    previews(console, "#self-view")
    previews(console, "#screen-view", min_width=1000)
    expect(console.locator("#media-preview")).to_be_visible()
    expect(console.locator("#nothing-sent")).to_be_hidden()
    shoot(console, "console-preview-en-1440")
    # Beside a shared screen (420 px) the previews fit without sideways scrolling.
    console.set_viewport_size({"width": 420, "height": 900})
    assert console.evaluate("document.documentElement.scrollWidth") <= 420
    shoot(console, "console-preview-en-420")
    console.set_viewport_size({"width": 1440, "height": 900})

    # Starting the class publishes what was previewed.
    console.locator("#session-start").click()
    expect(console.locator("#media-preview")).to_be_hidden()
    join(learner)
    plays(learner, audio=False, min_width=1000)
    wait_for(learner, "camera in the small view", lambda s: s["pipWidth"] > 0)
    press(console, "#media-mic", True)
    plays(learner, min_width=1000)

    # The trainer reloads the console mid-class (and confirms leaving the page).
    console.on("dialog", lambda d: d.accept())
    console.reload()
    # Camera and microphone come back by themselves; the screen asks for one click.
    expect(console.locator("#media-camera")).to_have_attribute("aria-pressed", "true")
    expect(console.locator("#media-mic")).to_have_attribute("aria-pressed", "true")
    restore = console.locator("#media-restore")
    expect(restore).to_be_visible()
    shoot(console, "console-reloaded-en-1440")
    restore.click()
    expect(console.locator("#media-screen")).to_have_attribute("aria-pressed", "true")
    expect(console.locator("#restore-row")).to_be_hidden()
    previews(console, "#screen-view", min_width=1000)
    plays(learner, min_width=1000)
    wait_for(learner, "camera in the small view again", lambda s: s["pipWidth"] > 0)

    # Live with nothing sent: the trainer is warned, until something is on again.
    expect(console.locator("#nothing-sent")).to_be_hidden()
    for button in ("#media-camera", "#media-mic", "#media-screen"):
        press(console, button, False)
    expect(console.locator("#nothing-sent")).to_be_visible()
    press(console, "#media-camera", True)
    expect(console.locator("#nothing-sent")).to_be_hidden()
    plays(learner, audio=False)

    # The trainer looking at the learners' view gets a way back to the console.
    view = console.context.new_page()
    view.goto(f"/classroom/{cid}")
    expect(view.locator("#console-link")).to_have_attribute("href", f"/cohorts/{cid}/console")
    view.close()


def test_a_dead_link_is_noticed_and_the_class_resumes(
    new_page: Any, live_server: BrowserServer
) -> None:
    """The network is cut without closing anything (``set_offline``): the page says
    "reconnecting" within ~10 s, the server drops the socket after ~15 s (the console sees the
    learner leave), and once the network is back the page resumes by itself: the message typed
    meanwhile is delivered and the video plays again."""
    w = world(live_server, "offline", learners=1)
    cid = w["cohort"]["id"]
    console = new_page()
    sign_in(console, w["trainer"]["email"])
    open_console(console, cid)
    console.locator("#session-start").click()
    press(console, "#media-camera", True)
    press(console, "#media-mic", True)
    learner = new_page()
    open_classroom(learner, w["links"][0], cid)
    join(learner)
    plays(learner)
    person = console.locator("#people-list li", has_text="Learner 0")
    expect(person).not_to_have_class(re.compile("gone"))

    cut = time.monotonic()
    learner.context.set_offline(True)
    learner.locator("#chat-input").fill("typed on a dead link")
    learner.locator("#chat-send").click()
    expect(learner.locator("#conn-banner")).to_be_visible(timeout=15_000)
    noticed_s = time.monotonic() - cut
    expect(person).to_have_class(re.compile("gone"), timeout=25_000)
    dropped_s = time.monotonic() - cut
    # Explicit bounds the issue asks for (client ~10 s, server ~15 s), generous for a busy box.
    assert 8 <= noticed_s <= 14, noticed_s
    assert 13 <= dropped_s <= 22, dropped_s
    expect(learner.locator("#chat-log .pending")).to_contain_text("typed on a dead link")
    shoot(learner, "classroom-dead-link-en-1440")

    learner.context.set_offline(False)
    expect(learner.locator("#conn-banner")).to_be_hidden(timeout=20_000)
    expect(console.locator("#chat-log li.msg").last).to_contain_text("typed on a dead link")
    expect(learner.locator("#chat-log .pending")).to_have_count(0)
    expect(person).not_to_have_class(re.compile("gone"))
    plays(learner)
    print(f"dead link: banner after {noticed_s:.1f} s, server drop seen after {dropped_s:.1f} s")


def test_the_same_learner_in_two_tabs(new_page: Any, live_server: BrowserServer) -> None:
    w = world(live_server, "tabs", learners=1)
    cid = w["cohort"]["id"]
    console = new_page(locale="fr-FR")
    sign_in(console, w["trainer"]["email"])
    open_console(console, cid)
    console.locator("#session-start").click()
    press(console, "#media-camera", True)
    press(console, "#media-mic", True)

    first = new_page(locale="fr-FR")
    open_classroom(first, w["links"][0], cid)
    join(first)
    plays(first)
    # The same browser (same session) opens the class in a second tab.
    second = first.context.new_page()
    second.goto(f"/classroom/{cid}")
    expect(first.locator("#replaced-note")).to_contain_text("ouverte dans un autre onglet")
    shoot(first, "classroom-other-tab-fr-1440")
    join(second)
    plays(second)
    # The first tab takes it back in one click: its video comes back, the second is told.
    first.locator("#take-back").click()
    expect(second.locator("#replaced-note")).to_be_visible()
    expect(first.locator("#conn-banner")).to_be_hidden()
    plays(first)
    # One learner all along for the trainer.
    expect(console.locator("#people-list li", has_text="Learner 0")).to_have_count(1)
    expect(console.locator("#people-list li", has_text="Learner 0")).not_to_have_class(
        re.compile("gone")
    )
