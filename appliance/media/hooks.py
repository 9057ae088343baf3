"""The private aiortc/aioice names the relay relies on, checked once at start-up.

aiortc is pinned to 1.16.*; a release that renames one of these must fail loudly at start,
not silently fall back to decoding, transcoding or binding every interface.
"""

from __future__ import annotations

import inspect
import types

import aioice.ice
import aiortc
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder

__all__ = ["check_private_hooks"]

_CHECKED = False


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
    ]
    for name, ok in needed:
        if not ok:
            raise RuntimeError(f"media relay: aiortc/aioice hook missing: {name}")
    _CHECKED = True
