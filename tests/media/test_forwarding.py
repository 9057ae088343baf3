"""Publisher -> relay -> learners, with real aiortc peers on 127.0.0.1."""

from __future__ import annotations

import asyncio

from aiortc.codecs import vpx

from appliance.media import MediaServer, TracksChanged
from appliance.media.forward import AudioTap, Source, VideoTap

from .peers import Learner, Trainer, wait_for


async def test_two_learners_decode_the_trainers_frames(server: MediaServer, events: list) -> None:
    room = server.room(1)
    trainer = Trainer()
    a, b = Learner(), Learner()
    try:
        await trainer.publish(room)
        assert TracksChanged(1, ("audio", "camera")) in events
        await a.join(room, 10)
        await b.join(room, 11)
        await wait_for(lambda: min(a.frames["video"], b.frames["video"]) >= 30)
        await wait_for(lambda: min(a.frames["audio"], b.frames["audio"]) >= 20)
        assert set(a.sizes) == {(320, 240)} == set(b.sizes)
        stats = server.stats().by_room[1]
        assert stats.learners == 2
        assert stats.tracks_published == ["audio", "camera"]
        assert stats.frames_forwarded > 0
        assert all(0 < t < 2 for t in stats.join_to_first_frame_s)
        # Nothing was decoded on the relay: the decoder queues of the trainer's receivers
        # never got a frame, and no decoded frame waits in their tracks.
        for transceiver in room._publisher.getTransceivers():
            receiver = transceiver.receiver
            assert isinstance(receiver._RTCRtpReceiver__jitter_buffer, AudioTap | VideoTap)
            assert receiver._RTCRtpReceiver__decoder_queue.qsize() == 0
            assert receiver.track._queue.qsize() == 0
    finally:
        for peer in (trainer, a, b):
            await peer.close()


async def test_a_late_learner_starts_at_a_keyframe(server: MediaServer) -> None:
    room = server.room(1)
    trainer = Trainer()
    early, late = Learner(), Learner()
    try:
        await trainer.publish(room)
        await early.join(room, 10)
        await wait_for(lambda: early.frames["video"] >= 10)
        await asyncio.sleep(1.0)  # mid-class: the publisher is far from its first keyframe
        await late.join(room, 11)
        await wait_for(lambda: late.frames["video"] >= 5)
        assert late.assembled_keyframes[0] is True
        assert not any(late.assembled_keyframes[1:5])  # then ordinary delta frames
        assert trainer.plis_received >= 1  # the relay asked the trainer for that keyframe
        assert late.first_frame_at is not None
        assert late.first_frame_at - late.started_at < 1.5
    finally:
        for peer in (trainer, early, late):
            await peer.close()


async def test_learner_plis_are_coalesced_and_reach_the_trainer(server: MediaServer) -> None:
    room = server.room(1)
    trainer = Trainer()
    learner = Learner()
    try:
        await trainer.publish(room)
        await learner.join(room, 10)
        await wait_for(lambda: learner.frames["video"] >= 10)
        await asyncio.sleep(0.5)
        before = trainer.plis_received
        stats_before = room.stats()
        for _ in range(10):
            await learner.send_pli()
        await wait_for(lambda: trainer.plis_received > before)
        await asyncio.sleep(0.2)
        stats = room.stats()
        assert stats.plis_in - stats_before.plis_in == 10
        # ten requests within the coalescing window -> one PLI upstream
        assert stats.plis_out - stats_before.plis_out == 1
        assert trainer.plis_received - before == 1
    finally:
        for peer in (trainer, learner):
            await peer.close()


async def test_a_request_held_back_by_the_coalescing_window_is_sent_when_it_ends(
    server: MediaServer, monkeypatch
) -> None:
    monkeypatch.setattr(Source, "pli_interval_s", 1.5)
    # No kept keyframe for arriving learners (the lean path's): every join asks for one.
    monkeypatch.setattr(Source, "gop_max", 1)
    # A constant bitrate: aiortc's VP8 encoder restarts (with a keyframe) when REMB moves it,
    # and those keyframes would hide a request that never reaches the trainer.
    for name in ("DEFAULT_BITRATE", "MIN_BITRATE", "MAX_BITRATE"):
        monkeypatch.setattr(vpx, name, 500_000)
    room = server.room(1)
    trainer = Trainer()
    first, second = Learner(), Learner()
    try:
        await trainer.publish(room)
        await wait_for(lambda: room.stats().frames_in > 10)  # the trainer is streaming
        await first.join(room, 10)  # -> a PLI now
        await wait_for(lambda: first.frames["video"] >= 5)  # its keyframe came: nothing pending
        assert room.stats().plis_out == 1
        plis = trainer.plis_received
        await second.join(room, 11)  # within the window of the first learner's PLI
        await wait_for(lambda: second.frames["video"] >= 1, within=5)
        assert second.first_frame_at - second.started_at > 0.5  # it did wait for the window
        assert second.assembled_keyframes[0] is True
        assert trainer.plis_received == plis + 1  # the deferred one, not two
    finally:
        for peer in (trainer, first, second):
            await peer.close()


async def test_the_room_reports_its_outbound_bitrate(server: MediaServer) -> None:
    """What the operator page shows as "Sent": measured from the bytes forwarded each second,
    about twice one learner's share with two learners, and back to zero when the trainer stops."""
    room = server.room(1)
    trainer = Trainer()
    a, b = Learner(), Learner()

    def bitrate() -> float:
        return server.stats().by_room[1].send_bitrate_bps

    try:
        await trainer.publish(room)
        await a.join(room, 10)
        await wait_for(lambda: a.frames["video"] >= 30)
        await wait_for(lambda: bitrate() > 0, within=5)
        await asyncio.sleep(2.2)  # two full sampling intervals with one learner
        one = bitrate()
        await b.join(room, 11)
        await wait_for(lambda: b.frames["video"] >= 30)
        await asyncio.sleep(2.2)
        two = bitrate()
        # Video and audio to each learner: tens of kbit/s at least; twice the learners, about
        # twice the bitrate (the synthetic camera's frame sizes vary little).
        assert one > 20_000, one
        assert 1.4 * one < two < 2.8 * one, (one, two)
        await trainer.close()
        await wait_for(lambda: bitrate() == 0, within=5)
    finally:
        for peer in (trainer, a, b):
            await peer.close()
