"""Real aiortc peers for the relay's tests and benchmark: a synthetic trainer and learners.

Nothing of aiortc is replaced: the learner only *observes* its receiver's jitter buffer (to
see whether the first assembled frame is a keyframe) and its socket (to drop packets).
"""

from __future__ import annotations

import asyncio
import fractions
import functools
import hashlib
import random
import re
import struct
import time
import uuid
from typing import Any

import aioice.mdns
import av
import pytest
from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.rtcconfiguration import RTCConfiguration
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, pack_remb_fci

from appliance.media.network import IceScope, ice_scope
from appliance.media.vp8 import layer_of

LOOPBACK = IceScope("127.0.0.1")


class SyntheticVideo(VideoStreamTrack):
    """A moving pattern (so VP8 has something to encode), ``fps`` frames per second."""

    def __init__(self, width: int = 320, height: int = 240, fps: int = 30) -> None:
        super().__init__()
        self.fps = fps
        rng = random.Random(1)
        self._frames = []
        for i in range(fps):
            frame = av.VideoFrame(width, height, "yuv420p")
            for p, plane in enumerate(frame.planes):
                size = plane.buffer_size
                if p == 0:
                    row = bytes((x * 3 + i * 8) & 0xFF for x in range(plane.line_size))
                    noise = bytes(rng.getrandbits(8) for _ in range(plane.line_size * 8))
                    data = bytearray(row * (size // plane.line_size))
                    start = (i * plane.line_size * 4) % max(1, size - len(noise))
                    data[start : start + len(noise)] = noise
                    plane.update(bytes(data))
                else:
                    plane.update(bytes([128]) * size)
            self._frames.append(frame)
        self._count = 0
        self._start: float | None = None
        self.frames_sent = 0

    async def recv(self) -> av.VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        self._count += 1
        wait = self._start + self._count / self.fps - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        frame = self._frames[self._count % len(self._frames)]
        # The frames are reused: aiortc marks a frame I when a keyframe is requested, and
        # that mark would make every later use of the same frame a keyframe.
        frame.pict_type = av.video.frame.PictureType.NONE
        frame.pts = self._count * (90000 // self.fps)
        frame.time_base = fractions.Fraction(1, 90000)
        self.frames_sent += 1
        return frame


class ReplayVideo(MediaStreamTrack):
    """Pre-encoded VP8 (aiortc's own encoder, at its pinned bitrate) replayed at ``fps``.

    For benchmarks: the trainer's encoding does not compete with the server for the CPU.
    ``gop`` frames are encoded once from :class:`SyntheticVideo`'s pattern, a keyframe first;
    the replay loops over them (a keyframe every ``gop`` frames) and restarts at the keyframe
    when the receiver asks for one (PLI/FIR), so every frame sent is decodable.
    """

    kind = "video"

    def __init__(self, width: int = 640, height: int = 480, fps: int = 30, gop: int = 150) -> None:
        super().__init__()
        from aiortc.codecs.vpx import Vp8Encoder, VpxPayloadDescriptor

        source = SyntheticVideo(width, height, fps)
        encoder = Vp8Encoder()
        self.encoded: list[bytes] = []
        for i in range(gop):
            frame = source._frames[i % len(source._frames)]
            frame.pts = i * (90000 // fps)
            frame.time_base = fractions.Fraction(1, 90000)
            payloads, _ = encoder.encode(frame, force_keyframe=i == 0)
            frame.pict_type = av.video.frame.PictureType.NONE
            self.encoded.append(b"".join(VpxPayloadDescriptor.parse(p)[1] for p in payloads))
        self._replay(fps)

    def _replay(self, fps: int) -> None:
        self.fps = fps
        self.frames_sent = 0
        self.index = -1
        self._index = 0
        self._count = 0
        self._start: float | None = None

    def request_keyframe(self) -> None:
        self._index = 0

    async def recv(self) -> av.Packet:
        """The next encoded frame, on time (``index`` is its place in ``encoded``)."""
        if self._start is None:
            self._start = time.monotonic()
        self._count += 1
        wait = self._start + self._count / self.fps - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        self.index = self._index
        self._index = (self._index + 1) % len(self.encoded)
        packet = av.Packet(self.encoded[self.index])
        packet.pts = self._count * (90000 // self.fps)
        packet.time_base = fractions.Fraction(1, 90000)
        self.frames_sent += 1
        return packet


#: libvpx's 3-layer pattern as FFmpeg sets it (``ts_layering_mode=3``): TIDs 0, 2, 1, 2. The
#: TID 2 frame at 1 and the TID 1 frame at 2 refer to the base layer only (layer sync, Y=1); the
#: TID 2 frame at 3 refers to the TID 1 frame before it. ``error-resilient`` keeps the entropy
#: state per frame, so dropped upper-layer frames leave the lower ones bit-exact.
L1T3_TIDS = (0, 2, 1, 2)
L1T3_SYNC = (False, True, True, False)


@functools.cache
def l1t3_stream(
    frames: int = 240, width: int = 320, height: int = 240, bitrate: int = 600_000
) -> tuple[bytes, ...]:
    """VP8 with three temporal layers, a keyframe first, encoded once per test session."""
    source = SyntheticVideo(width, height, 30)
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.bit_rate = bitrate
    codec.thread_count = 1  # libvpx's threads crawl on a loaded machine (85 ms a frame, not 2)
    rates = ",".join(str(bitrate * share // 1000) for share in (40, 60, 100))  # kbit/s per layer
    codec.time_base = fractions.Fraction(1, 30)
    codec.gop_size = 3000
    codec.options = {
        "deadline": "realtime",
        "cpu-used": "-6",
        "lag-in-frames": "0",
        "error-resilient": "default",
        "ts-parameters": f"ts_number_layers=3:ts_target_bitrate={rates}:ts_layering_mode=3",
    }
    encoded: list[bytes] = []
    for i in range(frames):
        frame = source._frames[i % len(source._frames)]
        frame.pts = i
        frame.time_base = fractions.Fraction(1, 30)
        frame.pict_type = (
            av.video.frame.PictureType.I if i == 0 else av.video.frame.PictureType.NONE
        )
        encoded.extend(bytes(p) for p in codec.encode(frame))
    frame.pict_type = av.video.frame.PictureType.NONE
    assert len(encoded) == frames and encoded[0][0] & 1 == 0
    return tuple(encoded)


def picture_digest(frame: av.VideoFrame) -> str:
    """A decoded picture's visible pixels (no row padding), as a digest."""
    digest = hashlib.sha1()
    for plane in frame.planes:
        data, step = bytes(plane), plane.line_size
        for row in range(plane.height):
            digest.update(data[row * step : row * step + plane.width])
    return digest.hexdigest()


@functools.cache
def l1t3_digests(frames: int = 240) -> tuple[str, ...]:
    """The picture each frame of :func:`l1t3_stream` decodes to, all layers decoded."""
    decoder = av.CodecContext.create("libvpx", "r")
    decoder.thread_count = 1
    out = []
    for data in l1t3_stream(frames):
        (picture,) = decoder.decode(av.Packet(data))
        out.append(picture_digest(picture))
    return tuple(out)


class LayeredVideo(ReplayVideo):
    """A trainer's camera sending VP8 in three temporal layers (``L1T3``), as a browser does.

    Replays :func:`l1t3_stream` at ``fps``; its sender packs each frame with the full payload
    descriptor (picture id, TL0PICIDX, TID, Y) through :class:`L1T3Packer`. ``sent`` records
    (index in the stream, tid) of each frame sent.
    """

    def __init__(
        self,
        fps: int = 30,
        frames: int = 240,
        width: int = 320,
        height: int = 240,
        bitrate: int = 600_000,
    ) -> None:
        MediaStreamTrack.__init__(self)  # not ReplayVideo's: these frames are layered
        self.encoded = l1t3_stream(frames, width, height, bitrate)
        self._replay(fps)
        self.sent: list[tuple[int, int]] = []
        self.keyframes_sent = 0

    async def recv(self) -> av.Packet:
        packet = await super().recv()
        self.keyframes_sent += self.index == 0
        self.sent.append((self.index, L1T3_TIDS[self.index % 4]))
        return packet


class L1T3Packer:
    """Stands in for the trainer's VP8 encoder in its ``RTCRtpSender``: packs the frames of a
    :class:`LayeredVideo` with the RFC 7741 descriptor a browser sending ``L1T3`` writes."""

    def __init__(self, track: LayeredVideo) -> None:
        self.track = track
        self.picture_id = random.randint(0, 0x7FFF)
        self.tl0picidx = random.randint(0, 0xFF)

    def pack(self, packet: av.Packet) -> tuple[list[bytes], int]:
        index = self.track.index
        tid, sync = L1T3_TIDS[index % 4], L1T3_SYNC[index % 4]
        if tid == 0:
            self.tl0picidx = (self.tl0picidx + 1) & 0xFF
        data = bytes(packet)
        payloads = []
        for pos in range(0, len(data), 1100):
            head = 0x90 if pos == 0 else 0x80  # X, and S on the frame's first packet
            descriptor = struct.pack(
                "!BBHBB", head, 0xE0, 0x8000 | self.picture_id, self.tl0picidx,
                tid << 6 | int(sync) << 5,
            )  # fmt: skip
            payloads.append(descriptor + data[pos : pos + 1100])
        self.picture_id = (self.picture_id + 1) & 0x7FFF
        assert packet.pts is not None
        return payloads, packet.pts


def config() -> RTCConfiguration:
    return RTCConfiguration(iceServers=[])  # never a public STUN server, even in tests


class Trainer:
    """The trainer's browser, played by aiortc: microphone and camera (and screen)."""

    def __init__(
        self,
        audio: bool = True,
        video: bool = True,
        replay: bool = False,
        layered: bool = False,
        **video_kw: Any,
    ) -> None:
        self.pc = RTCPeerConnection(config())
        self.video: SyntheticVideo | ReplayVideo | LayeredVideo | None = None
        if layered:
            self.video = LayeredVideo(**video_kw)
        elif video:
            self.video = ReplayVideo(**video_kw) if replay else SyntheticVideo(**video_kw)
        self.plis_received = 0
        self.transceivers = {}
        if audio:
            self.transceivers["audio"] = self.pc.addTransceiver(
                AudioStreamTrack(), direction="sendonly"
            )
        if self.video is not None:
            t = self.pc.addTransceiver(self.video, direction="sendonly")
            self.transceivers["camera"] = t
            self._count_plis(t.sender)
            if isinstance(self.video, ReplayVideo):
                t.sender._send_keyframe = self.video.request_keyframe
            if isinstance(self.video, LayeredVideo):
                t.sender._RTCRtpSender__encoder = L1T3Packer(self.video)

    def add_camera(self, **video_kw: Any) -> Any:
        """Start the camera later (the caller renegotiates)."""
        self.video = SyntheticVideo(**video_kw)
        t = self.pc.addTransceiver(self.video, direction="sendonly")
        self.transceivers["camera"] = t
        self._count_plis(t.sender)
        return t

    def _count_plis(self, sender: Any) -> None:
        handle = sender._handle_rtcp_packet

        async def observe(packet: Any) -> None:
            if getattr(packet, "fmt", None) == 1 and type(packet).__name__ == "RtcpPsfbPacket":
                self.plis_received += 1
            await handle(packet)

        sender._handle_rtcp_packet = observe

    def drop_outgoing(self, fraction: float, seed: int = 3) -> None:
        """Lose ``fraction`` of the media datagrams this trainer sends (STUN checks pass)."""
        rng = random.Random(seed)
        for transceiver in self.pc.getTransceivers():
            ice = transceiver.sender.transport.transport
            for protocol in ice._connection._protocols:
                if getattr(protocol, "_estrade_lossy", False):
                    continue
                real = protocol.send_data

                async def lossy(data: bytes, addr: Any, real: Any = real) -> None:
                    if rng.random() >= fraction:
                        await real(data, addr)

                protocol.send_data = lossy
                protocol._estrade_lossy = True

    async def offer(self) -> str:
        with ice_scope(LOOPBACK):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def answer(self, sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp, "answer"))

    async def publish(self, room: Any) -> None:
        await self.answer(await room.publish(await self.offer()))

    async def close(self) -> None:
        await self.pc.close()


class Learner:
    """A learner's browser: receives, decodes (or only counts) what the relay sends."""

    def __init__(
        self,
        decode: bool = True,
        digests: bool = False,
        configuration: RTCConfiguration | None = None,
    ) -> None:
        self.pc = RTCPeerConnection(configuration or config())
        self.decode = decode
        self.frames: dict[str, int] = {"audio": 0, "video": 0}
        self.packets = 0  # RTP packets received (count-only learners)
        self.sizes: list[tuple[int, int]] = []
        self.assembled_keyframes: list[bool] = []
        self.assembled: list[tuple[int, bool]] = []
        self.last_packet_ts: int | None = None
        self.first_frame_at: float | None = None
        self.started_at = time.monotonic()
        self.loss = 0.0
        self.video_ssrc: int | None = None
        #: digests of the decoded pictures (``digests=True``) and the VP8 picture ids received
        self.digests: list[str] | None = [] if digests else None
        self.picture_ids: list[int] = []
        self.layers: list[int | None] = []  # VP8 temporal layer of each frame received
        self.plis_sent = 0
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        for t in self.pc.getTransceivers():
            if t.receiver.track is track and track.kind == "video":
                self._count_plis(t.receiver)
            if t.receiver.track is track and track.kind == "video":
                self._observe_frames(t.receiver)
            elif t.receiver.track is track and not self.decode:
                self._count_audio(t.receiver)
        if self.decode:
            self._tasks.append(asyncio.ensure_future(self._read(track)))

    def _observe_frames(self, receiver: Any) -> None:
        name = "_RTCRtpReceiver__jitter_buffer"
        real = getattr(receiver, name)
        learner = self
        if not self.decode:
            # Count without decoding: the stock buffer assembles, the decoder gets nothing.
            class Counting:
                def add(self, packet: Any) -> tuple[bool, Any]:
                    learner.packets += 1
                    pli, frame = real.add(packet)
                    learner._saw(packet, frame)
                    return pli, None

            setattr(receiver, name, Counting())
            return
        add = real.add

        def observe(packet: Any) -> tuple[bool, Any]:
            pli, frame = add(packet)
            learner._saw(packet, frame)
            return pli, frame

        real.add = observe

    def _count_plis(self, receiver: Any) -> None:
        send = receiver._send_rtcp_pli

        async def counting(media_ssrc: int) -> None:
            self.plis_sent += 1
            await send(media_ssrc)

        receiver._send_rtcp_pli = counting

    def _count_audio(self, receiver: Any) -> None:
        learner = self

        class Counting:
            def add(self, packet: Any) -> tuple[bool, Any]:
                learner.packets += 1
                learner.frames["audio"] += 1
                return False, None

        receiver._RTCRtpReceiver__jitter_buffer = Counting()

    def _saw(self, packet: Any, frame: Any) -> None:
        self.video_ssrc = packet.ssrc
        payload = packet.payload
        if payload[0] & 0x90 == 0x90 and payload[1] & 0x80:  # X and S: a frame's descriptor
            self.picture_ids.append(
                ((payload[2] & 0x7F) << 8 | payload[3]) if payload[2] & 0x80 else payload[2]
            )
            self.layers.append(layer_of(payload).tid)
        self.last_packet_ts = packet.timestamp
        if frame is not None:
            self.assembled_keyframes.append(frame.data[0] & 1 == 0)
            self.assembled.append((frame.timestamp, frame.data[0] & 1 == 0))
            if self.first_frame_at is None:
                self.first_frame_at = time.monotonic()
            if not self.decode:
                self.frames["video"] += 1

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                self.frames[track.kind] += 1
                if track.kind == "video":
                    self.sizes.append((frame.width, frame.height))
                    if self.digests is not None:
                        self.digests.append(picture_digest(frame))
        except Exception:  # the track ended
            return

    async def answer(self, offer_sdp: str) -> str:
        await self.pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
        with ice_scope(LOOPBACK):
            await self.pc.setLocalDescription(await self.pc.createAnswer())
        return self.pc.localDescription.sdp

    async def join(self, room: Any, learner_id: int) -> None:
        self.started_at = time.monotonic()
        offer = await room.subscribe(learner_id)
        await room.accept_answer(learner_id, await self.answer(offer.sdp))

    def drop_incoming(self, fraction: float, seed: int = 7) -> None:
        """Lose ``fraction`` of the datagrams arriving on this learner's socket(s)."""
        self.loss = fraction
        rng = random.Random(seed)
        for transceiver in self.pc.getTransceivers():
            ice = transceiver.receiver.transport.transport
            for protocol in ice._connection._protocols:
                if getattr(protocol, "_estrade_lossy", False):
                    continue
                real = protocol.datagram_received

                def lossy(data: bytes, addr: Any, real: Any = real) -> None:
                    if rng.random() >= self.loss:
                        real(data, addr)

                protocol.datagram_received = lossy
                protocol._estrade_lossy = True

    def go_light(self) -> None:
        """Benchmarks: count RTP datagrams by their clear header and drop them undecrypted.

        STUN and DTLS still reach aiortc (ICE consent, the handshake); RTCP from the relay too.
        The learner then costs its process almost nothing per packet, so a crowded benchmark
        client cannot starve and lose what the relay sends. Counts land in ``light``:
        ``{ssrc: [first arrival, packets, lowest seq, highest seq]}`` (no wrap: short runs).
        """
        self.light: dict[int, list[float]] = {}
        light = self.light
        for transceiver in self.pc.getTransceivers():
            ice = transceiver.receiver.transport.transport
            for protocol in ice._connection._protocols:
                if getattr(protocol, "_estrade_light", False):
                    continue
                real = protocol.datagram_received

                def count(data: bytes, addr: Any, real: Any = real) -> None:
                    if len(data) >= 12 and 127 < data[0] < 192 and not 191 < data[1] < 224:
                        ssrc = int.from_bytes(data[8:12], "big")
                        seq = int.from_bytes(data[2:4], "big")
                        entry = light.get(ssrc)
                        if entry is None:
                            light[ssrc] = [time.monotonic(), 1, seq, seq]
                        else:
                            entry[1] += 1
                            entry[2] = min(entry[2], seq)
                            entry[3] = max(entry[3], seq)
                        self.packets += 1
                        return
                    real(data, addr)

                protocol.datagram_received = count
                protocol._estrade_light = True

    def claim_bandwidth(self, bps: int, every_s: float = 0.1) -> None:
        """Play a browser whose bandwidth estimate (REMB) says ``bps`` for the video it gets:
        the learner's own estimator is switched off, a REMB goes out every ``every_s``."""
        receivers = [t.receiver for t in self.pc.getTransceivers()]
        for receiver in receivers:
            receiver._RTCRtpReceiver__remote_bitrate_estimator = None

        async def send() -> None:
            while True:
                if self.video_ssrc is not None:
                    packet = RtcpPsfbPacket(
                        fmt=RTCP_PSFB_APP,
                        ssrc=receivers[0]._RTCRtpReceiver__rtcp_ssrc or 1,
                        media_ssrc=0,
                        fci=pack_remb_fci(bps, [self.video_ssrc]),
                    )
                    await receivers[0]._send_rtcp(packet)
                await asyncio.sleep(every_s)

        self._tasks.append(asyncio.ensure_future(send()))

    async def send_pli(self) -> None:
        for t in self.pc.getTransceivers():
            if t.kind == "video" and self.video_ssrc is not None:
                await t.receiver._send_rtcp_pli(self.video_ssrc)
                return

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.pc.close()
        await asyncio.gather(*self._tasks, return_exceptions=True)


async def wait_for(predicate: Any, within: float = 10.0, step: float = 0.05) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(step)


_HOST = re.compile(r"^(a=candidate:\S+ \d+ \S+ \d+ )(\S+)( \d+ typ host)", re.M)


def hide_hosts(sdp: str) -> str:
    """Every host candidate's address replaced by a fresh ``.local`` name, as a browser that
    was granted no camera writes its SDP (the name resolves nowhere)."""
    hidden, count = _HOST.subn(lambda m: f"{m[1]}{uuid.uuid4()}.local{m[3]}", sdp)
    assert count >= 1, sdp
    hosts = re.findall(r"^a=candidate:.* typ host.*$", hidden, re.M)
    assert all(".local " in line for line in hosts), hosts
    return hidden


class _SilentLink:
    """aioice's mDNS protocol on a link where nobody answers: every query goes unanswered."""

    def __init__(self, queries: list[str]) -> None:
        self.queries = queries

    async def resolve(self, hostname: str, timeout: float | None = 1.0) -> None:  # noqa: ASYNC109
        self.queries.append(hostname)
        return None

    async def publish(self, hostname: str, addr: str) -> None:
        return None

    async def close(self) -> None:
        return None


@pytest.fixture
def mdns_queries(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The mDNS names aioice asked for, in place of its multicast socket.

    aioice resolves a ``.local`` candidate with a multicast query on the machine's network
    (224.0.0.251), which a test must never send: this stands in for aioice's mDNS socket,
    answers nothing (what a server in a data centre hears) and records every query.
    """
    queries: list[str] = []

    async def create() -> _SilentLink:
        return _SilentLink(queries)

    monkeypatch.setattr(aioice.mdns, "create_mdns_protocol", create)
    return queries
