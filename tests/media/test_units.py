"""The frame assembler, the ladder and the start-up hook check, without the network."""

from __future__ import annotations

import time

import aiortc
import pytest
from aiortc.rtp import RtpPacket

from appliance.media import hooks
from appliance.media.forward import Frame, Source, VideoTap
from appliance.media.ladder import LadderPolicy, LadderState


class Collect(Source):
    def __init__(self, send_path: str = "lean") -> None:
        super().__init__("camera", "video", send_path=send_path)
        self.frames: list[Frame] = []
        self.requests = 0

    def deliver(self, frame: Frame) -> None:
        self.frames.append(frame)

    def request_keyframe(self) -> None:
        self.requests += 1


def vp8(seq: int, ts: int, start: bool, marker: bool, key: bool, body: bytes) -> RtpPacket:
    packet = RtpPacket(payload_type=96, sequence_number=seq, timestamp=ts, ssrc=1234)
    packet.marker = int(marker)
    packet.payload = bytes([0x10 if start else 0x00]) + body  # VP8 descriptor: S bit, PID 0
    first = bytes([0x00 if key else 0x01]) if start else b""
    packet._data = first + body  # type: ignore[attr-defined]  # what aiortc's depayload sets
    return packet


def frame_packets(seq: int, ts: int, key: bool, parts: int = 3) -> list[RtpPacket]:
    return [vp8(seq + i, ts, i == 0, i == parts - 1, key, bytes([i]) * 10) for i in range(parts)]


@pytest.mark.parametrize("send_path", ["lean", "aiortc"])
def test_frames_are_assembled_in_order_even_out_of_order(send_path: str) -> None:
    source = Collect(send_path)
    tap = VideoTap(source)
    key = frame_packets(100, 3000, key=True)
    delta = frame_packets(103, 6000, key=False)
    for packet in [key[0], key[2], delta[0], key[1], delta[2], delta[1]]:
        assert tap.add(packet) == (False, None)
    assert [f.keyframe for f in source.frames] == [True, False]
    assert [f.pts for f in source.frames] == [0, 3000]
    # The trainer's RTP payloads, in sequence order, for the lean path.
    assert source.frames[0].payloads == tuple(p.payload for p in key)
    assert source.frames[1].payloads == tuple(p.payload for p in delta)
    assert source.frames[0].size == 31
    if send_path == "lean":
        assert source.frames[0].packet is None  # no av.Packet built
    else:
        packet = source.frames[0].packet
        assert packet is not None and packet.pts == 0
        assert bytes(packet) == b"\x00" + b"\x00" * 10 + b"\x01" * 10 + b"\x02" * 10


def test_delta_frames_wait_for_a_keyframe_after_a_lost_packet(monkeypatch) -> None:
    monkeypatch.setattr(VideoTap, "giveup_s", 0.05)
    source = Collect()
    tap = VideoTap(source)
    for packet in frame_packets(0, 3000, key=True):
        tap.add(packet)
    lost = frame_packets(3, 6000, key=False)
    tap.add(lost[0])
    tap.add(lost[2])  # lost[1] never comes (NACK/RTX had their chance)
    time.sleep(0.06)
    for packet in frame_packets(6, 9000, key=False):
        tap.add(packet)  # complete, but it depends on the lost frame: dropped
    assert [f.keyframe for f in source.frames] == [True]
    assert source.requests >= 1
    tap.add(lost[1])  # a late retransmission of a given-up frame is ignored
    for packet in frame_packets(9, 12000, key=True):
        tap.add(packet)
    assert [f.keyframe for f in source.frames] == [True, True]
    assert source.stats.frames_dropped_incomplete == 1


def test_the_first_frame_released_is_a_keyframe() -> None:
    source = Collect()
    tap = VideoTap(source)
    for packet in frame_packets(0, 3000, key=False) + frame_packets(3, 6000, key=True):
        tap.add(packet)
    assert [f.keyframe for f in source.frames] == [True]


def test_ladder_goes_down_fast_and_up_slowly() -> None:
    policy = LadderPolicy(down_after=2, up_after=3)
    state = LadderState()
    assert state.sample(policy, 0.2, 0.05) == (0, "")
    assert state.sample(policy, 0.2, 0.05) == (-1, "loss 20%")
    assert state.sample(policy, 0.0, 0.9) == (0, "")
    assert state.sample(policy, 0.0, 0.9) == (-1, "rtt 0.90 s")
    assert [state.sample(policy, 0.0, 0.05)[0] for _ in range(3)] == [0, 0, 1]
    assert state.sample(policy, 0.05, 0.05) == (0, "")  # in between resets both counts


def test_start_up_names_a_missing_hook(monkeypatch) -> None:
    monkeypatch.setattr(hooks, "_CHECKED", False)
    hooks.check_private_hooks()
    monkeypatch.setattr(hooks, "_CHECKED", False)
    monkeypatch.setattr(aiortc, "__version__", "1.17.0")
    with pytest.raises(RuntimeError, match=r"hook missing: aiortc 1\.16\.\*"):
        hooks.check_private_hooks()


def test_lean_output_follows_a_turn_pair_too() -> None:
    """A nominated pair over TURN has aioice's TurnTransport: sendto only, nothing queued."""
    from types import SimpleNamespace

    from aioice.turn import TurnTransport

    from appliance.media.lean import LeanOutput

    turn = TurnTransport(None)  # type: ignore[arg-type]
    out = LeanOutput.__new__(LeanOutput)
    out._set_pair(SimpleNamespace(protocol=SimpleNamespace(transport=turn), remote_addr=("::1", 9)))
    assert out.congested() is False
    assert out._closing() is False
    assert out._sendto == turn.sendto


def test_mdns_candidates_are_dropped_and_candidates_stay_open() -> None:
    from appliance.media.sdp import drop_mdns_candidates

    firefox = (
        "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 109\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\n"
        "a=candidate:0 1 UDP 2122252543 3f5c1a2e-8d1b-4c61-9a4e-0d8a7c1b2e3f.local 50123"
        " typ host\r\n"
        "a=candidate:1 1 TCP 2105524479 3F5C1A2E-8D1B-4C61-9A4E-0D8A7C1B2E3F.LOCAL 9 typ host"
        " tcptype active\r\n"
        "a=candidate:2 1 UDP 1686052863 198.51.100.7 50123 typ srflx raddr 0.0.0.0 rport 0\r\n"
        "a=end-of-candidates\r\na=sendrecv\r\n"
    )
    kept, dropped = drop_mdns_candidates(firefox)
    assert dropped == 2
    assert ".local" not in kept.lower() and "end-of-candidates" not in kept
    assert "a=candidate:2 1 UDP 1686052863 198.51.100.7 50123 typ srflx" in kept
    assert kept.endswith("a=mid:0\r\na=candidate:2 1 UDP 1686052863 198.51.100.7 50123 typ srflx"
                         " raddr 0.0.0.0 rport 0\r\na=sendrecv\r\n")  # fmt: skip
    # Nothing hidden: the SDP is untouched, its end-of-candidates included.
    plain = firefox.replace("3f5c1a2e-8d1b-4c61-9a4e-0d8a7c1b2e3f.local", "127.0.0.1")
    plain = plain.replace("3F5C1A2E-8D1B-4C61-9A4E-0D8A7C1B2E3F.LOCAL", "127.0.0.1")
    assert drop_mdns_candidates(plain) == (plain, 0)


def test_a_short_estimate_is_a_bad_sample_but_never_a_good_one() -> None:
    policy = LadderPolicy(down_after=2, up_after=2, remb_margin=0.85)
    state = LadderState()
    # Clean loss and RTT; the learner's estimate covers its level: good samples.
    assert state.sample(policy, 0.0, 0.05, 900_000, 1_000_000) == (0, "")
    assert state.sample(policy, 0.0, 0.05, None, 1_000_000)[0] == 1
    # An estimate short of what the level receives (under 85 %): bad, twice means down.
    assert state.sample(policy, 0.0, 0.05, 800_000, 1_000_000) == (0, "")
    assert state.sample(policy, 0.0, 0.05, 800_000, 1_000_000) == (
        -1,
        "estimate 800000 bit/s < 1000000",
    )


def test_a_failed_step_up_makes_the_next_one_wait_longer() -> None:
    policy = LadderPolicy(down_after=1, up_after=3, up_hold_max=12)
    state = LadderState()

    def ups_after_good_samples(state: LadderState) -> int:
        for n in range(1, 100):
            if state.sample(policy, 0.0, 0.05)[0] == 1:
                return n
        raise AssertionError("never up")

    assert ups_after_good_samples(state) == 3
    state = state.moved(policy, 1)  # up ...
    assert state.sample(policy, 0.3, 0.05)[0] == -1  # ... and down again at once: it failed
    state = state.moved(policy, -1)
    assert ups_after_good_samples(state) == 3 + 3
    state = state.moved(policy, 1)
    state.sample(policy, 0.3, 0.05)
    state = state.moved(policy, -1)
    assert ups_after_good_samples(state) == 3 + 6  # twice as long
    state = state.moved(policy, 1)
    for _ in range(6 * 3 + 1):  # the step up held long enough: back to the short wait
        state.sample(policy, 0.05, 0.05)  # neither good nor bad
    state = state.moved(policy, -1)
    assert ups_after_good_samples(state) == 3
    # The learner's own choice forgets the failures too.
    assert LadderState(hold=9).moved(policy, 0).hold == 0


def test_media_sections_read_kind_mid_and_direction() -> None:
    from appliance.media.sdp import Section, media_sections, parse_sdp

    sdp = (
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
        "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n"
        "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\na=rtpmap:96 VP8/90000\r\n"
        "m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=recvonly\r\na=rtpmap:96 VP8/90000\r\n"
    )
    assert media_sections(parse_sdp(sdp)) == [
        Section("audio", "0", "sendrecv"),  # no direction line: sendrecv
        Section("video", "1", "sendonly"),
        Section("video", "2", "inactive"),  # port 0: a rejected section
    ]
    with pytest.raises(ValueError, match="unreadable SDP"):
        parse_sdp(sdp.replace("m=video 0", "m=video zero"))
