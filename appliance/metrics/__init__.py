"""Prometheus metrics: event counters, scrape-time state collectors, capacity, operator API.

Other packages only call :class:`Metrics` (found on ``app.state.metrics``): event methods
when something happens, and :meth:`Metrics.attach` once with their state source.
"""

from appliance.metrics.capacity import CapacityEstimate, CapacityModel, CpuSampler, CpuUsage
from appliance.metrics.core import Metrics, capacity_model
from appliance.metrics.http import (
    MetricsAccess,
    MetricsController,
    metrics_access_guard,
    prometheus_config,
    request_metrics,
)
from appliance.metrics.operator import OperatorController
from appliance.metrics.sources import (
    DocumentsSource,
    DocumentTotals,
    LearnerLink,
    LiveRoomsSource,
    MediaSource,
    RoomMedia,
    RoomStats,
)

__all__ = [
    "CapacityEstimate",
    "CapacityModel",
    "CpuSampler",
    "CpuUsage",
    "DocumentTotals",
    "DocumentsSource",
    "LearnerLink",
    "LiveRoomsSource",
    "MediaSource",
    "Metrics",
    "MetricsAccess",
    "MetricsController",
    "OperatorController",
    "RoomMedia",
    "RoomStats",
    "capacity_model",
    "metrics_access_guard",
    "prometheus_config",
    "request_metrics",
]
