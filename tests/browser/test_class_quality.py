"""The "quality lowered" messages (issue 17's defect: classroom.js read media.js's one object as
two arguments, so the message never showed).

The server is made to step learners down through its real path: with
``ESTRADE_MEDIA_STEP_DOWN_LOSS=0`` every second of RTCP receiver reports the learner's chromium
sends counts as bad, so after three the relay moves the learner down the ladder and says so with
``media_quality {automatic: true}``; the learner's page must show it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.browser.test_class_orders import join, open_classroom, open_console, plays, press, world
from tests.helpers.browser import BrowserServer, serve_estrade, sign_in

pytestmark = pytest.mark.browser

LOWERED = {
    "en-US": "Weak connection: the camera is paused",
    "fr-FR": "Connexion faible : la caméra est en pause",
}
#: the first step: the trainer's chromium sends the camera in temporal layers (L1T3)
HALVED = {
    "en-US": "Weak connection: the camera is shown at half its frame rate",
    "fr-FR": "Connexion faible : la caméra passe à la moitié de sa fréquence d",
}


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserServer]:
    yield from serve_estrade(tmp_path_factory, {"ESTRADE_MEDIA_STEP_DOWN_LOSS": "0"})


@pytest.mark.parametrize("locale", ["fr-FR"])
def test_an_automatic_step_down_is_told_to_the_learner(
    new_page: Any, live_server: BrowserServer, locale: str
) -> None:
    w = world(live_server, f"q{locale[:2]}", learners=1)
    cid = w["cohort"]["id"]
    console = new_page(locale=locale)
    sign_in(console, w["trainer"]["email"])
    open_console(console, cid)
    console.locator("#session-start").click()
    press(console, "#media-camera", True)
    press(console, "#media-mic", True)
    press(console, "#media-screen", True)

    learner = new_page(locale=locale)
    open_classroom(learner, w["links"][0], cid)
    join(learner)
    plays(learner)
    # Three reported seconds later the camera goes to half its frame rate, three more a
    # quarter, three more it is paused: the learner is told at each step.
    expect(learner.locator("#stage-state")).to_contain_text(HALVED[locale], timeout=20_000)
    expect(learner.locator("#stage-state")).to_contain_text(LOWERED[locale], timeout=20_000)
    # The trainer sees the learner on low bandwidth.
    expect(console.locator("#people-list li", has_text="Learner 0")).to_have_class(
        "person low_bandwidth", timeout=10_000
    )
