"""Operators see every host: with several app hosts (``ESTRADE_REDIS_URL``), each host
publishes a heartbeat, its own rooms and capacity, to Redis every :data:`HEARTBEAT_S` seconds
under a key that expires after :data:`TTL_S`; ``GET /api/operator/overview`` lists every live
host from those keys. A host that dies disappears within :data:`TTL_S`; one that stops cleanly
removes its key at once. Each host still exports its own ``/metrics`` for Prometheus, with
:class:`RedisMetrics` (whether Redis answers this host, and how many calls failed)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Literal, get_args

import msgspec
import redis.exceptions
from prometheus_client import CollectorRegistry, Counter, Gauge

from appliance.hosts import redis_client
from appliance.metrics.operator import HostOut, OverviewOut

__all__ = [
    "BEAT_TIMEOUT_S",
    "HEARTBEAT_S",
    "TTL_S",
    "HostsView",
    "RedisMetrics",
    "RedisOperation",
    "host_name",
]

log = logging.getLogger("estrade")

HEARTBEAT_S = 2.0
TTL_S = 6
BEAT_TIMEOUT_S = 6.0
"""A heartbeat not written within this is a failure: a hung Redis (accepting connections but
not answering) counts as down, as a refused one does."""
_PREFIX = "estrade:host:"

RedisOperation = Literal["session", "rate_limit", "publish", "subscribe", "heartbeat"]
REDIS_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, TimeoutError)
"""What "Redis does not answer" raises: refused or cut connections, socket and heartbeat
timeouts (other Redis errors are bugs and are not counted here)."""


class RedisMetrics:
    """Several hosts only (registered when ``ESTRADE_REDIS_URL`` is set): whether Redis answers
    this host, and its failed calls by operation (a small fixed set, every one exported from 0).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge(
            "estrade_redis_up",
            f"1 when this host's last heartbeat reached Redis within {BEAT_TIMEOUT_S:g} s "
            f"(every {HEARTBEAT_S:g} s), 0 when it failed or hung.",
            registry=registry,
        )
        self.errors = Counter(
            "estrade_redis_errors_total",
            "Redis calls that failed (refused, cut or timed out), by operation: session, "
            "rate_limit (sign-in limits), publish and subscribe (access changes), heartbeat.",
            ["operation"],
            registry=registry,
        )
        for operation in get_args(RedisOperation):
            self.errors.labels(operation)

    def error(self, operation: RedisOperation) -> None:
        self.errors.labels(operation).inc()


def host_name(port: int) -> str:
    """How this host is named in the operator view: ``hostname:port``."""
    return f"{socket.gethostname()}:{port}"


class HostsView:
    def __init__(
        self,
        url: str,
        name: str,
        overview: Callable[[], OverviewOut],
        metrics: RedisMetrics | None = None,
    ) -> None:
        self.name = name
        self._overview = overview
        self._redis = redis_client(url)  # the operator's request waits no longer than a session's
        self._metrics = metrics

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
            up = False
            try:
                async with asyncio.timeout(BEAT_TIMEOUT_S):
                    await self.beat()
                up = True
            except REDIS_ERRORS as exc:
                # Redis away: this host is missing from the view meanwhile (one line, no trace)
                why = str(exc) or f"no answer within {BEAT_TIMEOUT_S:g} s"
                log.warning("could not publish this host's heartbeat: %s", why)
            except Exception:
                log.warning("could not publish this host's heartbeat", exc_info=True)
            if self._metrics is not None:
                self._metrics.up.set(1 if up else 0)
                if not up:
                    self._metrics.error("heartbeat")
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
