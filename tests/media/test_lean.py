"""The lean send path, checked on the wire: what the learner decrypts against what the trainer sent.

Real aiortc peers on 127.0.0.1. The trainer's plaintext RTP is read where its DTLS transport
protects it; the learner's after its own SRTP session decrypted it (its receiver's jitter
buffer sees the packet), with the sender reports it receives.
"""

from __future__ import annotations

import asyncio
from itertools import pairwise
from typing import Any

import pytest
from aiortc.rtp import RtcpSrPacket, RtpPacket, is_rtcp

from appliance.media import MediaServer

from .peers import Learner, Trainer, wait_for


class RecordingLearner(Learner):
    """A decoding learner that keeps every camera packet and sender report it receives."""

    def __init__(self) -> None:
        super().__init__(decode=True)
        self.packets: list[RtpPacket] = []
        self.reports: list[tuple[Any, int, int]] = []  # (sender info, packets, octets) then

    def _saw(self, packet: Any, frame: Any) -> None:
        self.packets.append(packet)
        super()._saw(packet, frame)

    def watch_reports(self, camera_mid: str) -> None:
        assert any(t.mid == camera_mid for t in self.pc.getTransceivers())
        for t in self.pc.getTransceivers():
            if t.mid == camera_mid:
                handle = t.receiver._handle_rtcp_packet

                async def observe(packet: Any, handle: Any = handle) -> None:
                    if isinstance(packet, RtcpSrPacket):
                        octets = sum(len(p.payload) for p in self.packets)
                        self.reports.append((packet, len(self.packets), octets))
                    await handle(packet)

                t.receiver._handle_rtcp_packet = observe


def record_trainer(trainer: Trainer) -> list[RtpPacket]:
    """The trainer's camera packets in the order it sends them (plaintext, before SRTP)."""
    sent: list[RtpPacket] = []
    sender = trainer.transceivers["camera"].sender
    dtls = sender.transport
    send_rtp = dtls._send_rtp

    async def observe(data: bytes) -> None:
        if not is_rtcp(data):
            packet = RtpPacket.parse(data)
            if packet.ssrc == sender._ssrc:
                sent.append(packet)
        await send_rtp(data)

    dtls._send_rtp = observe
    return sent


def starts_keyframe(payload: bytes) -> bool:
    """VP8 payload descriptor with S=1, PID=0, then a keyframe's first byte."""
    if not payload[0] & 0x10 or payload[0] & 0x07:
        return False
    i = 1
    if payload[0] & 0x80:  # X: extensions
        x = payload[1]
        i = 2
        if x & 0x80:  # I: picture id
            i += 2 if payload[i] & 0x80 else 1
        if x & 0x40:
            i += 1
        if x & 0x30:
            i += 1
    return payload[i] & 0x01 == 0


async def test_forwarded_packets_are_the_trainers_bytes_in_one_continuous_sequence(
    server: MediaServer,
) -> None:
    room = server.room(1)
    trainer = Trainer()
    learner = RecordingLearner()
    try:
        await trainer.publish(room)
        sent = record_trainer(trainer)
        await wait_for(lambda: len(sent) > 20)
        offer = await room.subscribe(10)
        camera_mid = next(mid for mid, slot in offer.slots.items() if slot == "camera")
        answer = await learner.answer(offer.sdp)
        learner.watch_reports(camera_mid)
        await room.accept_answer(10, answer)
        await wait_for(lambda: learner.frames["video"] >= 20)

        # A keyframe wait in the middle: the camera stops for this learner, then resumes at
        # the next keyframe; the trainer's frames in between are not forwarded.
        room.set_quality(10, "audio")
        await asyncio.sleep(0.5)
        before = len(learner.packets)
        room.set_quality(10, "full")
        await wait_for(lambda: learner.frames["video"] >= 45)
        await wait_for(lambda: len(learner.reports) >= 3, within=10)
        got = list(learner.packets)
        assert len(got) > before > 0

        # Byte-identical payloads, as runs of consecutive trainer packets, each run starting
        # at a keyframe: the learner's first packet and the first after the wait.
        index = {p.payload: i for i, p in enumerate(sent)}
        assert len(index) == len(sent)  # picture ids make every payload unique
        positions = [index[p.payload] for p in got]
        runs = [0] + [i for i in range(1, len(got)) if positions[i] != positions[i - 1] + 1]
        assert runs == [0, before], "one run before the wait, one after"
        assert all(starts_keyframe(got[i].payload) for i in runs)
        assert positions[before] - positions[before - 1] > 5  # frames skipped meanwhile
        for p in got:
            assert p.marker == sent[index[p.payload]].marker

        # One SSRC, sequence numbers continuous across the wait, one timestamp offset.
        assert len({p.ssrc for p in got}) == 1
        steps = {(b.sequence_number - a.sequence_number) & 0xFFFF for a, b in pairwise(got)}
        assert steps == {1}
        offsets = {(p.timestamp - sent[index[p.payload]].timestamp) & 0xFFFFFFFF for p in got}
        assert len(offsets) == 1

        # Sender reports match what was sent: counts, octets, the last RTP timestamp, and an
        # RTP clock that advances with the NTP clock.
        ssrc = got[0].ssrc
        timestamps = {p.timestamp for p in got}
        checked = 0
        for report, packets, octets in learner.reports:
            assert report.ssrc == ssrc
            info = report.sender_info
            if info.packet_count == packets:  # nothing in flight when the report arrived
                assert info.octet_count == octets
                assert info.rtp_timestamp == got[packets - 1].timestamp
                checked += 1
            assert 0 <= packets - info.packet_count <= 20 or info.packet_count == 0
            if info.packet_count:
                assert info.rtp_timestamp in timestamps
        assert checked >= 1
        infos = [r.sender_info for r, _, _ in learner.reports if r.sender_info.packet_count]
        for a, b in pairwise(infos):
            rtp_s = ((b.rtp_timestamp - a.rtp_timestamp) & 0xFFFFFFFF) / 90000
            ntp_s = (b.ntp_timestamp - a.ntp_timestamp) / 2**32
            assert abs(rtp_s - ntp_s) < 0.2

        # The learner's receiver reports answer those sender reports: the relay knows the
        # round-trip time (LSR/DLSR) and a sane jitter for this learner.
        sender = room._learners[10].senders["camera"]

        async def remote() -> Any:
            stats = await sender.getStats()
            return next((s for s in stats.values() if s.type == "remote-inbound-rtp"), None)

        deadline = asyncio.get_running_loop().time() + 10
        stat = await remote()
        while (stat is None or stat.roundTripTime is None) and (
            asyncio.get_running_loop().time() < deadline
        ):
            await asyncio.sleep(0.2)
            stat = await remote()
        assert stat is not None and stat.roundTripTime is not None
        assert 0 <= stat.roundTripTime < 0.5
        assert stat.packetsLost == 0
        assert 0 <= stat.jitter < 90000 * 0.1  # RTP units: under 100 ms
        assert room.stats().packets_forwarded >= len(got)
    finally:
        await trainer.close()
        await learner.close()


@pytest.mark.parametrize("send_path", ["lean", "aiortc"])
async def test_both_send_paths_deliver_decodable_video(make_server: Any, send_path: str) -> None:
    server = make_server(media_send_path=send_path)
    room = server.room(1)
    assert room.sources["camera"].send_path == send_path
    trainer = Trainer()
    learner = Learner()
    try:
        await trainer.publish(room)
        await learner.join(room, 10)
        await wait_for(lambda: learner.frames["video"] >= 20)
        await wait_for(lambda: learner.frames["audio"] >= 20)
        assert set(learner.sizes) == {(320, 240)}
        track = room._learners[10].tracks["camera"]
        assert (track.output is not None) == (send_path == "lean")
        assert room.stats().packets_forwarded > 20
    finally:
        await trainer.close()
        await learner.close()
        await server.close()


async def test_a_failing_send_stays_with_its_learner(server: MediaServer) -> None:
    """One learner's send raising (its transport closing under us) touches nobody else; that
    learner resumes at a keyframe, on the same continuous sequence, even when the failure
    came in the middle of a frame."""
    room = server.room(1)
    trainer = Trainer(width=640, height=480)  # frames of several packets
    a, b = RecordingLearner(), Learner()
    try:
        await trainer.publish(room)
        await a.join(room, 10)
        await b.join(room, 11)
        await wait_for(lambda: min(a.frames["video"], b.frames["video"]) >= 10)
        track = room._learners[10].tracks["camera"]
        assert track.output is not None
        output = track.output
        real = output._sendto
        calls = 0
        failed_at: list[int] = []

        def broken(data: bytes, addr: Any) -> None:
            nonlocal calls
            calls += 1
            if calls == 1:  # the first packet goes out, the next one fails
                real(data, addr)
                return
            failed_at.append(int.from_bytes(data[2:4], "big"))  # SRTP leaves the header clear
            raise OSError("sendto failed")

        output._sendto = broken
        await wait_for(lambda: calls > 1)
        assert track.stats.send_errors == 1
        frames_b = b.frames["video"]
        await wait_for(lambda: b.frames["video"] >= frames_b + 15)  # the other one never stopped
        assert room._learners[10].tracks["camera"].output is not None
        assert track.output is not None and track.output._sendto is not broken
        assert real is not broken
        await wait_for(lambda: a.packets[-1].sequence_number - failed_at[0] > 20)
        resumed = next(p for p in a.packets if p.sequence_number == failed_at[0])
        assert starts_keyframe(resumed.payload)  # resumed at a keyframe
        got = a.packets
        steps = {(y.sequence_number - x.sequence_number) & 0xFFFF for x, y in pairwise(got)}
        assert steps == {1}  # what failed never took a sequence number
        by_seq: dict[int, bytes] = {}
        for p in got:  # and no number was given twice
            assert by_seq.setdefault(p.sequence_number, p.payload) == p.payload
        assert len({p.ssrc for p in got}) == 1
    finally:
        for peer in (trainer, a, b):
            await peer.close()


async def test_a_learner_arriving_after_a_keyframe_starts_from_it_without_a_new_pli(
    server: MediaServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Learners arriving together: the first one's PLI brings a keyframe; the next one,
    connected a moment later, gets that keyframe and the frames since at once."""
    from appliance.media.forward import Source

    monkeypatch.setattr(Source, "pli_interval_s", 8.0)  # a second PLI would come too late
    room = server.room(1)
    trainer = Trainer()
    first, second = Learner(), Learner()
    try:
        await trainer.publish(room)
        await wait_for(lambda: room.sources["camera"].stats.frames_in > Source.gop_max + 5)
        assert not room.sources["camera"].gop  # the trainer's first keyframe is too old now
        # Held long enough for a slow connection on a busy machine.
        monkeypatch.setattr(Source, "gop_max", 240)
        await first.join(room, 10)
        await wait_for(lambda: first.frames["video"] >= 3)
        assert trainer.plis_received == 1
        assert room.sources["camera"].gop  # the keyframe and the frames since
        await second.join(room, 11)
        await wait_for(lambda: second.frames["video"] >= 5, within=6)
        assert second.assembled_keyframes[0] is True
        assert not any(second.assembled_keyframes[1:5])
        assert trainer.plis_received == 1  # nobody asked the trainer again
        assert second.first_frame_at is not None
        assert second.first_frame_at - second.started_at < 6.0  # before any second PLI
        # Frames in order from that keyframe on: the second learner decodes what the first does.
        assert set(second.sizes) == {(320, 240)}
    finally:
        for peer in (trainer, first, second):
            await peer.close()


async def test_nacked_packets_come_back_as_rtx_from_the_history(server: MediaServer) -> None:
    """5 % of the datagrams to one learner are lost: its NACKs are answered with RTX built from
    the lean path's history, and the learner recovers nearly every packet."""
    room = server.room(1)
    trainer = Trainer()
    learner = RecordingLearner()
    try:
        await trainer.publish(room)
        await learner.join(room, 10)
        await wait_for(lambda: learner.frames["video"] >= 10)
        start = learner.packets[-1].sequence_number
        learner.drop_incoming(0.05)
        await asyncio.sleep(3.0)
        learner.loss = 0.0  # the link heals; late retransmissions still arrive
        end = learner.packets[-1].sequence_number
        await asyncio.sleep(1.0)
        seen = {p.sequence_number for p in learner.packets}
        wanted = range(start + 1, end - 30)  # the last ones may still be on their way
        missing = [s for s in wanted if s not in seen]
        assert len(wanted) > 100
        assert room._learners[10].nacks_in > 0
        # Without retransmission ~5 % would be missing; RTX lost again may be asked again.
        assert len(missing) <= len(wanted) * 0.01, (len(missing), len(wanted))
        # The RTX copies carried the original bytes: no payload seen twice differs.
        by_seq: dict[int, bytes] = {}
        for p in learner.packets:
            assert by_seq.setdefault(p.sequence_number, p.payload) == p.payload
    finally:
        await trainer.close()
        await learner.close()
