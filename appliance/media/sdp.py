"""SDP: read with aiortc's own parser (the one ``setRemoteDescription`` applies), the
learner's answer checked, codecs pinned."""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.sdp import SessionDescription, candidate_to_sdp

from .errors import MediaError

__all__ = [
    "Section",
    "add_all_candidates",
    "drop_mdns_candidates",
    "media_sections",
    "parse_sdp",
    "pin_codecs",
    "refuse_learner_media",
]

_PINNED = {"audio": ("audio/opus",), "video": ("video/VP8", "video/rtx")}
# What aiortc's parser raises on lines it cannot read (it asserts on some, e.g. a candidate).
_UNREADABLE = (ValueError, IndexError, KeyError, AttributeError, AssertionError, StopIteration)


class Section(NamedTuple):
    """One ``m=`` section."""

    kind: str
    """audio, video or application."""
    mid: str
    """Its ``a=mid`` ("" without one)."""
    direction: str
    """sendrecv (the default), sendonly, recvonly or inactive (also a rejected section)."""


def parse_sdp(sdp: str) -> SessionDescription:
    """``sdp`` as aiortc reads it; SDP it cannot read raises ValueError."""
    try:
        return SessionDescription.parse(sdp)
    except _UNREADABLE as exc:
        raise ValueError(f"unreadable SDP ({type(exc).__name__}: {exc})") from None


# A candidate line whose address is an mDNS name (RFC 6762 ``.local``), as browsers write their
# host candidates: ``a=candidate:<foundation> <component> <transport> <priority> <name>.local``.
_MDNS_CANDIDATE = re.compile(
    r"^a=candidate:\S+ \d+ \S+ \d+ [^ ]+\.local\.? .*(?:\r?\n|$)", re.I | re.M
)
_END_OF_CANDIDATES = re.compile(r"^a=end-of-candidates[ \t]*(?:\r?\n|$)", re.M)


def pin_codecs(transceiver: Any) -> None:
    """Only VP8 (with RTX) and Opus: aiortc follows the remote's order, Safari lists H264 first."""
    wanted = _PINNED[transceiver.kind]
    codecs = [
        c for c in RTCRtpSender.getCapabilities(transceiver.kind).codecs if c.mimeType in wanted
    ]
    transceiver.setCodecPreferences(codecs)


def media_sections(description: SessionDescription) -> list[Section]:
    """The ``m=`` sections, in order."""
    return [
        Section(m.kind, m.rtp.muxId or "", "inactive" if m.port == 0 else m.direction or "sendrecv")
        for m in description.media
    ]


def refuse_learner_media(description: SessionDescription) -> None:
    """Learners never publish: any section in which a learner would send media is refused."""
    for kind, mid, direction in media_sections(description):
        if kind in ("audio", "video") and direction in ("sendrecv", "sendonly"):
            raise MediaError(
                "learner_cannot_publish",
                f"learners cannot send media (m-line {mid or '?'} is {direction} {kind})",
            )


def drop_mdns_candidates(sdp: str) -> tuple[str, int]:
    """The SDP without its ``.local`` candidates, and how many were dropped.

    Browsers hide their local addresses behind mDNS names (a learner who granted no camera
    always does). Those names resolve only on the learner's own link: the relay, on another
    network, could only send a multicast query that nobody answers, and aioice, given nothing
    but such candidates, would fail ICE without trying a pair. So the relay never asks: it
    drops them, and learns the learner's real address from the learner's own checks (a
    peer-reflexive candidate, RFC 8445 section 7.3.1.3), which reach the relay's candidates
    whatever the learner's are. When a candidate was dropped, ``a=end-of-candidates`` is
    dropped too: the learner's address is still to be learned, so ICE must keep listening
    (a learner never reached is closed by the room's connect watchdog).
    """
    kept, dropped = _MDNS_CANDIDATE.subn("", sdp)
    if dropped:
        kept = _END_OF_CANDIDATES.sub("", kept)
    return kept, dropped


async def add_all_candidates(
    pc: RTCPeerConnection, description: SessionDescription, end: bool = True
) -> None:
    """Give the bundled ICE transport every candidate of the remote SDP.

    aiortc takes a bundled transport's remote candidates from the *last* m-section only; an
    answer whose last section has none (aiortc's own answers do that) would leave the relay
    waiting for the peer's checks. Duplicates and late additions are ignored by aioice.
    ``end=False`` leaves the candidates open (see :func:`drop_mdns_candidates`).
    """
    if not description.media:
        return
    first_mid = description.media[0].rtp.muxId or ""
    seen: set[str] = set()
    for media in description.media:
        for candidate in media.ice_candidates:
            line = candidate_to_sdp(candidate)
            if line not in seen:
                seen.add(line)
                candidate.sdpMid = first_mid
                await pc.addIceCandidate(candidate)
    if end:
        await pc.addIceCandidate(None)
