"""Media signalling over the classroom socket with the relay in worker processes
(``media_workers``, docs/media-workers.md): the same messages and metrics as in one process."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal

import httpx
import pytest

from appliance.media.remote import RemoteMediaServer
from appliance.metrics.operator import overview
from appliance.settings import Settings
from tests.helpers.classroom import LiveServer
from tests.helpers.world import World
from tests.media.peers import Learner, Trainer, wait_for
from tests.test_live_media import metric, publish, subscribe


def at_least(text: str, value: float, name: str, **labels: str) -> bool:
    try:
        return metric(text, name, **labels) >= value
    except AssertionError:  # no sample yet
        return False


async def scrape(live: LiveServer) -> str:
    async with httpx.AsyncClient(base_url=live.base) as http:
        return (await http.get("/metrics")).text


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, media_workers=2)


async def test_a_class_through_media_workers(live: LiveServer, world: World) -> None:
    cid = world.cohort.id
    media = live.app.state.media.server
    assert isinstance(media, RemoteMediaServer)
    pids = {w.process.pid for w in media.workers if w.process is not None}
    assert len(pids) == 2 and os.getpid() not in pids

    tsock = await live.connect(await live.cookie(world, "trainer"), cid)
    lsock = await live.connect(await live.cookie(world, "learner"), cid)
    for sock in (tsock, lsock):
        await sock.expect("media_config")
    trainer, learner = Trainer(), Learner()
    try:
        await tsock.request("session_start")
        await publish(tsock, trainer)
        tracks = await lsock.expect("media_tracks")
        while not tracks["tracks"]["camera"]:
            tracks = await lsock.expect("media_tracks")
        await subscribe(lsock, learner)
        await wait_for(lambda: learner.frames["video"] >= 10, within=20)
        await wait_for(lambda: learner.frames["audio"] >= 10, within=10)
        room = media.get_room(cid)
        assert room is not None and room.learner_ids == (world.learner.id,)

        # The step comes from the worker, after the request's ack (in one process: before).
        await lsock.request("media_quality", level="audio")
        step = await lsock.expect("media_quality", timeout=5)
        assert step == {"type": "media_quality", "level": "audio", "automatic": False,
                        "reason": "requested"}  # fmt: skip

        # The workers' observer calls and pushed stats reach /metrics in the web process.
        c = str(cid)
        text = await scrape(live)
        for _ in range(30):  # stats arrive every second, observer calls every 0.5 s
            if (
                f'estrade_media_learners_subscribed{{cohort_id="{c}"}} 1.0' in text
                and at_least(text, 2, "estrade_webrtc_connections_total", path="direct")
                and at_least(text, 1, "estrade_join_to_first_frame_seconds_count")
            ):
                break
            await asyncio.sleep(0.2)
            text = await scrape(live)
        assert metric(text, "estrade_media_learners_subscribed", cohort_id=c) == 1
        assert metric(text, "estrade_webrtc_connections_total", path="direct") >= 2
        assert metric(text, "estrade_join_to_first_frame_seconds_count") >= 1
        # Per worker (label: its index): the room's worker has the learner and used CPU.
        busy = str(room.worker.index)
        assert metric(text, "estrade_media_worker_up", worker="0") == 1
        assert metric(text, "estrade_media_worker_up", worker="1") == 1
        assert metric(text, "estrade_media_worker_learners", worker=busy) == 1
        assert metric(text, "estrade_media_worker_rooms", worker=busy) == 1
        assert metric(text, "estrade_media_worker_cpu_seconds_total", worker=busy) > 0
        assert metric(text, "estrade_media_worker_loop_lag_seconds", worker=busy) >= 0
        # The operator's overview lists the workers too.
        view = overview(live.app.state.metrics.snapshot())
        assert [(w.worker, w.up) for w in view.workers] == [(0, True), (1, True)]
        assert sum(w.learners for w in view.workers) == 1

        # The learner's socket closes: its connection in the worker is dropped.
        await lsock.close()
        await wait_for(lambda: room.learner_ids == (), within=5)
    finally:
        await trainer.close()
        await learner.close()
        await tsock.close()
    await wait_for(lambda: media.get_room(cid) is None, within=5)


async def test_a_killed_media_worker_is_restarted_and_the_class_resumes(
    live: LiveServer, world: World
) -> None:
    cid = world.cohort.id
    media = live.app.state.media.server
    assert isinstance(media, RemoteMediaServer)
    tsock = await live.connect(await live.cookie(world, "trainer"), cid)
    lsock = await live.connect(await live.cookie(world, "learner"), cid)
    for sock in (tsock, lsock):
        await sock.expect("media_config")
    peers: list[Trainer | Learner] = []
    try:
        await tsock.request("session_start")
        trainer, learner = Trainer(), Learner()
        peers += [trainer, learner]
        await publish(tsock, trainer)
        await lsock.expect("media_tracks", tracks={"audio": True, "camera": True, "screen": False})
        await subscribe(lsock, learner)
        await wait_for(lambda: learner.frames["video"] >= 10, within=20)
        room = media.get_room(cid)
        assert room is not None and room.worker.process is not None
        index, pid = room.worker.index, room.worker.process.pid

        os.kill(pid, signal.SIGKILL)
        # Both pages are told; the tracks go off for the cohort.
        await tsock.expect("media_closed", reason="relay_restarted")
        await lsock.expect("media_closed", reason="relay_restarted")
        off = {"audio": False, "camera": False, "screen": False}
        await lsock.expect("media_tracks", tracks=off)
        # Chat does not depend on the media workers.
        await lsock.request("chat_send", text="still here?")
        await tsock.expect("chat_message")
        await wait_for(lambda: media.restarts == {index: 1}, within=10)
        fresh = media.workers[index]
        assert fresh.process is not None and fresh.process.pid != pid
        text = await scrape(live)
        assert metric(text, "estrade_media_worker_restarts_total", worker=str(index)) == 1
        assert metric(text, "estrade_media_worker_restarts_total", worker=str(1 - index)) == 0

        # What the pages do on media_closed: the trainer publishes from a new peer connection,
        # the learner subscribes again once the tracks are back.
        again, back = Trainer(), Learner()
        peers += [again, back]
        await publish(tsock, again)
        await lsock.expect("media_tracks", tracks={"audio": True, "camera": True, "screen": False})
        await subscribe(lsock, back)
        await wait_for(lambda: back.frames["video"] >= 10, within=10)
        assert back.assembled_keyframes[0]
    finally:
        for peer in peers:
            await peer.close()
        await lsock.close()
        await tsock.close()
