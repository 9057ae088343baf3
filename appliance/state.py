"""What one application shares between its handlers (``app.state``), typed.

:func:`appliance.app.create_app` builds one with :meth:`AppState.of`; handlers, guards and sockets
read it through :func:`app_state`, so every object comes out with its type instead of ``Any``.
It stays a Litestar ``State`` (a mapping, read by attribute), so ``app.state.metrics`` still
works where the type does not matter (tests).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from litestar.datastructures import State

if TYPE_CHECKING:  # the packages below import this module: their types only, never at runtime
    from litestar.connection import ASGIConnection
    from piccolo.engine.base import Engine

    from appliance.auth.controllers import LoginLimiter
    from appliance.auth.passwords import PasswordWorkers
    from appliance.documents.notifier import DocumentNotifier
    from appliance.documents.services import DocumentTotals
    from appliance.documents.storage import BlobStore
    from appliance.engagement.live import EngagementLive
    from appliance.live.media import MediaBridge
    from appliance.live.recording import LiveRecordings
    from appliance.live.room import RoomRegistry
    from appliance.metrics.core import Metrics
    from appliance.metrics.http import MetricsAccess
    from appliance.settings import Settings

__all__ = ["AppState", "app_state"]


class AppState(State):
    """The application's shared objects, one attribute each."""

    settings: Settings
    engine: Engine[Any]
    csrf_secret: str
    """Secret of the CSRF tokens (configured, or generated once in the data folder)."""
    live: RoomRegistry
    media: MediaBridge
    recordings: LiveRecordings
    engagement: EngagementLive
    metrics: Metrics
    metrics_access: MetricsAccess
    document_store: BlobStore
    document_notifier: DocumentNotifier
    document_totals: DocumentTotals
    password_workers: PasswordWorkers
    login_limiter: LoginLimiter

    @classmethod
    def of(
        cls,
        *,
        settings: Settings,
        engine: Engine[Any],
        csrf_secret: str,
        live: RoomRegistry,
        media: MediaBridge,
        recordings: LiveRecordings,
        engagement: EngagementLive,
        metrics: Metrics,
        metrics_access: MetricsAccess,
        document_store: BlobStore,
        document_notifier: DocumentNotifier,
        document_totals: DocumentTotals,
        password_workers: PasswordWorkers,
        login_limiter: LoginLimiter,
    ) -> AppState:
        """Every shared object, by keyword: one missing or of the wrong type fails mypy."""
        return cls(
            {
                "settings": settings,
                "engine": engine,
                "csrf_secret": csrf_secret,
                "live": live,
                "media": media,
                "recordings": recordings,
                "engagement": engagement,
                "metrics": metrics,
                "metrics_access": metrics_access,
                "document_store": document_store,
                "document_notifier": document_notifier,
                "document_totals": document_totals,
                "password_workers": password_workers,
                "login_limiter": login_limiter,
            }
        )


def app_state(connection: ASGIConnection[Any, Any, Any, Any]) -> AppState:
    """The shared objects of the application serving ``connection`` (a request or a socket)."""
    state = connection.app.state
    if not isinstance(state, AppState):
        raise TypeError("app.state is not an AppState: build the app with create_app()")
    return state
