"""One cohort's media: the trainer's peer connection, the learners' ones, the slots between."""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.exceptions import InternalError, InvalidAccessError, InvalidStateError
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket, unpack_remb_fci

from .errors import LearnerClosed, MediaError, QualityChanged, TracksChanged
from .forward import ALL_LAYERS, ForwardTrack, Source
from .ladder import CAMERA_DROP, LEVEL_SLOTS, LEVELS, LadderState
from .network import announce_address, ice_scope
from .observer import MediaObserver
from .sdp import (
    Section,
    add_all_candidates,
    drop_mdns_candidates,
    media_sections,
    parse_sdp,
    pin_codecs,
    refuse_learner_media,
)

if TYPE_CHECKING:
    from .server import MediaServer

__all__ = ["SLOTS", "LearnerMediaStats", "MediaRoom", "MediaRoomStats", "SubscribeOffer"]

logger = logging.getLogger(__name__)

#: The trainer's slots, in the order of the m-lines of every learner's offer.
SLOTS = (("audio", "audio"), ("camera", "video"), ("screen", "video"))
# What aiortc raises for an SDP it cannot apply.
_SDP_ERRORS = (
    ValueError,
    AttributeError,
    KeyError,
    IndexError,
    InternalError,
    InvalidAccessError,
    InvalidStateError,
)
#: the levels that differ only by the camera's temporal layers
_CAMERA_LEVELS = ("full", "camera_half", "camera_quarter")
_AUDIO_QUEUE = 25  # Opus packets (0.5 s): older ones are dropped, the voice stays current
_VIDEO_QUEUE = 30  # VP8 frames (1 s at 30 fps)


@dataclass(frozen=True, slots=True)
class SubscribeOffer:
    """The relay's offer to a learner; ``slots`` maps each m-line's mid to its slot."""

    sdp: str
    slots: dict[str, str]


@dataclass(frozen=True, slots=True)
class LearnerMediaStats:
    """One learner's media link, as :meth:`MediaRoom.stats` reports it."""

    level: str
    """The rung of the ladder the learner receives (full, camera_half, camera_quarter, screen,
    audio)."""
    requested: str
    """The rung the learner asked for (the ladder never goes above it)."""
    remb_bps: float | None
    """The learner's own bandwidth estimate (REMB); None before the first."""
    rtt_s: float | None
    """Round-trip time of the last receiver report; None before the first."""
    loss: float | None
    """Loss ratio of the last receiver report, 0-1; None before the first."""
    first_frame_s: float | None
    """Seconds from subscribe to the first forwarded frame; None before it."""
    connection: str
    """The peer connection's state (new, connecting, connected, failed, closed)."""
    relayed: bool
    """The connection goes through TURN."""
    path: str
    """direct, turn-udp or turn-tls (which TURN transport the learner's relay candidate used)."""


@dataclass(frozen=True, slots=True)
class MediaRoomStats:
    """Figures of one media room for metrics, the operator and benchmarks (totals: since the
    room opened)."""

    tracks_published: list[str]
    """Slots the trainer publishes now (audio, camera, screen)."""
    learners: int
    """Learners subscribed now."""
    packets_in: int
    bytes_in: int
    frames_in: int
    frames_dropped_incomplete: int
    """Frames the relay could not complete (missing packets) and did not forward."""
    frames_forwarded: int
    bytes_forwarded: int
    send_bitrate_bps: float
    """Bit rate sent to learners over the last ladder interval."""
    packets_forwarded: int
    queue_overflows: int
    """Packets or frames dropped because a learner's queue was full."""
    keyframe_requests: int
    plis_in: int
    plis_out: int
    nacks_in: int
    nacks_out: int
    keyframe_wait_s_max: float
    join_to_first_frame_s: list[float]
    """The last 200 learners' seconds from subscribe to first frame."""
    per_learner: dict[int, LearnerMediaStats]
    """By learner id (never exported as a metric label)."""


@dataclass
class _Learner:
    learner_id: int
    pc: RTCPeerConnection
    tracks: dict[str, ForwardTrack]
    senders: dict[str, Any]
    joined_at: float
    requested: str = "full"
    level: str = "full"
    ladder: LadderState = field(default_factory=LadderState)
    answered: bool = False
    first_frame_s: float | None = None
    plis_in: int = 0
    nacks_in: int = 0
    rtt_s: float | None = None
    loss: float | None = None
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    relayed: bool = False
    connected_at: float | None = None
    #: the learner's receiver estimated maximum bitrate (REMB) and when it came
    remb_bps: float | None = None
    remb_at: float = 0.0
    path: str = "direct"


def _ice_transports(pc: RTCPeerConnection) -> list[Any]:
    return [t.sender.transport.transport for t in pc.getTransceivers() if t.sender.transport]


def _path(pc: RTCPeerConnection) -> str:
    """How the nominated ICE pair goes: ``direct``, ``turn-udp`` or ``turn-tls``.

    aioice's ``_nominated``, guarded. Either end may be relayed: usually the learner's (remote
    candidate), or the relay's own allocation (local: always the first, UDP, TURN URL). A
    browser tells its TURN transport in its relay candidate's type preference (the priority's
    top byte): Chrome 2 UDP, 1 TCP, 0 TLS; Firefox 5 UDP, 0 TCP or TLS. 0-1 is counted as
    ``turn-tls``, since the appliance offers no plain TCP TURN (aiortc's relay candidates
    always say 0).
    """
    path = "direct"
    for ice in _ice_transports(pc):
        nominated = getattr(getattr(ice, "_connection", None), "_nominated", None) or {}
        for pair in nominated.values():
            remote = getattr(pair, "remote_candidate", None)
            if getattr(remote, "type", "") == "relay":
                preference = int(getattr(remote, "priority", 0)) >> 24
                return "turn-tls" if preference <= 1 else "turn-udp"
            if getattr(getattr(pair, "local_candidate", None), "type", "") == "relay":
                path = "turn-udp"
    return path


def _relayed(pc: RTCPeerConnection) -> bool:
    """Whether the nominated ICE pair goes through TURN, at either end."""
    return _path(pc) != "direct"


def _packets_sent(learner: _Learner) -> int:
    """RTP packets the learner's senders sent (aiortc's own counter, as in its getStats)."""
    return sum(s._RTCRtpSender__packet_count for s in learner.senders.values())


def _report_failure(pc: RTCPeerConnection, observer: MediaObserver) -> None:
    """A failed connection: ICE failed, or ICE worked and DTLS did not."""
    if any(ice.state == "failed" for ice in _ice_transports(pc)):
        observer.ice_failed()
    else:
        observer.dtls_failed()


class MediaRoom:
    """Media of one cohort. Created by :meth:`MediaServer.room`; every call is async-safe."""

    #: a learner not connected this long after ``subscribe`` (no answer, ICE stuck) is closed
    connect_timeout_s = 20.0

    def __init__(self, server: MediaServer, cohort_id: int) -> None:
        self.server = server
        self.cohort_id = cohort_id
        self.observer = server.observer
        send_path = server.settings.media_send_path
        self.sources = {slot: Source(slot, kind, self.observer, send_path) for slot, kind in SLOTS}
        self._publisher: RTCPeerConnection | None = None
        self._publisher_id: int | None = None
        # Set once the trainer's connection is up or gone: ends the publisher's watchdog.
        self._publisher_settled: asyncio.Event | None = None
        self._tapped: set[int] = set()
        self._learners: dict[int, _Learner] = {}
        self._join_times: list[float] = []
        # Totals that outlive the learners who caused them.
        self._counters: collections.Counter[str] = collections.Counter()
        self._closed = False
        self._lock = asyncio.Lock()
        # Outbound bitrate: bytes forwarded between two samples of the server's clock.
        self._rate_mark: tuple[float, int] | None = None
        self.send_bitrate_bps = 0.0

    # -- trainer ---------------------------------------------------------------------------

    @property
    def live(self) -> tuple[str, ...]:
        return tuple(slot for slot, _ in SLOTS if self.sources[slot].live)

    async def publish(
        self,
        offer_sdp: str,
        slots: Mapping[str, str] | None = None,
        trainer_id: int | None = None,
    ) -> str:
        """Answer the trainer's offer (first one or a renegotiation); returns the answer SDP.

        Args:
            offer_sdp: the browser's complete offer (gathered candidates included).
            slots: mid -> ``audio`` | ``camera`` | ``screen``; by default the first audio
                m-line is the microphone, the first video one the camera, the second the screen.
            trainer_id: who publishes; while one trainer publishes, another one's offer is
                refused (``already_publishing``) until ``unpublish``.
        """
        self._check_open()
        async with self._lock:
            if (
                self._publisher is not None
                and trainer_id is not None
                and self._publisher_id is not None
                and trainer_id != self._publisher_id
            ):
                raise MediaError("already_publishing", "another trainer is already presenting")
            offer_sdp, hidden = drop_mdns_candidates(offer_sdp)
            try:
                offer = parse_sdp(offer_sdp)
            except ValueError as exc:
                raise MediaError("bad_sdp", f"the offer was refused: {exc}") from None
            sections = media_sections(offer)
            if not sections:
                raise MediaError("bad_sdp", "the offer has no media section")
            mapping = self._map_slots(sections, slots)
            pc = self._publisher
            if pc is None:
                pc = self._publisher = self.server.new_peer_connection()
                self._publisher_id = trainer_id
                pc.on("connectionstatechange", lambda: self._publisher_state(pc))
                if hidden:
                    # ICE keeps listening for the trainer's checks: bound the wait.
                    settled = self._publisher_settled = asyncio.Event()
                    self.server.spawn(self._publisher_watchdog(pc, settled))
            try:
                with ice_scope(self.server.ice_scope):
                    await pc.setRemoteDescription(RTCSessionDescription(offer_sdp, "offer"))
                    for transceiver in pc.getTransceivers():
                        slot = mapping.get(transceiver.mid or "")
                        if slot is None:
                            transceiver.direction = "inactive"
                            continue
                        pin_codecs(transceiver)
                        transceiver.direction = "recvonly"
                        receiver = transceiver.receiver
                        if id(receiver) not in self._tapped:
                            # Before the receiver starts: __connect runs after our next await.
                            self.sources[slot].attach(receiver)
                            self._tapped.add(id(receiver))
                    await add_all_candidates(pc, offer, end=not hidden)
                    await pc.setLocalDescription(await pc.createAnswer())
            except _SDP_ERRORS as exc:
                raise MediaError("bad_sdp", f"the offer was refused: {exc}") from None
            if "a=candidate:" not in pc.localDescription.sdp:
                await self.unpublish()
                raise self._no_port()
            before = self.live
            for transceiver in pc.getTransceivers():
                slot = mapping.get(transceiver.mid or "")
                if slot is not None:
                    self.sources[slot].live = transceiver.currentDirection in (
                        "recvonly",
                        "sendrecv",
                    )
            if self.live != before:
                self.server.emit(TracksChanged(self.cohort_id, self.live))
            return announce_address(pc.localDescription.sdp, self.server.public_address)

    def _map_slots(
        self, sections: list[Section], slots: Mapping[str, str] | None
    ) -> dict[str, str]:
        kinds = dict(SLOTS)
        if slots is not None:
            by_mid = {mid: kind for kind, mid, _ in sections}
            for mid, slot in slots.items():
                if slot not in kinds or by_mid.get(mid) != kinds[slot]:
                    raise MediaError("bad_slots", f"m-line {mid!r} cannot be the {slot!r} slot")
            if len(set(slots.values())) != len(slots):
                raise MediaError("bad_slots", "two m-lines for the same slot")
            return dict(slots)
        mapping: dict[str, str] = {}
        free = {"audio": ["audio"], "video": ["camera", "screen"]}
        for kind, mid, _ in sections:
            if free.get(kind):
                mapping[mid] = free[kind].pop(0)
        return mapping

    async def _publisher_watchdog(self, pc: RTCPeerConnection, settled: asyncio.Event) -> None:
        """A trainer whose candidates were all hidden and whose checks never came is
        unpublished after ``connect_timeout_s``, as an ICE failure would have been."""
        try:
            await asyncio.wait_for(settled.wait(), self.connect_timeout_s)
        except TimeoutError:
            if pc is self._publisher and pc.connectionState != "connected":
                self.server.counters["connect_timeouts"] += 1
                await self.unpublish()

    def _publisher_state(self, pc: RTCPeerConnection) -> None:
        settled = self._publisher_settled
        state = pc.connectionState
        if pc is self._publisher and settled and state in ("connected", "failed", "closed"):
            settled.set()  # the watchdog's wait is over
        if pc.connectionState == "connected" and pc is self._publisher:
            self.observer.connection_established(relayed=_relayed(pc))
        if pc.connectionState in ("failed", "closed") and pc is self._publisher:
            failed = pc.connectionState == "failed"
            if failed:
                _report_failure(pc, self.observer)
            self.server.counters["ice_failures" if failed else "connections_lost"] += 1
            self.server.spawn(self.unpublish())

    async def unpublish(self) -> None:
        """The trainer left (or the ICE failed): close their connection; learners stay."""
        pc, self._publisher = self._publisher, None
        self._publisher_id = None
        if self._publisher_settled is not None:
            self._publisher_settled.set()
            self._publisher_settled = None
        self._tapped.clear()
        before = self.live
        for source in self.sources.values():
            source.detach()
        if pc is not None:
            await pc.close()
        if before:
            self.server.emit(TracksChanged(self.cohort_id, ()))

    # -- learners --------------------------------------------------------------------------

    async def subscribe(self, learner_id: int) -> SubscribeOffer:
        """Create the learner's connection (replacing an old one); returns the relay's offer."""
        self._check_open()
        if learner_id in self._learners:
            await self.leave(learner_id, reason="replaced")
        if len(self._learners) >= self.server.max_learners:
            raise MediaError(
                "room_full",
                f"this class already has {self.server.max_learners} learners receiving media",
            )
        pc = self.server.new_peer_connection()
        learner = _Learner(learner_id, pc, {}, {}, time.monotonic())
        for slot, _kind in SLOTS:
            source = self.sources[slot]
            track = ForwardTrack(
                source,
                _AUDIO_QUEUE if source.kind == "audio" else _VIDEO_QUEUE,
                functools.partial(self._first_frame, learner),
            )
            transceiver = pc.addTransceiver(track, direction="sendonly")
            pin_codecs(transceiver)
            sender = transceiver.sender
            self._hook_sender(learner, sender, source, track)
            learner.tracks[slot] = track
            learner.senders[slot] = sender
        self._learners[learner_id] = learner
        pc.on("connectionstatechange", lambda: self._learner_state(learner))
        self.server.spawn(self._connect_watchdog(learner))
        try:
            with ice_scope(self.server.ice_scope):
                await pc.setLocalDescription(await pc.createOffer())
        except BaseException:
            await self.leave(learner_id, reason="failed")
            raise
        if "a=candidate:" not in pc.localDescription.sdp:
            await self.leave(learner_id, reason="failed")
            raise self._no_port()
        mids = {t.mid or "": slot for t, (slot, _) in zip(pc.getTransceivers(), SLOTS, strict=True)}
        sdp = announce_address(pc.localDescription.sdp, self.server.public_address)
        return SubscribeOffer(sdp, mids)

    def _hook_sender(
        self, learner: _Learner, sender: Any, source: Source, track: ForwardTrack
    ) -> None:
        # The sender answers PLI/FIR by forcing its encoder, which pack() ignores: ask the
        # publisher instead (coalesced by the source).
        def keyframe() -> None:
            learner.plis_in += 1
            self._counters["plis_in"] += 1
            self.observer.pli("received")
            source.request_keyframe()

        sender._send_keyframe = keyframe
        retransmit = sender._retransmit

        async def counting_retransmit(seq: int) -> None:
            learner.nacks_in += 1
            self._counters["nacks_in"] += 1
            self.observer.nack("received")
            if track.lean:
                track.retransmit(seq)  # from the lean path's own history
            else:
                await retransmit(seq)

        sender._retransmit = counting_retransmit
        handle_rtcp = sender._handle_rtcp_packet

        async def reading_remb(packet: Any) -> None:
            # The learner's bandwidth estimate (REMB, one for all its streams): the ladder
            # reads it. aiortc only feeds it to an encoder, which forwarding has not.
            if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
                try:
                    bitrate, _ = unpack_remb_fci(packet.fci)
                except ValueError:
                    pass
                else:
                    learner.remb_bps, learner.remb_at = float(bitrate), time.monotonic()
            await handle_rtcp(packet)

        sender._handle_rtcp_packet = reading_remb
        if track.lean:
            # The lean path needs what was negotiated (payload types, RTX, header extension
            # ids, mid): the parameters aiortc starts the sender with.
            track.sender = sender
            send = sender.send

            async def capture_send(parameters: Any) -> None:
                track.parameters = parameters
                await send(parameters)
                # aiortc starts the senders once DTLS is up, after "connected" was announced:
                # the first moment the lean path can send what it holds.
                track.connected()

            sender.send = capture_send

    async def accept_answer(self, learner_id: int, answer_sdp: str) -> None:
        """Apply the learner's answer. An answer that would send media is refused."""
        learner = self._learners.get(learner_id)
        if learner is None or learner.answered:
            raise MediaError("no_offer", "no media offer is waiting for this learner's answer")
        answer_sdp, hidden = drop_mdns_candidates(answer_sdp)
        try:
            answer = parse_sdp(answer_sdp)
            refuse_learner_media(answer)  # a MediaError: the learner keeps the offer
            with ice_scope(self.server.ice_scope):
                await learner.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
                await add_all_candidates(learner.pc, answer, end=not hidden)
        except _SDP_ERRORS as exc:
            await self.leave(learner_id, reason="failed")
            raise MediaError("bad_sdp", f"the answer was refused: {exc}") from None
        learner.answered = True
        allowed = LEVEL_SLOTS[learner.level]
        learner.tracks["camera"].set_drop_layers(CAMERA_DROP[learner.level])
        for slot, track in learner.tracks.items():
            track.enabled = slot in allowed
            if track.enabled:
                self.sources[slot].tracks.add(track)
        # A learner joining mid-class starts at a keyframe: ask for one now, unless the lean
        # path holds a recent one (sent with the frames since when the connection is up) that
        # will still be held when the connection is up (ICE + DTLS: well under a second).
        for slot in ("camera", "screen"):
            source = self.sources[slot]
            if slot in allowed and (not source.gop or len(source.gop) > source.gop_max // 2):
                source.request_keyframe()

    def _first_frame(self, learner: _Learner, track: ForwardTrack) -> None:
        if learner.first_frame_s is not None:
            return
        # Video when the trainer sends video, else the first audio packet.
        if track.kind == "audio" and any(
            self.sources[s].live and s in LEVEL_SLOTS[learner.level] for s in ("camera", "screen")
        ):
            return
        learner.first_frame_s = time.monotonic() - learner.joined_at
        self.observer.first_frame(learner.first_frame_s)
        self._join_times.append(learner.first_frame_s)
        del self._join_times[:-200]

    async def _connect_watchdog(self, learner: _Learner) -> None:
        try:
            await asyncio.wait_for(learner.settled.wait(), self.connect_timeout_s)
        except TimeoutError:
            if self._learners.get(learner.learner_id) is learner:
                self.server.counters["connect_timeouts"] += 1
                await self.leave(learner.learner_id, reason="connect_timeout")

    def _learner_state(self, learner: _Learner) -> None:
        state = learner.pc.connectionState
        if state == "connected" and not learner.settled.is_set():
            learner.settled.set()
            learner.connected_at = time.monotonic()
            for track in learner.tracks.values():
                track.connected()
            learner.path = _path(learner.pc)
            learner.relayed = learner.path != "direct"
            self.observer.connection_established(relayed=learner.relayed)
        if state not in ("failed", "closed"):
            return
        if self._learners.get(learner.learner_id) is not learner:
            return  # already left
        if state == "failed":
            _report_failure(learner.pc, self.observer)
        # aiortc closes the connection itself when the peer closes DTLS or stops answering
        # ICE consent checks (the network went away); "failed" is an ICE failure proper.
        reason = "ice_failed" if state == "failed" else "connection_lost"
        self.server.counters["ice_failures" if state == "failed" else "connections_lost"] += 1
        self.server.spawn(self.leave(learner.learner_id, reason=reason))

    async def leave(self, learner_id: int, reason: str = "left") -> None:
        """Close a learner's connection (leave, socket closed, ICE failure). Idempotent."""
        learner = self._learners.get(learner_id)
        if learner is None:
            return
        del self._learners[learner_id]
        learner.settled.set()
        for track in learner.tracks.values():
            self._counters["frames_forwarded"] += track.stats.frames_sent
            self._counters["bytes_forwarded"] += track.stats.bytes_sent
            self._counters["queue_overflows"] += track.stats.overflows
            track.stop()
        self._counters["packets_forwarded"] += _packets_sent(learner)
        await learner.pc.close()
        self.server.emit(LearnerClosed(self.cohort_id, learner_id, reason))

    # -- weak links ------------------------------------------------------------------------

    def set_quality(self, learner_id: int, level: str) -> None:
        """The learner asks for a level (one of ``LEVELS``); also its ceiling."""
        if level not in LEVELS:
            raise MediaError("bad_level", f"quality must be one of {', '.join(LEVELS)}")
        learner = self._get(learner_id)
        learner.requested = level
        self._apply_level(learner, level, automatic=False, reason="requested")

    def _apply_level(self, learner: _Learner, level: str, automatic: bool, reason: str) -> None:
        if level == learner.level and automatic:
            return
        before = LEVELS.index(learner.level)
        learner.level = level
        step = 0 if not automatic else (1 if LEVELS.index(level) < before else -1)
        learner.ladder = learner.ladder.moved(self.server.ladder, step)
        allowed = LEVEL_SLOTS[level]
        # Camera frame rate: temporal layers left out (or back) without a keyframe.
        learner.tracks["camera"].set_drop_layers(CAMERA_DROP[level])
        for slot, track in learner.tracks.items():
            on = slot in allowed
            if learner.answered:
                if on:
                    self.sources[slot].tracks.add(track)
                else:
                    self.sources[slot].tracks.discard(track)
            track.set_enabled(on)
        event = QualityChanged(self.cohort_id, learner.learner_id, level, automatic, reason)
        self.server.emit(event)

    async def sample_links(self) -> None:
        """Read each learner's RTCP receiver reports and move it on the ladder if needed."""
        policy = self.server.ladder
        now = time.monotonic()
        for source in self.sources.values():
            source.sample_rates(now)
        for learner in list(self._learners.values()):
            if learner.pc.connectionState != "connected":
                continue
            loss, rtt = 0.0, 0.0
            seen = False
            for slot, sender in learner.senders.items():
                if not learner.tracks[slot].enabled:
                    continue
                report = await sender.getStats()
                for stat in report.values():
                    if getattr(stat, "type", "") == "remote-inbound-rtp":
                        seen = True
                        loss = max(loss, (stat.fractionLost or 0) / 256)
                        rtt = max(rtt, stat.roundTripTime or 0.0)
            if not seen:
                continue
            learner.loss, learner.rtt_s = loss, rtt
            self.observer.learner_report(self.cohort_id, rtt_s=rtt, loss_ratio=loss)
            now = time.monotonic()
            estimate = learner.remb_bps
            if (
                learner.connected_at is None
                or now - learner.connected_at < policy.remb_settle_s
                or now - learner.remb_at > 3 * policy.interval_s
            ):
                estimate = None  # none yet, not settled, or stale
            need = self.level_bitrate(learner.level)
            move, reason = learner.ladder.sample(policy, loss, rtt, estimate, need)
            if move:
                target = self._next_level(learner, move)
                if target is not None:
                    self._apply_level(learner, target, automatic=True, reason=reason)

    def _forwarded(self, level: str) -> tuple[frozenset[str], int | None]:
        """What a level forwards now: the live slots, and the camera's highest layer."""
        slots = frozenset(s for s in LEVEL_SLOTS[level] if self.sources[s].live)
        camera = self.sources["camera"]
        if "camera" not in slots:
            return slots, None
        drop = CAMERA_DROP[level]
        top = ALL_LAYERS if not drop else max(0, camera.max_tid - drop)
        return slots, min(top, camera.max_tid)

    def level_bitrate(self, level: str) -> float:
        """Bits per second a learner at ``level`` receives now (from the sources' rates)."""
        slots, camera_top = self._forwarded(level)
        total = 0.0
        for slot in slots:
            source = self.sources[slot]
            total += source.rate_up_to(ALL_LAYERS if slot != "camera" else camera_top or 0)
        return total

    def _next_level(self, learner: _Learner, move: int) -> str | None:
        """The level one step down (``move`` < 0) or up, never above the learner's choice.

        A camera level that would forward exactly what the current one does (a camera with
        fewer temporal layers, or none: a browser without ``L1T3``) is passed over, so such a
        learner goes from the full camera to screen + audio as before.
        """
        index = LEVELS.index(learner.level)
        ceiling = LEVELS.index(learner.requested)
        now = self._forwarded(learner.level)
        step = 1 if move < 0 else -1
        index += step
        while ceiling <= index < len(LEVELS):
            level = LEVELS[index]
            if not level.startswith("camera_") or self._forwarded(level) != now:
                break
            index += step
        else:
            return None
        if move > 0:
            # Up: the highest level forwarding the same (a camera without layers: "full").
            same = self._forwarded(level)
            while (
                index - 1 >= ceiling
                and LEVELS[index - 1] in _CAMERA_LEVELS
                and self._forwarded(LEVELS[index - 1]) == same
            ):
                index -= 1
                level = LEVELS[index]
        return level

    # -- state -----------------------------------------------------------------------------

    def _get(self, learner_id: int) -> _Learner:
        learner = self._learners.get(learner_id)
        if learner is None:
            raise MediaError("not_subscribed", "this learner is not receiving media")
        return learner

    def _no_port(self) -> MediaError:
        scope = self.server.ice_scope
        where = f"ports {scope.port_min}-{scope.port_max}" if scope.ports else "ports"
        return MediaError("no_media_port", f"no free media port ({where} are all in use)")

    def _check_open(self) -> None:
        if self._closed:
            raise MediaError("room_closed", "this media room is closed")

    @property
    def learner_ids(self) -> tuple[int, ...]:
        return tuple(self._learners)

    def level(self, learner_id: int) -> str:
        return self._get(learner_id).level

    async def close(self) -> None:
        self._closed = True
        for learner_id in list(self._learners):
            await self.leave(learner_id, reason="room_closed")
        await self.unpublish()

    def _bytes_forwarded(self) -> int:
        tracks = [t for lr in self._learners.values() for t in lr.tracks.values()]
        return self._counters["bytes_forwarded"] + sum(t.stats.bytes_sent for t in tracks)

    def sample_bitrate(self, now: float | None = None) -> float:
        """Update :attr:`send_bitrate_bps` from the bytes forwarded since the last sample.

        Called once per ladder interval by the server; the first sample only sets the mark.
        """
        now = time.monotonic() if now is None else now
        sent = self._bytes_forwarded()
        if self._rate_mark is not None and now > self._rate_mark[0]:
            then, before = self._rate_mark
            self.send_bitrate_bps = max(0.0, (sent - before) * 8 / (now - then))
        self._rate_mark = (now, sent)
        return self.send_bitrate_bps

    def stats(self) -> MediaRoomStats:
        """Figures for metrics, the operator and benchmarks."""
        src = self.sources.values()
        tracks = [t for lr in self._learners.values() for t in lr.tracks.values()]
        waits = [w for s in src for w in s.stats.keyframe_waits_s]
        return MediaRoomStats(
            tracks_published=list(self.live),
            learners=len(self._learners),
            packets_in=sum(s.stats.packets_in for s in src),
            bytes_in=sum(s.stats.bytes_in for s in src),
            frames_in=sum(s.stats.frames_in for s in src),
            frames_dropped_incomplete=sum(s.stats.frames_dropped_incomplete for s in src),
            frames_forwarded=self._counters["frames_forwarded"]
            + sum(t.stats.frames_sent for t in tracks),
            bytes_forwarded=self._bytes_forwarded(),
            send_bitrate_bps=self.send_bitrate_bps,
            packets_forwarded=self._counters["packets_forwarded"]
            + sum(_packets_sent(lr) for lr in self._learners.values()),
            queue_overflows=self._counters["queue_overflows"]
            + sum(t.stats.overflows for t in tracks),
            keyframe_requests=sum(s.stats.keyframe_requests for s in src),
            plis_in=self._counters["plis_in"],
            plis_out=sum(s.stats.plis_out for s in src),
            nacks_in=self._counters["nacks_in"],
            nacks_out=sum(s.stats.nacks_out for s in src),
            keyframe_wait_s_max=max(waits, default=0.0),
            join_to_first_frame_s=list(self._join_times),
            per_learner={
                lr.learner_id: LearnerMediaStats(
                    level=lr.level,
                    requested=lr.requested,
                    remb_bps=lr.remb_bps,
                    rtt_s=lr.rtt_s,
                    loss=lr.loss,
                    first_frame_s=lr.first_frame_s,
                    connection=lr.pc.connectionState,
                    relayed=lr.relayed,
                    path=lr.path,
                )
                for lr in self._learners.values()
            },
        )
