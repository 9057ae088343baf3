"""A whole class in real browsers: a trainer's console, two learners' classrooms, the operator page.

The trainer's chromium publishes its fake camera and microphone through the relay; each learner's
own RTCPeerConnection.getStats() must show video frames decoded (and growing) and audio packets
received.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import BrowserServer, axe_violations, shoot, sign_in

pytestmark = pytest.mark.browser

EVIL = '<img src=x onerror="window.__pwned=1">'
TEXT = {
    "en-US": {"end_ok": "The class has ended", "signed": "signed", "waiting": "not started yet"},
    "fr-FR": {
        "end_ok": "La classe est terminée",
        "signed": "a émargé",
        "waiting": "pas encore commencé",
    },
}


def _world(server: BrowserServer, tag: str) -> dict[str, Any]:
    api = server.api()
    trainer = api.user(f"trainer-{tag}@example.org", f"Trainer {tag}", "trainer")
    learners = [
        api.user(f"l1-{tag}@example.org", f"Ana {EVIL}", "learner", password=None),
        api.user(f"l2-{tag}@example.org", f"Bruno <b>{tag}</b>", "learner", password=None),
    ]
    cohort = api.cohort(f"Class {tag}")
    for u in (trainer, *learners):
        api.enrol(cohort["id"], u["id"])
    links = [api.link(cohort["id"], u["id"]) for u in learners]
    return {"api": api, "trainer": trainer, "learners": learners, "cohort": cohort, "links": links}


STATS_JS = """async () => {
  const media = document.querySelector('#classroom').estradeMedia;
  if (!media || !media.pc) return null;
  let frames = 0, packets = 0;
  (await media.pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') frames += s.framesDecoded || 0;
    if (s.type === 'inbound-rtp' && s.kind === 'audio') packets += s.packetsReceived || 0;
  });
  return [frames, packets];
}"""


def _sees_and_hears(page: Any) -> None:
    """The learner's getStats: video frames decoded and growing, audio packets received."""
    first = None
    for _ in range(100):
        got = page.evaluate(STATS_JS)
        if got and got[0] > 0 and got[1] > 0:
            first = got
            break
        page.wait_for_timeout(200)
    assert first is not None, (
        "no video frame decoded / no audio packet received",
        got,
        page.evaluate("document.querySelector('#classroom').estradeMedia ? 'media' : 'none'"),
        page.locator("#classroom").inner_text()[:600],
    )
    page.wait_for_timeout(1000)
    later = page.evaluate(STATS_JS)
    assert later[0] > first[0] and later[1] > first[1], (first, later)


def _no_script_ran(page: Any) -> None:
    assert page.evaluate("window.__pwned === undefined")
    assert page.locator("img[src=x]").count() == 0


@pytest.mark.parametrize("locale", ["en-US", "fr-FR"])
def test_a_whole_class(
    new_page: Any, live_server: BrowserServer, locale: str, tmp_path: Any
) -> None:
    lang = locale[:2]
    w = _world(live_server, lang)
    cid = w["cohort"]["id"]
    text = TEXT[locale]

    trainer = new_page(locale=locale, width=1440)
    sign_in(trainer, w["trainer"]["email"])
    trainer.goto(f"/cohorts/{cid}/console")
    expect(trainer.locator("#session-start")).to_be_visible()

    learners = []
    for link in w["links"]:
        page = new_page(locale=locale, width=1440)
        page.goto(link)
        page.wait_for_url(re.compile(f"/classroom/{cid}$"))
        expect(page.locator("#stage-state")).to_contain_text(text["waiting"])
        learners.append(page)
    ana, bruno = learners
    shoot(ana, f"classroom-waiting-{lang}-1440")

    # The trainer starts the class; both learners see it start without reloading.
    trainer.locator("#session-start").click()
    expect(trainer.locator("#session-end")).to_be_visible()
    for page in learners:
        expect(page.locator("#join-class")).to_be_visible()
        page.locator("#join-class").click()
    trainer.locator("#media-camera").click()
    trainer.locator("#media-mic").click()
    for page in learners:
        _sees_and_hears(page)

    # Chat with HTML in the text and in the author's name: shown as text.
    ana.locator("#chat-input").fill(f"Hello {EVIL}")
    ana.locator("#chat-send").click()
    for page in (trainer, ana, bruno):
        expect(page.locator("#chat-log li.msg").last).to_contain_text(f"Hello {EVIL}")
        expect(page.locator("#chat-log li.msg").last).to_contain_text(f"Ana {EVIL}")
    expect(ana.locator("#chat-log .pending")).to_have_count(0)

    # Bruno asks a question; Ana gives it +1; the trainer sees it in the queue.
    bruno.locator("#chat-input").fill("What is a <div>?")
    bruno.locator("#chat-question").check()
    bruno.locator("#chat-send").click()
    expect(trainer.locator("#question-list li")).to_contain_text("What is a <div>?")
    expect(bruno.locator("#question-list li button")).to_have_count(0)  # not on one's own
    ana.locator("#question-list li button").click()
    expect(trainer.locator("#question-list li")).to_contain_text("+1")
    expect(trainer.locator("#question-list li .msg-meta")).to_contain_text("1")

    # A poll prepared, launched, answered by both, closed with results shown.
    trainer.locator("#poll-new summary").click()
    trainer.locator("#poll-question").fill("Ready? <script>")
    trainer.locator("#poll-choices").fill("Yes\nNo <b>")
    trainer.locator("#poll-form button[type=submit]").click()
    trainer.locator("#poll-list button.primary").click()
    expect(trainer.locator("#poll-waiting")).to_contain_text("2")
    for page, choice in ((ana, 0), (bruno, 1)):
        expect(page.locator("#poll-card")).to_contain_text("Ready? <script>")
        page.locator("#poll-card input").nth(choice).check()
        page.locator("#poll-card button[type=submit]").click()
        expect(page.locator("#poll-card .summary")).to_be_visible()
    expect(trainer.locator("#poll-waiting")).to_contain_text(re.compile(r"^0\b"))
    shoot(trainer, f"console-{lang}-1440")

    # A document uploaded (progress bar, raw body), pushed, downloaded by both learners.
    name = f"<b>notes {lang}.txt"  # no "/": the server keeps a name's last path component
    trainer.locator("#doc-file").set_input_files(
        files=[{"name": name, "mimeType": "text/plain", "buffer": b"bonjour\n"}]
    )
    trainer.locator("#doc-upload").click()
    expect(trainer.locator("#doc-list li")).to_contain_text(f"<b>notes {lang}")
    trainer.locator("#doc-list li button").click()
    for page in learners:
        link = page.locator("#pushed-download")
        expect(link).to_contain_text(f"<b>notes {lang}")
        with page.expect_download() as dl:
            link.click()
        target = tmp_path / f"{page.context.pages.index(page)}-{id(page)}.txt"
        dl.value.save_as(target)
        assert target.read_bytes() == b"bonjour\n"
        expect(page.locator("#doc-list li")).to_contain_text(f"<b>notes {lang}")

    # Attendance: the trainer opens the window, both learners confirm.
    trainer.locator("#signing-open").click()
    for page in learners:
        page.locator("#sign-attendance").click()
        expect(page.locator(".live-card.sign .summary")).to_be_visible()
    expect(trainer.locator("#people-list li", has_text="Ana")).to_contain_text(text["signed"])
    expect(trainer.locator("#people-list li", has_text="Bruno")).to_contain_text(text["signed"])

    # Signals: raised hand and "I'm lost" show on the console.
    ana.locator("#hand").click()
    expect(trainer.locator("#hand-list li")).to_contain_text(f"Ana {EVIL}")
    ana.locator("#react-lost").click()
    bruno.locator("#react-lost").click()
    expect(trainer.locator(".react-count.lost")).to_have_class(re.compile("alarm"))

    shoot(ana, f"classroom-{lang}-1440")
    for page in (trainer, *learners):
        _no_script_ran(page)
        assert axe_violations(page) == []

    # The trainer answers the question and closes the poll with its results shown.
    trainer.locator("#question-list li button").click()
    expect(ana.locator("#question-list li")).to_have_count(0)
    trainer.locator("#poll-close-show").click()
    for page in learners:
        expect(page.locator("#poll-card .bars li")).to_have_count(2)

    # Narrow views: a phone for the learner; 360 and 420 px (beside a shared screen) for trainers.
    ana.set_viewport_size({"width": 360, "height": 780})
    shoot(ana, f"classroom-{lang}-360")
    for width in (360, 420):
        trainer.set_viewport_size({"width": width, "height": 900})
        shoot(trainer, f"console-{lang}-{width}")
        assert trainer.evaluate("document.documentElement.scrollWidth") <= width
    assert ana.evaluate("document.documentElement.scrollWidth") <= 360

    # The operator page (admin) lists the live room.
    admin = new_page(locale=locale, width=1440)
    sign_in(admin, "admin@example.org")
    admin.goto("/operator")
    expect(admin.locator(f'#rooms-body tr[data-cohort="{cid}"]')).to_contain_text("2")
    assert axe_violations(admin) == []
    shoot(admin, f"operator-{lang}-1440")

    # The trainer ends the class; the learners see it ended.
    trainer.once("dialog", lambda d: d.accept())
    trainer.locator("#session-end").click()
    for page in learners:
        expect(page.locator("#stage-state")).to_contain_text(text["end_ok"])

    # The printable sign-in sheet shows both learners (as text).
    day = dt.datetime.now(ZoneInfo(w["cohort"]["time_zone"])).date().isoformat()
    trainer.goto(f"/cohorts/{cid}/attendance/{day}/sheet")
    expect(trainer.locator("body")).to_contain_text(f"Ana {EVIL}")
    expect(trainer.locator("body")).to_contain_text(f"Bruno <b>{lang}</b>")
    _no_script_ran(trainer)


def test_unsent_chat_is_kept_and_sent_after_reconnecting(
    new_page: Any, live_server: BrowserServer
) -> None:
    w = _world(live_server, "net")
    page = new_page()
    cut = {"on": False, "sockets": []}

    def route(ws: Any) -> None:
        if cut["on"]:
            ws.close(code=4000, reason="network drop")
            return
        ws.connect_to_server()
        cut["sockets"].append(ws)

    page.route_web_socket(re.compile(r"/ws/cohorts/"), route)
    page.goto(w["links"][0])
    expect(page.locator("#stage-state")).to_contain_text("not started yet")
    cut["on"] = True
    cut["sockets"][-1].close(code=4000, reason="network drop")
    expect(page.locator("#conn-banner")).to_be_visible()
    page.locator("#chat-input").fill("typed while offline")
    page.locator("#chat-send").click()
    expect(page.locator("#chat-log .pending")).to_contain_text("typed while offline")
    cut["on"] = False
    expect(page.locator("#conn-banner")).to_be_hidden(timeout=30_000)
    expect(page.locator("#chat-log .pending")).to_have_count(0)
    expect(page.locator("#chat-log li.msg").last).to_contain_text("typed while offline")
