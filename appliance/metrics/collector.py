"""The scrape-time collector: turns a :class:`Snapshot` into metric families (no state kept)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from appliance.metrics.snapshot import Snapshot
from appliance.metrics.sources import PARTICIPANT_ROLES, PARTICIPANT_STATES

__all__ = ["StateCollector"]


class StateCollector(Collector):
    """Reads the live, media and documents sources at each scrape."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        yield from _rooms(snap)
        yield from _media(snap)
        yield from _workers(snap)
        yield from _documents(snap)
        yield from _recordings(snap)
        yield from _capacity(snap)
        up = GaugeMetricFamily(
            "estrade_metrics_source_up",
            "1 when a state source answered this scrape, 0 when it raised.",
            labels=["source"],
        )
        for name, ok in sorted(snap.source_up.items()):
            up.add_metric([name], 1.0 if ok else 0.0)
        yield up


def _gauge(name: str, doc: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, labels=labels)


def _rooms(snap: Snapshot) -> Iterator[Metric]:
    with_stats = [r for r in snap.rooms if r.stats is not None]
    opened = _gauge("estrade_rooms_open", "Classrooms open (waiting or started).")
    opened.add_metric([], len(with_stats))
    live = _gauge("estrade_rooms_live", "Classrooms whose class is started.")
    live.add_metric([], sum(1 for r in with_stats if r.stats and r.stats.started))
    started = _gauge(
        "estrade_room_started",
        "1 while the cohort's class is started, 0 while it waits.",
        ["cohort_id"],
    )
    people = _gauge(
        "estrade_participants",
        "People connected to a classroom, by role and state (waiting, in_class, low_bandwidth).",
        ["cohort_id", "role", "state"],
    )
    for room in with_stats:
        assert room.stats is not None
        cid = str(room.cohort_id)
        started.add_metric([cid], 1.0 if room.stats.started else 0.0)
        for role in PARTICIPANT_ROLES:
            for state in PARTICIPANT_STATES:
                people.add_metric([cid, role, state], room.stats.participants.get((role, state), 0))
    yield from (opened, live, started, people)


def _media(snap: Snapshot) -> Iterator[Metric]:
    tracks = _gauge(
        "estrade_media_tracks_published", "Tracks the trainer publishes.", ["cohort_id", "kind"]
    )
    subscribed = _gauge(
        "estrade_media_learners_subscribed", "Learners receiving media.", ["cohort_id"]
    )
    sent_bytes = CounterMetricFamily(
        "estrade_media_forwarded_bytes",
        "RTP bytes forwarded to learners since the room opened.",
        labels=["cohort_id"],
    )
    sent_packets = CounterMetricFamily(
        "estrade_media_forwarded_packets",
        "RTP packets forwarded to learners since the room opened.",
        labels=["cohort_id"],
    )
    connections = _gauge(
        "estrade_media_connections",
        "Learners' media connections now, by path (direct or relayed through TURN).",
        ["cohort_id", "path"],
    )
    rtt = _gauge(
        "estrade_room_learner_rtt_seconds",
        "Learners' latest round-trip time in the room: mean and max.",
        ["cohort_id", "stat"],
    )
    loss = _gauge(
        "estrade_room_learner_loss_ratio",
        "Learners' latest loss fraction in the room: mean and max.",
        ["cohort_id", "stat"],
    )
    for room in snap.rooms:
        m = room.media
        if m is None:
            continue
        cid = str(room.cohort_id)
        tracks.add_metric([cid, "video"], m.video_tracks)
        tracks.add_metric([cid, "audio"], m.audio_tracks)
        subscribed.add_metric([cid], m.learners_subscribed)
        sent_bytes.add_metric([cid], m.bytes_forwarded)
        sent_packets.add_metric([cid], m.packets_forwarded)
        relayed = sum(1 for link in m.learners if link.relayed)
        connections.add_metric([cid, "relayed"], relayed)
        connections.add_metric([cid, "direct"], len(m.learners) - relayed)
        if m.learners:
            rtts = [link.rtt_s for link in m.learners]
            losses = [link.loss_ratio for link in m.learners]
            rtt.add_metric([cid, "mean"], sum(rtts) / len(rtts))
            rtt.add_metric([cid, "max"], max(rtts))
            loss.add_metric([cid, "mean"], sum(losses) / len(losses))
            loss.add_metric([cid, "max"], max(losses))
    yield from (tracks, subscribed, sent_bytes, sent_packets, connections, rtt, loss)


def _workers(snap: Snapshot) -> Iterator[Metric]:
    if not snap.workers:
        return  # the relay runs in this process (ESTRADE_MEDIA_WORKERS=0)
    # estrade_event_loop_lag_seconds (metrics/core.py) is the web process's own loop lag.
    up = _gauge("estrade_media_worker_up", "1 while the media worker answers.", ["worker"])
    learners = _gauge(
        "estrade_media_worker_learners", "Learners receiving media from the worker.", ["worker"]
    )
    rooms = _gauge("estrade_media_worker_rooms", "Classes the worker relays.", ["worker"])
    cpu = CounterMetricFamily(
        "estrade_media_worker_cpu_seconds",
        "CPU seconds of the worker's process (from 0 again after a restart).",
        labels=["worker"],
    )
    lag = _gauge(
        "estrade_media_worker_loop_lag_seconds",
        "How late the worker's event loop ran a one-second timer, at its last report.",
        ["worker"],
    )
    restarts = CounterMetricFamily(
        "estrade_media_worker_restarts",
        "Times the media worker was started again after dying.",
        labels=["worker"],
    )
    busy = _gauge(
        "estrade_media_worker_cpu_busy_cores",
        "CPU the worker used over the last few seconds, in cores (at most 1: one event loop).",
        ["worker"],
    )
    fits = _gauge(
        "estrade_media_worker_capacity_learners",
        "Learners that still fit on the worker (estrade_capacity_learners adds them up, "
        "within what the host has left).",
        ["worker"],
    )
    for w in snap.workers:
        label = [str(w.worker)]
        busy.add_metric(label, snap.cpu.worker_busy_cores.get(w.worker, 0.0))
        fits.add_metric(label, snap.capacity.per_worker.get(w.worker, 0))
        up.add_metric(label, 1.0 if w.up else 0.0)
        learners.add_metric(label, w.learners)
        rooms.add_metric(label, w.rooms)
        cpu.add_metric(label, w.cpu_seconds)
        lag.add_metric(label, w.loop_lag_s)
        restarts.add_metric(label, w.restarts)
    yield from (up, learners, rooms, cpu, busy, lag, restarts, fits)


def _documents(snap: Snapshot) -> Iterator[Metric]:
    if snap.documents is None:
        return
    count = _gauge("estrade_documents_stored", "Documents stored.")
    count.add_metric([], snap.documents.count)
    size = _gauge("estrade_documents_stored_bytes", "Bytes of documents stored.")
    size.add_metric([], snap.documents.bytes)
    yield from (count, size)


def _recordings(snap: Snapshot) -> Iterator[Metric]:
    r = snap.recordings
    if r is None:
        return
    active = _gauge("estrade_recordings_active", "Class recordings running now.")
    active.add_metric([], r.active)
    written = CounterMetricFamily(
        "estrade_recording_written_bytes",
        "Frame bytes class recordings wrote (a media worker's share restarts from 0 with it).",
    )
    written.add_metric([], r.bytes_written)
    failed = CounterMetricFamily(
        "estrade_recording_segments_failed",
        "Recording segments that could not be written or closed.",
    )
    failed.add_metric([], r.segments_failed)
    free = _gauge(
        "estrade_recordings_disk_free_bytes", "Free space on the disk recordings are written to."
    )
    free.add_metric([], r.disk_free_bytes)
    size = _gauge("estrade_recordings_disk_size_bytes", "Size of the disk recordings go to.")
    size.add_metric([], r.disk_size_bytes)
    yield from (active, written, failed, free, size)


def _capacity(snap: Snapshot) -> Iterator[Metric]:
    c, cpu = snap.capacity, snap.cpu
    for name, doc, value in (
        (
            "estrade_capacity_learners",
            "How many more learners this server can take now.",
            c.learners,
        ),
        (
            "estrade_capacity_budget_cores",
            "CPU the appliance may use: cores x target.",
            c.budget_cores,
        ),
        ("estrade_capacity_learner_cost_cores", "CPU one more learner costs.", c.marginal_cores),
        (
            "estrade_relay_model_cores",
            "CPU the current learners should cost (model).",
            c.relay_model_cores,
        ),
        ("estrade_cpu_cores", "Cores this process may run on.", cpu.cores),
        ("estrade_host_cpu_busy_cores", "CPU the whole host used recently.", cpu.host_busy_cores),
        (
            "estrade_process_cpu_busy_cores",
            "CPU this process used recently.",
            cpu.process_busy_cores,
        ),
    ):
        g = _gauge(name, doc)
        g.add_metric([], value)
        yield g
