"""The application factory. Nothing here reads the environment: settings come in as an argument."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import redis.exceptions
from litestar import Litestar, Request, Response
from litestar.config.csrf import CSRFConfig
from litestar.exceptions import HTTPException
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.security.session_auth import SessionAuth
from litestar.stores.registry import StoreRegistry

from appliance import __version__, db
from appliance.accounts.controllers import (
    AdminCohortController,
    AdminUserController,
    MyCohortsController,
)
from appliance.attendance.controllers import AttendanceController
from appliance.auth.controllers import AuthController, LoginLimiter
from appliance.auth.guards import user_from_connection
from appliance.auth.nostore import no_store_api
from appliance.auth.passwords import PasswordWorkers
from appliance.auth.redact import redact
from appliance.auth.sessions import build_session_config, build_session_store, sweep_sessions
from appliance.documents import BlobStore, DocumentController
from appliance.documents.services import DocumentTotals
from appliance.engagement.controllers import EngagementController, EngagementPage
from appliance.engagement.live import EngagementLive
from appliance.errors import DomainError
from appliance.hosts import RedisLoginWindows, claim_listener, event_emitter_for, redis_client
from appliance.live import access_listeners, classroom_socket, live_plugin
from appliance.live.documents import LiveDocumentNotifier
from appliance.live.media import MediaBridge
from appliance.live.recording import LiveRecordings
from appliance.metrics import (
    Metrics,
    MetricsAccess,
    MetricsController,
    OperatorController,
    request_metrics,
)
from appliance.polls.controllers import PollController
from appliance.replays.controllers import RecordingPolicyController, ReplayController, ReplayPage
from appliance.request import EstradeRequest
from appliance.settings import Settings
from appliance.state import AppState
from appliance.system import SystemController
from appliance.web import PageController, html_not_found, static_files_router
from appliance.web.render import template_config

__all__ = ["create_app", "create_app_from_env", "secret_key"]

log = logging.getLogger("estrade")

AUTH_EXCLUDE = [
    "^/health$",
    "^/ready$",
    "^/schema",
    "^/static/",
    "^/join/",
    "^/$",
    "^/login$",
    "^/link-problem$",
    "^/favicon.ico$",
    "^/api/auth/csrf$",
    "^/metrics$",  # guarded by address and token instead (metrics_access_guard)
]


def secret_key(settings: Settings) -> str:
    """The configured secret, or one generated on first start and kept in the data folder."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / "secret_key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.touch(mode=0o600)
    path.write_text(key)
    return key


def _client_error(
    request: Request[Any, Any, Any],
    status_code: int,
    detail: str,
    extra: Any = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    """A client error as JSON ``{status_code, detail, extra?}`` (a browser's 404: a page)."""
    if status_code == 404 and (page := html_not_found(request)) is not None:
        return page
    body: dict[str, Any] = {"status_code": status_code, "detail": detail}
    if extra:
        body["extra"] = extra
    return Response(body, status_code=status_code, headers=headers)


def _http_errors(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    """Litestar's own (validation, routing, guards, auth) and those controllers raise."""
    return _client_error(request, exc.status_code, exc.detail, exc.extra, exc.headers)


def _domain_errors(request: Request[Any, Any, Any], exc: DomainError) -> Response[Any]:
    """A service's refusal: a field error in Litestar's validation-error shape."""
    if exc.field is None:
        return _client_error(request, exc.status_code, exc.detail)
    extra = [{"key": exc.field, "message": exc.detail}]
    return _client_error(request, exc.status_code, f"{exc.field}: {exc.detail}", extra)


def _redis_away(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Several hosts: Redis (sessions, sign-in limits, events) does not answer. A 503 the
    client can retry, one log line without a traceback; the next request tries Redis again."""
    log.warning("redis unreachable on %s %s: %s", request.method, redact(request.url.path), exc)
    return Response(
        {
            "status_code": 503,
            "detail": "Service Unavailable: the shared store (Redis) does not answer",
        },
        status_code=503,
        headers={"Retry-After": "5"},
    )


def _server_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """An unexpected error: logged with its traceback, a plain JSON 500 for the client."""
    log.error("server error on %s %s", request.method, redact(request.url.path), exc_info=exc)
    return Response({"status_code": 500, "detail": "Internal Server Error"}, status_code=500)


def create_app(settings: Settings, *, migrate_on_start: bool = False) -> Litestar:
    """Build the Litestar application for ``settings``.

    Args:
        settings: validated settings (see :func:`appliance.settings.load_settings`).
        migrate_on_start: run pending migrations before serving (``estrade serve`` does this
            for a new data folder; tests migrate explicitly).
    """
    engine = db.bind(settings)
    csrf_secret = secret_key(settings)
    session_config = build_session_config(settings)
    auth = SessionAuth[Any, Any](
        retrieve_user_handler=user_from_connection,
        session_backend_config=session_config,
        exclude=AUTH_EXCLUDE,
    )

    metrics = Metrics.for_app(settings)
    redis_metrics = None  # several hosts: estrade_redis_up, estrade_redis_errors_total
    if settings.redis_url:
        from appliance.metrics.hosts import RedisMetrics

        redis_metrics = metrics.redis = RedisMetrics(metrics.registry)
    on_redis_error = redis_metrics.error if redis_metrics else None
    session_store = build_session_store(settings, on_redis_error)
    document_store = BlobStore(settings.data_dir)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        document_store.sweep()
        await db.start(engine, settings.database_pool_size)
        metrics.loop_monitor.start()
        await media.start(observer=metrics)
        sweeper = asyncio.create_task(sweep_sessions(session_store, settings.session_sweep_s))
        try:
            if migrate_on_start:
                ran = await db.migrate()
                if ran:
                    log.info("ran %d migration(s)", len(ran))
            try:
                await document_totals.refresh()
            except Exception as exc:  # the database may not answer yet: /ready tells
                log.warning("documents totals not available: %s", exc)
            yield
        finally:
            sweeper.cancel()
            await metrics.loop_monitor.stop()
            await media.close()
            await live.attendance.flush()
            live.close()
            await chat_writer.close()
            password_workers.close()
            if shared_windows is not None:
                await shared_windows.close()
            await db.close(engine)

    password_workers = PasswordWorkers(settings.password_workers, settings.password_queue)
    shared_windows = None  # several hosts: sign-in limits in Redis (appliance/hosts.py)
    if settings.redis_url:
        shared_windows = RedisLoginWindows(
            redis_client(settings.redis_url),
            settings.login_attempts_per_address,
            settings.login_attempts_per_account,
            settings.login_window_s,
            on_redis_error,
        )
    channels, live = live_plugin(settings)
    engagement = EngagementLive(live)  # counts hands, reactions, low bandwidth per learner
    live.metrics = metrics
    chat_writer = db.DedicatedWriter(engine)
    live.writer = chat_writer
    media = MediaBridge(live)
    recordings = LiveRecordings(live, media)
    document_notifier = LiveDocumentNotifier(live)
    document_notifier.listeners.append(recordings.document_pushed)
    document_totals = DocumentTotals()
    metrics.attach(live=live, media=media, documents=document_totals)
    if settings.redis_url:  # several hosts: every host in the operator view (metrics/hosts.py)
        from appliance.metrics.hosts import HostsView, host_name
        from appliance.metrics.operator import overview

        metrics.hosts = HostsView(
            settings.redis_url,
            host_name(settings.port),
            lambda: overview(metrics.snapshot()),
            redis_metrics,
        )
    state = AppState.of(
        live=live,
        media=media,
        recordings=recordings,
        settings=settings,
        engine=engine,
        metrics=metrics,
        metrics_access=MetricsAccess.from_settings(settings),
        document_store=document_store,
        document_notifier=document_notifier,
        document_totals=document_totals,
        password_workers=password_workers,
        csrf_secret=csrf_secret,
        engagement=engagement,
        login_limiter=LoginLimiter(
            settings.login_attempts_per_address,
            settings.login_attempts_per_account,
            settings.login_window_s,
            shared_windows,
        ),
    )
    return Litestar(
        route_handlers=[
            SystemController,
            AuthController,
            AdminUserController,
            AdminCohortController,
            MyCohortsController,
            MetricsController,
            OperatorController,
            AttendanceController,
            PollController,
            classroom_socket,
            DocumentController,
            EngagementController,
            EngagementPage,
            RecordingPolicyController,
            ReplayController,
            ReplayPage,
            PageController,
            static_files_router(),
        ],
        plugins=[channels],
        middleware=[no_store_api],
        # Sockets follow access changes (accounts.events) and cohorts moving to another host.
        listeners=[*access_listeners(live), claim_listener(live)],
        event_emitter_backend=event_emitter_for(  # ...of every host
            settings.redis_url, on_redis_error
        ),
        on_app_init=[auth.on_app_init, request_metrics(metrics)],
        csrf_config=CSRFConfig(
            secret=csrf_secret,
            cookie_secure=settings.cookies_secure,
            cookie_samesite="lax",
            exclude=["^/health$", "^/ready$"],
        ),
        stores=StoreRegistry(stores={"sessions": session_store}),
        openapi_config=OpenAPIConfig(
            title="Estrade",
            version=__version__,
            path="/schema",
            render_plugins=[JsonRenderPlugin()],
        ),
        exception_handlers={
            DomainError: _domain_errors,
            HTTPException: _http_errors,
            redis.exceptions.ConnectionError: _redis_away,
            redis.exceptions.TimeoutError: _redis_away,
            Exception: _server_error,
        },
        request_max_body_size=settings.max_request_bytes,
        request_class=EstradeRequest,
        template_config=template_config(),
        lifespan=[
            lifespan,
            engagement.lifespan,
            recordings.lifespan,
            *([metrics.hosts.lifespan] if metrics.hosts else []),
        ],
        state=state,
        debug=False,
    )


def create_app_from_env() -> Litestar:
    """Factory for ASGI servers run on their own (`uvicorn --factory`, `granian --factory`)."""
    from appliance.auth.redact import install_log_redaction
    from appliance.settings import load_settings

    # The server set its logging up before calling this factory: redact from here on.
    install_log_redaction("uvicorn", "uvicorn.access", "uvicorn.error", "granian", "estrade")
    return create_app(load_settings(), migrate_on_start=True)
