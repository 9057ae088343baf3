"""Loss on one learner's leg, the low-bandwidth ladder, renegotiation by the trainer."""

from __future__ import annotations

import asyncio

from appliance.media import LadderPolicy, MediaServer, QualityChanged, TracksChanged

from .peers import Learner, Trainer, wait_for


async def test_loss_on_one_leg_leaves_the_others_untouched(server: MediaServer) -> None:
    room = server.room(1)
    trainer = Trainer()
    clean, lossy = Learner(), Learner()
    try:
        await trainer.publish(room)
        await clean.join(room, 10)
        await lossy.join(room, 11)
        await wait_for(lambda: min(clean.frames["video"], lossy.frames["video"]) >= 10)
        lossy.drop_incoming(0.05)
        start_clean, start_sent = clean.frames["video"], trainer.video.frames_sent
        await asyncio.sleep(4.0)
        got = clean.frames["video"] - start_clean
        sent = trainer.video.frames_sent - start_sent
        # The clean learner gets every frame (give or take the ones in flight).
        assert got >= sent - 3, (got, sent)
        per = room.stats()
        assert per.per_learner[10].connection == "connected"
        clean_tracks = room._learners[10].tracks
        assert clean_tracks["camera"].stats.overflows == 0
        assert clean_tracks["camera"].stats.frames_skipped_waiting_keyframe == 0
        # The lossy learner asked for retransmissions (NACK -> RTX) and the relay answered.
        # (Whether it then shows video smoothly is its own receiver's business: aiortc's
        # stock jitter buffer can stall after an unrecovered loss, aiortc PR #1418.)
        assert room._learners[11].nacks_in > 0
    finally:
        for peer in (trainer, clean, lossy):
            await peer.close()


async def test_loss_on_the_trainers_leg_is_repaired_by_nack_and_rtx(server: MediaServer) -> None:
    room = server.room(1)
    trainer = Trainer()
    learner = Learner()
    try:
        await trainer.publish(room)
        await learner.join(room, 10)
        await wait_for(lambda: learner.frames["video"] >= 10)
        trainer.drop_outgoing(0.05)
        camera = room.sources["camera"].stats
        stats0, sent0, in0 = room.stats(), trainer.video.frames_sent, camera.frames_in
        start = learner.frames["video"]
        await asyncio.sleep(4.0)
        stats = room.stats()
        sent = trainer.video.frames_sent - sent0
        assert stats.nacks_out > stats0.nacks_out  # the relay asked the trainer
        # Retransmissions filled the holes at the relay: of the frames that reached it, few were
        # given up incomplete. Without NACK/RTX, 5 % packet loss leaves ~10-20 % of these
        # 2-4-packet frames incomplete. (Judged on the frames the relay saw, not on what the
        # trainer's encoder produced: under CI load, 16 of 120 frames were still in the
        # trainer's or the relay's queues at the window's end, 2 given up.)
        got = camera.frames_in - in0
        dropped = stats.frames_dropped_incomplete - stats0.frames_dropped_incomplete
        assert dropped <= 0.05 * (got + dropped), (dropped, got)
        # Frames kept flowing through the loss (loose: a starved machine delays the trainer).
        assert got >= 0.7 * sent - 3, (got, sent)
        # ...and reached the learner, decoded. Looser: the aiortc test receiver's own jitter
        # buffer and decoder also run on this loaded 2-core machine.
        assert learner.frames["video"] - start >= 0.8 * got - 3, (learner.frames, got)
    finally:
        for peer in (trainer, learner):
            await peer.close()


async def test_learner_chooses_audio_only_and_back(server: MediaServer, events: list) -> None:
    room = server.room(1)
    trainer = Trainer()
    learner = Learner()
    try:
        await trainer.publish(room)
        await learner.join(room, 10)
        await wait_for(lambda: learner.frames["video"] >= 5)
        room.set_quality(10, "audio")
        assert QualityChanged(1, 10, "audio", False, "requested") in events
        await asyncio.sleep(0.3)
        video, audio = learner.frames["video"], learner.frames["audio"]
        await asyncio.sleep(1.0)
        assert learner.frames["video"] == video  # no camera any more
        assert learner.frames["audio"] > audio + 20  # the voice goes on
        # aiortc's receiving buffer releases a frame when the next one starts: skip that one.
        paused_at = learner.last_packet_ts
        count = len(learner.assembled)
        room.set_quality(10, "full")
        await wait_for(lambda: learner.frames["video"] > video + 10)
        resumed = [key for ts, key in learner.assembled[count:] if ts != paused_at]
        assert resumed[0] is True  # the camera resumes on a keyframe
        assert not any(resumed[1:5])
    finally:
        for peer in (trainer, learner):
            await peer.close()


async def test_bad_link_moves_a_learner_down_then_up(make_server, events: list) -> None:
    policy = LadderPolicy(down_loss=0.08, down_after=2, up_after=3, interval_s=0.3)
    server = make_server(ladder=policy)
    room = server.room(1)
    trainer = Trainer()
    weak, fine = Learner(), Learner()
    try:
        await trainer.publish(room)
        await weak.join(room, 10)
        await fine.join(room, 11)
        await wait_for(lambda: min(weak.frames["video"], fine.frames["video"]) >= 5)
        weak.drop_incoming(0.3)
        await wait_for(lambda: room.level(10) == "screen", within=15)
        down = [e for e in events if isinstance(e, QualityChanged)]
        assert down[0].learner_id == 10 and down[0].automatic and "loss" in down[0].reason
        # aiortc's camera has no temporal layers: the camera levels are passed over.
        assert down[0].level == "screen"
        assert room.level(11) == "full"
        weak.loss = 0.0
        await wait_for(lambda: room.level(10) == "full", within=15)
        up = [e for e in events if isinstance(e, QualityChanged)][-1]
        assert up == QualityChanged(1, 10, "full", True, "recovered")
    finally:
        for peer in (trainer, weak, fine):
            await peer.close()
        await server.close()


async def test_trainer_adds_then_stops_a_track(server: MediaServer, events: list) -> None:
    room = server.room(1)
    trainer = Trainer(video=False)
    learner = Learner()
    try:
        await trainer.publish(room)
        await learner.join(room, 10)
        await wait_for(lambda: learner.frames["audio"] >= 10)
        assert events[-1] == TracksChanged(1, ("audio",)) or TracksChanged(1, ("audio",)) in events
        camera = trainer.add_camera()
        await trainer.publish(room)  # renegotiation on the same connection
        assert TracksChanged(1, ("audio", "camera")) in events
        await wait_for(lambda: learner.frames["video"] >= 10)
        trainer.add_camera()  # the second video m-line is the screen share
        await trainer.publish(room)
        assert events[-1] == TracksChanged(1, ("audio", "camera", "screen"))
        camera.direction = "inactive"
        await trainer.publish(room)
        assert events[-1] == TracksChanged(1, ("audio", "screen"))
        video = learner.frames["video"]
        await wait_for(lambda: learner.frames["video"] > video + 10)  # the screen goes on
    finally:
        for peer in (trainer, learner):
            await peer.close()
