"""Real chromium as trainer and as learner, through the relay of a real `estrade serve`.

The trainer's fake camera and microphone (--use-fake-device-for-media-stream) are published by
TrainerMedia; the learner receives them through LearnerMedia; the learner's own
``pc.getStats()`` must show video frames decoded (growing) and audio packets received. The
modules are driven from a page of the app's origin (a secure context), as the classroom pages
will drive them.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest

from tests.helpers.browser import BrowserServer, sign_in

pytestmark = pytest.mark.browser

TRAINER_JS = """async (cohortId) => {
  const { Classroom } = await import("/static/js/protocol.js");
  const { TrainerMedia } = await import("/static/js/media.js");
  const room = new Classroom(cohortId);
  const configured = new Promise((resolve) => room.on("media_config", resolve));
  room.connect();
  await configured;
  const media = new TrainerMedia(room);
  window.trainerErrors = [];
  media.on("error", (e) => window.trainerErrors.push(e.code));
  await media.start({ mic: true, camera: true });
  window.trainer = media;
  const enc = media.transceivers.camera.sender.getParameters().encodings[0];
  return { local: media.localStream.getTracks().map((t) => t.kind).sort(),
           maxBitrate: enc.maxBitrate, maxFramerate: enc.maxFramerate };
}"""

LEARNER_JS = """async (cohortId) => {
  const { Classroom } = await import("/static/js/protocol.js");
  const { LearnerMedia } = await import("/static/js/media.js");
  const room = new Classroom(cohortId);
  const configured = new Promise((resolve) => room.on("media_config", resolve));
  room.connect();
  await configured;
  window.tracksSeen = [];
  window.qualities = [];
  const media = new LearnerMedia(room, {
    onTracks: (t) =>
      window.tracksSeen.push({ camera: !!t.camera, screen: !!t.screen, audio: !!t.audio }),
    onQuality: (q) => window.qualities.push(q),
    onClosed: (reason) => window.tracksSeen.push({ closed: reason }),
  });
  window.learner = media;
  window.joinedAt = performance.now();
  await media.start();
  return true;
}"""

STATS_JS = """async () => {
  const out = { framesDecoded: 0, audioPackets: 0, codecs: [], at: performance.now(),
                videoJitter: null, videoReceived: 0, videoLost: 0, audioJitter: null,
                videoReportedSent: null, reports: 0, rtt: null };
  const report = await window.learner.pc.getStats();
  const codecs = {};
  report.forEach((r) => { if (r.type === "codec") codecs[r.id] = r.mimeType; });
  report.forEach((r) => {
    if (r.type === "candidate-pair" && r.nominated && r.currentRoundTripTime !== undefined)
      out.rtt = r.currentRoundTripTime;
    // The relay's sender reports, as the browser read them.
    if (r.type === "remote-outbound-rtp" && r.kind === "video") {
      out.videoReportedSent = r.packetsSent;
      out.reports = r.reportsSent || 0;
    }
    if (r.type !== "inbound-rtp") return;
    if (r.kind === "video") {
      out.framesDecoded += r.framesDecoded || 0;
      out.videoJitter = r.jitter;
      out.videoReceived = r.packetsReceived || 0;
      out.videoLost = r.packetsLost || 0;
    }
    if (r.kind === "audio") {
      out.audioPackets += r.packetsReceived || 0;
      out.audioJitter = r.jitter;
    }
    if (r.codecId && codecs[r.codecId]) out.codecs.push(codecs[r.codecId]);
  });
  return out;
}"""


def poll(page: Any, js: str, until: Any, within: float = 20.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        value = page.evaluate(js)
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {within}s: {value}")
        time.sleep(0.1)


def test_trainer_publishes_camera_and_mic_learner_decodes(
    new_page: Any, live_server: BrowserServer
) -> None:
    api = live_server.api()
    trainer = api.user("media-trainer@example.org", "Tess", "trainer")
    learner = api.user("media-learner@example.org", "Léa", "learner", password=None)
    cohort = api.cohort("Média")
    api.enrol(cohort["id"], trainer["id"])
    api.enrol(cohort["id"], learner["id"])
    link = api.link(cohort["id"], learner["id"])

    tpage = new_page()
    sign_in(tpage, "media-trainer@example.org")
    published = tpage.evaluate(TRAINER_JS, cohort["id"])
    assert published["local"] == ["audio", "video"]
    assert published["maxBitrate"] == 700_000 and published["maxFramerate"] == 20

    lpage = new_page()
    lpage.goto(link)
    # The link page joins (a POST from the page), then opens the classroom.
    lpage.wait_for_url(re.compile(f"/classroom/{cohort['id']}$"))
    # Off the classroom page, whose own socket would share the session's one-socket limit.
    lpage.goto("/health")
    assert lpage.evaluate(LEARNER_JS, cohort["id"]) is True
    first = poll(lpage, STATS_JS, lambda s: s["framesDecoded"] > 0)
    join_to_first_frame_s = (first["at"] - lpage.evaluate("window.joinedAt")) / 1000
    lpage.wait_for_timeout(2000)
    later = lpage.evaluate(STATS_JS)
    assert later["framesDecoded"] > first["framesDecoded"] + 10, (first, later)
    assert later["audioPackets"] > 50, later
    assert sorted(set(later["codecs"])) == ["audio/opus", "video/VP8"], later
    # The relay's stream looks healthy to the browser: jitter (seconds) and the ICE round
    # trip small on loopback, few losses, and sender reports that count what arrived.
    assert 0 <= later["videoJitter"] < 0.1 and 0 <= later["audioJitter"] < 0.1, later
    assert later["rtt"] is not None and 0 <= later["rtt"] < 0.5, later
    assert later["videoLost"] <= max(2, later["videoReceived"] // 100), later
    reported = poll(lpage, STATS_JS, lambda s: s["reports"] >= 2)
    assert reported["videoReportedSent"] is not None
    # A report counts packets sent before it; the browser's count grows after it.
    assert 0 < reported["videoReportedSent"] <= reported["videoReceived"] + reported["videoLost"]
    assert reported["videoReceived"] - reported["videoReportedSent"] < 300, reported
    seen = lpage.evaluate("window.tracksSeen")
    assert seen[-1] == {"camera": True, "screen": False, "audio": True}, seen

    # The trainer turns the camera off and on: learners see the track go and come back.
    tpage.evaluate("() => window.trainer.setCamera(false)")
    poll(lpage, "() => window.tracksSeen.at(-1)", lambda t: t.get("camera") is False, 10)
    tpage.evaluate("() => window.trainer.setCamera(true)")
    poll(lpage, "() => window.tracksSeen.at(-1)", lambda t: t.get("camera") is True, 10)
    again = lpage.evaluate(STATS_JS)
    poll(lpage, STATS_JS, lambda s: s["framesDecoded"] > again["framesDecoded"] + 10, 20)

    # The learner's low-bandwidth choice: audio only, said to the learner.
    lpage.evaluate("() => window.learner.setQuality('audio')")
    poll(lpage, "() => window.qualities", lambda q: q and q[-1]["level"] == "audio", 10)
    assert lpage.evaluate("window.tracksSeen.at(-1)")["camera"] is False
    assert tpage.evaluate("window.trainerErrors") == []
    print(
        json.dumps(
            {
                "browser_frames_decoded": later["framesDecoded"],
                "browser_audio_packets": later["audioPackets"],
                "browser_join_to_first_frame_s": round(join_to_first_frame_s, 3),
                "browser_video_jitter_s": later["videoJitter"],
                "browser_ice_rtt_s": later["rtt"],
            }
        )
    )
    lpage.evaluate("() => window.learner.stop()")
    tpage.evaluate("() => window.trainer.stop()")
