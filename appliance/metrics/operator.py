"""The operator's JSON view: rooms, participants, bitrate, loss and capacity, read from the same
sources as ``/metrics`` (for the operator page; Prometheus keeps the history)."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Controller, Request, get

from appliance.accounts.tables import Role
from appliance.auth.guards import require_roles
from appliance.metrics.snapshot import RoomView, Snapshot
from appliance.metrics.sources import LearnerLink
from appliance.state import app_state

__all__ = ["HostOut", "OperatorController", "OverviewOut", "overview"]


class ParticipantsOut(msgspec.Struct):
    role: str
    state: str
    count: int


class RoomOut(msgspec.Struct):
    cohort_id: int
    started: bool
    learners: int
    participants: list[ParticipantsOut]
    video_tracks: int
    audio_tracks: int
    learners_subscribed: int
    send_bitrate_bps: float
    relayed_connections: int
    paths: dict[str, int]
    """Learners' connections by path: ``direct``, ``turn_udp``, ``turn_tls`` (port 443)."""
    rtt_mean_s: float | None
    rtt_max_s: float | None
    loss_mean: float | None
    loss_max: float | None


class CapacityOut(msgspec.Struct):
    learners: int
    """How many more learners fit now."""
    cpu_cores: int
    budget_cores: float
    used_cores: float
    other_cores: float
    relay_model_cores: float
    learner_cost_cores: float
    host_busy_cores: float
    process_busy_cores: float


class WorkerOut(msgspec.Struct):
    """One media worker process (``ESTRADE_MEDIA_WORKERS`` > 0; docs/media-workers.md)."""

    worker: int
    up: bool
    rooms: int
    learners: int
    cpu_seconds: float
    cpu_busy_cores: float
    """Its CPU over the last few seconds, in cores (one event loop: at most 1)."""
    loop_lag_s: float
    restarts: int
    capacity_learners: int
    """Learners that still fit on it (``capacity.learners`` adds them up)."""


class DocumentsOut(msgspec.Struct):
    count: int
    bytes: int


class HostOut(msgspec.Struct):
    """Another view of one app host (several hosts: its heartbeat in Redis, metrics/hosts.py)."""

    host: str
    """``hostname:port`` of its ``estrade serve``."""
    seen_at: float
    """Unix time of its last heartbeat (every 2 s; a host silent for 6 s is dropped)."""
    rooms: list[RoomOut]
    capacity: CapacityOut


class OverviewOut(msgspec.Struct):
    rooms: list[RoomOut]
    capacity: CapacityOut
    documents: DocumentsOut | None
    sources: dict[str, bool]
    """Which state sources answered (absent: not wired)."""
    loop_lag_s: float = 0.0
    """How late the web process's event loop ran a timer at the last check (chat, sockets
    and HTTP wait that long; ``estrade_event_loop_lag_seconds``)."""
    workers: list[WorkerOut] = []
    """The media workers (one per core by default); empty when the relay runs in the web
    process (``ESTRADE_MEDIA_WORKERS=0``)."""
    hosts: list[HostOut] = []
    """With several app hosts (``ESTRADE_REDIS_URL``): every live host, this one included, with
    its rooms and capacity; empty with one host (``rooms`` and ``capacity`` say it all)."""


def _paths(links: list[LearnerLink]) -> dict[str, int]:
    paths = {"direct": 0, "turn_udp": 0, "turn_tls": 0}
    for link in links:
        key = link.path.replace("-", "_") or ("relayed" if link.relayed else "direct")
        paths[key] = paths.get(key, 0) + 1
    return paths


def _room(view: RoomView) -> RoomOut:
    stats, media = view.stats, view.media
    links = media.learners if media else []
    rtts = [link.rtt_s for link in links]
    losses = [link.loss_ratio for link in links]
    return RoomOut(
        cohort_id=view.cohort_id,
        started=bool(stats and stats.started),
        learners=view.learners,
        participants=[
            ParticipantsOut(role, state, n)
            for (role, state), n in sorted((stats.participants if stats else {}).items())
        ],
        video_tracks=media.video_tracks if media else 0,
        audio_tracks=media.audio_tracks if media else 0,
        learners_subscribed=media.learners_subscribed if media else 0,
        send_bitrate_bps=media.send_bitrate_bps if media else 0.0,
        relayed_connections=sum(1 for link in links if link.relayed),
        paths=_paths(links),
        rtt_mean_s=sum(rtts) / len(rtts) if rtts else None,
        rtt_max_s=max(rtts) if rtts else None,
        loss_mean=sum(losses) / len(losses) if losses else None,
        loss_max=max(losses) if losses else None,
    )


def overview(snap: Snapshot, loop_lag_s: float = 0.0) -> OverviewOut:
    c, cpu = snap.capacity, snap.cpu
    docs = snap.documents
    return OverviewOut(
        rooms=[_room(r) for r in snap.rooms],
        capacity=CapacityOut(
            learners=c.learners,
            cpu_cores=cpu.cores,
            budget_cores=c.budget_cores,
            used_cores=c.used_cores,
            other_cores=c.other_cores,
            relay_model_cores=c.relay_model_cores,
            learner_cost_cores=c.marginal_cores,
            host_busy_cores=cpu.host_busy_cores,
            process_busy_cores=cpu.process_busy_cores,
        ),
        documents=DocumentsOut(docs.count, docs.bytes) if docs else None,
        sources=snap.source_up,
        loop_lag_s=loop_lag_s,
        workers=[
            WorkerOut(
                worker=w.worker,
                up=w.up,
                rooms=w.rooms,
                learners=w.learners,
                cpu_seconds=w.cpu_seconds,
                cpu_busy_cores=cpu.worker_busy_cores.get(w.worker, 0.0),
                loop_lag_s=w.loop_lag_s,
                restarts=w.restarts,
                capacity_learners=c.per_worker.get(w.worker, 0),
            )
            for w in snap.workers
        ],
    )


class OperatorController(Controller):
    path = "/api/operator"
    tags = ["operator"]
    guards = [require_roles(Role.operator, Role.admin)]

    @get("/overview", cache_control=None)
    async def get_overview(self, request: Request[Any, Any, Any]) -> OverviewOut:
        """Every open room with its participants, bitrate, loss and RTT, and the capacity left."""
        metrics = app_state(request).metrics
        out = overview(metrics.snapshot(), metrics.loop_monitor.last_lag_s)
        if metrics.hosts is not None:
            out.hosts = await metrics.hosts.hosts()
        return out
