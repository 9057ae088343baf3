"""Recording through the app's MediaBridge (docs/recordings.md): served app, real aiortc trainer.

The replay side calls ``MediaBridge.start_recording`` / ``stop_recording`` and listens with
``recording_listener``; this drives them the same way, on the server's own event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import httpx

from appliance.media import RecordingEnded
from tests.helpers.classroom import LiveServer
from tests.helpers.world import World
from tests.media.peers import Trainer, wait_for
from tests.media.test_recording import decode_errors
from tests.test_live_media import metric, publish


def on_server_loop(live: LiveServer, coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` on the served app's event loop (the relay's), wait for its result."""
    loop = live.app.state.media.server._monitor.get_loop()  # runs since a room opened
    return asyncio.run_coroutine_threadsafe(coro, loop).result(30)


async def scrape(live: LiveServer) -> str:
    async with httpx.AsyncClient(base_url=live.base) as http:
        return (await http.get("/metrics")).text


async def test_a_recording_ends_when_the_class_room_closes(
    live: LiveServer, world: World, tmp_path: Path
) -> None:
    cid = world.cohort.id
    bridge = live.app.state.media
    ended: list[RecordingEnded] = []

    async def listener(event: RecordingEnded) -> None:
        ended.append(event)

    bridge.recording_listener = listener
    directory = Path(live.settings.data_dir) / "recordings" / str(cid) / "1"
    tsock = await live.connect(await live.cookie(world, "trainer"), cid)
    trainer = Trainer()
    try:
        await tsock.expect("media_config")
        await tsock.request("session_start")
        await publish(tsock, trainer)
        on_server_loop(live, bridge.start_recording(cid, directory))
        assert bridge.recording(cid)
        await asyncio.sleep(3)
        text = await scrape(live)
        assert metric(text, "estrade_recordings_active") == 1
        assert metric(text, "estrade_recording_written_bytes_total") > 10_000
        assert metric(text, "estrade_recording_segments_failed_total") == 0
        assert metric(text, "estrade_recordings_disk_free_bytes") > 0
        assert metric(text, "estrade_recordings_disk_size_bytes") >= metric(
            text, "estrade_recordings_disk_free_bytes"
        )
    finally:
        await tsock.close()  # the last socket: the room closes, and the recording with it
        await trainer.close()
    await wait_for(lambda: bool(ended), within=20)
    (event,) = ended
    assert event.cohort_id == cid and event.directory == str(directory)
    assert event.reason == "room_closed"
    assert event.result is not None and set(event.result.files) == {"audio", "camera"}
    assert 2.5 < event.result.duration_s < 5
    for kind in event.result.files:
        assert decode_errors(directory / f"{kind}.webm") == ""
    assert not bridge.recording(cid)
    assert metric(await scrape(live), "estrade_recordings_active") == 0
    on_server_loop(live, bridge.stop_recording(cid))  # no recording: nothing happens
    assert len(ended) == 1
