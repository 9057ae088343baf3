"""A real chromium trainer sends its camera with VP8 temporal layers (L1T3); an aiortc learner
asks for each camera level over its classroom socket and receives exactly that level's layers.

The trainer is TrainerMedia in chromium (fake camera); the learner is an aiortc peer with the
learner's own session cookie and classroom socket, which reads the TID of every frame it gets
from the payload descriptor, decodes the frames (aiortc's libvpx decoder) and counts the
keyframe requests (PLI) it sends: none, since no step leaves a hole.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import re
import time
from typing import Any

import pytest
import websockets

from tests.browser.test_media import TRAINER_JS
from tests.helpers.browser import BrowserServer, sign_in
from tests.helpers.classroom import Peer
from tests.media.peers import Learner

pytestmark = pytest.mark.browser

LEVELS = ("full", "camera_half", "camera_quarter", "full")
TIDS = {"full": {0, 1, 2}, "camera_half": {0, 1}, "camera_quarter": {0}}


async def learn_at_each_level(base: str, cookie: str, cohort_id: int) -> dict[str, Any]:
    url = base.replace("http://", "ws://") + f"/ws/cohorts/{cohort_id}"
    ws = await websockets.connect(url, additional_headers={"Cookie": cookie}, max_size=None)
    sock = Peer(ws)
    learner = Learner()
    try:
        await sock.expect("media_config", timeout=10)
        await sock.send("media_subscribe")
        offer = await sock.expect("media_offer", timeout=10)
        await sock.request("media_answer", sdp=await learner.answer(offer["sdp"]))
        deadline = time.monotonic() + 20
        while learner.frames["video"] < 20:
            assert time.monotonic() < deadline, f"no video: {learner.frames}"
            await sock.quiet(0.2)  # (answers the server's heartbeats meanwhile)
        out: dict[str, Any] = {}
        for level in LEVELS:
            await sock.request("media_quality", level=level)
            await sock.quiet(1.5)  # a step up waits for layer-sync frames
            layers0, frames0, t0 = len(learner.layers), learner.frames["video"], time.monotonic()
            await sock.quiet(4.0)
            wall = time.monotonic() - t0
            out.setdefault(level, []).append(
                {
                    "tids": set(learner.layers[layers0:]),
                    "fps": (learner.frames["video"] - frames0) / wall,
                }
            )
        out["picture_ids"] = list(learner.picture_ids)
        out["plis"] = learner.plis_sent
        out["decoded"] = learner.frames["video"]
        out["received"] = len(learner.layers)
        return out
    finally:
        await learner.close()
        await ws.close()


def test_a_chromium_trainer_sends_l1t3_and_each_level_gets_its_layers(
    new_page: Any, live_server: BrowserServer
) -> None:
    api = live_server.api()
    trainer = api.user("layers-trainer@example.org", "Tess", "trainer")
    learner = api.user("layers-learner@example.org", "Léa", "learner", password=None)
    cohort = api.cohort("Couches")
    api.enrol(cohort["id"], trainer["id"])
    api.enrol(cohort["id"], learner["id"])
    link = api.link(cohort["id"], learner["id"])

    tpage = new_page()
    sign_in(tpage, "layers-trainer@example.org")
    tpage.evaluate(TRAINER_JS, cohort["id"])
    mode = tpage.evaluate(
        "() => window.trainer.transceivers.camera.sender.getParameters().encodings[0]"
        ".scalabilityMode"
    )
    assert mode == "L1T3"

    lpage = new_page()
    lpage.goto(link)
    lpage.wait_for_url(re.compile(f"/classroom/{cohort['id']}$"))
    lpage.goto("/health")  # the classroom page's own socket would take the learner's one
    cookie = "; ".join(f"{c['name']}={c['value']}" for c in lpage.context.cookies())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        got = pool.submit(
            asyncio.run, learn_at_each_level(live_server.url, cookie, cohort["id"])
        ).result(timeout=120)

    for level in LEVELS:
        for window in got[level]:
            # Chromium's own layers (TID 0, 1, 2 at full): exactly those of the level.
            assert window["tids"] == TIDS[level], (level, window)
    # Frame rates against the first window at full (the trainer's encoder may lower its own
    # rate later on a loaded machine; the layers above say what each level let through).
    full = got["full"][0]["fps"]
    half, quarter = got["camera_half"][0]["fps"], got["camera_quarter"][0]["fps"]
    assert full > 8, got  # the trainer's camera is capped at 20 fps
    assert 0.3 * full < half < 0.7 * full, got
    assert 0.1 * full < quarter < 0.4 * full, got
    # One stream for the decoder: consecutive picture ids, every frame decoded, no PLI.
    ids = got["picture_ids"]
    assert all(b == (a + 1) & 0x7FFF for a, b in itertools.pairwise(ids)), ids[:40]
    assert got["plis"] == 0
    assert got["decoded"] >= got["received"] - 3, got
    tpage.evaluate("() => window.trainer.stop()")
