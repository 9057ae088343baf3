"""Recording a class: the trainer's frames, as the relay receives them, muxed into WebM.

Nothing is decoded or encoded. Each :class:`~appliance.media.forward.Source` hands every frame
it delivers to the room's :class:`Recorder` (``Source.recorder``); the recorder gives it a
time in milliseconds from the recording's start (one origin for audio, camera and screen: the
files stay in sync, a gap is absent frames) and queues it for its writer thread, which muxes
it with PyAV (``add_mux_stream``: no codec is opened) into segments ``audio-0001.webm``,
``camera-0001.webm``, ``screen-0001.webm``... of ``recording_segment_s`` each. The open segment
is named ``*.webm.part``; it is renamed when closed, so a killed server loses at most that one
and :func:`finalize_directory` knows which one to repair. When the recording ends the writer
remuxes each kind's segments into ``audio.webm``, ``camera.webm``, ``screen.webm`` (the
contract with the replay side: /work notes, docs/recordings.md).

Media time: a stream's first frame is placed at the wall-clock time it arrived, the frames
after it by their RTP timestamps; a frame that arrives before the time so computed moves the
stream's origin back (the first frame had been held up: the least delayed frame sets the
mapping), for audio only as far as its packets' spacing allows (they must not overlap). A new
stream (new SSRC: the trainer reconnected, a new publisher, a track restarted), timestamps that
jump (back, or ahead of the wall clock by more than ``RESYNC_MS``) or that lag the wall clock
by more than ``RESYNC_MS`` are placed by the wall clock again.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fractions
import functools
import io
import logging
import os
import queue
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import av

from .vp8 import descriptor_size, keyframe_size

if TYPE_CHECKING:
    from .forward import Frame, Source

__all__ = [
    "KINDS",
    "Recorder",
    "RecorderStats",
    "RecordingFiles",
    "RecordingReason",
    "finalize_directory",
    "segment_name",
]

logger = logging.getLogger(__name__)

#: what a recording holds, one file per kind (the room's slots)
KINDS = ("audio", "camera", "screen")
RESYNC_MS = 3000
#: an Opus packet's duration (WebRTC's 20 ms): audio packets are never placed closer
_OPUS_MS = 20
#: the least time between two frames of a file (see _VIDEO_RATE)
_MIN_GAP_MS = 2
#: frames waiting for the writer; beyond, the disk is too slow and the recording stops
MAX_BACKLOG = 6000
_MS = fractions.Fraction(1, 1000)
#: The frame rate video tracks declare (Matroska's DefaultDuration). A camera's frames come
#: at a variable rate, sometimes a few ms apart (a stalled sender catching up, a track switch).
#: Readers that resample to the stream's frame rate (FFmpeg's tools guess one from the
#: timestamps when none is declared, e.g. 15/s) would put two such frames on the same instant;
#: declared as 999/s (FFmpeg's Matroska reader takes a declared rate only under 1000/s), with
#: frames at least 2 ms apart (_MIN_GAP_MS), no two frames ever share an instant.
_VIDEO_RATE = fractions.Fraction(999)
_MASK32 = 0xFFFFFFFF
_CLOCKS = {"audio": 48000, "camera": 90000, "screen": 90000}
# Matroska clusters of at most a second, flushed to the file as they close: a killed server
# loses about a second of the open segment, not all of it.
_MUX_OPTIONS = {"cluster_time_limit": "1000", "flush_packets": "1"}
_END = object()


#: why a recording ended (``RecordingEnded.reason``)
RecordingReason = Literal["stopped", "write_error", "disk_full", "relay_restarted", "room_closed"]


@dataclass(frozen=True, slots=True)
class RecordingFiles:
    """What a finished recording holds."""

    duration_s: float
    """Media time covered (0.0 if nothing was written)."""
    files: dict[str, int]
    """Kind (``audio``, ``camera``, ``screen``) -> bytes of its final file."""


@dataclass(slots=True)
class RecorderStats:
    frames: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    """Frames queued for writing, by kind."""
    bytes_written: int = 0
    segments: int = 0
    segments_failed: int = 0
    """Segments that could not be written or closed."""


def segment_name(kind: str, index: int) -> str:
    return f"{kind}-{index:04d}.webm"


class _Timeline:
    """One kind's RTP timestamps -> milliseconds from the recording's start.

    ``elastic`` (video): a frame may be placed closer to the one before than their timestamps
    say, to catch up with a held-up first frame. Audio is not: its packets must not overlap.
    """

    __slots__ = ("anchor_ms", "clock", "elastic", "last_ms", "last_ts", "last_wall", "span", "ssrc")

    def __init__(self, clock: int, elastic: bool) -> None:
        self.clock = clock
        self.elastic = elastic
        self.ssrc: int | None = None
        self.anchor_ms = 0
        self.last_ts = 0
        self.last_wall = 0
        self.span = 0  # RTP ticks since the anchor, unwrapped
        self.last_ms = -_MIN_GAP_MS

    def place(self, ssrc: int | None, ts: int, wall_ms: int) -> tuple[int, bool]:
        """(milliseconds, whether the stream is new)."""
        new = ssrc != self.ssrc
        if new:
            ms = self._anchor(ssrc, ts, wall_ms)
        else:
            delta = (ts - self.last_ts) & _MASK32
            if delta >= 0x80000000:
                delta -= 0x100000000
            step = delta * 1000 // self.clock  # ms since the previous frame, by its timestamp
            self.span += delta
            self.last_ts = ts
            ms = self.anchor_ms + self.span * 1000 // self.clock
            if delta < 0 or step - (wall_ms - self.last_wall) > RESYNC_MS:
                ms = self._anchor(ssrc, ts, wall_ms)  # the sender's timestamps jumped
            elif wall_ms - ms > RESYNC_MS:
                ms = self._anchor(ssrc, ts, wall_ms)  # its clock lags the wall clock
            elif ms > wall_ms:
                # Here before its time: the frames that set the mapping were held up on the
                # way; the least delayed frame sets it (as far as the spacing allows).
                floor = self.last_ms + (_MIN_GAP_MS if self.elastic else min(step, _OPUS_MS))
                target = max(wall_ms, floor)
                if target < ms:
                    self.anchor_ms -= ms - target
                    ms = target
        if ms < self.last_ms + _MIN_GAP_MS:
            ms = self.last_ms + _MIN_GAP_MS
        self.last_ms = ms
        self.last_wall = wall_ms
        return ms, new

    def _anchor(self, ssrc: int | None, ts: int, wall_ms: int) -> int:
        self.ssrc, self.last_ts, self.span = ssrc, ts, 0
        self.anchor_ms = max(wall_ms, self.last_ms + _MIN_GAP_MS)
        return self.anchor_ms


class Recorder:
    """One recording of one room: takes frames on the event loop, writes them in a thread.

    Args:
        cohort_id: whose class.
        directory: where the files go (chosen by the web process; created if missing).
        on_end: called on the event loop once, with the reason and the finalized files (None
            if finalizing failed), when the recording ended (:meth:`stop`, a write error, the
            disk full).
        segment_s: seconds per segment.
        min_free_bytes: the recording stops (``disk_full``) when the disk has less free.
    """

    def __init__(
        self,
        cohort_id: int,
        directory: Path,
        on_end: Callable[[Recorder, RecordingReason, RecordingFiles | None], None],
        segment_s: float = 300.0,
        min_free_bytes: int = 0,
    ) -> None:
        self.cohort_id = cohort_id
        self.directory = Path(directory)
        self.segment_ms = int(segment_s * 1000)
        self.min_free_bytes = min_free_bytes
        self.stats = RecorderStats()
        self.started_at = time.monotonic()
        self.reason: RecordingReason | None = None
        self._on_end = on_end
        self._loop = asyncio.get_running_loop()
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._timelines = {
            kind: _Timeline(clock, elastic=kind != "audio") for kind, clock in _CLOCKS.items()
        }
        self._waiting_keyframe = {"camera": True, "screen": True}
        self._sources: dict[str, Source] = {}
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._thread = threading.Thread(
            target=self._write, name=f"recorder-{cohort_id}", daemon=True
        )
        self._thread.start()

    # -- event loop side --------------------------------------------------------------------

    @property
    def active(self) -> bool:
        return self.reason is None

    def attach(self, sources: dict[str, Source]) -> None:
        """Start taking the room's frames; asks its video sources for a keyframe."""
        self._sources = dict(sources)
        for slot, source in sources.items():
            if slot in KINDS:
                source.recorder = self.on_frame
        for slot in ("camera", "screen"):
            self._waiting_keyframe[slot] = True
            self.request_keyframe(slot)

    def detach(self) -> None:
        for source in self._sources.values():
            if source.recorder == self.on_frame:
                source.recorder = None
        self._sources = {}

    def request_keyframe(self, slot: str) -> None:
        source = self._sources.get(slot)
        if source is not None and source.live:
            source.request_keyframe()

    def on_frame(self, slot: str, frame: Frame, ssrc: int | None) -> None:
        """A frame the relay delivered (called by ``Source.deliver``, on the event loop)."""
        if self.reason is not None:
            return
        video = slot != "audio"
        if video and self._waiting_keyframe[slot]:
            if not frame.keyframe:
                self.request_keyframe(slot)  # coalesced by the source
                return
            self._waiting_keyframe[slot] = False
        wall_ms = int((time.monotonic() - self.started_at) * 1000)
        ms, new = self._timelines[slot].place(ssrc, frame.pts, wall_ms)
        if new and video and not frame.keyframe:
            # A video track started mid-GOP (VideoTap releases a new stream at a keyframe,
            # so this is a safeguard): the file must restart at a keyframe.
            self._waiting_keyframe[slot] = True
            self.request_keyframe(slot)
            return
        self.stats.frames[slot] += 1
        self._queue.put((slot, ms, frame.keyframe, frame.payloads))
        if self._queue.qsize() > MAX_BACKLOG:
            self._fail("write_error", "the recording's writer is too far behind")

    def _fail(self, reason: RecordingReason, why: str) -> None:
        if self.reason is None:
            logger.error("recording of cohort %s stops: %s", self.cohort_id, why)
            self.reason = reason
            self._queue.put(_END)

    async def stop(self, reason: RecordingReason = "stopped") -> None:
        """End the recording (idempotent): close the segments, finalize, call ``on_end``."""
        if self.reason is None:
            self.reason = reason
            self._queue.put(_END)
        await asyncio.shield(self._done)

    def _ended(self, result: RecordingFiles | None) -> None:
        self.detach()
        if not self._done.done():
            self._done.set_result(None)
        self._on_end(self, self.reason or "stopped", result)

    # -- writer thread ----------------------------------------------------------------------

    def _write(self) -> None:
        writers: dict[str, _Segment] = {}
        counts = dict.fromkeys(KINDS, 0)
        failure: RecordingReason | None = None
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            for kind in KINDS:
                counts[kind] = _last_index(self.directory, kind)
            for item in self._items():
                slot, ms, keyframe, payloads = item
                data = payloads[0] if slot == "audio" else _vp8_frame(payloads)
                segment = writers.get(slot)
                if segment is not None and segment.due(ms, self.segment_ms):
                    if slot == "audio" or keyframe:
                        writers.pop(slot).close()
                        self.stats.segments += 1
                        segment = None
                    elif not segment.keyframe_asked:
                        segment.keyframe_asked = True  # the next segment starts at one
                        self._loop.call_soon_threadsafe(self.request_keyframe, slot)
                if segment is None:
                    self._check_space()
                    counts[slot] += 1
                    path = self.directory / segment_name(slot, counts[slot])
                    segment = writers[slot] = _Segment(path, slot, ms, data)
                segment.write(ms, keyframe, data)
                self.stats.bytes_written += len(data)
        except _DiskFull as exc:
            failure = "disk_full"
            logger.error("recording of cohort %s: %s", self.cohort_id, exc)
        except (OSError, av.FFmpegError) as exc:
            failure = _reason(exc)
            logger.error("recording of cohort %s: write failed: %s", self.cohort_id, exc)
        except Exception:
            failure = "write_error"
            logger.exception("recording of cohort %s: the writer failed", self.cohort_id)
        for segment in writers.values():
            try:
                segment.close()
                self.stats.segments += 1
            except (OSError, av.FFmpegError) as exc:
                self.stats.segments_failed += 1
                failure = failure or _reason(exc)
                logger.error(
                    "recording of cohort %s: closing %s: %s", self.cohort_id, segment.path, exc
                )
        if failure is not None:
            self.stats.segments_failed += 1  # the one being written (or opened) when it failed
        result: RecordingFiles | None = None
        try:
            result = finalize_directory(self.directory)
        except (OSError, av.FFmpegError) as exc:
            logger.error("recording of cohort %s: finalizing failed: %s", self.cohort_id, exc)
            failure = failure or _reason(exc)
        self._report(failure, result)

    #: the writer wakes at most this often (a batch each time, not a wake-up per frame)
    batch_s = 0.1

    def _items(self) -> Iterator[Any]:
        """The queued frames, in batches, until the end mark."""
        get = self._queue.get_nowait
        while True:
            item = self._queue.get()
            while item is not _END:
                yield item
                try:
                    item = get()
                except queue.Empty:
                    break
            if item is _END:
                return
            time.sleep(self.batch_s)

    def _report(self, failure: RecordingReason | None, result: RecordingFiles | None) -> None:
        def report() -> None:
            if failure is not None and self.reason in (None, "stopped"):
                self.reason = failure
            elif self.reason is None:
                self.reason = "stopped"
            self._ended(result)

        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to tell
            self._loop.call_soon_threadsafe(report)

    def _check_space(self) -> None:
        if self.min_free_bytes and shutil.disk_usage(self.directory).free < self.min_free_bytes:
            raise _DiskFull(f"less than {self.min_free_bytes} bytes free in {self.directory}")

    def join(self, timeout: float | None = None) -> None:
        """Wait for the writer thread (tests, shutdown)."""
        self._thread.join(timeout)


class _DiskFull(Exception):
    pass


def _reason(exc: BaseException) -> RecordingReason:
    code = getattr(exc, "errno", None)
    return "disk_full" if code in (errno.ENOSPC, errno.EDQUOT) else "write_error"


def _vp8_frame(payloads: tuple[bytes, ...]) -> bytes:
    """The VP8 frame as its encoder made it: the RTP payloads without their descriptors."""
    return b"".join(p[descriptor_size(p) :] for p in payloads)


def _last_index(directory: Path, kind: str) -> int:
    """The highest segment number of ``kind`` already in ``directory`` (a resumed one)."""
    found = [_index_of(p.name) for p in directory.glob(f"{kind}-*.webm*")]
    return max((i for i in found if i is not None), default=0)


def _index_of(name: str) -> int | None:
    stem = name.split(".", 1)[0]
    number = stem.rsplit("-", 1)[-1]
    return int(number) if number.isdigit() else None


@functools.cache
def _opus_template() -> Any:
    """An Opus track with its ``OpusHead`` (48 kHz, 2 channels), made once per process: the
    template of every audio segment's track (``add_stream_from_template``), so no codec is
    opened to write a segment. libopus is opened here only to fill that header: it encodes
    nothing. The container stays in memory for the process's life."""
    out = av.open(io.BytesIO(), "w", format="webm")
    stream = out.add_stream("libopus", rate=48000)
    out.start_encoding()
    return stream


class _Segment:
    """One open segment file of one kind (``*.webm.part`` until closed)."""

    def __init__(self, path: Path, kind: str, first_ms: int, first: bytes) -> None:
        self.path = path
        self.part = path.with_name(path.name + ".part")
        self.first_ms = first_ms
        self.keyframe_asked = False
        self.kind = kind
        self.output: Any = av.open(str(self.part), "w", format="webm", options=_MUX_OPTIONS)
        try:
            if kind == "audio":
                self.stream = self.output.add_stream_from_template(_opus_template(), opaque=True)
            else:
                width, height = keyframe_size(first) or (0, 0)
                self.stream = self.output.add_mux_stream(
                    "vp8", rate=_VIDEO_RATE, width=width, height=height
                )
            self.stream.time_base = _MS
        except BaseException:
            self.output.close()
            raise

    def due(self, ms: int, segment_ms: int) -> bool:
        return ms - self.first_ms >= segment_ms

    def write(self, ms: int, keyframe: bool, data: bytes) -> None:
        packet = av.Packet(data)
        packet.stream = self.stream
        packet.pts = packet.dts = ms
        packet.time_base = _MS
        packet.is_keyframe = keyframe
        if self.kind == "audio":
            packet.duration = _OPUS_MS
        self.output.mux(packet)

    def close(self) -> None:
        self.output.close()
        os.replace(self.part, self.path)


# -- finalizing ------------------------------------------------------------------------------


def finalize_directory(path: Path) -> RecordingFiles:
    """Make ``path``'s final files from its segments; repair or trim a killed server's open
    segment. Synchronous and idempotent (run it with ``asyncio.to_thread``).

    Each kind's final file, then its segments in order, are read packet by packet (no
    decoding) and written to ``KIND.webm.tmp`` , keeping only packets later than the last one
    written; a segment whose end is damaged (``.part``: the server died while writing it) gives
    the packets before the damage. The file is then renamed ``KIND.webm`` and only then are the
    segments deleted: a crash at any point leaves something this function finishes.
    """
    path = Path(path)
    files: dict[str, int] = {}
    end_ms = 0
    for kind in KINDS:
        final = path / f"{kind}.webm"
        segments = sorted(
            (p for p in path.glob(f"{kind}-*.webm*") if _index_of(p.name) is not None),
            key=lambda p: (_index_of(p.name), p.suffix == ".part"),
        )
        if segments:
            tmp = path / f"{kind}.webm.tmp"
            inputs = ([final] if final.exists() else []) + segments
            last = _remux(inputs, tmp)
            if last is not None:
                os.replace(tmp, final)
            else:
                tmp.unlink(missing_ok=True)
            for segment in segments:
                segment.unlink(missing_ok=True)
        if final.exists():
            files[kind] = final.stat().st_size
            end_ms = max(end_ms, _end_ms(final))
    return RecordingFiles(duration_s=end_ms / 1000, files=files)


def _packets(source: Path) -> Iterable[Any]:
    """The packets of a WebM file with one track, until its end or the first damage."""
    try:
        container = av.open(str(source))
    except (av.FFmpegError, OSError) as exc:
        logger.warning("recording segment %s unreadable, skipped: %s", source, exc)
        return
    with container:
        if not container.streams:
            return
        stream = container.streams[0]
        try:
            for packet in container.demux(stream):
                if packet.dts is not None and packet.size:
                    yield stream, packet
        except av.FFmpegError as exc:
            logger.warning("recording segment %s damaged, trimmed: %s", source, exc)


def _remux(inputs: list[Path], target: Path) -> int | None:
    """Every packet of ``inputs`` in time order into ``target``; the last pts (ms) or None."""
    output: Any = None
    out_stream: Any = None
    last: int | None = None
    try:
        for source in inputs:
            for stream, packet in _packets(source):
                pts = int(packet.pts * packet.time_base * 1000)
                if last is not None and pts <= last:
                    continue  # already in the final file (a finalize that was interrupted)
                if output is None:
                    output = av.open(str(target), "w", format="webm")
                    out_stream = output.add_stream_from_template(stream, opaque=True)
                    out_stream.time_base = _MS
                    if stream.type == "video":  # as in the segments (_Segment)
                        out_stream.codec_context.framerate = _VIDEO_RATE
                packet.stream = out_stream
                output.mux(packet)
                last = pts
    finally:
        if output is not None:
            output.close()
    return last


def _end_ms(final: Path) -> int:
    """Where ``final`` ends, in ms from the recording's start (Matroska's Duration is the end
    time of its last packet: the files' timestamps all count from the recording's start)."""
    with av.open(str(final)) as container:
        return int((container.duration or 0) * 1000 // av.time_base)
