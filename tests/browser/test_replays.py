"""Replays in real chromium: the trainer records a class from the console, a learner watches it.

The recorder itself is branch rec's: while the class is recorded, this test writes the
recorder's segments (a VP8 test pattern per video kind, an Opus tone; tests/replays/media.py)
into the directory the server chose, in the contract's layout. Everything else is the real
server: the console's buttons, the socket, the database, the finalize step, the file routes
with Range, the replay page.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.firefox import Firefox
from tests.helpers.browser import (
    ADMIN_EMAIL,
    BrowserServer,
    axe_violations,
    serve_estrade,
    shoot,
    sign_in,
)
from tests.replays.media import write_recording

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserServer]:
    """The module's server measures a running recording against its quota twice a second."""
    yield from serve_estrade(tmp_path_factory, {"ESTRADE_RECORDING_CHECK_S": "0.5"})


EVIL = '<img src=x onerror="window.__pwned=1">'
SECONDS = 12.0


def _world(server: BrowserServer) -> dict[str, Any]:
    api = server.api()
    trainer = api.user("trainer-rp@example.org", "Théo Formateur", "trainer")
    learner = api.user("lina-rp@example.org", "Lina Martin", "learner", password=None)
    cohort = api.cohort("Replays")
    api.enrol(cohort["id"], trainer["id"])
    api.enrol(cohort["id"], learner["id"])
    policy = {
        "enabled": True,
        "notice": "Cette classe est enregistrée pour les absents.",
        "chat_names": "initials",
    }
    api.call("PUT", f"/api/admin/cohorts/{cohort['id']}/recording", json=policy)
    return {
        "api": api,
        "cohort": cohort,
        "trainer": trainer,
        "link": api.link(cohort["id"], learner["id"]),
    }


def _video(page: Any, selector: str) -> dict[str, Any]:
    return dict(
        page.evaluate(
            """(sel) => { const v = document.querySelector(sel);
            const q = v.getVideoPlaybackQuality
              ? v.getVideoPlaybackQuality() : {totalVideoFrames: -1};
            return {t: v.currentTime, w: v.videoWidth, paused: v.paused, frames: q.totalVideoFrames,
                    src: v.currentSrc, rate: v.playbackRate}; }""",
            selector,
        )
    )


@pytest.fixture
def firefox(tmp_path: Any) -> Any:
    browser = Firefox(tmp_path / "firefox.log")
    yield browser
    browser.close()


def test_record_then_watch_the_replay(
    new_page: Any, live_server: BrowserServer, firefox: Firefox
) -> None:
    w = _world(live_server)
    cid = w["cohort"]["id"]
    api = w["api"]

    trainer = new_page(width=1440)
    sign_in(trainer, w["trainer"]["email"])
    trainer.goto(f"/cohorts/{cid}/console")
    expect(trainer.locator("#rec-notice")).to_have_text(
        "Cette classe est enregistrée pour les absents."
    )
    trainer.locator("#session-start").click()
    expect(trainer.locator("#rec-start")).to_be_visible()
    trainer.locator("#rec-start").click()
    expect(trainer.locator("#rec-badge")).to_be_visible()
    expect(trainer.locator("#rec-stop")).to_be_visible()

    learner = new_page(width=1440)
    learner.goto(w["link"])
    learner.wait_for_url(f"**/classroom/{cid}")
    expect(learner.locator("#rec-badge")).to_be_visible()  # the classroom says so on joining
    expect(learner.locator("#notices")).to_contain_text("This class is being recorded.")
    expect(learner.locator("#rec-notice")).to_contain_text("enregistrée pour les absents")
    learner.locator("#chat-input").fill(f"Une question {EVIL}")
    learner.locator("#chat-send").click()
    expect(learner.locator("#chat-log li.msg").last).to_contain_text("Une question")

    running = [
        r for r in api.call("GET", f"/api/cohorts/{cid}/replays/") if r["status"] == "recording"
    ]
    assert len(running) == 1
    rid = running[0]["id"]
    # The recorder's segments (branch rec writes them from the trainer's frames).
    write_recording(
        live_server.data_dir / "recordings" / str(cid) / str(rid),
        SECONDS,
        segments=True,
        screen_gap=(4.0, 8.0),  # the trainer stopped sharing the screen for 4 s
    )
    trainer.locator("#rec-stop").click()
    expect(trainer.locator("#rec-badge")).to_be_hidden()
    expect(learner.locator("#rec-badge")).to_be_hidden()
    deadline = time.monotonic() + 20
    while (got := api.call("GET", f"/api/cohorts/{cid}/replays/"))[0]["status"] == "recording":
        assert time.monotonic() < deadline, got
        time.sleep(0.2)
    assert got[0]["status"] == "ready", got
    assert set(got[0]["files"]) == {"audio", "camera", "screen"}

    # The learner opens the replay: the screen as main view, the camera small, the sound.
    learner.goto(f"/cohorts/{cid}/replays")
    learner.locator(f"#rp-list button[data-id='{rid}']").click()
    expect(learner.locator("#rp-view")).to_be_visible()
    line = learner.locator("#rp-timeline li.rp-chat").first
    expect(line).to_contain_text(f"Une question {EVIL}")
    expect(line.locator(".rp-author")).to_have_text("L. M.")  # the cohort's names mode
    assert learner.evaluate("window.__pwned === undefined")
    assert learner.locator("#rp-timeline img").count() == 0
    assert "/files/screen" in _video(learner, "#rp-main")["src"]
    assert "/files/camera" in _video(learner, "#rp-pip")["src"]

    learner.locator("#rp-play").click()
    learner.wait_for_function(
        "() => document.querySelector('#rp-main').currentTime > 1.0", timeout=15_000
    )
    first = _video(learner, "#rp-main")
    learner.wait_for_timeout(600)
    second = _video(learner, "#rp-main")
    assert second["t"] > first["t"], (first, second)
    assert second["w"] == 320 and second["frames"] > 0, second
    pip = _video(learner, "#rp-pip")
    assert pip["w"] == 320 and not pip["paused"] and abs(pip["t"] - second["t"]) < 0.6, (
        pip,
        second,
    )
    audio_t = learner.evaluate("document.querySelector('#rp-audio').currentTime")
    assert abs(audio_t - second["t"]) < 0.6

    # Speed.
    learner.locator("#rp-speed").select_option("1.5")
    assert _video(learner, "#rp-main")["rate"] == 1.5
    # Seek away, then click the chat line: the player goes to its time.
    learner.evaluate(
        "() => { const s = document.querySelector('#rp-seek');"
        " s.value = '10'; s.dispatchEvent(new Event('input')); }"
    )
    assert _video(learner, "#rp-main")["t"] > 9
    wrap = learner.locator("#rp-video-wrap")
    expect(wrap).not_to_have_class(re.compile("rp-flip"))
    # Where the screen was off, the camera is the main view (as learners saw it).
    learner.evaluate(
        "() => { const s = document.querySelector('#rp-seek');"
        " s.value = '6'; s.dispatchEvent(new Event('input')); }"
    )
    expect(wrap).to_have_class(re.compile("rp-flip"))
    expect(learner.locator("#rp-main")).to_be_hidden()
    assert learner.evaluate("document.querySelector('#rp-pip').clientWidth") > 400
    chat_t = float(line.locator("button").get_attribute("data-t") or "nan")
    assert 0 <= chat_t < SECONDS - 2, chat_t
    line.locator("button").click()
    at = _video(learner, "#rp-main")["t"]
    assert abs(at - chat_t) < 0.7, (at, chat_t)
    learner.wait_for_function(
        f"() => document.querySelector('#rp-main').currentTime > {chat_t + 0.3}", timeout=10_000
    )
    found = axe_violations(learner)
    assert not found, found
    shoot(learner, "replay-en-1440")

    phone = new_page(width=360, height=780, locale="fr-FR")
    phone.goto(w["link"])
    phone.wait_for_url(f"**/classroom/{cid}")
    phone.goto(f"/cohorts/{cid}/replays#replay-{rid}")
    expect(phone.locator("#rp-view")).to_be_visible()
    expect(phone.locator("#rp-play")).to_have_text("Lire")
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 360, width
    shoot(phone, "replay-fr-360")

    # The same replay in Firefox (Debian's firefox-esr): plays, decodes, seeks from the chat.
    firefox.goto(w["link"])
    firefox.wait(f"() => location.pathname === '/classroom/{cid}'")
    firefox.wait("() => document.documentElement.classList.contains('ready')")
    firefox.goto(f"{live_server.url}/cohorts/{cid}/replays#replay-{rid}")
    firefox.wait("() => document.documentElement.classList.contains('ready')")
    firefox.wait("() => !document.querySelector('#rp-view').hidden")
    firefox.click("#rp-play")
    firefox.wait("() => document.querySelector('#rp-main').currentTime > 1.0", timeout_s=20)
    got = firefox.eval(
        "() => { const v = document.querySelector('#rp-main');"
        " return [v.videoWidth, v.getVideoPlaybackQuality().totalVideoFrames,"
        " document.querySelector('#rp-pip').videoWidth]; }"
    )
    assert got[0] == 320 and got[1] > 0 and got[2] == 320, got
    firefox.click("#rp-timeline li.rp-chat button")
    at = firefox.eval("() => document.querySelector('#rp-main').currentTime")
    assert abs(at - chat_t) < 0.7, (at, chat_t)
    assert firefox.eval("() => window.__pwned === undefined")
    # (Leaving the classroom while its requests run can log "Error: network" there: only
    # this page's errors count.)
    assert not [e for e in firefox.errors() if "/replays" in e], firefox.errors()

    # The trainer deletes the replay from the page: gone for everyone, files included.
    trainer.goto(f"/cohorts/{cid}/replays#replay-{rid}")
    expect(trainer.locator("#rp-delete")).to_be_visible()
    trainer.once("dialog", lambda dialog: dialog.accept())
    trainer.locator("#rp-delete").click()
    expect(trainer.locator("#rp-empty")).to_be_visible()
    assert not (live_server.data_dir / "recordings" / str(cid) / str(rid)).exists()
    assert api.call("GET", f"/api/cohorts/{cid}/replays/") == []


def test_admin_sets_the_recording_policy(new_page: Any, live_server: BrowserServer) -> None:
    api = live_server.api()
    cohort = api.cohort("Politique")
    cid = cohort["id"]
    page = new_page(width=1440, locale="fr-FR")
    sign_in(page, ADMIN_EMAIL)
    page.goto(f"/admin/cohorts/{cid}")
    expect(page.locator("#rec-usage")).to_contain_text("0 GB")
    assert not page.locator("#rec-enabled").is_checked()  # off by default
    page.locator("#rec-enabled").check()
    page.locator("#rec-notice-text").fill("Classe <b>enregistrée</b>")
    page.locator("#rec-chat-names").select_option("none")
    page.locator("#rec-retention").fill("45")
    page.locator("#rec-quota").fill("2.5")
    page.locator("#rec-policy-form button[type=submit]").click()
    expect(page.locator("#notices")).to_contain_text("Réglages d'enregistrement sauvegardés.")
    got = api.call("GET", f"/api/admin/cohorts/{cid}/recording")
    assert got["enabled"] is True and got["notice"] == "Classe <b>enregistrée</b>"
    assert got["chat_names"] == "none" and got["retention_days"] == 45
    assert got["quota_bytes"] == 2_500_000_000
    found = axe_violations(page)
    assert not found, found


def test_the_console_says_why_a_recording_stopped(
    new_page: Any, live_server: BrowserServer
) -> None:
    api = live_server.api()
    trainer_user = api.user("trainer-quota@example.org", "Quota Formatrice", "trainer")
    cohort = api.cohort("Quota")
    cid = cohort["id"]
    api.enrol(cid, trainer_user["id"])
    policy = {"enabled": True, "quota_bytes": 2000}
    api.call("PUT", f"/api/admin/cohorts/{cid}/recording", json=policy)
    trainer = new_page(width=420, locale="fr-FR")  # the console beside a shared window
    sign_in(trainer, trainer_user["email"])
    trainer.goto(f"/cohorts/{cid}/console")
    trainer.locator("#session-start").click()
    trainer.locator("#rec-start").click()
    expect(trainer.locator("#rec-badge")).to_be_visible()  # started (the server said so)
    expect(trainer.locator("#rec-badge")).to_have_text("Enregistrement")
    [running] = api.call("GET", f"/api/cohorts/{cid}/replays/")
    write_recording(
        live_server.data_dir / "recordings" / str(cid) / str(running["id"]),
        1.0,
        ("audio",),
        segments=True,
    )
    expect(trainer.locator("#notices")).to_contain_text(
        "les enregistrements de la promotion ont atteint leur quota de stockage"
    )
    expect(trainer.locator("#rec-badge")).to_be_hidden()
    expect(trainer.locator("#rec-start")).to_be_visible()
    trainer.locator("#rec-start").click()  # refused now, and said so
    expect(trainer.locator("#notices")).to_contain_text("occupent tout leur stockage")
    shoot(trainer, "console-recording-quota-fr-420")
