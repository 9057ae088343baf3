"""The dispatcher's accepted-message observers (engagement counts hands and reactions so)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from appliance.live import protocol as p
from appliance.live.dispatch import Dispatcher


def test_a_failing_observer_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dispatcher = Dispatcher()
    seen: list[str] = []

    def broken(ctx: Any, msg: Any) -> None:
        raise ValueError("broken observer")

    dispatcher.on_accepted(broken)
    dispatcher.on_accepted(lambda ctx, msg: seen.append(p.tag_of(type(msg))))
    with caplog.at_level(logging.ERROR, logger="estrade.live"):
        dispatcher.accepted(object(), p.Ping(ref="r1"))  # type: ignore[arg-type]
    assert seen == ["ping"]
    assert "broken observer" in caplog.text and "ping" in caplog.text
