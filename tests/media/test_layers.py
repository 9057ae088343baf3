"""VP8 temporal layers: each learner gets the layers of its level, decodable, without keyframes.

The trainer (aiortc) sends real L1T3 VP8 (libvpx through PyAV, FFmpeg's 3-layer pattern, see
``peers.l1t3_stream``) with the payload descriptor a browser writes. Learners are aiortc peers
that decode what they receive; every decoded picture must be bit-exact the picture the full
stream decodes to at that frame, so a frame referring to one the learner never got would show.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from appliance.media import LadderPolicy, MediaServer, QualityChanged
from appliance.media.forward import ForwardTrack, Frame, Source
from appliance.media.vp8 import layer_of, shift_picture_id

from .peers import L1T3_TIDS, LayeredVideo, Learner, Trainer, l1t3_digests, wait_for

#: highest temporal layer each level takes from an L1T3 camera
TOP = {"full": 2, "camera_half": 1, "camera_quarter": 0}


async def join_at(room: Any, learner: Learner, learner_id: int, level: str) -> None:
    """Subscribe, set the level before answering (the first frame is already of that level)."""
    offer = await room.subscribe(learner_id)
    if level != "full":
        room.set_quality(learner_id, level)
    await room.accept_answer(learner_id, await learner.answer(offer.sdp))


def received_indices(learner: Learner, frames: int = 240) -> list[int]:
    """Which frame of the trainer's stream each decoded picture is (all must be found)."""
    digests = l1t3_digests(frames)
    where = {d: i for i, d in enumerate(digests)}
    assert len(where) == len(digests), "the reference pictures must be distinct"
    assert learner.digests is not None
    missing = [n for n, d in enumerate(learner.digests) if d not in where]
    assert not missing, f"pictures {missing[:5]} decode to no frame of the stream (corrupt)"
    return [where[d] for d in learner.digests]


def assert_exactly_layers(indices: list[int], top: int, frames: int) -> None:
    """From the first picture on, every frame of layers <= top in order, no other one."""
    assert indices, "no picture decoded"
    assert all(L1T3_TIDS[i % 4] <= top for i in indices), (top, indices[:20])
    expected, i = [], indices[0]
    while len(expected) < len(indices):
        if L1T3_TIDS[i % 4] <= top:
            expected.append(i)
        i = (i + 1) % frames
    assert indices == expected, (top, indices[:12], expected[:12])


def from_keyframe_to_keyframe(indices: list[int]) -> list[list[int]]:
    """The pictures cut where the trainer's stream starts again at its keyframe (frame 0)."""
    stretches: list[list[int]] = []
    for i in indices:
        if i == 0 or not stretches:
            stretches.append([])
        stretches[-1].append(i)
    return stretches


def assert_consecutive(picture_ids: list[int]) -> None:
    gaps = [(a, b) for a, b in itertools.pairwise(picture_ids) if b != (a + 1) & 0x7FFF]
    assert not gaps, f"picture ids jump: {gaps[:5]}"


async def test_each_level_receives_exactly_its_layers_decodable(server: MediaServer) -> None:
    room = server.room(1)
    trainer = Trainer(layered=True)
    learners = {level: Learner(digests=True) for level in TOP}
    try:
        await trainer.publish(room)
        await wait_for(lambda: room.sources["camera"].stats.frames_in >= 3)
        for n, (level, learner) in enumerate(learners.items()):
            await join_at(room, learner, 10 + n, level)
        await wait_for(lambda: learners["camera_quarter"].frames["video"] >= 12, within=20)
        await asyncio.sleep(0.5)
        camera_in = room.sources["camera"].stats
        video = trainer.video
        assert isinstance(video, LayeredVideo)
        # The server may ask the trainer for a keyframe on its own (a packet of the trainer's
        # lost or late on a loaded machine; never for the layers: the stepping test below
        # counts them): the trainer's stream then starts again at its keyframe (frame 0).
        # No learner asks for one (plis_in below), and every stretch between keyframes must
        # be exactly the learner's layers.
        restarts = video.keyframes_sent - 1
        why = (camera_in, video.sent[:12], room.stats().per_learner)
        assert camera_in.keyframes_in == video.keyframes_sent, why
        assert restarts == 0 or camera_in.keyframe_requests > 0, why
        counts = {}
        for level, learner in learners.items():
            indices = received_indices(learner)
            for stretch in from_keyframe_to_keyframe(indices):
                assert_exactly_layers(stretch, TOP[level], len(l1t3_digests()))
            assert_consecutive(learner.picture_ids)
            counts[level] = len(indices)
        # 30 -> 15 -> 7.5 frames per second (the learners joined within a few frames).
        full = counts["full"]
        assert 0.35 * full < counts["camera_half"] < 0.65 * full, counts
        assert 0.15 * full < counts["camera_quarter"] < 0.35 * full, counts
        stats = room.stats()
        # No learner asked for a keyframe: no picture id or sequence number was missing.
        assert stats.plis_in == 0, why
        # The learners' own bandwidth estimates (REMB) reach the ladder.
        await wait_for(lambda: room.stats().per_learner[10].remb_bps is not None, within=10)
        camera = room._learners[12].tracks["camera"]
        assert camera.stats.frames_skipped_layer >= 2 * counts["camera_quarter"]
    finally:
        for peer in (trainer, *learners.values()):
            await peer.close()


async def test_stepping_down_and_up_needs_no_keyframe(server: MediaServer) -> None:
    room = server.room(1)
    trainer = Trainer(layered=True, frames=480)
    learner = Learner(digests=True)
    try:
        await trainer.publish(room)
        camera = room.sources["camera"]
        await wait_for(lambda: camera.stats.frames_in >= 3)  # a kept keyframe: no PLI at join
        await join_at(room, learner, 10, "full")
        await wait_for(lambda: learner.frames["video"] >= 5)
        video = trainer.video
        assert video is not None
        track = room._learners[10].tracks["camera"]

        def counters() -> tuple[int, int, int]:
            return (
                room.stats().keyframe_requests,
                trainer.plis_received,
                camera.stats.keyframes_in,
            )

        def losses() -> int:
            """What makes the server ask for a keyframe on its own, whatever the steps: a
            trainer's frame lost or late on a loaded machine, the learner's socket full."""
            return camera.stats.frames_dropped_incomplete + track.stats.overflows

        before, lost_before = counters(), losses()
        marks = []
        for level in ("full", "camera_half", "camera_quarter", "camera_half", "full"):
            room.set_quality(10, level)
            marks.append((level, len(learner.digests or [])))
            start = learner.frames["video"]
            await wait_for(lambda start=start: learner.frames["video"] >= start + 10, within=20)
            await asyncio.sleep(0.3)
        await asyncio.sleep(0.3)
        indices = received_indices(learner, 480)  # every picture bit-exact: nothing corrupt
        assert_consecutive(learner.picture_ids)
        # Within each level (after the first frames of a step up, which wait for a layer-sync
        # frame), only that level's layers arrive.
        for (level, begin), (_, end) in zip(marks, [*marks[1:], ("", len(indices))], strict=True):
            part = indices[begin + 4 : end]
            assert part and all(L1T3_TIDS[i % 4] <= TOP[level] for i in part), (level, part)
            if level == "full":
                assert any(L1T3_TIDS[i % 4] == 2 for i in part)
        # No keyframe asked for, none sent: the steps were made on the frames as they came
        # (unless a loss on a loaded machine made the server ask: then a loss is counted).
        after, lost = counters(), losses()
        assert after == before or lost > lost_before, (before, after, camera.stats, track.stats)
        assert room.stats().plis_in == 0
    finally:
        for peer in (trainer, learner):
            await peer.close()


async def test_a_weak_link_steps_through_the_camera_rates(make_server, events: list) -> None:
    policy = LadderPolicy(down_loss=0.08, down_after=2, up_after=3, interval_s=0.3)
    server = make_server(ladder=policy)
    room = server.room(1)
    trainer = Trainer(layered=True)
    weak, fine = Learner(), Learner()
    try:
        await trainer.publish(room)
        await weak.join(room, 10)
        await fine.join(room, 11)
        await wait_for(lambda: min(weak.frames["video"], fine.frames["video"]) >= 5)
        weak.drop_incoming(0.3)
        await wait_for(lambda: room.level(10) == "screen", within=20)
        steps = [e.level for e in events if isinstance(e, QualityChanged) and e.learner_id == 10]
        assert steps == ["camera_half", "camera_quarter", "screen"]
        assert room.level(11) == "full"
        weak.loss = 0.0
        await wait_for(lambda: room.level(10) == "full", within=20)
        steps = [e.level for e in events if isinstance(e, QualityChanged) and e.learner_id == 10]
        # (reports already on their way may take it one step further down first)
        assert steps[-4:] == ["screen", "camera_quarter", "camera_half", "full"], steps
    finally:
        for peer in (trainer, weak, fine):
            await peer.close()
        await server.close()


async def test_a_short_bandwidth_estimate_steps_a_learner_down(make_server, events) -> None:
    # No loss, short round trips: only the learner's REMB says the link is too thin.
    policy = LadderPolicy(down_after=2, up_after=1000, interval_s=0.3, remb_settle_s=0.5)
    server = make_server(ladder=policy)
    room = server.room(1)
    trainer = Trainer(layered=True)
    learner = Learner()
    try:
        await trainer.publish(room)
        await learner.join(room, 10)
        await wait_for(lambda: learner.frames["video"] >= 5)
        await asyncio.sleep(1.0)  # the sources' rates are known
        full = room.level_bitrate("full")
        assert full > room.level_bitrate("camera_half") > room.level_bitrate("camera_quarter")
        # Enough for the camera at a quarter of its rate, not for half of it.
        learner.claim_bandwidth(int(room.level_bitrate("camera_quarter") * 1.1))
        await wait_for(lambda: room.level(10) == "camera_quarter", within=15)
        steps = [e for e in events if isinstance(e, QualityChanged) and e.learner_id == 10]
        assert [e.level for e in steps] == ["camera_half", "camera_quarter"]
        assert all(e.automatic and e.reason.startswith("estimate") for e in steps)
        await asyncio.sleep(1.5)
        assert room.level(10) == "camera_quarter"  # the estimate fits this level: it stays
        assert room.stats().per_learner[10].remb_bps < full
    finally:
        for peer in (trainer, learner):
            await peer.close()
        await server.close()


async def test_the_ladder_never_goes_above_the_learners_choice(make_server, events) -> None:
    policy = LadderPolicy(down_after=2, up_after=2, interval_s=0.3)
    server = make_server(ladder=policy)
    room = server.room(1)
    trainer = Trainer(layered=True)
    learner = Learner()
    try:
        await trainer.publish(room)
        await join_at(room, learner, 10, "camera_half")
        await wait_for(lambda: learner.frames["video"] >= 5)
        await asyncio.sleep(2.0)  # clean link: many good samples
        assert room.level(10) == "camera_half"
    finally:
        for peer in (trainer, learner):
            await peer.close()
        await server.close()


# -- without the network ------------------------------------------------------------------------


def test_the_descriptor_gives_layer_and_sync_and_picture_ids_shift() -> None:
    # X, S | I L T | M + picture id 0x1234 | TL0PICIDX | TID 2, Y
    payload = bytes([0x90, 0xE0, 0x92, 0x34, 0x07, 0xA0]) + b"vp8"
    assert layer_of(payload) == (2, True, True)
    assert layer_of(bytes([0x10]) + b"vp8") == (None, False, False)  # no extension
    assert layer_of(bytes([0x90, 0x80, 0x05]) + b"vp8") == (None, False, True)  # no T bit
    assert layer_of(bytes([0x90, 0xE0])) == (None, False, False)  # truncated: no layers
    shifted = shift_picture_id(payload, 0x35)
    assert shifted == bytes([0x90, 0xE0, 0x91, 0xFF, 0x07, 0xA0]) + b"vp8"
    assert shift_picture_id(bytes([0x90, 0x80, 0x80, 0x00]), 1)[2:4] == b"\xff\xff"  # wraps
    assert shift_picture_id(bytes([0x90, 0x80, 0x05, 0x01]), 6) == bytes([0x90, 0x80, 0x7F, 1])


def _layered(index: int, tid: int, sync: bool = False, key: bool = False) -> Frame:
    payload = bytes([0x90, 0xE0, 0x80 | index >> 8, index & 0xFF, 0, tid << 6 | sync << 5])
    return Frame(None, key, 10, index * 3000, (payload + b"x",), True, tid=tid, sync=sync,
                 picture_id=True)  # fmt: skip


def test_a_learner_goes_up_only_at_a_layer_sync_frame() -> None:
    source = Source("camera", "video")
    source.max_tid = 2
    track = ForwardTrack(source, 30)
    track.set_drop_layers(2)
    pattern = [(0, False), (2, True), (1, True), (2, False)]
    sent: list[int] = []
    for i in range(16):
        tid, sync = pattern[i % 4]
        frame = _layered(i, tid, sync, key=i == 0)
        admitted = track._admit(frame)
        if admitted is not None:
            sent.append((admitted.payloads[0][2] & 0x7F) << 8 | admitted.payloads[0][3])
        if i == 5:
            track.set_drop_layers(0)  # up: not at frame 7 (TID 2, no sync)
    # Quarter: 0, 4; then up at 6 (TID 1, sync), 9 (TID 2 sync) and from there every frame.
    assert sent == list(range(len(sent)))  # consecutive picture ids from 0
    assert track.stats.frames_skipped_layer == 16 - len(sent)
    assert len(sent) == 2 + 1 + 1 + 7  # 0, 4 | 6, 8 | 9..15
