"""What other packages show the metrics layer: small Protocols read at scrape time.

``live/``, ``media/`` and ``documents/`` implement these and hand an instance to
:meth:`appliance.metrics.Metrics.attach`. Each call must be cheap, synchronous and must not
block (it runs on the event loop during a scrape or an operator API call): return a snapshot of
state already held in memory, never query the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "PARTICIPANT_ROLES",
    "PARTICIPANT_STATES",
    "DocumentTotals",
    "DocumentsSource",
    "LearnerLink",
    "LiveRoomsSource",
    "MediaSource",
    "MediaWorker",
    "MediaWorkersSource",
    "ParticipantState",
    "RecordingTotals",
    "RecordingsSource",
    "RoomMedia",
    "RoomStats",
]

ParticipantState = Literal["waiting", "in_class", "low_bandwidth"]
PARTICIPANT_STATES: tuple[ParticipantState, ...] = ("waiting", "in_class", "low_bandwidth")
PARTICIPANT_ROLES: tuple[str, ...] = ("trainer", "learner", "operator", "admin")


@dataclass(frozen=True, slots=True)
class RoomStats:
    """One open classroom, as the live socket sees it.

    Attributes:
        cohort_id: the cohort whose room this is (the only room label we export).
        started: the class is running (the trainer started it), not just a waiting room.
        participants: connected people counted by ``(role, state)``; role is one of
            :data:`PARTICIPANT_ROLES`, state one of :data:`PARTICIPANT_STATES`.
    """

    cohort_id: int
    started: bool
    participants: dict[tuple[str, ParticipantState], int] = field(default_factory=dict)

    def count(self, role: str | None = None, state: ParticipantState | None = None) -> int:
        return sum(
            n
            for (r, s), n in self.participants.items()
            if (role is None or r == role) and (state is None or s == state)
        )


@dataclass(frozen=True, slots=True)
class LearnerLink:
    """The last receiver report of one learner's connection (no user id: never exported)."""

    rtt_s: float
    """Round-trip time, in seconds."""
    loss_ratio: float
    """Fraction of packets lost towards this learner, 0-1."""
    relayed: bool = False
    """The connection goes through TURN."""
    path: str = ""
    """``direct``, ``turn-udp`` or ``turn-tls`` (TURN over TLS, port 443 with the roles);
    empty: not known (``relayed`` alone says whether TURN is used)."""


@dataclass(frozen=True, slots=True)
class RoomMedia:
    """The media relay's view of one room (cumulative counters are totals since the room opened)."""

    cohort_id: int
    video_tracks: int
    """Video tracks the trainer publishes now (camera, screen)."""
    audio_tracks: int
    """Audio tracks the trainer publishes now."""
    learners_subscribed: int
    """Learners receiving media now."""
    bytes_forwarded: int
    """RTP bytes sent to learners since the room opened (a counter: never decreases)."""
    packets_forwarded: int
    """RTP packets sent to learners since the room opened (a counter)."""
    send_bitrate_bps: float = 0.0
    """Current outbound bitrate of the room, bits per second (for the operator page)."""
    learners: list[LearnerLink] = field(default_factory=list)
    """One entry per subscribed learner with a receiver report."""


@dataclass(frozen=True, slots=True)
class MediaWorker:
    """One media worker process (docs/media-workers.md); ``worker`` is its index (a bounded
    label: 0..ESTRADE_MEDIA_WORKERS-1)."""

    worker: int
    up: bool
    """Its relay answers (false while it is being restarted)."""
    rooms: int
    learners: int
    """Learners receiving media from it."""
    cpu_seconds: float
    """CPU seconds its current process used (restarts from 0 with a new process)."""
    loop_lag_s: float
    """How late its event loop ran a one-second timer, at its last report."""
    restarts: int
    """Times it was started again after dying (a counter)."""


@dataclass(frozen=True, slots=True)
class RecordingTotals:
    """Class recordings (docs/recordings.md)."""

    active: int
    """Recordings running now."""
    bytes_written: int
    """Frame bytes written by recordings since the relay started (a counter; a media worker's
    share starts from 0 again when it restarts)."""
    segments_failed: int
    """Segments that could not be written or closed (a counter, likewise)."""
    disk_free_bytes: int
    """Free space on the disk recordings go to (``data_dir/recordings``)."""
    disk_size_bytes: int


@dataclass(frozen=True, slots=True)
class DocumentTotals:
    count: int
    bytes: int


@runtime_checkable
class LiveRoomsSource(Protocol):
    """Implemented by ``appliance/live/``."""

    def room_stats(self) -> list[RoomStats]: ...


@runtime_checkable
class MediaSource(Protocol):
    """Implemented by ``appliance/media/``."""

    def media_stats(self) -> list[RoomMedia]: ...


@runtime_checkable
class MediaWorkersSource(Protocol):
    """Implemented by ``appliance/live/media.py`` too: the media workers (empty in process)."""

    def media_workers(self) -> list[MediaWorker]: ...


@runtime_checkable
class RecordingsSource(Protocol):
    """Implemented by ``appliance/live/media.py`` (the bridge to the relay that records)."""

    def recording_totals(self) -> RecordingTotals: ...


@runtime_checkable
class DocumentsSource(Protocol):
    """Implemented by ``appliance/documents/`` (kept in memory, updated on upload/delete)."""

    def document_totals(self) -> DocumentTotals: ...
