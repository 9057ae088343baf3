"""Operators see every host: with several app hosts (``ESTRADE_REDIS_URL``), each host
publishes a heartbeat, its own rooms and capacity, to Redis every :data:`HEARTBEAT_S` seconds
under a key that expires after :data:`TTL_S`; ``GET /api/operator/overview`` lists every live
host from those keys. A host that dies disappears within :data:`TTL_S`; one that stops cleanly
removes its key at once. Each host still exports its own ``/metrics`` for Prometheus."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import redis.exceptions
from redis.asyncio import Redis

from appliance.metrics.operator import HostOut, OverviewOut

__all__ = ["HEARTBEAT_S", "TTL_S", "HostsView", "host_name"]

log = logging.getLogger("estrade")

HEARTBEAT_S = 2.0
TTL_S = 6
_PREFIX = "estrade:host:"


def host_name(port: int) -> str:
    """How this host is named in the operator view: ``hostname:port``."""
    return f"{socket.gethostname()}:{port}"


class HostsView:
    def __init__(self, url: str, name: str, overview: Callable[[], OverviewOut]) -> None:
        self.name = name
        self._overview = overview
        self._redis = Redis.from_url(url)

    async def beat(self) -> None:
        out = self._overview()
        heartbeat = HostOut(self.name, time.time(), out.rooms, out.capacity)
        await self._redis.set(_PREFIX + self.name, msgspec.json.encode(heartbeat), ex=TTL_S)

    async def hosts(self) -> list[HostOut]:
        """Every host whose heartbeat has not expired, by name."""
        keys = [key async for key in self._redis.scan_iter(match=_PREFIX + "*", count=100)]
        values = await self._redis.mget(keys) if keys else []
        out = []
        for value in values:
            if value is None:  # expired between SCAN and MGET
                continue
            try:
                out.append(msgspec.json.decode(value, type=HostOut))
            except msgspec.DecodeError:
                log.warning("ignored a malformed host heartbeat in Redis")
        return sorted(out, key=lambda h: h.host)

    async def _run(self) -> None:
        while True:
            try:
                await self.beat()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
                # Redis away: this host is missing from the view meanwhile (one line, no trace)
                log.warning("could not publish this host's heartbeat: %s", exc)
            except Exception:
                log.warning("could not publish this host's heartbeat", exc_info=True)
            await asyncio.sleep(HEARTBEAT_S)

    @asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(self._run(), name="estrade-host-heartbeat")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(Exception):
                await self._redis.delete(_PREFIX + self.name)
            await self._redis.aclose()
