"""Pipes between media workers (media/pipe.py): the sibling's source and the owner's side of a
pipe over real UNIX sockets. The whole path (worker processes, aiortc peers, classroom sockets)
is in tests/test_live_media_pipes.py."""

from __future__ import annotations

import asyncio
import socket

import msgspec

from appliance.media.channel import Channel, open_channel
from appliance.media.forward import ForwardTrack, Frame, Source
from appliance.media.pipe import PipedSource, PipeFrame, PipeHello, ToSibling, _Feed, _Link
from appliance.media.remote import merge_room_stats
from appliance.media.room import MediaRoomStats


def frame(seq: int, keyframe: bool = False, slot: str = "camera") -> PipeFrame:
    payload = bytes([0x10, 0x00 if keyframe else 0x01]) + bytes(10)
    return PipeFrame(
        cohort=1,
        slot=slot,  # type: ignore[arg-type]
        seq=seq,
        keyframe=keyframe,
        pts=seq * 3000,
        payloads=[payload],
        marker=True,
        size=len(payload),
        data=payload[1:],
    )


def sibling_camera() -> tuple[PipedSource, ForwardTrack, list[str]]:
    asked: list[str] = []
    source = PipedSource("camera", "video", send_path="aiortc")
    source.connect(asked.append)
    track = ForwardTrack(source, 30)
    track.waiting_keyframe = False
    source.tracks.add(track)
    return source, track, asked


async def test_a_gap_in_the_pipe_waits_for_a_keyframe_and_asks_the_owner_once() -> None:
    source, track, asked = sibling_camera()
    try:
        source.receive(frame(0, keyframe=True))  # held frames when the pipe opens: no number
        source.receive(frame(1))
        source.receive(frame(2))
        assert [f.pts for f in track._queue] == [0, 3000, 6000]
        assert asked == []
        source.receive(frame(4))  # 3 was dropped by the owner (the sibling did not read)
        source.receive(frame(5))
        assert [f.pts for f in track._queue] == [0, 3000, 6000]
        assert asked == ["camera"]  # once per window, however many frames wait
        assert source.stats.frames_dropped_incomplete == 1
        source.receive(frame(6, keyframe=True))
        source.receive(frame(7))
        assert [f.pts for f in track._queue][-2:] == [18000, 21000]
        assert not source.keyframe_pending()
    finally:
        track.stop()


async def test_keyframe_requests_wait_for_the_pipe_and_audio_never_waits() -> None:
    source, track, asked = sibling_camera()
    try:
        source.connect(None)  # the pipe closed
        source.request_keyframe()
        assert asked == [] and source.keyframe_pending()
        source.connect(asked.append)  # a new pipe: the pending request goes at once
        assert asked == ["camera"]
        source.request_keyframe()  # within the window: the owner already knows
        assert asked == ["camera"]
    finally:
        track.stop()
    audio = PipedSource("audio", "audio", send_path="aiortc")
    heard = ForwardTrack(audio, 25)
    audio.tracks.add(heard)
    try:
        audio.receive(frame(1, slot="audio"))
        audio.receive(frame(3, slot="audio"))  # a gap: audio goes on
        assert len(heard._queue) == 2
    finally:
        heard.stop()


class _Room:
    """What the owner's feed reads of a room: its cohort and sources."""

    def __init__(self) -> None:
        self.cohort_id = 7
        self.sources = {"camera": Source("camera", "video"), "audio": Source("audio", "audio")}


async def test_the_owner_sends_hello_then_held_frames_then_every_frame_numbered() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    owner: Channel[ToSibling] = await open_channel(ours, ToSibling)
    sibling: Channel[ToSibling] = await open_channel(theirs, ToSibling)
    room = _Room()
    camera = room.sources["camera"]
    key = Frame(None, True, 3, 90, (b"\x10\x00k",))
    camera.deliver(key)  # the gop a late sibling starts from
    feed = _Feed(room)  # type: ignore[arg-type]
    try:
        link = _Link(1, 1234, owner)  # type: ignore[arg-type]
        feed.add(link)
        camera.deliver(Frame(None, False, 3, 3090, (b"\x10\x01d",)))
        room.sources["audio"].deliver(Frame(None, True, 2, 960, (b"op",)))
        got = [await sibling.receive() for _ in range(4)]
        assert got[0] == PipeHello(cohort=7)
        assert [(m.slot, m.seq, m.keyframe, m.pts) for m in got[1:]] == [  # type: ignore[union-attr]
            ("camera", 0, True, 90),
            ("camera", 1, False, 3090),  # numbered from the pipe's first live frame
            ("audio", 1, True, 960),
        ]
        # A sibling that stops reading: frames beyond the buffer are dropped, not queued.
        big = Frame(None, False, 60_000, 0, (bytes(60_000),))
        for _ in range(100):
            camera.deliver(big)
        assert link.dropped > 0
        assert owner._writer.transport.get_write_buffer_size() < 3 * 1024 * 1024
    finally:
        feed.close()
        assert camera.outlets == []
        await owner.close()
        await sibling.close()
        await asyncio.sleep(0)


def _stats(**values: object) -> MediaRoomStats:
    base: dict[str, object] = {f: 0 for f in MediaRoomStats.__dataclass_fields__}
    base.update(tracks_published=[], join_to_first_frame_s=[], per_learner={})
    base.update(values)
    return msgspec.convert(base, MediaRoomStats)


def test_a_rooms_figures_add_up_over_its_workers() -> None:
    owner = _stats(tracks_published=["camera"], learners=2, frames_in=100, frames_forwarded=200,
                   plis_out=1, plis_in=3)  # fmt: skip
    sibling = _stats(tracks_published=["camera"], learners=3, frames_in=99, frames_forwarded=297,
                     plis_out=2, plis_in=4)  # fmt: skip
    merged = merge_room_stats(1, [(0, sibling), (1, owner)])
    assert merged.learners == 5 and merged.frames_forwarded == 497 and merged.plis_in == 7
    # What the trainer sent, and the PLIs it got, are the owner's alone.
    assert merged.frames_in == 100 and merged.plis_out == 1
