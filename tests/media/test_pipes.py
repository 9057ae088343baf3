"""Pipes between media workers (media/pipe.py): the sibling's source and the owner's side of a
pipe over real UNIX sockets. The whole path (worker processes, aiortc peers, classroom sockets)
is in tests/test_live_media_pipes.py."""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import socket
import tempfile

import msgspec
import pytest

from appliance.media.channel import HEADER, MAX_FRAME, Channel, ChannelClosed, open_channel
from appliance.media.forward import ForwardTrack, Frame, Source
from appliance.media.pipe import (
    PipedSource,
    PipeFrame,
    PipeHello,
    PipeHub,
    PipeKeyframe,
    ToOwner,
    ToSibling,
    _Feed,
    _Link,
)
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


def _messages(data: bytes) -> list[ToSibling]:
    """The framed messages of ``data`` (whole frames only, as the sibling reads them)."""
    decoder = msgspec.msgpack.Decoder(ToSibling)
    out: list[ToSibling] = []
    at = 0
    while at < len(data):
        (length,) = HEADER.unpack_from(data, at)
        out.append(decoder.decode(data[at + HEADER.size : at + HEADER.size + length]))
        at += HEADER.size + length
    assert at == len(data)
    return out


def _available(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            data += sock.recv(1 << 20)
        except BlockingIOError:
            return data


async def test_batching_writes_a_few_frames_at_once_and_never_holds_one_long() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.setblocking(False)
    owner: Channel[ToSibling] = await open_channel(ours, ToSibling)
    room, other = _Room(), _Room()
    other.cohort_id = 8
    camera, audio = room.sources["camera"], room.sources["audio"]
    camera.deliver(Frame(None, True, 3, 90, (b"\x10\x00k",)))  # held: sent when the pipe opens
    feed, feed8 = _Feed(room), _Feed(other)  # type: ignore[arg-type]
    link = _Link(1, 1234, owner, batch_s=0.08, batch_frames=3)  # type: ignore[arg-type]
    try:
        feed.add(link)
        camera.deliver(Frame(None, False, 3, 3090, (b"\x10\x01d",)))
        await asyncio.sleep(0.02)
        # two frames gathered: only the hello went (at once: it orders what follows)
        assert _messages(_available(theirs)) == [PipeHello(cohort=7)]
        audio.deliver(Frame(None, True, 2, 960, (b"op",)))  # the third: all three, one write
        got = _messages(theirs.recv(1 << 20))
        assert [(m.slot, m.seq, m.pts) for m in got] == [  # type: ignore[union-attr]
            ("camera", 0, 90),
            ("camera", 1, 3090),
            ("audio", 1, 960),
        ]
        # a frame alone waits at most batch_s (then the timer writes it)
        audio.deliver(Frame(None, True, 2, 1920, (b"op",)))
        await asyncio.sleep(0.02)
        assert _available(theirs) == b""
        await asyncio.sleep(0.12)
        assert [m.pts for m in _messages(_available(theirs))] == [1920]  # type: ignore[union-attr]
        # a room added meanwhile: its hello comes after the frames already gathered
        camera.deliver(Frame(None, False, 3, 6090, (b"\x10\x01d",)))
        feed8.add(link)
        await asyncio.sleep(0.02)
        got = _messages(_available(theirs))
        assert [(m.cohort, type(m).__name__) for m in got] == [(7, "PipeFrame"), (8, "PipeHello")]
        # a sibling that stops reading: frames beyond the buffer are dropped, not gathered
        big = Frame(None, False, 60_000, 0, (bytes(60_000),))
        for _ in range(100):
            camera.deliver(big)
        assert link.dropped > 0
        assert owner.buffered() + link._pending_bytes <= 3 * 1024 * 1024
        camera.deliver(big)
        link.cancel()  # the link closes: what was gathered is not written
        assert link._flush is None and link._pending == []
    finally:
        feed.close()
        feed8.close()
        theirs.close()  # first: the owner's unread buffer then fails instead of waiting
        await owner.close()
        await asyncio.sleep(0)


async def test_without_batching_each_frame_goes_at_once_and_an_oversized_one_is_counted() -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.setblocking(False)
    owner: Channel[ToSibling] = await open_channel(ours, ToSibling)
    room = _Room()
    camera = room.sources["camera"]
    feed = _Feed(room)  # type: ignore[arg-type]
    link = _Link(1, 1234, owner, batch_s=0.0)  # type: ignore[arg-type]
    try:
        feed.add(link)
        camera.deliver(Frame(None, True, 3, 90, (b"\x10\x00k",)))
        await asyncio.sleep(0.01)
        got = _messages(_available(theirs))
        assert [type(m).__name__ for m in got] == ["PipeHello", "PipeFrame"]
        assert link._flush is None and link._pending == []  # nothing waits, no timer
        huge = Frame(None, False, MAX_FRAME + 1, 3090, (bytes(MAX_FRAME + 1),))
        camera.deliver(huge)
        camera.deliver(Frame(None, False, 3, 6090, (b"\x10\x01d",)))
        await asyncio.sleep(0.01)
        assert [m.pts for m in _messages(_available(theirs))] == [6090]  # type: ignore[union-attr]
        assert link.dropped == 1
    finally:
        feed.close()
        theirs.close()
        await owner.close()
        await asyncio.sleep(0)


class _PipedRoom:
    """What a sibling's hub reads of a room: its sources (piped ones)."""

    def __init__(self) -> None:
        self.cohort_id = 7
        self.sources = {
            "camera": PipedSource("camera", "video"),
            "audio": PipedSource("audio", "audio"),
        }


def _framed(message: object) -> bytes:
    payload = msgspec.msgpack.encode(message)
    return HEADER.pack(len(payload)) + payload


async def test_the_sibling_reads_frames_however_the_bytes_arrive_and_closes_on_a_bad_one() -> None:
    room = _PipedRoom()
    camera = room.sources["camera"]
    hub = PipeHub(lambda cohort: room if cohort == 7 else None)  # type: ignore[arg-type,return-value]
    hub.piped[7] = None
    folder = tempfile.mkdtemp(prefix="estrade-pipe-")
    path = os.path.join(folder, "pipe.sock")
    await hub.listen(path)
    try:
        reader, writer = await asyncio.open_unix_connection(path)
        owner: Channel[ToOwner] = Channel(reader, writer, ToOwner)
        frames = [msgspec.structs.replace(frame(n, keyframe=n == 1), cohort=7) for n in range(1, 7)]
        # hello and three frames in one write; then three frames cut anyhow: a header split,
        # a frame's middle, and twice the end of a frame with the next one's first two bytes
        writer.write(b"".join(_framed(m) for m in [PipeHello(cohort=7), *frames[:3]]))
        stream = b"".join(_framed(f) for f in frames[3:])
        n3, n4 = len(_framed(frames[3])), len(_framed(frames[4]))
        cuts = [0, 2, 9, n3 + 2, n3 + n4 + 2, len(stream)]
        for a, b in itertools.pairwise(cuts):
            writer.write(stream[a:b])
            await writer.drain()
            await asyncio.sleep(0.01)
        for _ in range(100):
            if camera.stats.frames_in == 6:
                break
            await asyncio.sleep(0.01)
        assert camera.stats.frames_in == 6 and camera.stats.frames_dropped_incomplete == 0
        assert hub.piped[7] is not None
        camera.request_keyframe()  # goes back on the pipe that said hello
        assert await asyncio.wait_for(owner.receive(), 5) == PipeKeyframe(cohort=7, slot="camera")
        writer.write(HEADER.pack(MAX_FRAME + 1))  # refused from its header: the pipe closes
        with pytest.raises(ChannelClosed):
            await asyncio.wait_for(owner.receive(), 5)
        assert hub.piped[7] is None and camera.upstream is None
        await owner.close()
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(_framed(PipeHello(cohort=7)) + HEADER.pack(3) + b"\xc1\xc1\xc1")  # not msgpack
        await asyncio.wait_for(reader.read(), 5)  # (a pending keyframe request) up to EOF:
        assert reader.at_eof()  # closed by the sibling
        assert hub.piped[7] is None and camera.stats.frames_in == 6
        writer.close()
        await writer.wait_closed()
    finally:
        await hub.close()
        shutil.rmtree(folder)


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
