"""The private aiortc/aioice names the relay relies on, checked once at start-up.

aiortc is pinned to 1.16.*; a release that renames one of these must fail loudly at start,
not silently fall back to decoding, transcoding or binding every interface.
"""

from __future__ import annotations

import inspect
import types

import aioice.ice
import aiortc
import aiortc.rtcrtpsender
import pylibsrtp
from aiortc import (
    RTCDtlsTransport,
    RTCIceTransport,
    RTCPeerConnection,
    RTCRtpReceiver,
    RTCRtpSender,
    RTCRtpTransceiver,
)
from aiortc import rtp as aiortc_rtp
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.rtcdtlstransport import RtpRouter

from .errors import RecordingEnded  # the contract (notes) names it here too

__all__ = ["RecordingEnded", "check_private_hooks"]

_CHECKED = False


def _src(obj: object) -> str:
    return inspect.getsource(obj)  # type: ignore[arg-type]


def _lean_path_hooks() -> list[tuple[str, bool]]:
    """What the lean send path (``lean.py``, ``ForwardTrack``) touches."""
    sender_init = _src(RTCRtpSender.__init__)
    rtcp_loop = _src(RTCRtpSender._run_rtcp)
    return [
        (
            "RTCPeerConnection calls transceiver.sender.send(parameters)",
            "await transceiver.sender.send(" in _src(RTCPeerConnection),
        ),
        (
            "RTCRtpSender._ssrc / _rtx_ssrc",
            "self._ssrc = random32()" in sender_init
            and "self._rtx_ssrc = random32()" in sender_init,
        ),
        (
            "RTCRtpSender SR counters (__ntp_timestamp, __rtp_timestamp, __packet_count, "
            "__octet_count) read by _run_rtcp",
            all(
                f"self.__{name} = 0" in sender_init and f"=self.__{name}" in rtcp_loop
                for name in ("ntp_timestamp", "rtp_timestamp")
            )
            and all(
                f"self.__{name} = 0" in sender_init and f"self.__{name} & 0xFFFFFFFF" in rtcp_loop
                for name in ("packet_count", "octet_count")
            ),
        ),
        (
            "RTCRtpSender answers NACKs through self._retransmit(seq)",
            "await self._retransmit(seq)" in _src(RTCRtpSender._handle_rtcp_packet),
        ),
        (
            "aiortc.rtcrtpsender.random_sequence_number",
            hasattr(aiortc.rtcrtpsender, "random_sequence_number"),
        ),
        (
            "RTCDtlsTransport._tx_srtp (pylibsrtp Session)",
            "self._tx_srtp = Session(" in _src(RTCDtlsTransport)
            and callable(getattr(pylibsrtp.Session, "protect", None)),
        ),
        (
            "RTCIceTransport._connection (aioice Connection)",
            "self._connection = gatherer._connection" in _src(RTCIceTransport.__init__),
        ),
        (
            "aioice Connection._nominated[component] -> pair.protocol, pair.remote_addr",
            "active_pair = self._nominated.get(component)" in _src(aioice.ice.Connection.sendto)
            and "active_pair.protocol.send_data(data, active_pair.remote_addr)"
            in _src(aioice.ice.Connection.sendto),
        ),
        (
            "aioice StunProtocol.send_data is transport.sendto",
            "self.transport.sendto(data, addr)" in _src(aioice.ice.StunProtocol.send_data),
        ),
        (
            "aiortc.rtp.HeaderExtensionsMap.configure/set, RTP_HISTORY_SIZE",
            hasattr(aiortc_rtp.HeaderExtensionsMap, "configure")
            and hasattr(aiortc_rtp.HeaderExtensionsMap, "set")
            and hasattr(aiortc_rtp, "RTP_HISTORY_SIZE"),
        ),
    ]


def check_private_hooks() -> None:
    """Raise RuntimeError naming the first missing hook."""
    global _CHECKED
    if _CHECKED:
        return
    needed: list[tuple[str, bool]] = [
        ("aiortc 1.16.*", aiortc.__version__.startswith("1.16.")),
        (
            "RTCRtpReceiver.__jitter_buffer",
            "self.__jitter_buffer = " in inspect.getsource(RTCRtpReceiver.__init__)
            and "self.__jitter_buffer.add(packet)"
            in inspect.getsource(RTCRtpReceiver._handle_rtp_packet),
        ),
        ("RTCRtpReceiver._send_rtcp_pli", hasattr(RTCRtpReceiver, "_send_rtcp_pli")),
        ("RTCRtpReceiver._send_rtcp_nack", hasattr(RTCRtpReceiver, "_send_rtcp_nack")),
        (
            "RTCRtpSender._send_keyframe",
            "self._send_keyframe()" in inspect.getsource(RTCRtpSender._handle_rtcp_packet),
        ),
        (
            "RTCRtpSender._retransmit",
            "await self._retransmit(" in inspect.getsource(RTCRtpSender._handle_rtcp_packet),
        ),
        (
            "RTCRtpSender packs non-av.Frame data",
            "self.__encoder.pack(data)" in inspect.getsource(RTCRtpSender._next_encoded_frame),
        ),
        (
            "RTCRtpSender.__packet_count",
            "self.__packet_count = 0" in inspect.getsource(RTCRtpSender.__init__),
        ),
        (
            "RTCDtlsTransport hands REMB to each sender of its SSRCs via _handle_rtcp_packet "
            "(the ladder reads the learner's estimate there)",
            "await recipient._handle_rtcp_packet(packet)" in _src(RTCDtlsTransport)
            and "unpack_remb_fci(packet.fci)" in _src(RtpRouter.route_rtcp)
            and hasattr(aiortc_rtp, "unpack_remb_fci")
            and hasattr(aiortc_rtp, "RTCP_PSFB_APP"),
        ),
        ("Vp8Encoder.pack", hasattr(Vp8Encoder, "pack")),
        ("OpusEncoder.pack", hasattr(OpusEncoder, "pack")),
        ("RTCRtpTransceiver.currentDirection", hasattr(RTCRtpTransceiver, "currentDirection")),
        ("aioice.ice.get_host_addresses", callable(getattr(aioice.ice, "get_host_addresses", 0))),
        (
            "aioice.ice uses asyncio.get_running_loop().create_datagram_endpoint",
            isinstance(aioice.ice.asyncio, types.ModuleType)
            and "loop = asyncio.get_running_loop()"
            in inspect.getsource(aioice.ice.Connection.get_component_candidates),
        ),
        *_lean_path_hooks(),
    ]
    for name, ok in needed:
        if not ok:
            raise RuntimeError(f"media relay: aiortc/aioice hook missing: {name}")
    _CHECKED = True
