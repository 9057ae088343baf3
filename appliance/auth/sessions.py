"""Server-side sessions whose id is renewed whenever privileges change (no fixation)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.middleware.session.server_side import (
    ServerSideSessionBackend,
    ServerSideSessionConfig,
)
from litestar.stores.base import Store
from litestar.stores.file import FileStore
from litestar.stores.memory import MemoryStore
from litestar.types import Empty

from appliance.settings import Settings

__all__ = ["SESSION_COOKIE", "build_session_config", "build_session_store", "renew_session_id"]

SESSION_COOKIE = "estrade_session"
_NEW_ID = "estrade.session.new_id"


def renew_session_id(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Ask for a fresh session id when this response stores the session (sign-in, join)."""
    connection.scope[_NEW_ID] = True  # type: ignore[literal-required]


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


@dataclass
class EstradeSessionConfig(ServerSideSessionConfig):
    _backend_class = RenewingSessionBackend


def build_session_store(settings: Settings) -> Store:
    if settings.session_store == "memory":
        return MemoryStore()
    if settings.session_store.startswith(("redis://", "rediss://")):
        from litestar.stores.redis import RedisStore

        return RedisStore.with_client(url=settings.session_store, namespace="estrade_sessions")
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
