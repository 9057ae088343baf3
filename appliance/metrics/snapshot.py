"""One consistent read of every source: what a scrape and the operator API both show."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from appliance.metrics.capacity import (
    CapacityEstimate,
    CapacityModel,
    CpuSampler,
    CpuUsage,
    WorkerLoad,
)
from appliance.metrics.sources import (
    DocumentsSource,
    DocumentTotals,
    LiveRoomsSource,
    MediaSource,
    MediaWorker,
    MediaWorkersSource,
    RecordingsSource,
    RecordingTotals,
    RoomMedia,
    RoomStats,
)

__all__ = ["RoomView", "Snapshot", "Sources", "take_snapshot"]

log = logging.getLogger("estrade.metrics")
T = TypeVar("T")


@dataclass(slots=True)
class Sources:
    """The sources attached so far (``None`` until the package providing it is wired)."""

    live: LiveRoomsSource | None = None
    media: MediaSource | None = None
    documents: DocumentsSource | None = None


@dataclass(frozen=True, slots=True)
class RoomView:
    cohort_id: int
    stats: RoomStats | None
    media: RoomMedia | None

    @property
    def learners(self) -> int:
        """Learners in the room: connected (live) or receiving media, whichever is larger."""
        live = self.stats.count(role="learner") if self.stats else 0
        subscribed = self.media.learners_subscribed if self.media else 0
        return max(live, subscribed)

    @property
    def video_tracks(self) -> int:
        return self.media.video_tracks if self.media else 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    rooms: list[RoomView]
    documents: DocumentTotals | None
    cpu: CpuUsage
    capacity: CapacityEstimate
    source_up: dict[str, bool] = field(default_factory=dict)
    workers: list[MediaWorker] = field(default_factory=list)
    recordings: RecordingTotals | None = None


def _read(name: str, fn: Callable[[], T], up: dict[str, bool]) -> T | None:
    """Call one source; a broken source is logged and reported down, never breaks a scrape."""
    try:
        value = fn()
    except Exception:
        log.exception("metrics source %r failed", name)
        up[name] = False
        return None
    up[name] = True
    return value


def take_snapshot(sources: Sources, sampler: CpuSampler, model: CapacityModel) -> Snapshot:
    up: dict[str, bool] = {}
    stats: list[RoomStats] = []
    media: list[RoomMedia] = []
    documents: DocumentTotals | None = None
    if sources.live is not None:
        stats = _read("live", sources.live.room_stats, up) or []
    if sources.media is not None:
        media = _read("media", sources.media.media_stats, up) or []
    workers: list[MediaWorker] = []
    if isinstance(sources.media, MediaWorkersSource):
        workers = _read("media_workers", sources.media.media_workers, up) or []
    recordings: RecordingTotals | None = None
    if isinstance(sources.media, RecordingsSource):
        recordings = _read("recordings", sources.media.recording_totals, up)
    if sources.documents is not None:
        documents = _read("documents", sources.documents.document_totals, up)
    by_stats = {s.cohort_id: s for s in stats}
    by_media = {m.cohort_id: m for m in media}
    rooms = [
        RoomView(cid, by_stats.get(cid), by_media.get(cid))
        for cid in sorted(by_stats.keys() | by_media.keys())
    ]
    cpu = sampler.usage()
    loads = [
        WorkerLoad(w.worker, w.up, w.learners, cpu.worker_busy_cores.get(w.worker, 0.0))
        for w in workers
    ]
    capacity = model.estimate(cpu, [(r.learners, r.video_tracks) for r in rooms], loads)
    return Snapshot(rooms, documents, cpu, capacity, up, workers, recordings)
