from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from appliance.media import MediaEvent, MediaServer
from appliance.media.forward import Source
from appliance.settings import load_settings


@pytest.fixture(autouse=True)
def short_timers(monkeypatch: pytest.MonkeyPatch) -> None:
    # Coalescing window shortened the way aiortc's tests shorten their timers.
    monkeypatch.setattr(Source, "pli_interval_s", 0.3)


@pytest.fixture
def events() -> list[MediaEvent]:
    return []


@pytest.fixture
def make_server(tmp_path: Path, events: list[MediaEvent]) -> Callable[..., Any]:
    servers: list[MediaServer] = []

    def make(**overrides: Any) -> MediaServer:
        values = {"data_dir": str(tmp_path), "media_interface": "127.0.0.1", **overrides}
        ladder = values.pop("ladder", None)
        server = MediaServer(load_settings(env={}, **values), events.append, ladder)
        servers.append(server)
        return server

    make.servers = servers  # type: ignore[attr-defined]
    return make


@pytest.fixture
async def server(make_server: Callable[..., Any]) -> AsyncIterator[MediaServer]:
    server = make_server()
    yield server
    await server.close()
