"""The relay in a real worker process, driven from this process as the web side would."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from appliance.media import (
    LearnerClosed,
    MediaError,
    MediaEvent,
    PublisherClosed,
    QualityChanged,
    TracksChanged,
)
from appliance.media.remote import (
    RemoteMediaServer,
    spawn_worker,
    worker_port_slice,
    worker_settings,
)
from appliance.media.server import MediaServerStats
from appliance.media.wire import Configure, FromWorker, Observed, StatsPush, Subscribe
from appliance.settings import SettingsError, load_settings

from .peers import Learner, Trainer, wait_for


class Recorder:
    """An observer that notes each call (any method name), as the web process's metrics would."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, args, kwargs))

        return record

    def names(self) -> set[str]:
        return {name for name, _, _ in self.calls}


def test_workers_get_disjoint_equal_slices_of_the_port_range() -> None:
    slices = [worker_port_slice(40000, 40099, k, 3) for k in range(3)]
    assert slices == [(40000, 40032), (40033, 40065), (40066, 40098)]
    assert worker_port_slice(0, 0, 1, 2) == (0, 0)  # no range: ephemeral ports
    with pytest.raises(SettingsError, match="fewer ports than 4 workers"):
        worker_port_slice(40000, 40002, 0, 4)
    with pytest.raises(SettingsError, match="not within"):
        worker_port_slice(40000, 40099, 2, 2)


def test_stats_and_observer_calls_survive_the_wire() -> None:
    from appliance.media.room import LearnerMediaStats, MediaRoomStats

    learner = LearnerMediaStats("full", "full", None, 0.01, 0.0, 0.2, "connected", False, "direct")
    room = MediaRoomStats(
        ["audio"], 1, 10, 1000, 5, 0, 5, 900, 1.5e5, 9, 0, 1, 0, 0, 0, 0, 0.1, [0.2], {7: learner}
    )
    stats = MediaServerStats(1, 0, 0, 0, {3: room})
    decoder = msgspec.msgpack.Decoder(FromWorker)
    assert decoder.decode(msgspec.msgpack.encode(StatsPush(stats=stats))) == StatsPush(stats=stats)
    call = Observed(method="learner_report", args=(3,), kwargs={"rtt_s": 0.1, "loss_ratio": 0.0})
    assert decoder.decode(msgspec.msgpack.encode(call)) == call
    with pytest.raises(msgspec.ValidationError):  # only the observer's methods can be named
        decoder.decode(msgspec.msgpack.encode({"t": "observed", "method": "__del__"}))


async def test_observer_calls_are_gathered_into_one_message_per_window() -> None:
    from appliance.media.wire import ObservedBatch
    from appliance.media.worker import ChannelObserver

    sent: list[object] = []
    observer = ChannelObserver(sent.append, flush_s=0.05)
    observer.nack("sent")
    observer.learner_report(3, rtt_s=0.1, loss_ratio=0.0)
    observer.nack("sent", 2)
    observer.pli("received")
    observer.nack("received")
    observer.first_frame(0.5)
    assert sent == []  # nothing until the window ends
    await asyncio.sleep(0.2)
    decoder = msgspec.msgpack.Decoder(FromWorker)
    assert [decoder.decode(msgspec.msgpack.encode(m)) for m in sent] == [
        ObservedBatch(
            calls=[
                Observed(method="nack", args=("sent", 3)),
                Observed(
                    method="learner_report", args=(3,), kwargs={"rtt_s": 0.1, "loss_ratio": 0.0}
                ),
                Observed(method="pli", args=("received", 1)),
                Observed(method="nack", args=("received", 1)),
                Observed(method="first_frame", args=(0.5,)),
            ]
        )
    ]
    observer.ice_failed()
    observer.flush()  # at once (the worker flushes when it stops)
    assert sent[1] == ObservedBatch(calls=[Observed(method="ice_failed")])
    await asyncio.sleep(0.1)
    assert len(sent) == 2  # the flushed window's timer was cancelled


Remote = tuple[RemoteMediaServer, list[MediaEvent], Recorder]


@pytest.fixture
async def remote(tmp_path: Path) -> AsyncIterator[Remote]:
    settings = load_settings(env={}, data_dir=tmp_path, media_interface="127.0.0.1")
    events: list[MediaEvent] = []
    observer = Recorder()
    server = RemoteMediaServer(settings, events.append, observer=observer)  # type: ignore[arg-type]
    try:
        await server.start(1)
        yield server, events, observer
    finally:
        await server.close()


async def test_a_trainer_reaches_a_learner_through_a_worker_process(
    remote: Remote,
) -> None:
    server, events, observer = remote
    process = server.workers[0].process
    assert process is not None and process.pid != os.getpid()
    room = server.room(1)
    assert server.room(1) is room and server.get_room(2) is None
    trainer, learner = Trainer(), Learner()
    try:
        await trainer.publish(room)
        await learner.join(room, 10)
        await wait_for(lambda: learner.frames["video"] >= 30, within=20)
        await wait_for(lambda: learner.frames["audio"] >= 20, within=10)
        assert learner.assembled_keyframes[0]  # the learner started on a keyframe
        assert TracksChanged(1, ("audio", "camera")) in events
        assert room.live == ("audio", "camera")

        # Refusals cross as the same MediaError codes as in one process.
        with pytest.raises(MediaError) as refused:
            room.set_quality(10, "sepia")
        assert refused.value.code == "bad_level"
        with pytest.raises(MediaError) as refused:
            await room.accept_answer(99, learner.pc.localDescription.sdp)
        assert refused.value.code == "no_offer"

        room.set_quality(10, "audio")
        await wait_for(lambda: QualityChanged(1, 10, "audio", False, "requested") in events)

        # The worker's observer calls reach this process's metrics; its stats too.
        await wait_for(lambda: {"first_frame", "connection_established"} <= observer.names())
        stats = await server.fetch_stats()
        assert stats.rooms == 1 and stats.by_room[1].learners == 1
        assert stats.by_room[1].frames_forwarded > 0 or stats.by_room[1].bytes_forwarded > 0
        assert 10 in stats.by_room[1].per_learner
        await wait_for(lambda: server.stats().rooms == 1, within=3)  # pushed every second

        await room.leave(10)
        await wait_for(lambda: LearnerClosed(1, 10, "left") in events)
        assert room.learners == set()
        await server.close_room(1)
        assert server.get_room(1) is None
    finally:
        await trainer.close()
        await learner.close()
    await server.close()
    assert process.returncode == 0  # it closed its peers and exited on its own


async def test_a_dead_worker_fails_its_requests_and_is_restarted(remote: Remote) -> None:
    server, events, _observer = remote
    dead = server.workers[0]
    assert dead.process is not None
    room = server.room(1)
    trainer = Trainer()
    try:
        await trainer.publish(room)
        await wait_for(lambda: room.live == ("audio", "camera"))
        dead.process.kill()
        await asyncio.wait_for(dead.lost.wait(), 10)
        with pytest.raises(MediaError) as refused:
            await room.subscribe(10)
        assert refused.value.code == "media_unavailable"
        # Its rooms are gone; the class is told the tracks are off. With no other worker alive
        # the trainer is told to publish again only once this one is back.
        assert server.get_room(1) is None
        assert TracksChanged(1, ()) in events
        assert PublisherClosed(1, "relay_restarted") not in events
        await room.unpublish()  # nothing to undo: no error

        # A new worker takes its place, and the trainer publishes again through it.
        await wait_for(lambda: not server.workers[0].lost.is_set(), within=10)
        await wait_for(lambda: server.restarts == {0: 1}, within=10)
        assert PublisherClosed(1, "relay_restarted") in events
        fresh = server.workers[0]
        assert fresh is not dead and fresh.process is not None
        assert fresh.process.pid != dead.process.pid
        assert dead.process.returncode == -9
        again, learner = Trainer(), Learner()
        try:
            room = server.room(1)
            await again.publish(room)
            await learner.join(room, 10)
            await wait_for(lambda: learner.frames["video"] >= 10, within=20)
        finally:
            await again.close()
            await learner.close()
    finally:
        await trainer.close()


async def test_a_worker_refuses_bad_settings_and_a_channel_not_opened_by_configure() -> None:
    messages: list[FromWorker] = []
    worker = await spawn_worker(0, lambda _index, message: messages.append(message))
    try:
        with pytest.raises(MediaError) as refused:
            await worker.request(
                lambda i: Configure(id=i, index=0, settings={"media_max_rooms": 0})
            )
        assert refused.value.code == "bad_settings"
        assert "media_max_rooms" in refused.value.message
        await asyncio.wait_for(worker.lost.wait(), 10)  # it stopped: nothing to serve with
    finally:
        await worker.close()
    assert worker.process is not None and worker.process.returncode == 0

    worker = await spawn_worker(1, lambda _index, message: messages.append(message))
    try:
        with pytest.raises(MediaError) as refused:
            await worker.request(lambda i: Subscribe(id=i, cohort=1, learner=2))
        assert refused.value.code == "media_unavailable"
    finally:
        await worker.close()
    assert worker.process is not None and worker.process.returncode == 0
    assert messages == []


def candidate_ports(sdp: str) -> set[int]:
    return {int(line.split()[5]) for line in sdp.splitlines() if line.startswith("a=candidate:")}


async def test_rooms_go_to_the_least_loaded_worker_each_in_its_own_port_slice(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        env={},
        data_dir=tmp_path,
        media_interface="127.0.0.1",
        media_port_min=41100,
        media_port_max=41119,
        media_workers=2,
        media_max_rooms=3,
    )
    server = RemoteMediaServer(settings)
    trainers = [Trainer(), Trainer()]
    try:
        await server.start(2)
        first, second = server.room(1), server.room(2)
        assert (first.worker.index, second.worker.index) == (0, 1)
        answers = [
            await room.publish(await t.offer())
            for room, t in zip((first, second), trainers, strict=True)
        ]
        assert candidate_ports(answers[0]) and candidate_ports(answers[0]) <= set(
            range(41100, 41110)
        )
        assert candidate_ports(answers[1]) and candidate_ports(answers[1]) <= set(
            range(41110, 41120)
        )
        # A learner on the first room makes the second worker the less loaded one.
        learner = Learner()
        try:
            await trainers[0].answer(answers[0])
            await learner.join(first, 10)
            assert server.room(3).worker.index == 1
        finally:
            await learner.close()
    finally:
        for t in trainers:
            await t.close()
        await server.close()


def test_a_worker_gets_the_web_process_settings_with_its_slice_and_no_unused_secrets(
    tmp_path: Path,
) -> None:
    settings = load_settings(
        env={},
        data_dir=tmp_path,
        media_port_min=41200,
        media_port_max=41299,
        media_workers=2,
        secret_key="k" * 32,
        metrics_token="t" * 16,
        turn_url="turn:127.0.0.1:3478",
        turn_secret="shared",
        media_max_rooms=7,
    )
    values = worker_settings(settings, 1, 2)
    got = load_settings(env={}, **msgspec.msgpack.decode(msgspec.msgpack.encode(values)))
    assert (got.media_port_min, got.media_port_max) == (41250, 41299)
    assert got.secret_key == "" and got.metrics_token == ""
    assert got.turn_secret == "shared"  # the relay's own TURN allocation needs it
    assert got.data_dir == settings.data_dir and got.media_max_rooms == 7


async def test_a_worker_that_keeps_dying_is_restarted_less_and_less_often(remote: Remote) -> None:
    server, _events, _observer = remote
    # Delays of 1, 2, 4 s: the spawn-and-configure time added to each (up to ~1.5 s under CI
    # load) stays smaller than the steps (0.2, 0.4, 0.8 s failed once: 1.68 s vs 1.65 s).
    server.restart_delay_s = 1.0
    seen: list[float] = []
    for n in range(1, 4):
        worker = server.workers[0]
        assert worker.process is not None
        worker.process.kill()
        await asyncio.wait_for(worker.lost.wait(), 10)
        died = asyncio.get_running_loop().time()
        await wait_for(lambda n=n: server.restarts[0] == n, within=10)  # up and configured
        seen.append(asyncio.get_running_loop().time() - died)
    # 1, 2, 4 s (plus the time to reap, spawn and configure): each wait longer.
    assert seen[0] >= 1.0 and seen[1] >= 2.0 and seen[2] >= 4.0, seen
    assert seen[0] < seen[2], seen
