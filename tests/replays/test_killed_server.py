"""kill -9 while a class is recorded: ``estrade serve`` in its own process, the recording
started over the socket, the recorder's open segments on disk (tests/replays/media.py in the
contract's layout), SIGKILL; the next start finalizes the recording and the replay is listed
and served (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.replays import services
from appliance.replays.tables import RecordingPolicy
from appliance.settings import Settings
from tests.helpers.classroom import ProcessServer
from tests.helpers.world import World
from tests.replays.media import write_recording


@pytest.fixture
def served(app: Any, world: World, settings: Settings, tmp_path: Path) -> Iterator[ProcessServer]:
    server = ProcessServer(settings, tmp_path / "server.log").start()
    yield server
    server.stop()


async def test_a_killed_server_s_recording_is_finalized_at_the_next_start(
    served: ProcessServer, world: World, settings: Settings, tmp_path: Path
) -> None:
    await RecordingPolicy(cohort=world.cohort.id, enabled=True).save()
    trainer = await served.connect(await served.cookie(world, "trainer"), world.cohort.id)
    await trainer.request("session_start")
    await trainer.request("recording_start")
    on = await trainer.expect("recording_changed", recording=True)
    directory = services.directory_of(settings, world.cohort.id, on["recording_id"])
    # Two closed segments per kind and a third cut in the middle of a write (no Cues, no end).
    await asyncio.to_thread(write_recording, directory, 2.0, ("camera", "audio"), segments=True)
    for kind in ("camera", "audio"):
        first = directory / f"{kind}-0001.webm"
        whole = first.read_bytes()
        (directory / f"{kind}-0002.webm").write_bytes(whole[: len(whole) * 2 // 3])
    assert served.process is not None
    served.process.send_signal(signal.SIGKILL)
    served.process.wait()
    await served.close_peers()

    again = ProcessServer(settings, tmp_path / "again.log").start()
    try:
        assert "finalized 1 recording(s) left open" in again.log()
        async with httpx.AsyncClient(base_url=again.base, timeout=30) as c:
            c.headers["cookie"] = await again.cookie(world, "learner")
            listed = (await c.get(f"/api/cohorts/{world.cohort.id}/replays/")).json()
            assert [r["id"] for r in listed] == [on["recording_id"]], listed
            assert set(listed[0]["files"]) == {"audio", "camera"}
            assert listed[0]["duration_s"] == pytest.approx(2.0, abs=0.2)
            video = await c.get(listed[0]["files"]["camera"])
            assert video.status_code == 200 and video.content[:4] == b"\x1aE\xdf\xa3"
        assert sorted(p.name for p in directory.iterdir()) == ["audio.webm", "camera.webm"]
    finally:
        again.stop()
