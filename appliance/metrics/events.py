"""Counters and histograms for events: the calls other packages make when something happens."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["Direction", "EventMetrics"]

Direction = Literal["received", "sent"]
_DIRECTIONS: tuple[Direction, ...] = ("received", "sent")

# Buckets sized for what an operator acts on: a class is unusable past a few seconds of RTT or
# 10 s to first frame; loss above 10 % is already severe.
_FIRST_FRAME_BUCKETS = (0.25, 0.5, 1, 1.5, 2, 3, 5, 8, 13, 20, 30)
_KEYFRAME_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8)
_RTT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2)
_LOSS_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1)


class EventMetrics:
    """Every event metric of the appliance, registered in one registry.

    Labels are bounded: ``cohort_id`` (tens of cohorts) and small fixed sets; never a user id.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry

        def per_cohort(name: str, doc: str) -> Counter:
            return Counter(name, doc, ["cohort_id"], registry=r)

        self.chat_messages = per_cohort("estrade_chat_messages_total", "Chat messages posted.")
        self.questions = per_cohort("estrade_questions_total", "Questions asked.")
        self.poll_votes = per_cohort("estrade_poll_votes_total", "Poll votes cast.")
        self.reactions = per_cohort("estrade_reactions_total", "Reactions sent.")
        self.attendance_confirmations = per_cohort(
            "estrade_attendance_confirmations_total", "Half-day attendance confirmations."
        )
        self.uploads = Counter("estrade_document_uploads_total", "Documents uploaded.", registry=r)
        self.upload_bytes = Counter(
            "estrade_document_upload_bytes_total", "Bytes of documents uploaded.", registry=r
        )
        self.downloads = Counter(
            "estrade_document_downloads_total", "Documents downloaded.", registry=r
        )
        self.download_bytes = Counter(
            "estrade_document_download_bytes_total", "Bytes of documents served.", registry=r
        )
        self.plis = Counter(
            "estrade_rtcp_pli_total",
            "RTCP picture loss indications, received from learners or sent to the trainer.",
            ["direction"],
            registry=r,
        )
        self.nacks = Counter(
            "estrade_rtcp_nack_total",
            "RTCP NACKs, received from learners or sent to the trainer.",
            ["direction"],
            registry=r,
        )
        self.webrtc_failures = Counter(
            "estrade_webrtc_failures_total",
            "Peer connections that failed, by stage (ice or dtls).",
            ["stage"],
            registry=r,
        )
        self.webrtc_connections = Counter(
            "estrade_webrtc_connections_total",
            "Peer connections established, by path (direct or relayed through TURN).",
            ["path"],
            registry=r,
        )
        self.join_to_first_frame = Histogram(
            "estrade_join_to_first_frame_seconds",
            "Time from a learner joining to the first video frame it receives.",
            buckets=_FIRST_FRAME_BUCKETS,
            registry=r,
        )
        self.keyframe_wait = Histogram(
            "estrade_keyframe_wait_seconds",
            "Time from asking the trainer for a keyframe (PLI) to receiving it.",
            buckets=_KEYFRAME_BUCKETS,
            registry=r,
        )
        self.learner_rtt = Histogram(
            "estrade_learner_rtt_seconds",
            "Round-trip times reported by learners' receiver reports.",
            ["cohort_id"],
            buckets=_RTT_BUCKETS,
            registry=r,
        )
        self.learner_loss = Histogram(
            "estrade_learner_loss_ratio",
            "Packet loss fractions reported by learners' receiver reports (0-1).",
            ["cohort_id"],
            buckets=_LOSS_BUCKETS,
            registry=r,
        )
        self.websockets_open = Gauge(
            "estrade_websocket_connections", "Classroom WebSocket connections open.", registry=r
        )
        # Series with known labels begin at 0, so rate() and alerts see them from the start.
        for direction in _DIRECTIONS:
            self.plis.labels(direction)
            self.nacks.labels(direction)
        for stage in ("ice", "dtls"):
            self.webrtc_failures.labels(stage)
        for path in ("direct", "relayed"):
            self.webrtc_connections.labels(path)

    # --- rooms and classroom events (appliance/live) ---------------------------------------

    def room_opened(self, cohort_id: int) -> None:
        """Create the cohort's series at 0 (call when its room opens; idempotent)."""
        c = str(cohort_id)
        for counter in (
            self.chat_messages,
            self.questions,
            self.poll_votes,
            self.reactions,
            self.attendance_confirmations,
        ):
            counter.labels(c)
        self.learner_rtt.labels(c)
        self.learner_loss.labels(c)

    def chat_message(self, cohort_id: int) -> None:
        self.chat_messages.labels(str(cohort_id)).inc()

    def question(self, cohort_id: int) -> None:
        self.questions.labels(str(cohort_id)).inc()

    def poll_vote(self, cohort_id: int) -> None:
        self.poll_votes.labels(str(cohort_id)).inc()

    def reaction(self, cohort_id: int) -> None:
        self.reactions.labels(str(cohort_id)).inc()

    def attendance_confirmed(self, cohort_id: int) -> None:
        self.attendance_confirmations.labels(str(cohort_id)).inc()

    @contextmanager
    def websocket_open(self) -> Iterator[None]:
        """Count a classroom socket as open for the duration of the ``with`` block."""
        self.websockets_open.inc()
        try:
            yield
        finally:
            self.websockets_open.dec()

    # --- documents ---------------------------------------------------------------------------

    def document_uploaded(self, size_bytes: int) -> None:
        self.uploads.inc()
        self.upload_bytes.inc(max(0, size_bytes))

    def document_downloaded(self, size_bytes: int) -> None:
        self.downloads.inc()
        self.download_bytes.inc(max(0, size_bytes))

    # --- media (appliance/media) -------------------------------------------------------------

    def pli(self, direction: Direction, n: int = 1) -> None:
        self.plis.labels(_direction(direction)).inc(n)

    def nack(self, direction: Direction, n: int = 1) -> None:
        self.nacks.labels(_direction(direction)).inc(n)

    def ice_failed(self) -> None:
        self.webrtc_failures.labels("ice").inc()

    def dtls_failed(self) -> None:
        self.webrtc_failures.labels("dtls").inc()

    def connection_established(self, *, relayed: bool) -> None:
        self.webrtc_connections.labels("relayed" if relayed else "direct").inc()

    def first_frame(self, seconds: float) -> None:
        """A learner received its first video frame ``seconds`` after joining."""
        self.join_to_first_frame.observe(seconds)

    def keyframe_waited(self, seconds: float) -> None:
        self.keyframe_wait.observe(seconds)

    def learner_report(self, cohort_id: int, *, rtt_s: float, loss_ratio: float) -> None:
        """One receiver report from a learner: its round-trip time and loss fraction."""
        c = str(cohort_id)
        self.learner_rtt.labels(c).observe(rtt_s)
        self.learner_loss.labels(c).observe(min(1.0, max(0.0, loss_ratio)))


def _direction(value: str) -> str:
    if value not in _DIRECTIONS:
        raise ValueError(f"direction must be one of {_DIRECTIONS}, not {value!r}")
    return value
