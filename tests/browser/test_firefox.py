"""A Firefox learner in a class given from chromium: the second engine learners use.

The trainer is Debian's chromium (Playwright) with its fake camera and microphone; the learner
is Debian's firefox-esr, headless, driven through WebDriver BiDi (tests/browser/firefox.py).
On this loopback-only test server Firefox needs ``media.peerconnection.ice.loopback`` and a
default camera/microphone permission to gather a candidate that reaches the relay (why:
FIREFOX_PREFS in tests/browser/firefox.py); the ``.local`` candidates a real Firefox learner
sends are proven in tests/test_live_hidden_hosts.py.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.firefox import Firefox
from tests.helpers.browser import BrowserServer, screenshot_dir, sign_in

pytestmark = pytest.mark.browser

# The learner's media as its page plays it, and as its own RTCPeerConnection saw it.
PLAYING_JS = """() => {
  const v = document.querySelector('#main-video');
  const a = document.querySelector('#class-audio');
  const audio = a.srcObject ? a.srcObject.getAudioTracks() : [];
  return {
    videoWidth: v.videoWidth, videoHeight: v.videoHeight, currentTime: v.currentTime,
    videoPaused: v.paused,
    audioTracks: audio.length, audioLive: audio.length > 0 && audio[0].readyState === 'live',
    audioPaused: a.paused,
  };
}"""
STATS_JS = """async () => {
  const media = document.querySelector('#classroom').estradeMedia;
  if (!media || !media.pc) return null;
  const stats = [];
  (await media.pc.getStats()).forEach((s) => stats.push(s));
  const byId = Object.fromEntries(stats.map((s) => [s.id, s]));
  const inbound = (kind) => stats.find((s) => s.type === 'inbound-rtp' && s.kind === kind) || {};
  const video = inbound('video'), audio = inbound('audio');
  const codec = (s) => (byId[s.codecId] || {}).mimeType || null;
  const local = media.pc.localDescription ? media.pc.localDescription.sdp : '';
  return {
    framesDecoded: video.framesDecoded || 0, videoCodec: codec(video),
    audioPackets: audio.packetsReceived || 0, audioCodec: codec(audio),
    ice: media.pc.iceConnectionState,
    hostCandidates: (local.match(/^a=candidate:.* typ host.*$/gm) || []),
  };
}"""


def _world(server: BrowserServer) -> dict[str, Any]:
    api = server.api()
    trainer = api.user("trainer-ff@example.org", "Trainer FF", "trainer")
    learner = api.user("ff@example.org", "Firmin <i>Fox</i>", "learner", password=None)
    cohort = api.cohort("Class FF")
    for u in (trainer, learner):
        api.enrol(cohort["id"], u["id"])
    return {"trainer": trainer, "cohort": cohort, "link": api.link(cohort["id"], learner["id"])}


def _until_media(firefox: Firefox, server: BrowserServer, within_s: float = 30) -> Any:
    """The learner's stats once a video frame was decoded and an audio packet received."""
    deadline = time.monotonic() + within_s
    while True:
        stats = firefox.eval(STATS_JS)
        if stats and stats["framesDecoded"] > 0 and stats["audioPackets"] > 0:
            return stats
        if time.monotonic() > deadline:
            # What to read next: the server's log (aioice logs its checks) and Firefox's own
            # (rerun with MOZ_LOG=mtransport:5 MOZ_LOG_FILE=/tmp/fflog for its ICE).
            log = (server.data_dir.parent / "server.log").read_text()
            (screenshot_dir().parent / "firefox-server.log").write_text(log)
            page = firefox.eval("() => document.querySelector('#classroom').innerText")
            raise AssertionError(f"no media in Firefox: {stats}\npage: {page[:600]}\n{log[-3000:]}")
        time.sleep(0.3)


@pytest.fixture
def firefox(tmp_path: Path) -> Any:
    browser = Firefox(tmp_path / "firefox.log")
    yield browser
    browser.close()


def test_a_firefox_learner_in_a_chromium_class(
    new_page: Any, live_server: BrowserServer, firefox: Firefox
) -> None:
    w = _world(live_server)
    cid = w["cohort"]["id"]
    trainer = new_page(width=1440)
    sign_in(trainer, w["trainer"]["email"])
    trainer.goto(f"/cohorts/{cid}/console")
    expect(trainer.locator("#session-start")).to_be_visible()

    # The learner opens its join link in Firefox and lands in the classroom.
    firefox.goto(w["link"])
    firefox.wait(f"() => location.pathname === '/classroom/{cid}'")
    firefox.wait("() => document.documentElement.classList.contains('ready')")
    firefox.wait("() => /not started yet/.test(document.querySelector('#stage-state').textContent)")

    # The class starts; the learner joins; the trainer's camera and microphone go live.
    trainer.locator("#session-start").click()
    expect(trainer.locator("#session-end")).to_be_visible()
    firefox.click("#join-class")
    trainer.locator("#media-camera").click()
    trainer.locator("#media-mic").click()

    # Firefox decodes VP8 and receives Opus, and its page plays them: the video element
    # has the camera's size and its time advances; the audio element holds a live track.
    first = _until_media(firefox, live_server)
    firefox.wait("() => document.querySelector('#main-video').videoWidth > 0")
    before = firefox.eval(PLAYING_JS)
    firefox.wait(
        f"() => document.querySelector('#main-video').currentTime > {before['currentTime']} + 1"
    )
    playing = firefox.eval(PLAYING_JS)
    later = firefox.eval(STATS_JS)
    assert playing["videoWidth"] > 0 and playing["videoHeight"] > 0, playing
    assert not playing["videoPaused"], playing
    assert playing["audioTracks"] == 1 and playing["audioLive"], playing
    assert later["framesDecoded"] > first["framesDecoded"], (first, later)
    assert later["audioPackets"] > first["audioPackets"], (first, later)
    assert later["videoCodec"] == "video/VP8", later
    assert later["audioCodec"].lower() == "audio/opus", later
    assert later["ice"] in ("connected", "completed"), later
    # Firefox gathered on loopback, as FIREFOX_PREFS means it to (else the prefs lie).
    assert any(" 127.0.0.1 " in c for c in later["hostCandidates"]), later["hostCandidates"]

    # Chat, both ways.
    firefox.fill("#chat-input", "Bonjour depuis <b>Firefox</b>")
    firefox.click("#chat-send")
    expect(trainer.locator("#chat-log li.msg").last).to_contain_text(
        "Bonjour depuis <b>Firefox</b>"
    )
    expect(trainer.locator("#chat-log li.msg").last).to_contain_text("Firmin <i>Fox</i>")
    trainer.locator("#chat-input").fill("Welcome, Firmin")
    trainer.locator("#chat-send").click()
    firefox.wait(
        "() => [...document.querySelectorAll('#chat-log li.msg')]"
        ".some((li) => li.textContent.includes('Welcome, Firmin'))"
    )

    # A poll launched by the trainer, answered in Firefox.
    trainer.locator("#poll-new summary").click()
    trainer.locator("#poll-question").fill("Which engine?")
    trainer.locator("#poll-choices").fill("Blink\nGecko")
    trainer.locator("#poll-form button[type=submit]").click()
    trainer.locator("#poll-list button.primary").click()
    expect(trainer.locator("#poll-waiting")).to_contain_text("1")
    firefox.wait("() => /Which engine\\?/.test(document.querySelector('#poll-card').textContent)")
    firefox.check("#poll-card input", nth=1)
    firefox.click("#poll-card button[type=submit]")
    firefox.wait("() => document.querySelector('#poll-card .summary') !== null")
    expect(trainer.locator("#poll-waiting")).to_contain_text(re.compile(r"^0\b"))

    # The raised hand shows on the trainer's console.
    firefox.click("#hand")
    expect(trainer.locator("#hand-list li")).to_contain_text("Firmin <i>Fox</i>")
    firefox.wait("() => document.querySelector('#hand').getAttribute('aria-pressed') === 'true'")

    firefox.screenshot(screenshot_dir() / "classroom-firefox-1440.png")
    assert firefox.eval("() => document.querySelector('i') === null")  # names shown as text
    assert firefox.errors() == []
    # The relay counted no failed connection (Firefox's .local candidates failed none).
    metrics = httpx.get(f"{live_server.url}/metrics", timeout=10).text
    assert not re.search(r"^estrade_webrtc_failures_total\{[^}]*\} [1-9]", metrics, re.M), [
        line for line in metrics.splitlines() if line.startswith("estrade_webrtc_failures")
    ]
