"""Forwarding encoded media: a tap in the publisher's receiver, a track per learner and slot.

Nothing here decodes or encodes. The tap replaces the receiver's jitter buffer (aiortc still
does SRTP, statistics, RTX unwrapping, NACKs and depayloading before calling ``add``), assembles
VP8 frames on the marker bit and hands each complete frame (its RTP payloads, shared) to the
:class:`Source` of its slot, which offers it to every learner's :class:`ForwardTrack` in one
loop. Two send paths:

- ``lean`` (default): the track sends the frame's packets itself through a
  :class:`~appliance.media.lean.LeanOutput` (header rewrite, the learner's SRTP, ``sendto``).
- ``aiortc``: the frame also becomes one ``av.Packet``, queued for the learner's
  ``RTCRtpSender``, which only packetizes it (``encoder.pack``).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import fractions
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import av
from aiortc import MediaStreamTrack
from aiortc.clock import current_ntp_time
from aiortc.mediastreams import MediaStreamError

from .lean import LeanOutput, bind_output
from .observer import MediaObserver, NullObserver
from .vp8 import layer_of, shift_picture_id

__all__ = ["SEND_PATHS", "AudioTap", "ForwardTrack", "Frame", "Source", "VideoTap"]

#: ``media_send_path`` values
SEND_PATHS = ("lean", "aiortc")

logger = logging.getLogger(__name__)

VIDEO_CLOCK = 90000
AUDIO_CLOCK = 48000
_MASK32 = 0xFFFFFFFF
#: VP8's TID has two bits: a learner receiving "everything" takes layers up to this one
ALL_LAYERS = 3


@dataclass(slots=True)
class Frame:
    """One encoded frame (VP8) or packet (Opus), shared by every learner."""

    packet: av.Packet[Any] | None  # for the aiortc send path only
    keyframe: bool
    size: int
    pts: int = 0  # RTP timestamp on the source's continuous timeline
    payloads: tuple[bytes, ...] = ()  # the trainer's RTP payloads, in order
    marker: bool = True  # marker bit of the last payload
    ntp: int = 0  # NTP time the frame was released (sender reports)
    ast: bytes = b"\0\0\0"  # abs-send-time (24 bits) of that moment
    tid: int | None = None  # VP8 temporal layer (None: the stream has no layers)
    sync: bool = False  # VP8 layer sync (Y): depends on the base layer only
    picture_id: bool = False  # the descriptor carries a picture id (rewritable)
    #: this frame with its picture ids moved back by N, for learners who skipped N frames
    shifted: dict[int, Frame] | None = None

    def shift(self, delta: int) -> Frame:
        """This frame, picture ids moved back by ``delta``; made once per delta, shared."""
        shifted = self.shifted
        if shifted is None:
            shifted = self.shifted = {}
        frame = shifted.get(delta)
        if frame is None:
            payloads = tuple(shift_picture_id(p, delta) for p in self.payloads)
            frame = shifted[delta] = dataclasses.replace(self, payloads=payloads, shifted=None)
        return frame


def _frame(
    source: Source,
    data: bytes | None,
    size: int,
    keyframe: bool,
    pts: int,
    payloads: tuple[bytes, ...],
    marker: bool,
) -> Frame:
    ntp = current_ntp_time()
    packet = None
    if data is not None:
        packet = av.Packet(data)
        packet.pts = pts
        packet.time_base = source.time_base
    return Frame(packet, keyframe, size, pts, payloads, marker, ntp,
                 ((ntp >> 14) & 0xFFFFFF).to_bytes(3, "big"))  # fmt: skip


@dataclass
class SourceStats:
    packets_in: int = 0
    bytes_in: int = 0
    frames_in: int = 0
    frames_dropped_incomplete: int = 0
    #: bytes received per VP8 temporal layer (a stream without layers counts as layer 0)
    layer_bytes: list[int] = field(default_factory=lambda: [0] * (ALL_LAYERS + 1))
    keyframes_in: int = 0
    keyframe_requests: int = 0
    plis_out: int = 0
    nacks_out: int = 0
    keyframe_waits_s: list[float] = field(default_factory=list)


class Source:
    """One published slot (audio, camera or screen) of a room: fan-out and keyframe requests."""

    # Class attributes so tests can shorten them the way aiortc's tests shorten its timers.
    pli_interval_s = 0.5
    #: lean path: the last keyframe and the frames since, for learners connecting now (frames)
    gop_max = 60

    def __init__(
        self, slot: str, kind: str, observer: MediaObserver | None = None, send_path: str = "lean"
    ) -> None:
        self.slot = slot
        self.observer: MediaObserver = observer or NullObserver()
        self.kind = kind
        self.send_path = send_path
        #: whether frames also become ``av.Packet`` objects (the aiortc send path)
        self.av_packets = send_path == "aiortc"
        self.clock = VIDEO_CLOCK if kind == "video" else AUDIO_CLOCK
        self.time_base = fractions.Fraction(1, self.clock)
        #: lean path, video: the last keyframe and the frames since (at most ``gop_max``)
        self.gop: list[Frame] = []
        self.tracks: set[ForwardTrack] = set()
        self.stats = SourceStats()
        self.live = False
        self._receiver: Any = None
        self._media_ssrc: int | None = None
        self._last_pli = -1e9
        self._pending_since: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # RTP timestamps pass through as pts; an offset keeps them continuous across SSRCs
        # (the trainer restarting a camera).
        self._ts_offset = 0
        self._last_pts: int | None = None
        #: highest VP8 temporal layer seen in the current stream (0: one layer, or none yet)
        self.max_tid = 0
        #: bits per second per temporal layer over the last ladder interval
        self.layer_rates = [0.0] * (ALL_LAYERS + 1)
        self._rate_mark: tuple[float, list[int]] | None = None
        #: the room's recorder, handed every frame delivered (slot, frame, SSRC); recorder.py
        self.recorder: Callable[[str, Frame, int | None], None] | None = None
        #: also given every frame: the pipes to sibling workers (media/pipe.py)
        self.outlets: list[Callable[[Source, Frame], None]] = []

    def attach(self, receiver: Any) -> None:
        """Tap ``receiver`` (called before it starts, from the room's ``publish``)."""
        if not hasattr(receiver, "_RTCRtpReceiver__jitter_buffer"):
            raise RuntimeError("media relay: RTCRtpReceiver has no __jitter_buffer (aiortc 1.16)")
        self._receiver = receiver
        self._media_ssrc = None
        tap: AudioTap | VideoTap = VideoTap(self) if self.kind == "video" else AudioTap(self)
        receiver._RTCRtpReceiver__jitter_buffer = tap
        original_nack = receiver._send_rtcp_nack

        async def counting_nack(media_ssrc: int, lost: list[int]) -> None:
            self.stats.nacks_out += 1
            self.observer.nack("sent")
            await original_nack(media_ssrc, lost)

        receiver._send_rtcp_nack = counting_nack

    def detach(self) -> None:
        self.gop = []
        self._receiver = None
        self._media_ssrc = None
        self.live = False
        self._cancel_timer()

    def pts(self, ssrc: int, timestamp: int) -> int:
        if ssrc != self._media_ssrc:
            self._media_ssrc = ssrc
            step = self.clock // 50
            target = 0 if self._last_pts is None else (self._last_pts + step) & _MASK32
            self._ts_offset = (target - timestamp) & _MASK32
        pts = (timestamp + self._ts_offset) & _MASK32
        self._last_pts = pts
        return pts

    def deliver(self, frame: Frame) -> None:
        self.stats.frames_in += 1
        tid = frame.tid
        if tid is None:
            self.stats.layer_bytes[0] += frame.size
        else:
            self.stats.layer_bytes[tid] += frame.size
            if tid > self.max_tid:
                self.max_tid = tid
        if frame.keyframe and self.kind == "video":
            self.stats.keyframes_in += 1
            if self._pending_since is not None:
                waited = time.monotonic() - self._pending_since
                self.stats.keyframe_waits_s.append(waited)
                self.observer.keyframe_waited(waited)
                del self.stats.keyframe_waits_s[:-100]
                self._pending_since = None
                self._cancel_timer()
        if self.kind == "video" and not self.av_packets:
            if frame.keyframe:
                self.gop = [frame]
            elif self.gop:
                if len(self.gop) < self.gop_max:
                    self.gop.append(frame)
                else:
                    self.gop = []  # too old to hand to a learner connecting now
        for track in tuple(self.tracks):
            track.offer(frame)
        if self.recorder is not None:
            self.recorder(self.slot, frame, self._media_ssrc)
        for outlet in self.outlets:
            outlet(self, frame)

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe: at most one PLI per ``pli_interval_s``.

        The request stays pending until a keyframe arrives: one held back by the coalescing
        window is sent when the window ends, and a PLI that brought nothing (lost on the way)
        is repeated after two windows.
        """
        if self.kind != "video":
            return
        self.stats.keyframe_requests += 1
        if self._pending_since is None:
            self._pending_since = time.monotonic()
        self._send_pli_when_due()

    def _send_pli_when_due(self) -> None:
        receiver, ssrc = self._receiver, self._media_ssrc
        if self._pending_since is None or receiver is None or ssrc is None:
            return
        now = time.monotonic()
        wait = self._last_pli + self.pli_interval_s - now
        if wait <= 0:
            self._last_pli = now
            self.stats.plis_out += 1
            self.observer.pli("sent")
            task = asyncio.ensure_future(receiver._send_rtcp_pli(ssrc))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            wait = 2 * self.pli_interval_s
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(wait, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._send_pli_when_due()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def keyframe_pending(self) -> bool:
        return self._pending_since is not None

    def sample_rates(self, now: float) -> list[float]:
        """Bits per second received per temporal layer since the last call (the ladder's
        clock calls it once per interval); the first call only sets the mark."""
        layer_bytes = list(self.stats.layer_bytes)
        mark, self._rate_mark = self._rate_mark, (now, layer_bytes)
        if mark is not None and now > mark[0]:
            span = now - mark[0]
            before = mark[1]
            self.layer_rates = [
                max(0.0, (b - a) * 8 / span) for a, b in zip(before, layer_bytes, strict=True)
            ]
        return self.layer_rates

    def rate_up_to(self, tid: int) -> float:
        """Bits per second of the layers up to ``tid`` (what a learner taking them receives)."""
        return sum(self.layer_rates[: tid + 1]) if self.live else 0.0


class AudioTap:
    """Stands in for the audio jitter buffer: every Opus packet is forwarded at once."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def add(self, packet: Any) -> tuple[bool, None]:
        data: bytes = packet._data
        source = self.source
        stats = source.stats
        stats.packets_in += 1
        stats.bytes_in += len(data)
        if data:
            pts = source.pts(packet.ssrc, packet.timestamp)
            wanted = data if source.av_packets else None
            frame = _frame(source, wanted, len(data), True, pts, (packet.payload,), packet.marker)
            source.deliver(frame)
        return False, None


class _PendingFrame:
    __slots__ = ("end", "first_seen", "parts", "start")

    def __init__(self, now: float) -> None:
        self.first_seen = now
        self.parts: dict[int, Any] = {}  # sequence number -> RtpPacket
        self.start: int | None = None
        self.end: int | None = None

    def assemble(self) -> list[Any] | None:
        """The frame's RTP packets in order, or None while one is missing."""
        if self.start is None or self.end is None:
            return None
        count = ((self.end - self.start) & 0xFFFF) + 1
        if len(self.parts) < count:
            return None
        try:
            return [self.parts[(self.start + i) & 0xFFFF] for i in range(count)]
        except KeyError:
            return None


class VideoTap:
    """Stands in for the video jitter buffer: VP8 frames released complete and in order.

    A frame still incomplete ``giveup_s`` after its first packet (NACK/RTX had their chance) is
    dropped; the following delta frames are dropped too until a keyframe arrives, and one is
    requested, so learners never see corruption.
    """

    giveup_s = 0.25
    max_pending = 16

    def __init__(self, source: Source) -> None:
        self.source = source
        self._pending: dict[int, _PendingFrame] = {}
        self._done: collections.deque[int] = collections.deque(maxlen=64)
        self._broken = True  # until the first keyframe
        self._ssrc: int | None = None

    def add(self, packet: Any) -> tuple[bool, None]:
        payload: bytes = packet.payload
        data: bytes = packet._data
        stats = self.source.stats
        stats.packets_in += 1
        stats.bytes_in += len(data)
        if not data:
            return False, None
        if packet.ssrc != self._ssrc:  # new stream: forget the old one's frames
            self._ssrc = packet.ssrc
            self._pending.clear()
            self._broken = True
            self.source.max_tid = 0  # and its temporal layers: the new one may have others
        ts = packet.timestamp
        now = time.monotonic()
        frame = self._pending.get(ts)
        if frame is None:
            if ts in self._done:
                return False, None  # a late retransmission of a frame already released
            frame = self._pending[ts] = _PendingFrame(now)
        seq = packet.sequence_number
        frame.parts[seq] = packet
        # VP8 payload descriptor: S bit set with partition index 0 starts a frame.
        if payload[0] & 0x10 and payload[0] & 0x07 == 0:
            frame.start = seq
        if packet.marker:
            frame.end = seq
        self._drain(now, packet.ssrc)
        return False, None

    def _drain(self, now: float, ssrc: int) -> None:
        while self._pending:
            ts = next(iter(self._pending))
            frame = self._pending[ts]
            packets = frame.assemble()
            if packets is None:
                if now - frame.first_seen < self.giveup_s and len(self._pending) < self.max_pending:
                    return
                del self._pending[ts]
                self._done.append(ts)
                self.source.stats.frames_dropped_incomplete += 1
                self._broken = True
                self.source.request_keyframe()
                continue
            del self._pending[ts]
            self._done.append(ts)
            keyframe = packets[0]._data[0] & 0x01 == 0
            if self._broken and not keyframe:
                self.source.request_keyframe()
                continue
            self._broken = False
            source = self.source
            data = b"".join(p._data for p in packets) if source.av_packets else None
            size = sum(len(p._data) for p in packets)
            payloads = tuple(p.payload for p in packets)
            pts = source.pts(ssrc, ts)
            released = _frame(source, data, size, keyframe, pts, payloads, True)
            released.tid, released.sync, released.picture_id = layer_of(payloads[0])
            source.deliver(released)


@dataclass
class TrackStats:
    frames_sent: int = 0
    bytes_sent: int = 0
    frames_skipped_waiting_keyframe: int = 0
    #: VP8 frames of temporal layers above the learner's level (or waiting for a layer sync)
    frames_skipped_layer: int = 0
    overflows: int = 0
    send_errors: int = 0
    first_frame_at: float | None = None
    #: the source's ``frames_in`` when this track sent its first frame (for delivery ratios)
    source_frames_at_first: int = 0


class ForwardTrack(MediaStreamTrack):
    """One learner's slot: keyframe gating, a bounded queue, and the send path.

    ``aiortc`` path: the learner's ``RTCRtpSender`` reads pre-encoded ``av.Packet`` objects
    from :meth:`recv`. ``lean`` path: :meth:`offer` sends the frame's packets at once through
    the learner's :class:`LeanOutput` (the queue only holds frames until the learner's DTLS
    transport is up); :meth:`recv` idles until the track stops, so the sender's RTP loop never
    runs while its RTCP loop does.
    """

    #: lean path: held frames go out at most this many packets per tick
    flush_packets = 24
    flush_tick_s = 0.004

    def __init__(
        self,
        source: Source,
        maxsize: int,
        on_first_frame: Callable[[ForwardTrack], None] | None = None,
    ) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        self.maxsize = maxsize
        self.enabled = True
        self.lean = source.send_path == "lean"
        self.waiting_keyframe = source.kind == "video"
        self.stats = TrackStats()
        self._queue: collections.deque[Frame] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._on_first_frame = on_first_frame
        self._live = True
        # lean path: the learner's sender, its negotiated parameters, the bound output
        self.sender: Any = None
        self.parameters: Any = None
        self.output: LeanOutput | None = None
        self._previous: LeanOutput | None = None
        self._pacer: asyncio.TimerHandle | None = None
        #: temporal layers the learner's level leaves out (0: all; 1: the top one; 2: two)
        self.drop_layers = 0
        self._tid = ALL_LAYERS  # highest temporal layer forwarded now
        self._pid_shift = 0  # picture ids skipped so far (frames of layers left out)

    def set_enabled(self, enabled: bool) -> None:
        """Stop or resume this slot for the learner; a resumed video waits for a keyframe."""
        if enabled == self.enabled:
            return
        self.enabled = enabled
        self._queue.clear()
        if enabled and self.kind == "video":
            self.waiting_keyframe = True
            self.source.request_keyframe()

    def set_drop_layers(self, drop: int) -> None:
        """Leave out the ``drop`` top temporal layers of the source (0: forward all).

        Down takes effect at the next frame (lower layers never refer to upper ones); up waits
        for a frame that allows it (a keyframe, or a layer-sync frame of the next layer up):
        no keyframe is asked for either way.
        """
        self.drop_layers = drop

    def wanted_tid(self) -> int:
        """Highest temporal layer this learner's level takes from the source now."""
        if not self.drop_layers:
            return ALL_LAYERS
        return max(0, self.source.max_tid - self.drop_layers)

    def _admit(self, frame: Frame) -> Frame | None:
        """The frame as this learner gets it (picture ids shifted), or None: not its layers."""
        tid = frame.tid
        if tid is None:
            return frame
        wanted = self.wanted_tid()
        if frame.keyframe:
            self._tid = wanted  # a keyframe refreshes every reference: any layer may follow
        elif self._tid > wanted:
            self._tid = wanted
        if tid > self._tid:
            if tid <= wanted and tid == self._tid + 1 and frame.sync:
                self._tid = tid  # a layer-sync frame: this layer is decodable from here on
            else:
                self.stats.frames_skipped_layer += 1
                if frame.picture_id:
                    self._pid_shift = (self._pid_shift + 1) & 0x7FFF
                return None
        if self._pid_shift and self.lean and frame.picture_id:
            return frame.shift(self._pid_shift)
        return frame

    def offer(self, frame: Frame) -> None:
        if not self.enabled or not self._live:
            return
        if self.waiting_keyframe:
            if not frame.keyframe:
                self.stats.frames_skipped_waiting_keyframe += 1
                return
            self.waiting_keyframe = False
        if frame.tid is not None:
            admitted = self._admit(frame)
            if admitted is None:
                return
            frame = admitted
        if self.lean:
            try:
                output = self._bound()
                if output is not None:
                    if self._queue or self._pacer is not None:
                        # Held frames still going out (paced): this one goes behind them.
                        self._queue.append(frame)
                        if self._pacer is None:
                            self._flush(output)
                        return
                    if output.congested():
                        # The learner's socket buffer is full: drop, resume at a keyframe.
                        self.stats.overflows += 1
                        if self.kind == "video":
                            self.waiting_keyframe = True
                            self.source.request_keyframe()
                        return
                    self._sent(frame, 0)
                    output.send(frame)
                    return
            except Exception:  # this learner only; the others and the trainer's leg go on
                self._send_failed()
                return
            if self.kind == "video":
                # Not connected yet: hold the frames from the freshest keyframe on.
                if frame.keyframe:
                    self._queue.clear()
                elif len(self._queue) >= self.maxsize:
                    # Too long: drop them all, ask for a keyframe once connected.
                    self.stats.overflows += 1
                    self._queue.clear()
                    self.waiting_keyframe = True
                    return
                self._queue.append(frame)
                return
        if len(self._queue) >= self.maxsize:
            self.stats.overflows += 1
            if self.kind == "audio":
                self._queue.popleft()  # audio: drop the oldest packet, keep the voice current
            else:
                self._queue.clear()
            if self.kind == "video" and not frame.keyframe:
                # A dropped delta frame would show as corruption: wait for a keyframe.
                self.waiting_keyframe = True
                self.source.request_keyframe()
                return
        self._queue.append(frame)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connected(self) -> None:
        """Lean path: the learner's connection is up; send what was held at once.

        Called when the connection is announced and again when aiortc starts the sender (its
        parameters known): the first call that can bind does the work."""
        if not self.lean or not self._live or self.parameters is None:
            return
        try:
            output = self._bound()
            if output is not None:
                if not self._queue and self.waiting_keyframe and self.enabled and self.source.gop:
                    # Accepted after the last keyframe: that keyframe and the frames since, at
                    # once (no PLI round trip, no coalescing window), of this learner's layers.
                    for held in self.source.gop:
                        admitted = self._admit(held)
                        if admitted is not None:
                            self._queue.append(admitted)
                    self.waiting_keyframe = False
                if self._queue:
                    self._flush(output)
        except Exception:
            self._send_failed()
        if self.waiting_keyframe and self.enabled and self.kind == "video":
            self.source.request_keyframe()

    def _bound(self) -> LeanOutput | None:
        """The learner's output if packets can go out now (bound on first use; after a
        failure, bound again with the same SSRC, sequence numbers, timestamps and history)."""
        output = self.output
        if output is not None and output.usable():
            return output
        if output is None:
            output = bind_output(self.sender, self.parameters, self._previous)
            if output is not None:
                self.output = self._previous = output
        return output if output is not None and output.usable() else None

    def _send_failed(self) -> None:
        """A send raised (a transport closing under us, SRTP refusing): rebind, resume at a
        keyframe. Logged once per track."""
        self.stats.send_errors += 1
        if self.stats.send_errors == 1:
            logger.warning("media relay: lean send failed for a learner", exc_info=True)
        self.output = None
        self._queue.clear()
        self._cancel_pacer()
        if self.kind == "video":
            self.waiting_keyframe = True
            self.source.request_keyframe()

    def _flush(self, output: LeanOutput) -> None:
        """Send the frames held while the learner's transport was not up yet, paced:
        ``flush_packets`` now, the rest every ``flush_tick_s`` (a keyframe and a second of
        frames at once would overflow a receiving socket)."""
        queue = self._queue
        budget = self.flush_packets
        while queue and budget > 0:
            frame = queue.popleft()
            self._sent(frame, len(queue))
            budget -= output.send(frame)
        if queue and self._pacer is None:
            self._pacer = asyncio.get_running_loop().call_later(self.flush_tick_s, self._paced)

    def _paced(self) -> None:
        self._pacer = None
        if not self._live or not self._queue:
            return
        try:
            output = self._bound()
            if output is not None:
                self._flush(output)
            else:
                self._pacer = asyncio.get_running_loop().call_later(1.0, self._paced)
        except Exception:
            self._send_failed()

    def _cancel_pacer(self) -> None:
        if self._pacer is not None:
            self._pacer.cancel()
            self._pacer = None

    def _sent(self, frame: Frame, queued: int) -> None:
        stats = self.stats
        stats.frames_sent += 1
        stats.bytes_sent += frame.size
        if stats.first_frame_at is None:
            stats.first_frame_at = time.monotonic()
            stats.source_frames_at_first = self.source.stats.frames_in - queued - 1
            if self._on_first_frame is not None:
                self._on_first_frame(self)

    def retransmit(self, seq: int) -> bool:
        """Lean path: answer a learner's NACK for ``seq`` from the history."""
        output = self.output
        if output is None:
            return False
        ntp = current_ntp_time()
        return output.retransmit(seq, ((ntp >> 14) & 0xFFFFFF).to_bytes(3, "big"))

    async def recv(self) -> av.Packet[Any]:
        while self.lean or not self._queue:
            if self.readyState != "live":
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
            self._waiter = None
        frame = self._queue.popleft()
        self._sent(frame, len(self._queue))
        assert frame.packet is not None
        return frame.packet

    def stop(self) -> None:
        super().stop()
        self._live = False
        self.source.tracks.discard(self)
        self._queue.clear()
        self._cancel_pacer()
        self.output = None
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
