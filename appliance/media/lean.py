"""The lean send path: the trainer's RTP payloads straight into each learner's SRTP session.

Per learner and slot, a :class:`LeanOutput` rewrites only what must change (SSRC, sequence
number, timestamp offset, payload type, the learner's header extensions: ``mid`` and
``abs-send-time``), protects the packet with the learner's SRTP session and hands it to the
learner's UDP transport: no aiortc frame objects, no encoder ``pack()``, no coroutine per
packet. One loop over the learners per incoming frame (``Source.deliver``).

aiortc still negotiates ICE, DTLS and the SRTP keys, and its ``RTCRtpSender`` stays in place,
idle on the RTP side: its RTCP loop sends sender reports from the counters this path keeps
current, it parses the learner's receiver reports (RTT, loss for the ladder), NACKs (answered
here, from a per-learner history, as RTX when negotiated) and PLI/FIR (coalesced by the
source). Every private name used here is checked at start-up by ``hooks.py``.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

from aiortc.codecs import is_rtx
from aiortc.rtp import RTP_HISTORY_SIZE, HeaderExtensions, HeaderExtensionsMap

if TYPE_CHECKING:
    from .forward import Frame

__all__ = ["LeanOutput", "bind_output", "send_buffer_limit"]

_HEADER = struct.Struct("!BBHII")
_MASK32 = 0xFFFFFFFF
#: bytes waiting in a learner's UDP transport above which a frame is dropped (queue limit)
send_buffer_limit = 256 * 1024
_AST_PROBE = 0xA5C3E1


def _false() -> bool:
    return False


def _zero() -> int:
    return 0


def _extension_parts(parameters: Any) -> tuple[bytes, bytes, bool]:
    """The learner's header extension block around the 3 abs-send-time bytes.

    Built with aiortc's own ``HeaderExtensionsMap`` (the learner's negotiated ids, one- or
    two-byte form); returns (before, after, has_abs_send_time). Without extensions: empty.
    """
    ids = HeaderExtensionsMap()
    ids.configure(parameters)
    mid = parameters.muxId or None

    def block(ast: int | None) -> bytes:
        profile, value = ids.set(HeaderExtensions(mid=mid, abs_send_time=ast))
        if not value:
            return b""
        return struct.pack("!HH", profile, len(value) >> 2) + value

    zero, probe = block(0), block(_AST_PROBE)
    if zero == probe:  # abs-send-time not negotiated
        return block(None), b"", False
    at = probe.index(_AST_PROBE.to_bytes(3, "big"))
    return probe[:at], probe[at + 3 :], True


class LeanOutput:
    """One learner's slot: its SSRC, sequence numbers, SRTP session, UDP transport, history."""

    __slots__ = (
        "_addr",
        "_buffered",
        "_closing",
        "_dtls",
        "_ext_after",
        "_ext_before",
        "_has_ast",
        "_history",
        "_pair",
        "_protect",
        "_sendto",
        "_udp",
        "b0",
        "connection",
        "pt",
        "rtx_pt",
        "rtx_seq",
        "rtx_ssrc",
        "sender",
        "seq",
        "ssrc",
        "ts_origin",
    )

    def __init__(
        self,
        sender: Any,
        parameters: Any,
        pair: Any,
        connection: Any,
        previous: LeanOutput | None = None,
    ) -> None:
        from aiortc.rtcrtpsender import random_sequence_number
        from aiortc.utils import random32

        codec = parameters.codecs[0]
        self.sender = sender
        self.connection = connection
        self.pt = codec.payloadType
        self.ssrc = sender._ssrc
        self.rtx_ssrc = sender._rtx_ssrc
        self.rtx_pt: int | None = None
        for c in parameters.codecs:
            if is_rtx(c) and c.parameters.get("apt") == codec.payloadType:
                self.rtx_pt = c.payloadType
                break
        self.seq = random_sequence_number()
        self.rtx_seq = random_sequence_number()
        self.ts_origin = random32()
        self._ext_before, self._ext_after, self._has_ast = _extension_parts(parameters)
        self.b0 = 0x90 if self._ext_before else 0x80
        self._dtls = sender.transport
        self._protect = self._dtls._tx_srtp.protect
        self._history: list[tuple[int, int, int, bytes] | None] = [None] * RTP_HISTORY_SIZE
        if previous is not None and previous.ssrc == self.ssrc:
            # Bound again after a failure: the learner sees one continuous stream.
            self.seq, self.rtx_seq, self.ts_origin = (
                previous.seq,
                previous.rtx_seq,
                previous.ts_origin,
            )
            self._history = previous._history
        self._set_pair(pair)

    def _set_pair(self, pair: Any) -> None:
        self._pair = pair
        self._udp = udp = pair.protocol.transport
        self._sendto = udp.sendto
        self._addr = pair.remote_addr
        # A TURN allocation (aioice's TurnTransport) has neither: it queues nothing itself.
        self._closing = getattr(udp, "is_closing", _false)
        self._buffered = getattr(udp, "get_write_buffer_size", _zero)

    def usable(self) -> bool:
        """Whether packets can go out now (follows a new nominated ICE pair)."""
        if self._dtls.state != "connected":
            return False
        pair = self.connection._nominated.get(1)
        if pair is None:
            return False
        if pair is not self._pair:
            self._set_pair(pair)
        return not self._closing()

    def congested(self) -> bool:
        return bool(self._buffered() > send_buffer_limit)

    def send(self, frame: Frame) -> int:
        """Send one frame's packets; returns how many. Updates the sender's SR counters."""
        ext = self._ext_before + frame.ast + self._ext_after if self._has_ast else self._ext_before
        ts = (self.ts_origin + frame.pts) & _MASK32
        seq = self.seq
        b0, pt, ssrc = self.b0, self.pt, self.ssrc
        protect, sendto, addr, history = self._protect, self._sendto, self._addr, self._history
        payloads = frame.payloads
        last = len(payloads) - 1
        octets = sent = 0
        try:
            for i, payload in enumerate(payloads):
                b1 = pt | 0x80 if i == last and frame.marker else pt
                sendto(protect(_HEADER.pack(b0, b1, seq, ts, ssrc) + ext + payload), addr)
                history[seq % RTP_HISTORY_SIZE] = (seq, b1, ts, payload)
                octets += len(payload)
                seq = (seq + 1) & 0xFFFF
                sent += 1
        finally:
            # A send that raised mid-frame: the packets that went out keep their numbers.
            self.seq = seq
            if sent:
                sender = self.sender
                sender._RTCRtpSender__ntp_timestamp = frame.ntp
                sender._RTCRtpSender__rtp_timestamp = ts
                sender._RTCRtpSender__packet_count += sent
                sender._RTCRtpSender__octet_count += octets
        return sent

    def retransmit(self, seq: int, ast: bytes) -> bool:
        """Answer a NACK from the history: RTX when negotiated, else the packet again."""
        entry = self._history[seq % RTP_HISTORY_SIZE]
        if entry is None or entry[0] != seq or not self.usable():
            return False
        _, b1, ts, payload = entry
        ext = self._ext_before + ast + self._ext_after if self._has_ast else self._ext_before
        if self.rtx_pt is None:
            data = _HEADER.pack(self.b0, b1, seq, ts, self.ssrc) + ext + payload
        else:
            header = _HEADER.pack(
                self.b0, (b1 & 0x80) | self.rtx_pt, self.rtx_seq, ts, self.rtx_ssrc
            )
            data = header + ext + seq.to_bytes(2, "big") + payload
            self.rtx_seq = (self.rtx_seq + 1) & 0xFFFF
        self._sendto(self._protect(data), self._addr)
        return True


def bind_output(
    sender: Any, parameters: Any, previous: LeanOutput | None = None
) -> LeanOutput | None:
    """A :class:`LeanOutput` for ``sender`` once its DTLS transport is up, else None."""
    dtls = sender.transport
    if parameters is None or dtls is None or dtls.state != "connected":
        return None
    if getattr(dtls, "_tx_srtp", None) is None:
        return None
    connection = dtls.transport._connection
    pair = connection._nominated.get(1)
    if pair is None:
        return None
    return LeanOutput(sender, parameters, pair, connection, previous)
