"""The per-app metrics object: events, HTTP metrics, loop lag and the state collector."""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from appliance.metrics.capacity import CapacityModel, CpuSampler
from appliance.metrics.collector import StateCollector
from appliance.metrics.events import EventMetrics
from appliance.metrics.looplag import LoopMonitor
from appliance.metrics.snapshot import Snapshot, Sources, take_snapshot
from appliance.metrics.sources import (
    DocumentsSource,
    LiveRoomsSource,
    MediaSource,
    MediaWorkersSource,
)
from appliance.settings import Settings

if TYPE_CHECKING:
    from appliance.metrics.hosts import HostsView, RedisMetrics

__all__ = ["HTTP_LABELS", "Metrics", "capacity_model"]

# The label names Litestar's PrometheusMiddleware passes, in its order.
HTTP_LABELS = ["method", "path", "status_code", "app_name"]


def capacity_model(settings: Settings) -> CapacityModel:
    return CapacityModel(
        learner_cpu=settings.capacity_learner_cpu,
        video_track_cpu=settings.capacity_video_track_cpu,
        planned_video_tracks=settings.capacity_video_tracks,
        cpu_target=settings.capacity_cpu_target,
        relay_cores=float(max(1, settings.media_worker_count)),
    )


class Metrics(EventMetrics):
    """Everything the appliance exports, in one registry (``app.state.metrics``).

    Other packages call the event methods (:class:`EventMetrics`) and hand their state
    sources to :meth:`attach`; the state is read only when scraped.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        model: CapacityModel,
        sampler: CpuSampler | None = None,
    ) -> None:
        super().__init__(registry)
        self.registry = registry
        self.model = model
        self.sampler = sampler or CpuSampler()
        self.sources = Sources()
        self.loop_lag = Gauge(
            "estrade_event_loop_lag_seconds",
            "How late the event loop ran a timer at the last check (every 0.5 s).",
            registry=registry,
        )
        self.http_requests = Counter(
            "estrade_http_requests_total", "HTTP requests.", HTTP_LABELS, registry=registry
        )
        self.http_errors = Counter(
            "estrade_http_requests_error_total",
            "HTTP requests answered with a 5xx status.",
            HTTP_LABELS,
            registry=registry,
        )
        self.http_duration = Histogram(
            "estrade_http_request_duration_seconds",
            "HTTP request duration (WebSocket routes excluded).",
            HTTP_LABELS,
            registry=registry,
        )
        self.http_in_progress = Gauge(
            "estrade_http_requests_in_progress",
            "HTTP requests being served.",
            HTTP_LABELS,
            registry=registry,
        )
        self.loop_monitor = LoopMonitor(self.loop_lag, on_tick=self.sampler.sample)
        self.hosts: HostsView | None = None  # several hosts: every host's heartbeat (hosts.py)
        self.redis: RedisMetrics | None = None  # several hosts: Redis up, its failed calls
        registry.register(StateCollector(self.snapshot))

    @classmethod
    def for_app(cls, settings: Settings, registry: CollectorRegistry | None = None) -> Metrics:
        """A Metrics on ``registry``, or on a new registry with the process, platform and GC
        collectors (what the default registry would have, but owned by this app)."""
        if registry is None:
            registry = CollectorRegistry()
            ProcessCollector(registry=registry)
            PlatformCollector(registry=registry)
            GCCollector(registry=registry)
        return cls(registry, capacity_model(settings))

    def attach(
        self,
        *,
        live: LiveRoomsSource | None = None,
        media: MediaSource | None = None,
        documents: DocumentsSource | None = None,
    ) -> None:
        """Register state sources; each is read at every scrape and operator API call."""
        if live is not None:
            self.sources.live = live
        if media is not None:
            self.sources.media = media
            if isinstance(media, MediaWorkersSource):  # their CPU is Estrade's, not "other"
                workers = media
                self.sampler.workers_cpu = lambda: {
                    w.worker: w.cpu_seconds for w in workers.media_workers()
                }
        if documents is not None:
            self.sources.documents = documents

    def snapshot(self) -> Snapshot:
        return take_snapshot(self.sources, self.sampler, self.model)
