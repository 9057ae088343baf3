"""``/metrics`` and HTTP request metrics, on Litestar's Prometheus support with our registry.

Litestar's ``PrometheusMiddleware`` keeps its metrics in a class-wide dict on the default
registry, and ``PrometheusController`` serves the default registry: both are subclassed so each
app (and each test) has its own registry.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from litestar import Request, get
from litestar.config.app import AppConfig
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.plugins.prometheus import (
    PrometheusConfig,
    PrometheusController,
    PrometheusMiddleware,
)
from litestar.response import Response
from litestar.types import ASGIApp
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest

from appliance.metrics.core import Metrics
from appliance.settings import Settings
from appliance.state import app_state

__all__ = [
    "MetricsAccess",
    "MetricsController",
    "metrics_access_guard",
    "prometheus_config",
    "request_metrics",
]

# Paths of WebSocket routes: a socket lives for a whole class, so timing it as one request
# would drown every real request in the histogram.
WEBSOCKET_PATHS = "^/ws/"


@dataclass
class EstradePrometheusConfig(PrometheusConfig):
    metrics: Metrics | None = field(default=None)


class EstradePrometheusMiddleware(PrometheusMiddleware):
    """Records into the app's :class:`Metrics` instead of the class-wide default registry.

    It runs outermost (see :func:`request_metrics`), so a request refused by the
    authentication middleware is counted too; errors raised inside are turned into responses
    here (as Litestar does between route middleware) so the status recorded is the one sent.
    """

    def __init__(self, app: ASGIApp, config: PrometheusConfig) -> None:
        # Private helper, pinned with litestar==2.25.*; test_metrics_http checks 401s are counted.
        from litestar._asgi.utils import wrap_in_exception_handler

        super().__init__(wrap_in_exception_handler(app), config)

    def _app_metrics(self) -> Metrics:
        metrics = cast("EstradePrometheusConfig", self._config).metrics
        assert metrics is not None
        return metrics

    def request_count(self, labels: dict[str, str | int | float]) -> Counter:
        return self._app_metrics().http_requests

    def request_time(self, labels: dict[str, str | int | float]) -> Histogram:
        return self._app_metrics().http_duration

    def requests_in_progress(self, labels: dict[str, str | int | float]) -> Gauge:
        return self._app_metrics().http_in_progress

    def requests_error_count(self, labels: dict[str, str | int | float]) -> Counter:
        return self._app_metrics().http_errors


def request_metrics(metrics: Metrics) -> Callable[[AppConfig], AppConfig]:
    """An ``on_app_init`` hook putting the request-metrics middleware outermost (after auth's)."""

    def on_app_init(app_config: AppConfig) -> AppConfig:
        app_config.middleware.insert(0, prometheus_config(metrics).middleware)
        return app_config

    return on_app_init


def prometheus_config(metrics: Metrics) -> EstradePrometheusConfig:
    return EstradePrometheusConfig(
        app_name="estrade",
        prefix="estrade_http",
        metrics=metrics,
        middleware_class=EstradePrometheusMiddleware,
        group_path=True,  # label by route template (/api/x/{id}), never by raw path
        scopes={ScopeType.HTTP},
        exclude=[WEBSOCKET_PATHS],
    )


@dataclass(frozen=True, slots=True)
class MetricsAccess:
    """Who may read ``/metrics``: a client address in ``networks`` AND, when set, the token."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
    token: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> MetricsAccess:
        networks = tuple(
            ipaddress.ip_network(c.strip(), strict=False)
            for c in settings.metrics_allow_cidrs.split(",")
            if c.strip()
        )
        return cls(networks, settings.metrics_token)

    def address_allowed(self, host: str | None) -> bool:
        if not host:
            return False
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in net for net in self.networks)

    def token_ok(self, authorization: str | None) -> bool:
        if not self.token:
            return True
        scheme, _, presented = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            presented.strip().encode(), self.token.encode()
        )


def metrics_access_guard(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    access = app_state(connection).metrics_access
    host = connection.client.host if connection.client else None
    if not access.address_allowed(host):
        raise PermissionDeniedException(detail="metrics are not served to this address")
    if not access.token_ok(connection.headers.get("authorization")):
        raise NotAuthorizedException(
            detail="metrics need a bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


class MetricsController(PrometheusController):
    """Serves the app's own registry (text format), behind :func:`metrics_access_guard`."""

    path = "/metrics"

    @get(
        guards=[metrics_access_guard],
        exclude_from_auth=True,
        include_in_schema=False,
        cache_control=None,
    )
    async def get(self, request: Request[Any, Any, Any]) -> Response[bytes]:
        metrics = app_state(request).metrics
        return Response(
            generate_latest(metrics.registry),
            status_code=200,
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )
