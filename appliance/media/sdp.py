"""SDP checks and codec pinning."""

from __future__ import annotations

import re
from typing import Any

from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.sdp import candidate_from_sdp

from .errors import MediaError

__all__ = [
    "add_all_candidates",
    "drop_mdns_candidates",
    "media_sections",
    "pin_codecs",
    "refuse_learner_media",
]

_PINNED = {"audio": ("audio/opus",), "video": ("video/VP8", "video/rtx")}
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
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


def media_sections(sdp: str) -> list[tuple[str, str, str]]:
    """``(kind, mid, direction)`` for each ``m=`` section; direction defaults to sendrecv."""
    sections = []
    for chunk in re.split(r"\r?\nm=", "\n" + sdp)[1:]:
        kind = chunk.split(" ", 1)[0]
        mid = re.search(r"^a=mid:(\S+)", chunk, flags=re.MULTILINE)
        direction = "sendrecv"
        for d in _DIRECTIONS:
            if re.search(rf"^a={d}\s*$", chunk, flags=re.MULTILINE):
                direction = d
        port = chunk.split(" ", 2)[1] if chunk.count(" ") >= 2 else "9"
        if port == "0":
            direction = "inactive"  # a rejected section
        sections.append((kind, mid.group(1) if mid else "", direction))
    return sections


def refuse_learner_media(sdp: str) -> None:
    """Learners never publish: any section in which a learner would send media is refused."""
    for kind, mid, direction in media_sections(sdp):
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


async def add_all_candidates(pc: RTCPeerConnection, sdp: str, end: bool = True) -> None:
    """Give the bundled ICE transport every candidate of the remote SDP.

    aiortc takes a bundled transport's remote candidates from the *last* m-section only; an
    answer whose last section has none (aiortc's own answers do that) would leave the relay
    waiting for the peer's checks. Duplicates and late additions are ignored by aioice.
    ``end=False`` leaves the candidates open (see :func:`drop_mdns_candidates`).
    """
    sections = media_sections(sdp)
    if not sections:
        return
    first_mid = sections[0][1]
    for line in dict.fromkeys(re.findall(r"^a=candidate:(\S.*?)\s*$", sdp, flags=re.MULTILINE)):
        try:
            candidate = candidate_from_sdp(line)
        except (ValueError, IndexError):
            continue  # a malformed candidate is skipped, like a browser would
        candidate.sdpMid = first_mid
        await pc.addIceCandidate(candidate)
    if end:
        await pc.addIceCandidate(None)
