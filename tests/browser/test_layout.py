"""Layout checked by geometry, in both languages, at a phone's 360 px and a desktop's 1440 px.

A live class (camera and microphone on, chat with enough messages to scroll, a question, a
signed attendance) is looked at by bounding boxes rather than by eye: on a phone the video sits
on top, the chat heading and messages below it, the text box fixed at the bottom of the screen
with every message above it, nothing sticking out sideways and no empty screen after the chat;
on a wide screen the chat column starts at the top beside the stage. The operator page shows a
non-zero bitrate for the live room, and the printable sign-in sheet fits a phone.

Screenshots of the classroom, console, operator page and sign-in sheet at both widths go to
``$ESTRADE_ARTIFACTS/screenshots`` (docs/guide.md shows them).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from tests.helpers.browser import BrowserServer, screenshot_dir, shoot, sign_in

pytestmark = pytest.mark.browser

WIDTHS = (360, 1440)
HEIGHT = {360: 740, 1440: 900}
IN_PROGRESS = {"en": "In progress", "fr": "En cours"}
SINCE = {"en": "since", "fr": "depuis"}
SHEET_TITLE = {"en": "Sign-in sheet", "fr": "Feuille d\u2019émargement"}

BOX_JS = """(sel) => {
  const el = document.querySelector(sel);
  if (!el) return null;
  const r = el.getBoundingClientRect();
  const style = getComputedStyle(el);
  return { top: r.top, bottom: r.bottom, left: r.left, right: r.right, width: r.width,
           height: r.height, position: style.position,
           shown: r.width > 0 && r.height > 0 && style.visibility !== "hidden" };
}"""

SIDEWAYS_JS = """() => {
  const d = document.documentElement;
  // Elements whose right edge passes the viewport (the culprit when a page scrolls sideways).
  const wide = [...document.querySelectorAll("body *")]
    .filter((el) => el.getBoundingClientRect().right > d.clientWidth + 1)
    .slice(0, 5).map((el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : ""));
  return { scrollWidth: d.scrollWidth, clientWidth: d.clientWidth, wide };
}"""

# What is left of the page below the last message list and the chat input (an empty area).
TAIL_JS = """() => {
  const d = document.documentElement;
  const log = document.querySelector("#chat-log").getBoundingClientRect();
  return { pageBottom: d.scrollHeight - window.scrollY, logBottom: log.bottom,
           viewport: window.innerHeight };
}"""

# Each message's box against the chat log's visible box (with the log scrolled as told).
MESSAGES_JS = """(where) => {
  const log = document.querySelector("#chat-log");
  log.scrollTop = where === "top" ? 0 : log.scrollHeight;
  const box = log.getBoundingClientRect();
  const items = [...log.querySelectorAll("li.msg")].map((li) => li.getBoundingClientRect());
  return { log: { top: box.top, bottom: box.bottom }, first: items[0] && { top: items[0].top },
           last: items.at(-1) && { bottom: items.at(-1).bottom }, count: items.length };
}"""


def box(page: Any, selector: str) -> dict[str, Any]:
    got = page.evaluate(BOX_JS, selector)
    assert got is not None, f"{selector} is missing"
    return got


def no_sideways_scroll(page: Any, what: str) -> None:
    got = page.evaluate(SIDEWAYS_JS)
    assert got["scrollWidth"] <= got["clientWidth"], f"{what} scrolls sideways: {got}"


def _world(server: BrowserServer, tag: str) -> dict[str, Any]:
    api = server.api()
    trainer = api.user(f"layout-trainer-{tag}@example.org", f"Claire Formatrice {tag}", "trainer")
    learners = [
        api.user(
            f"layout-{tag}-{i}@example.org",
            name,
            "learner",
            password=None,
        )
        for i, name in enumerate(["Maximilien de La Tour-Hernández", "Zoé Ba"])
    ]
    cohort = api.cohort(f"Développement web {tag} — promotion du soir à distance")
    for u in (trainer, *learners):
        api.enrol(cohort["id"], u["id"])
    links = [api.link(cohort["id"], u["id"]) for u in learners]
    return {"api": api, "trainer": trainer, "cohort": cohort, "links": links}


def _classroom_phone(page: Any, what: str) -> None:
    """Video on top, then the chat heading and messages, the text box fixed at the bottom."""
    page.evaluate("window.scrollTo(0, 0)")
    video, title = box(page, "#video-wrap"), box(page, "#chat-title")
    form, viewport = box(page, "#chat-form"), page.evaluate("window.innerHeight")
    assert video["shown"] and video["top"] < viewport, (what, video)
    assert title["shown"], (what, "the Chat heading is not shown", title)
    assert title["top"] >= video["bottom"], (what, "chat heading above the video", title, video)
    # The text box is at the bottom of the screen wherever the page is scrolled.
    assert form["position"] == "fixed", (what, form)
    assert abs(form["bottom"] - viewport) <= 1 and form["top"] > viewport / 2, (what, form)
    # Scrolled to the end of the page: the chat's messages end above the text box, and no
    # empty area follows them.
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    page.wait_for_timeout(100)
    form = box(page, "#chat-form")
    tail = page.evaluate(TAIL_JS)
    assert tail["logBottom"] <= form["top"] + 1, (what, "messages under the text box", tail, form)
    assert tail["pageBottom"] - tail["logBottom"] <= form["height"] + 48, (
        what,
        "empty area after the chat",
        tail,
        form,
    )
    title = box(page, "#chat-title")
    assert title["bottom"] <= form["top"], (what, "chat heading hidden by the text box")
    # The oldest message is whole at the top of the log, the newest whole at its bottom.
    top = page.evaluate(MESSAGES_JS, "top")
    assert top["count"] >= 10 and top["first"]["top"] >= top["log"]["top"] - 1, (what, top)
    end = page.evaluate(MESSAGES_JS, "end")
    assert end["last"]["bottom"] <= end["log"]["bottom"] + 1, (what, end)
    assert end["log"]["bottom"] <= form["top"] + 1, (what, end, form)
    no_sideways_scroll(page, what)


def _classroom_wide(page: Any, what: str) -> None:
    """The chat column starts at the top beside the stage, the text box inside the column."""
    page.evaluate("window.scrollTo(0, 0)")
    stage, side = box(page, ".classroom .stage"), box(page, "#classroom-side")
    assert abs(side["top"] - stage["top"]) <= 2, (what, "side panel not at the top", stage, side)
    assert side["left"] >= stage["right"], (what, stage, side)
    title, form = box(page, "#chat-title"), box(page, "#chat-form")
    viewport = page.evaluate("window.innerHeight")
    assert title["shown"] and title["bottom"] < viewport, (what, title)
    assert form["position"] != "fixed" and form["bottom"] <= viewport, (what, form)
    end = page.evaluate(MESSAGES_JS, "end")
    assert end["last"]["bottom"] <= end["log"]["bottom"] + 1 <= form["top"] + 2, (what, end, form)
    no_sideways_scroll(page, what)


def _console(page: Any, width: int, what: str) -> None:
    """One column on a phone (cards stacked, full width); three columns on a wide screen."""
    page.evaluate("window.scrollTo(0, 0)")
    cards = [box(page, f".console .{c}") for c in ("c-media", "c-signals", "c-questions")]
    if width < 1100:
        assert all(abs(c["left"] - cards[0]["left"]) <= 1 for c in cards), (what, cards)
        assert cards[0]["bottom"] <= cards[1]["top"] <= cards[1]["bottom"] <= cards[2]["top"]
    else:
        assert all(abs(c["top"] - cards[0]["top"]) <= 1 for c in cards), (what, cards)
        assert cards[0]["right"] <= cards[1]["left"] and cards[1]["right"] <= cards[2]["left"]


@pytest.mark.parametrize("locale", ["en-US", "fr-FR"])
def test_pages_fit_a_phone_and_a_wide_screen(
    new_page: Any, live_server: BrowserServer, locale: str
) -> None:
    lang = locale[:2]
    w = _world(live_server, lang)
    cid = w["cohort"]["id"]

    trainer = new_page(locale=locale, width=1440, height=HEIGHT[1440])
    sign_in(trainer, w["trainer"]["email"])
    trainer.goto(f"/cohorts/{cid}/console")
    expect(trainer.locator("#session-badge")).not_to_be_empty()  # the room's welcome came
    trainer.locator("#session-start").click()
    expect(trainer.locator("#session-end")).to_be_visible()
    trainer.locator("#media-camera").click()
    trainer.locator("#media-mic").click()

    learners = []
    for link in w["links"]:
        page = new_page(locale=locale, width=1440, height=HEIGHT[1440])
        page.goto(link)
        page.wait_for_url(re.compile(f"/classroom/{cid}$"))
        page.locator("#join-class").click()
        expect(page.locator("#video-wrap")).to_be_visible()
        learners.append(page)
    phone, other = learners
    # At most five messages each in ten seconds (the chat's rate limit).
    for i in range(12):
        who = (other, phone, trainer)[i % 3]
        who.locator("#chat-input").fill(f"Message {i}: " + "une phrase assez longue " * (i % 3))
        who.locator("#chat-send").click()
        expect(who.locator("#chat-log .pending")).to_have_count(0)
    other.locator("#chat-input").fill("Can we see the slide again?")
    other.locator("#chat-question").check()
    other.locator("#chat-send").click()
    expect(phone.locator("#question-list li")).to_have_count(1)
    expect(phone.locator("#chat-log li.msg")).to_have_count(13)
    trainer.locator("#signing-open").click()
    for page in learners:
        page.locator("#sign-attendance").click()
        expect(page.locator(".live-card.sign .summary")).to_be_visible()

    for width in WIDTHS:
        phone.set_viewport_size({"width": width, "height": HEIGHT[width]})
        phone.wait_for_timeout(300)
        phone.evaluate("window.scrollTo(0, 0)")
        shoot(phone, f"layout-classroom-{lang}-{width}")
        what = f"classroom {lang} {width}"
        (_classroom_phone if width < 900 else _classroom_wide)(phone, what)
        if width < 900:
            # What the phone's screen shows (a full-page picture misplaces the fixed text box):
            # scrolled to the chat, then back at the top with the video.
            phone.screenshot(
                path=str(screenshot_dir() / f"layout-classroom-{lang}-{width}-chat.png")
            )
            phone.evaluate("window.scrollTo(0, 0)")
            phone.screenshot(
                path=str(screenshot_dir() / f"layout-classroom-{lang}-{width}-top.png")
            )
        trainer.set_viewport_size({"width": width, "height": HEIGHT[width]})
        trainer.wait_for_timeout(300)
        no_sideways_scroll(trainer, f"console {lang} {width}")
        _console(trainer, width, f"console {lang} {width}")
        shoot(trainer, f"layout-console-{lang}-{width}")

    # The operator page: the live room sends video and audio to two learners, so the bitrate
    # it shows is not zero.
    admin = new_page(locale=locale, width=1440, height=HEIGHT[1440])
    sign_in(admin, "admin@example.org")
    admin.goto("/operator")
    row = admin.locator(f'#rooms-body tr[data-cohort="{cid}"]')
    expect(row).to_be_visible()
    sent = row.locator("td").nth(4)
    expect(sent).not_to_have_text(re.compile(r"^0 Mbit/s$"), timeout=15_000)
    assert float(sent.inner_text().split()[0].replace(",", ".")) > 0.05, sent.inner_text()
    for width in WIDTHS:
        admin.set_viewport_size({"width": width, "height": HEIGHT[width]})
        admin.wait_for_timeout(200)
        no_sideways_scroll(admin, f"operator {lang} {width}")
        # On a phone each room is a card of labelled lines (the table head is hidden).
        head = box(admin, "#rooms-table thead")
        assert (head["height"] <= 1) == (width < 640), (width, head)
        shoot(admin, f"layout-operator-{lang}-{width}")

    # The class started from the console is listed on the cohort's admin page with its real
    # day and start time, in progress (not 1 January 1970, the date of a missing schedule).
    admin.goto(f"/admin/cohorts/{cid}")
    session = admin.locator("#session-table tbody tr")
    expect(session).to_have_count(1)
    expect(session).to_contain_text(IN_PROGRESS[lang])
    today = dt.datetime.now(ZoneInfo(w["cohort"]["time_zone"]))
    expect(session.locator("td").first).to_contain_text(str(today.year))
    assert "1970" not in session.inner_text()
    expect(session.locator("td").nth(1)).to_contain_text(SINCE[lang])

    # The printable sign-in sheet, in the viewer's language, fits a phone.
    day = dt.datetime.now(ZoneInfo(w["cohort"]["time_zone"])).date().isoformat()
    for width in WIDTHS:
        trainer.set_viewport_size({"width": width, "height": HEIGHT[width]})
        trainer.goto(f"/cohorts/{cid}/attendance/{day}/sheet")
        expect(trainer.locator("h1")).to_have_text(SHEET_TITLE[lang])
        expect(trainer.locator("body")).to_contain_text("Zoé Ba")
        no_sideways_scroll(trainer, f"sign-in sheet {lang} {width}")
        shoot(trainer, f"layout-sheet-{lang}-{width}")
