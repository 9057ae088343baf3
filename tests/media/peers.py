"""Real aiortc peers for the relay's tests and benchmark: a synthetic trainer and learners.

Nothing of aiortc is replaced: the learner only *observes* its receiver's jitter buffer (to
see whether the first assembled frame is a keyframe) and its socket (to drop packets).
"""

from __future__ import annotations

import asyncio
import fractions
import random
import time
from typing import Any

import av
from aiortc import (
    AudioStreamTrack,
    MediaStreamTrack,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.rtcconfiguration import RTCConfiguration

from appliance.media.network import IceScope, ice_scope

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
        self.fps = fps
        self.frames_sent = 0
        self._index = 0
        self._count = 0
        self._start: float | None = None

    def request_keyframe(self) -> None:
        self._index = 0

    async def recv(self) -> av.Packet:
        if self._start is None:
            self._start = time.monotonic()
        self._count += 1
        wait = self._start + self._count / self.fps - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)
        packet = av.Packet(self.encoded[self._index])
        self._index = (self._index + 1) % len(self.encoded)
        packet.pts = self._count * (90000 // self.fps)
        packet.time_base = fractions.Fraction(1, 90000)
        self.frames_sent += 1
        return packet


def config() -> RTCConfiguration:
    return RTCConfiguration(iceServers=[])  # never a public STUN server, even in tests


class Trainer:
    """The trainer's browser, played by aiortc: microphone and camera (and screen)."""

    def __init__(
        self, audio: bool = True, video: bool = True, replay: bool = False, **video_kw: Any
    ) -> None:
        self.pc = RTCPeerConnection(config())
        self.video: SyntheticVideo | ReplayVideo | None = None
        if video:
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

    def __init__(self, decode: bool = True, configuration: RTCConfiguration | None = None) -> None:
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
        self._tasks: list[asyncio.Task[None]] = []
        self.pc.on("track", self._on_track)

    def _on_track(self, track: MediaStreamTrack) -> None:
        for t in self.pc.getTransceivers():
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
