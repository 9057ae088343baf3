"""Liveness and readiness probes."""

import logging
from collections.abc import Awaitable
from typing import Any

from litestar import Controller, Request, get
from litestar.response import Response
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from redis.asyncio import Redis
from redis.exceptions import RedisError

from appliance import db
from appliance.state import app_state

__all__ = ["SystemController"]

log = logging.getLogger("estrade")


async def _redis_answers(url: str) -> bool:
    """Whether the Redis of several hosts answers a PING within two seconds."""
    client = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        pong: Awaitable[bool] = client.ping()  # type: ignore[assignment]  # sync or async
        return bool(await pong)
    except (RedisError, OSError):
        return False
    finally:
        await client.aclose()


class SystemController(Controller):
    tags = ["system"]

    @get("/health", exclude_from_auth=True, exclude_from_csrf=True, cache_control=None)
    async def health(self) -> dict[str, str]:
        """200 while the process serves requests."""
        return {"status": "ok"}

    @get("/ready", exclude_from_auth=True, exclude_from_csrf=True)
    async def ready(self, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        """200 once the database (and Redis, with several hosts) answers and every migration has
        run, else 503."""
        engine = app_state(request).engine
        if not await db.ping(engine):
            return Response(
                {"status": "unavailable", "reason": "database does not answer"},
                status_code=HTTP_503_SERVICE_UNAVAILABLE,
            )
        url = app_state(request).settings.redis_url
        if url and not await _redis_answers(url):
            log.warning("not ready: redis does not answer")
            return Response(
                {"status": "unavailable", "reason": "redis does not answer"},
                status_code=HTTP_503_SERVICE_UNAVAILABLE,
            )
        pending = await db.pending_migrations()
        if pending:
            return Response(
                {"status": "unavailable", "reason": "migrations pending", "pending": pending},
                status_code=HTTP_503_SERVICE_UNAVAILABLE,
            )
        return Response({"status": "ok"}, status_code=HTTP_200_OK)
