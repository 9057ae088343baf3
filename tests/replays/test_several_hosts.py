"""Recordings with several hosts (#15): a host starting up leaves alone a recording another
host is writing (its files changed in the last ``STALE_S`` seconds), and a cohort that moved
from a dead host closes that host's stale recording when its trainer starts a new one, rather
than refusing "already recording" forever."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import os
import time

import pytest

from appliance.accounts.tables import ClassSession
from appliance.errors import DomainError
from appliance.replays import services
from appliance.replays.tables import Recording, RecordingStatus
from appliance.settings import Settings
from tests.helpers.world import World
from tests.replays.media import write_recording
from tests.replays.test_replays_api import _enable


async def test_another_host_s_recording_is_left_alone_then_closed_once_stale(
    world: World, settings: Settings
) -> None:
    several = dataclasses.replace(settings, redis_url="redis://127.0.0.1:6379/0")
    cid = world.cohort.id
    await _enable(cid)
    cs = ClassSession(cohort=cid, started_at=dt.datetime.now(dt.UTC))
    await cs.save()
    row, _ = await services.start_recording(several, cid, cs.id, world.trainer.id)
    directory = services.directory_of(several, cid, row.id)
    await asyncio.to_thread(write_recording, directory, 1.0, ("audio",), segments=True)

    # Host B starts while host A writes: A's recording stays open.
    assert await services.recover_interrupted(several) == 0
    assert (await services.active_recording(cid)) is not None
    with pytest.raises(DomainError) as refused:
        await services.start_recording(several, cid, cs.id, world.trainer.id)
    assert refused.value.code == "already_recording"

    # Host A died: nothing written for longer than STALE_S. The cohort's new host starts anew.
    old = time.time() - services.STALE_S - 5
    for path in [directory, *directory.iterdir()]:
        os.utime(path, (old, old))
    new, _ = await services.start_recording(several, cid, cs.id, world.trainer.id)
    assert new.id != row.id
    closed = await Recording.objects().where(Recording.id == row.id).first()
    assert closed is not None and closed.status == RecordingStatus.ready.value
    assert closed.end_reason == "server_restarted"
