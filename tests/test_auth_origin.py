"""The classroom socket's handshake checks Origin (cross-site WebSocket hijacking), on a real
uvicorn with a learner's real cookie."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from appliance.auth.origin import allowed_origins, normalise_origin
from appliance.settings import SettingsError
from tests.helpers.classroom import LiveServer
from tests.helpers.world import World, make_settings


async def _handshake(live: LiveServer, cookie: str, cohort_id: int, origin: str | None) -> Any:
    return await websockets.connect(
        f"ws://127.0.0.1:{live.port}/ws/cohorts/{cohort_id}",
        additional_headers={"Cookie": cookie},
        origin=origin,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://testserver.local.evil"])
async def test_foreign_origin_is_refused_at_the_handshake(
    live: LiveServer, world: World, origin: str
) -> None:
    cookie = await live.cookie(world, "learner")
    with pytest.raises(InvalidStatus) as info:
        await _handshake(live, cookie, world.cohort.id, origin)
    assert info.value.response.status_code == 403
    # Nothing was said in the class on the learner's behalf; the right origin still works.
    ws = await _handshake(live, cookie, world.cohort.id, "http://testserver.local")
    assert '"welcome"' in await asyncio.wait_for(ws.recv(), 5)
    await ws.close()


async def test_public_and_configured_origins_are_accepted(
    app: Any, world: World, tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(
        tmp_path,
        database_url=database_url,
        public_url="https://classe.example.org/",
        secure_cookies=False,  # the test talks plain HTTP to 127.0.0.1
        allowed_origins="https://Autre.Example:8443, http://localhost:8000",
    )
    live = LiveServer(settings).start()
    try:
        cookie = await live.cookie(world, "learner")
        for origin in (
            "https://classe.example.org",
            "https://classe.example.org:443",
            "https://autre.example:8443",
            "http://localhost:8000",
            None,  # not a browser page: no cookie riding, the session check decides
        ):
            ws = await _handshake(live, cookie, world.cohort.id, origin)
            assert '"welcome"' in await asyncio.wait_for(ws.recv(), 5), origin
            await ws.close()
        for origin in ("http://classe.example.org", "https://autre.example", "null"):
            with pytest.raises(InvalidStatus) as info:
                await _handshake(live, cookie, world.cohort.id, origin)
            assert info.value.response.status_code == 403, origin
    finally:
        live.stop()


def test_origin_rules(tmp_path: Path) -> None:
    assert normalise_origin("HTTPS://Classe.Example.org:443/") == "https://classe.example.org"
    assert normalise_origin("http://[::1]:8000") == "http://[::1]:8000"
    assert normalise_origin("null") is None
    assert normalise_origin("https://x.example/path") is None
    assert normalise_origin("https://x.example:99999") is None
    settings = make_settings(tmp_path, public_url="http://127.0.0.1:8000")
    assert allowed_origins(settings) == {"http://127.0.0.1:8000"}
    with pytest.raises(SettingsError, match="allowed_origins"):
        make_settings(tmp_path, allowed_origins="evil.example")
