"""Recording a class (appliance/media/recorder.py): real aiortc trainer, real files, real ffmpeg.

The trainer publishes Opus + camera + screen; its encoders' output is kept (what it sent, bit
for bit), so the files can be checked frame by frame against it, in process and with the relay
in media worker processes (one killed with SIGKILL mid-recording).
"""

from __future__ import annotations

import asyncio
import fractions
import itertools
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiortc.rtcrtpsender
import av
import pytest
from aiortc.codecs.vpx import VpxPayloadDescriptor

from appliance.media import MediaError, MediaEvent, MediaServer, RecordingEnded, finalize_directory
from appliance.media.forward import AudioTap, Frame, Source, VideoTap
from appliance.media.recorder import Recorder, RecordingFiles
from appliance.media.remote import RemoteMediaServer
from appliance.settings import load_settings

from .peers import Learner, SyntheticVideo, Trainer, l1t3_stream, wait_for


def ffmpeg(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: run `make system-deps-fast` (Debian package ffmpeg)"
    return path


def decode_errors(path: Path) -> str:
    """What ``ffmpeg -v error -i FILE -f null -`` prints (nothing for a clean file)."""
    run = subprocess.run(
        [ffmpeg("ffmpeg"), "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return run.stdout + run.stderr


def probe_duration(path: Path) -> float:
    run = subprocess.run(
        [
            ffmpeg("ffprobe"),
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
            *[str(path)],
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return float(run.stdout.strip())


def packets(path: Path) -> list[tuple[int, bytes]]:
    """(pts in ms, bytes) of every packet, demuxed only."""
    with av.open(str(path)) as container:
        stream = container.streams[0]
        return [
            (int(p.pts * p.time_base * 1000), bytes(p))
            for p in container.demux(stream)
            if p.size and p.pts is not None
        ]


class Keeping:
    """Stands around a trainer's encoder: keeps each frame it made, as the relay gets it."""

    def __init__(self, real: Any, video: bool) -> None:
        self.real = real
        self.video = video
        self.frames: list[bytes] = []

    def encode(self, frame: Any, force_keyframe: bool = False) -> Any:
        payloads, timestamp = self.real.encode(frame, force_keyframe)
        if payloads:
            if self.video:
                self.frames.append(b"".join(VpxPayloadDescriptor.parse(p)[1] for p in payloads))
            else:
                self.frames.append(b"".join(payloads))
        return payloads, timestamp

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.fixture
def kept_encoders(monkeypatch: pytest.MonkeyPatch) -> None:
    real = aiortc.rtcrtpsender.get_encoder

    def get_encoder(codec: Any) -> Keeping:
        return Keeping(real(codec), codec.mimeType.lower().startswith("video/"))

    monkeypatch.setattr(aiortc.rtcrtpsender, "get_encoder", get_encoder)


class Camera(SyntheticVideo):
    """A camera whose timestamps follow the wall clock (as a browser's) and that can go quiet
    for a while (camera off: nothing is sent)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.quiet_until = 0.0
        self.t0 = time.monotonic()

    async def recv(self) -> av.VideoFrame:
        now = time.monotonic()
        if now < self.quiet_until:
            await asyncio.sleep(self.quiet_until - now)
            self._start = time.monotonic()  # frames resume now, not in a burst
            self._count = 0
        frame = await super().recv()
        frame.pts = int((time.monotonic() - self.t0) * 90000)
        frame.time_base = fractions.Fraction(1, 90000)
        return frame


def trainer_with_camera() -> tuple[Trainer, Camera]:
    trainer = Trainer(video=False)
    camera = Camera(320, 240, fps=15)
    trainer.transceivers["camera"] = trainer.pc.addTransceiver(camera, direction="sendonly")
    return trainer, camera


async def share_screen(trainer: Trainer, publish: Callable[[Trainer], Any]) -> None:
    """The screen share starts (a renegotiation, as a browser's): the second video m-line.
    (aiortc leaves a third m-line of a first offer off the bundle: it never sends.)"""
    screen = Camera(480, 272, fps=5)
    trainer.transceivers["screen"] = trainer.pc.addTransceiver(screen, direction="sendonly")
    await publish(trainer)


def sent(trainer: Trainer, slot: str) -> list[bytes]:
    encoder = trainer.transceivers[slot].sender._RTCRtpSender__encoder
    assert isinstance(encoder, Keeping), slot
    return encoder.frames


def contiguous_run(recorded: list[bytes], frames: list[bytes]) -> int:
    """Where ``recorded`` sits in ``frames`` as one unbroken run (asserts it does)."""
    assert recorded, "nothing recorded"
    for start in range(len(frames) - len(recorded) + 1):
        if frames[start] == recorded[0] and frames[start : start + len(recorded)] == recorded:
            return start
    raise AssertionError(f"the {len(recorded)} recorded frames are not a run of the sent ones")


async def record_a_class(
    start: Callable[[], Any],
    stop: Callable[[], Any],
    publish: Callable[[Trainer], Any],
    seconds: float = 20.0,
) -> tuple[Trainer, float, float]:
    """Trainer with Opus + camera for ``seconds``, the screen shared from 2 s, the camera's
    track replaced by another (another size) at 6 s, the camera quiet for 3 s from 10 s.
    Returns the trainer, the wall-clock span of the recording and when it began."""
    trainer, camera = trainer_with_camera()
    began = time.monotonic()
    await start()
    await publish(trainer)
    await asyncio.sleep(2 - (time.monotonic() - began))
    await share_screen(trainer, publish)
    await asyncio.sleep(6 - (time.monotonic() - began))
    other = Camera(256, 192, fps=15)
    trainer.transceivers["camera"].sender.replaceTrack(other)  # the track switch
    await asyncio.sleep(10 - (time.monotonic() - began))
    other.quiet_until = time.monotonic() + 3.0  # the camera gap
    await asyncio.sleep(seconds - (time.monotonic() - began))
    ended = time.monotonic()
    trainer.sent_at_stop = {slot: len(sent(trainer, slot)) for slot in trainer.transceivers}  # type: ignore[attr-defined]
    await stop()
    camera.stop()
    return trainer, ended - began, began


def check_files(directory: Path, result: RecordingFiles, trainer: Trainer, wall_s: float) -> None:
    assert set(result.files) == {"audio", "camera", "screen"}
    assert sorted(p.name for p in directory.iterdir()) == [
        "audio.webm",
        "camera.webm",
        "screen.webm",
    ]
    for kind, size in result.files.items():
        path = directory / f"{kind}.webm"
        assert path.stat().st_size == size
        assert decode_errors(path) == "", kind
        recorded = packets(path)
        times = [t for t, _ in recorded]
        assert times == sorted(times) and len(set(times)) == len(times), kind
        # Every frame the trainer sent from the first one recorded on, in order, bit for bit.
        frames = sent(trainer, kind)
        at = contiguous_run([data for _, data in recorded], frames)
        if kind != "audio":
            assert recorded[0][1][0] & 1 == 0, f"{kind} starts with a delta frame"
        tail = trainer.sent_at_stop[kind] - at - len(recorded)  # type: ignore[attr-defined]
        assert tail <= (3 if kind == "audio" else 2), (
            f"{kind}: {tail} sent frames missing at the end"
        )
        duration = probe_duration(path)
        assert abs(duration - wall_s) <= 0.01 * wall_s + (0.2 if kind == "screen" else 0.07), (
            kind,
            duration,
            wall_s,
        )
    assert abs(result.duration_s - wall_s) <= 0.01 * wall_s
    # The camera's 3 s gap is there, the audio has none: one time origin, still in sync.
    camera_times = [t for t, _ in packets(directory / "camera.webm")]
    gaps = [b - a for a, b in itertools.pairwise(camera_times)]
    assert 2800 <= max(gaps) <= 3400, max(gaps)
    audio_times = [t for t, _ in packets(directory / "audio.webm")]
    assert max(b - a for a, b in itertools.pairwise(audio_times)) <= 200


@pytest.mark.usefixtures("kept_encoders")
async def test_a_class_is_recorded_frame_for_frame_in_process(
    tmp_path: Path, make_server: Callable[..., MediaServer], events: list[MediaEvent]
) -> None:
    server = make_server(recording_segment_s=5)
    directory = tmp_path / "recordings" / "1" / "7"
    delivered: dict[str, list[tuple[float, bytes]]] = {"audio": [], "camera": [], "screen": []}
    deliver = Source.deliver

    def noting(source: Source, frame: Frame) -> None:  # what the relay received, in order
        if source.kind == "audio":
            data = frame.payloads[0]
        else:
            data = b"".join(VpxPayloadDescriptor.parse(p)[1] for p in frame.payloads)
        delivered[source.slot].append((time.monotonic(), data))
        deliver(source, frame)

    Source.deliver = noting  # type: ignore[method-assign]
    segments: list[list[str]] = []

    async def watch() -> None:
        while True:
            if directory.exists():
                segments.append(sorted(p.name for p in directory.iterdir()))
            await asyncio.sleep(1)

    watcher = asyncio.ensure_future(watch())
    trainer: Trainer | None = None
    marks: dict[str, float] = {}
    try:
        room = server.room(1)

        async def publish(t: Trainer) -> None:
            await t.publish(room)

        async def start() -> None:
            await server.start_recording(1, directory)
            marks["start"] = server.recorders[1].started_at

        trainer, wall_s, began = await record_a_class(
            start,
            lambda: server.stop_recording(1),
            publish,
        )
        assert not server.recording(1)
        (ended,) = [e for e in events if isinstance(e, RecordingEnded)]
        assert ended.reason == "stopped" and ended.directory == str(directory)
        assert ended.result is not None
        check_files(directory, ended.result, trainer, wall_s)
        # Every frame the relay delivered while recording (video: from its first keyframe) is
        # in the files, in order, at about the time it arrived: audio and video share one
        # origin (a frame held up on the way, e.g. while the trainer renegotiates, keeps the
        # time its RTP timestamp gives, so its arrival can be a few hundred ms later).
        lateness: dict[str, float] = {}
        for kind in ("audio", "camera", "screen"):
            recorded = packets(directory / f"{kind}.webm")
            expected = [(t, d) for t, d in delivered[kind] if marks["start"] <= t <= began + wall_s]
            while kind != "audio" and expected[0][1][0] & 1:
                expected.pop(0)
            assert [d for _, d in recorded] == [d for _, d in expected], kind
            late = sorted(
                arrived - marks["start"] - ms / 1000
                for (ms, _), (arrived, _) in zip(recorded, expected, strict=True)
            )
            assert late[0] > -0.05 and late[-1] < 0.6, (kind, late[0], late[-1])
            lateness[kind] = late[len(late) // 2]
            assert abs(lateness[kind]) < 0.05, (kind, lateness)
        assert abs(lateness["audio"] - lateness["camera"]) < 0.04, lateness
        # Segments were written as the class went (5 s each), the open one named .part.
        assert any("audio-0003.webm" in names for names in segments), segments
        assert any(n.endswith(".webm.part") for names in segments for n in names)
        # Nothing decoded on the server: the receivers' decoders never got a frame.
        for transceiver in room._publisher.getTransceivers():
            receiver = transceiver.receiver
            assert isinstance(receiver._RTCRtpReceiver__jitter_buffer, AudioTap | VideoTap)
            assert receiver._RTCRtpReceiver__decoder_queue.qsize() == 0
            assert receiver.track._queue.qsize() == 0
        stats = server.stats()
        assert stats.recordings == 0 and stats.recording_bytes > 100_000
        assert stats.recording_segments_failed == 0
    finally:
        Source.deliver = deliver  # type: ignore[method-assign]
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        if trainer is not None:
            await trainer.close()
        await server.close()


@pytest.fixture
async def workers(tmp_path: Path) -> AsyncIterator[tuple[RemoteMediaServer, list[MediaEvent]]]:
    settings = load_settings(
        env={}, data_dir=tmp_path, media_interface="127.0.0.1", recording_segment_s=2
    )
    events: list[MediaEvent] = []
    server = RemoteMediaServer(settings, events.append)
    try:
        await server.start(2)
        yield server, events
    finally:
        await server.close()


@pytest.mark.usefixtures("kept_encoders")
async def test_a_class_is_recorded_in_a_media_worker(
    tmp_path: Path, workers: tuple[RemoteMediaServer, list[MediaEvent]]
) -> None:
    server, events = workers
    directory = tmp_path / "recordings" / "1" / "8"
    trainer: Trainer | None = None
    try:

        async def publish(t: Trainer) -> None:
            await t.publish(server.room(1))

        trainer, wall_s, _ = await record_a_class(
            lambda: server.start_recording(1, directory),
            lambda: server.stop_recording(1),
            publish,
        )
        await wait_for(lambda: any(isinstance(e, RecordingEnded) for e in events))
        (ended,) = [e for e in events if isinstance(e, RecordingEnded)]
        assert ended.reason == "stopped" and ended.result is not None
        assert not server.recording(1)
        check_files(directory, ended.result, trainer, wall_s)
        await wait_for(lambda: server.stats().recording_bytes > 100_000)
    finally:
        if trainer is not None:
            await trainer.close()


@pytest.mark.usefixtures("kept_encoders")
async def test_a_killed_worker_leaves_closed_segments_and_a_repairable_one(
    tmp_path: Path, workers: tuple[RemoteMediaServer, list[MediaEvent]]
) -> None:
    server, events = workers
    directory = tmp_path / "recordings" / "1" / "9"
    trainer, _ = trainer_with_camera()
    try:
        await server.start_recording(1, directory)
        room = server.room(1)
        began = time.monotonic()
        await trainer.publish(room)
        await share_screen(trainer, lambda t: t.publish(room))
        await asyncio.sleep(7.0 - (time.monotonic() - began))
        process = room.worker.process
        assert process is not None
        os.kill(process.pid, signal.SIGKILL)
        killed = time.monotonic() - began
        await wait_for(lambda: any(isinstance(e, RecordingEnded) for e in events))
        (ended,) = [e for e in events if isinstance(e, RecordingEnded)]
        assert ended == RecordingEnded(1, str(directory), "relay_restarted", None)
        assert not server.recording(1)
        names = sorted(p.name for p in directory.iterdir())
        closed = [n for n in names if n.endswith(".webm")]
        assert {"audio-0001.webm", "audio-0002.webm", "camera-0001.webm"} <= set(closed), names
        assert any(n.endswith(".part") for n in names), names
        for name in closed:  # the closed segments play as they are
            assert decode_errors(directory / name) == "", name
        result = await asyncio.to_thread(finalize_directory, directory)
        assert sorted(p.name for p in directory.iterdir()) == sorted(
            f"{k}.webm" for k in result.files
        )
        assert {"audio", "camera", "screen"} == set(result.files)
        for kind in result.files:
            path = directory / f"{kind}.webm"
            assert decode_errors(path) == "", kind
            contiguous_run([d for _, d in packets(path)], sent(trainer, kind))
        # The open segment was repaired, not dropped: at most ~1 s (a cluster) lost.
        assert killed - 1.6 <= result.duration_s <= killed + 0.1, (result.duration_s, killed)
        assert finalize_directory(directory) == result  # idempotent
    finally:
        await trainer.close()


# -- the recorder alone, fed frames: its ways to end ---------------------------------------


async def feed(recorder: Recorder, frames: int = 60) -> None:
    video = l1t3_stream(240)
    for i in range(frames):
        data = video[i]
        frame = Frame(None, data[0] & 1 == 0, len(data), i * 900, (b"\x10" + data,))
        recorder.on_frame("camera", frame, 1234)
        await asyncio.sleep(0.01)  # as the timestamps say: 100 frames a second


async def test_a_full_disk_ends_the_recording_not_the_class(tmp_path: Path) -> None:
    ended: list[tuple[str, RecordingFiles | None]] = []
    recorder = Recorder(
        1, tmp_path / "r", lambda r, why, res: ended.append((why, res)), min_free_bytes=1 << 62
    )
    await feed(recorder, 5)
    await wait_for(lambda: bool(ended))
    assert ended[0][0] == "disk_full"
    assert recorder.stats.segments_failed == 1
    await recorder.stop()  # already over: nothing more happens
    assert len(ended) == 1


async def test_a_write_error_ends_the_recording_with_what_was_written(tmp_path: Path) -> None:
    ended: list[tuple[str, RecordingFiles | None]] = []
    directory = tmp_path / "r"
    recorder = Recorder(1, directory, lambda r, why, res: ended.append((why, res)), segment_s=0.3)

    async def talk(packets: int, start: int) -> None:
        for i in range(start, start + packets):  # Opus silence, 20 ms each
            recorder.on_frame("audio", Frame(None, True, 3, i * 960, (b"\xf8\xff\xfe",)), 5)
            await asyncio.sleep(0.02)

    await talk(20, 0)
    await wait_for(lambda: (directory / "audio-0001.webm").exists())
    shutil.rmtree(directory)  # the next segment cannot be created
    await talk(30, 20)
    await wait_for(lambda: bool(ended))
    why, result = ended[0]
    assert why == "write_error"
    assert result is None or result.files == {}  # nothing left to finalize
    assert recorder.stats.segments_failed >= 1


def test_finalize_trims_a_segment_cut_mid_write(tmp_path: Path) -> None:
    """A segment cut at any byte (the process died while writing it) gives the frames
    before the cut; the result plays without an error."""

    async def write() -> None:
        recorder = Recorder(1, tmp_path / "whole", lambda *a: None, segment_s=60)
        await feed(recorder, 120)
        await recorder.stop()

    asyncio.run(write())
    whole = packets(tmp_path / "whole" / "camera.webm")
    data = (tmp_path / "whole" / "camera.webm").read_bytes()
    for cut in (len(data) // 3, len(data) // 2 + 7, len(data) * 3 // 4):
        directory = tmp_path / f"cut{cut}"
        directory.mkdir()
        (directory / "camera-0001.webm.part").write_bytes(data[:cut])
        result = finalize_directory(directory)
        got = packets(directory / "camera.webm")
        assert 0 < len(got) < len(whole) and got == whole[: len(got)]
        assert decode_errors(directory / "camera.webm") == ""
        assert result.files == {"camera": (directory / "camera.webm").stat().st_size}


@pytest.mark.usefixtures("kept_encoders")
async def test_a_new_publisher_after_a_gap_stays_in_sync(
    tmp_path: Path, make_server: Callable[..., MediaServer], events: list[MediaEvent]
) -> None:
    """The trainer's connection goes (a reconnect, or another trainer takes over) and a new
    one publishes 2 s later, with new SSRCs and its own timestamps: both kinds resume at the
    time the new frames arrive, together, on the recording's one origin."""
    server = make_server()
    directory = tmp_path / "r"
    first, _ = trainer_with_camera()
    second, _ = trainer_with_camera()
    try:
        room = server.room(1)
        await server.start_recording(1, directory)
        began = server.recorders[1].started_at
        await first.publish(room)
        await asyncio.sleep(4)
        await room.unpublish()
        await first.close()
        await asyncio.sleep(2)
        resumed = time.monotonic() - began
        await second.publish(room)
        await asyncio.sleep(4)
        await server.stop_recording(1)
        (ended,) = [e for e in events if isinstance(e, RecordingEnded)]
        assert ended.result is not None and set(ended.result.files) == {"audio", "camera"}
        after: dict[str, float] = {}
        for kind in ("audio", "camera"):
            path = directory / f"{kind}.webm"
            assert decode_errors(path) == "", kind
            times = [t for t, _ in packets(path)]
            gap, at = max((b - a, b) for a, b in itertools.pairwise(times))
            assert 1800 <= gap <= 2800, (kind, gap)
            after[kind] = at / 1000
            assert resumed <= after[kind] <= resumed + 0.6, (kind, after[kind], resumed)
            # the second trainer's frames, all of them from the first recorded on
            second_part = [d for t, d in packets(path) if t >= at]
            contiguous_run(second_part, sent(second, kind))
        assert abs(after["audio"] - after["camera"]) < 0.3, after
    finally:
        await first.close()
        await second.close()
        await server.close()


async def test_a_recording_before_anyone_publishes_ends_with_its_room(
    tmp_path: Path, make_server: Callable[..., MediaServer], events: list[MediaEvent]
) -> None:
    server = make_server()
    try:
        await server.start_recording(1, tmp_path / "r")
        assert server.get_room(1) is not None and server.recording(1)
        with pytest.raises(MediaError) as twice:
            await server.start_recording(1, tmp_path / "other")
        assert twice.value.code == "already_recording"
        await server.close_room(1)  # the class's last socket left
        assert not server.recording(1)
        assert events[-1] == RecordingEnded(
            1, str(tmp_path / "r"), "room_closed", RecordingFiles(0.0, {})
        )
        await server.stop_recording(1)  # nothing to stop
    finally:
        await server.close()


def test_the_timeline_keeps_audio_spacing_and_lets_video_catch_up() -> None:
    from appliance.media.recorder import _Timeline

    # Audio: six packets held up and delivered in a burst at 171-176 ms keep 20 ms apart.
    audio = _Timeline(48000, elastic=False)
    placed = [audio.place(1, 1000 + k * 960, 171 + k)[0] for k in range(6)]
    assert placed == [171, 191, 211, 231, 251, 271]
    # ...and the next one follows its timestamp (no overlap, no jump), then the ones that
    # come before their time pull the mapping back through the silence (DTX) they leave.
    assert audio.place(1, 1000 + 6 * 960, 290)[0] == 291
    assert audio.place(1, 1000 + 20 * 960, 400)[0] == 400
    # Video: a first keyframe held up 260 ms, the next frames on time (captured every 66 ms,
    # here 10 ms later): they catch up, 2 ms apart, then follow the wall clock.
    video = _Timeline(90000, elastic=True)
    placed = [video.place(7, k * 6000, 260 if k == 0 else 10 + 66 * k)[0] for k in range(6)]
    assert placed == [260, 262, 264, 266, 274, 340]
    # A sender restarting its timestamps (backwards) or jumping ahead: placed by the wall clock.
    assert video.place(7, 100, 400)[0] == 400
    assert video.place(7, 100 + 90000 * 10, 433)[0] == 433
    # A new SSRC: by the wall clock too, never before the previous frame.
    assert video.place(8, 5, 300)[0] == 435


async def test_a_failing_recording_leaves_the_class_running(
    tmp_path: Path, make_server: Callable[..., MediaServer], events: list[MediaEvent]
) -> None:
    """The recordings' disk is "full" (under the free-space floor): the recording ends with
    ``disk_full`` as soon as it would open a file; the learner goes on receiving."""
    server = make_server(recording_min_free_mb=1 << 40)
    trainer, learner = Trainer(), Learner()
    try:
        room = server.room(1)
        await trainer.publish(room)
        await learner.join(room, 10)
        await wait_for(lambda: learner.frames["video"] >= 10, within=20)
        await server.start_recording(1, tmp_path / "r")
        await wait_for(lambda: any(isinstance(e, RecordingEnded) for e in events), within=10)
        (ended,) = [e for e in events if isinstance(e, RecordingEnded)]
        assert ended.reason == "disk_full" and not server.recording(1)
        assert server.stats().recording_segments_failed == 1
        frames = learner.frames["video"]
        await wait_for(lambda: learner.frames["video"] >= frames + 30, within=10)
        assert room.live == ("audio", "camera")
    finally:
        await trainer.close()
        await learner.close()
        await server.close()
