"""Server-side sessions whose id is renewed whenever privileges change (no fixation).

A session holds ``uid``; a learner's also ``link`` (the join link it was opened with) and
``exp`` (the link's expiry: the stored session ends then, whatever ``session_max_age_s``);
every session holds ``csrf``, the CSRF token issued with it (see :func:`check_csrf_binding`).
Nothing is stored for a visitor who has not signed in.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.exceptions import PermissionDeniedException
from litestar.middleware.csrf import generate_csrf_token
from litestar.middleware.session.server_side import (
    ServerSideSessionBackend,
    ServerSideSessionConfig,
)
from litestar.stores.base import Store
from litestar.stores.file import FileStore
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from litestar.types import Empty

from appliance.hosts import counted, redis_client
from appliance.settings import Settings
from appliance.state import app_state

if TYPE_CHECKING:
    from appliance.metrics.hosts import RedisOperation

__all__ = [
    "CSRF_COOKIE",
    "SESSION_COOKIE",
    "build_session_config",
    "build_session_store",
    "check_csrf_binding",
    "renew_session_id",
    "start_session",
    "sweep_sessions",
]

log = logging.getLogger("estrade")

SESSION_COOKIE = "estrade_session"
CSRF_COOKIE = "csrftoken"
CSRF_HEADER = "x-csrftoken"
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NEW_ID = "estrade.session.new_id"


def renew_session_id(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Ask for a fresh session id when this response stores the session (sign-in, join)."""
    connection.scope[_NEW_ID] = True  # type: ignore[literal-required]


def start_session(
    request: Request[Any, Any, Any], response: Response[Any], data: dict[str, Any]
) -> None:
    """Sign in: a new session id (no fixation) holding ``data`` and a fresh CSRF token bound to
    it, sent as the ``csrftoken`` cookie (the token used before signing in stops working)."""
    state = app_state(request)
    settings = state.settings
    token = generate_csrf_token(secret=state.csrf_secret)
    request.clear_session()
    renew_session_id(request)
    request.set_session({**data, "csrf": token})
    response.set_cookie(
        Cookie(
            key=CSRF_COOKIE,
            value=token,
            path="/",
            secure=settings.cookies_secure,
            httponly=False,
            samesite="lax",
        )
    )


def check_csrf_binding(
    session: dict[str, Any], connection: ASGIConnection[Any, Any, Any, Any]
) -> None:
    """An unsafe request of a signed-in session must carry the token issued with that session.

    Litestar's CSRF middleware has already checked that header and cookie match and are signed
    by this server; this also ties them to the session, so a token planted or read before
    sign-in (or issued to another session) does not pass.
    """
    scope: Any = connection.scope
    if scope["type"] != "http" or scope["method"] not in _UNSAFE:
        return
    bound = session.get("csrf")
    sent = connection.headers.get(CSRF_HEADER, "")
    if not isinstance(bound, str) or not hmac.compare_digest(bound.encode(), sent.encode()):
        raise PermissionDeniedException(
            detail="CSRF token does not belong to this session: reload the page"
        )


class RenewingSessionBackend(ServerSideSessionBackend):
    def get_session_id(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
        scope: Any = connection.scope
        if scope.get(_NEW_ID) is True:
            scope[_NEW_ID] = self.generate_session_id()
        if isinstance(scope.get(_NEW_ID), str):
            return str(scope[_NEW_ID])
        return super().get_session_id(connection)

    async def store_in_message(self, scope_session: Any, message: Any, connection: Any) -> None:
        old = connection.cookies.get(self.config.key)
        if isinstance(scope_session, dict) and not scope_session:
            # Anonymous traffic must not fill the store: nothing to keep, nothing stored.
            if not old or old == "null":
                return
            scope_session = Empty
        renewing = connection.scope.get(_NEW_ID) is not None
        await super().store_in_message(scope_session, message, connection)
        if renewing and old and old != "null":
            await self.delete(old, store=self.config.get_store_from_app(connection.scope["app"]))

    async def set(self, session_id: str, data: bytes, store: Store) -> None:
        """Store for ``session_max_age_s``, or until ``exp`` (a join link's expiry) if sooner."""
        expires_in = int(self.config.max_age)
        exp = msgspec.json.decode(data).get("exp") if b'"exp"' in data else None
        if isinstance(exp, int | float):
            expires_in = max(1, min(expires_in, int(exp - time.time())))
        await store.set(session_id, data, expires_in=expires_in)


@dataclass
class EstradeSessionConfig(ServerSideSessionConfig):
    _backend_class = RenewingSessionBackend


class CountedRedisStore(RedisStore):
    """Litestar's RedisStore; each call that Redis does not answer is counted as ``session``
    (``estrade_redis_errors_total``) before it raises (a 503, appliance/app.py)."""

    on_error: Callable[[RedisOperation], None] | None = None

    async def set(
        self, key: str, value: str | bytes, expires_in: int | timedelta | None = None
    ) -> None:
        async with counted(self.on_error, "session"):
            await super().set(key, value, expires_in)

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        async with counted(self.on_error, "session"):
            return await super().get(key, renew_for)

    async def delete(self, key: str) -> None:
        async with counted(self.on_error, "session"):
            await super().delete(key)

    async def exists(self, key: str) -> bool:
        async with counted(self.on_error, "session"):
            return await super().exists(key)


def build_session_store(
    settings: Settings, on_error: Callable[[RedisOperation], None] | None = None
) -> Store:
    """``on_error``: with Redis, counts its calls that fail (several hosts)."""
    if settings.session_store == "memory":
        return MemoryStore()
    url = settings.session_store if settings.session_store.startswith("redis") else ""
    if url or settings.redis_url:  # several hosts: every host sees every session
        store = CountedRedisStore(
            redis_client(url or settings.redis_url),
            namespace="estrade_sessions",
            handle_client_shutdown=True,
        )
        if on_error is not None:
            store.on_error = on_error
        return store
    return FileStore(settings.data_dir / "sessions", create_directories=True)


def build_session_config(settings: Settings) -> EstradeSessionConfig:
    return EstradeSessionConfig(
        key=SESSION_COOKIE,
        max_age=settings.session_max_age_s,
        httponly=True,
        secure=settings.cookies_secure,
        samesite="lax",
        store="sessions",
    )


async def sweep_sessions(store: Store, interval_s: float) -> None:
    """Delete expired sessions every ``interval_s`` (file and memory stores keep them otherwise;
    Redis expires keys itself). Runs for the life of the app."""
    if not isinstance(store, FileStore | MemoryStore):
        return
    while True:
        await asyncio.sleep(interval_s)
        try:
            await store.delete_expired()
        except Exception:  # a file vanishing meanwhile must not stop the sweeping
            log.warning("could not sweep expired sessions", exc_info=True)
