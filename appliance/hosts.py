"""Several app hosts (``ESTRADE_REDIS_URL``): what must cross processes goes through Redis.

- Sessions: Litestar's ``RedisStore`` (appliance/auth/sessions.py).
- Sign-in limits: :class:`RedisLoginWindows`, the same sliding windows as
  :class:`appliance.auth.ratelimit.SlidingWindow`, kept in Redis sorted sets and checked and
  counted in one Lua script (atomic across hosts, on Redis' clock).
- Access changes (accounts/events.py: deactivated, unenrolled, archived, links revoked):
  published on one channel through Litestar channels' Redis Pub/Sub backend by
  :func:`event_emitter_for`'s emitter; every other host replays them to its own listeners, which
  close the sockets they hold (live/access.py). Each host also handles its own at once.

Why Redis Pub/Sub rather than PostgreSQL LISTEN/NOTIFY: Redis is already there for sessions and
limits, Litestar ships the backend, and Piccolo has no LISTEN (it would need a dedicated asyncpg
connection per host beside the pool). Both are at-most-once: a host cut from Redis when an
event is published misses it; its sockets are then judged again at their next connect, which
checks the database (guards.py, live/access.py ``dead_link_close``).

Classroom events, rate limits per socket and room state stay in the process that owns the
cohort: nginx pins a cohort to one host (docs/deploy.md "Several hosts").

Every Redis call that fails (refused, cut, timed out) is counted by operation through an
``on_error`` callback (``estrade_redis_errors_total``, appliance/metrics/hosts.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import redis.exceptions
from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from litestar.events import BaseEventEmitterBackend, EventListener, SimpleEventEmitter, listener
from redis.asyncio import Redis

from appliance.accounts import events

if TYPE_CHECKING:
    from appliance.live.room import RoomRegistry
    from appliance.metrics.hosts import RedisOperation

    OnError = Callable[[RedisOperation], None]

__all__ = [
    "ACCESS_CHANNEL",
    "CLOSE_MOVED",
    "COHORT_CLAIMED",
    "REDIS_CALL_TIMEOUT_S",
    "RedisLoginWindows",
    "claim_listener",
    "counted",
    "event_emitter_for",
    "redis_client",
]

log = logging.getLogger("estrade")

COHORT_CLAIMED = "hosts.cohort_claimed"
"""``cohort_id``: another host opened this cohort's room (nginx sends the cohort there now), so
the sockets this host still holds for it are told to reconnect (:data:`CLOSE_MOVED`): a host
back from a failure takes its cohorts back whole instead of splitting a class in two rooms.
Published to the other hosts only."""
CLOSE_MOVED = 1012
"""WebSocket "service restart": the page reconnects at once, through nginx, to the new host."""
ACCESS_CHANNEL = "access"
"""The channel (under the ``estrade`` key prefix) that carries access changes."""
SHARED_EVENTS = frozenset(
    {
        events.USER_DEACTIVATED,
        events.ENROLMENT_ENDED,
        events.COHORT_ARCHIVED,
        events.LINKS_REVOKED,
        COHORT_CLAIMED,
    }
)
REMOTE_ONLY = frozenset({COHORT_CLAIMED})
REDIS_CALL_TIMEOUT_S = 5.0
"""Sessions and sign-in limits: a call to a hung Redis (connection accepted, no answer) fails
after this, so the request gets the 503 (appliance/app.py) instead of waiting for ever."""
_UNANSWERED = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def redis_client(url: str) -> Redis:
    """A client for request-time calls (sessions, sign-in limits): bounded by
    :data:`REDIS_CALL_TIMEOUT_S`."""
    return Redis.from_url(
        url, socket_timeout=REDIS_CALL_TIMEOUT_S, socket_connect_timeout=REDIS_CALL_TIMEOUT_S
    )


@contextlib.asynccontextmanager
async def counted(on_error: OnError | None, operation: RedisOperation) -> AsyncIterator[None]:
    """Count a Redis call that does not answer under ``operation``, and let it raise."""
    try:
        yield
    except _UNANSWERED:
        if on_error is not None:
            on_error(operation)
        raise


class _Shared(msgspec.Struct, frozen=True):
    origin: str
    event: str
    kwargs: dict[str, Any]


# KEYS: the address window, the account window. ARGV: window (s), address limit, account limit,
# member, check_only. Returns 0 (counted unless check_only) or the seconds to wait.
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
local wait = 0
for i = 1, 2 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - window)
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[i + 1]) then
    local first = redis.call('ZRANGE', KEYS[i], 0, 0, 'WITHSCORES')
    local left = math.max(1, math.floor(tonumber(first[2]) + window - now) + 1)
    if left > wait then wait = left end
  end
end
if wait == 0 and ARGV[5] == '0' then
  for i = 1, 2 do
    redis.call('ZADD', KEYS[i], now, ARGV[4])
    redis.call('EXPIRE', KEYS[i], math.ceil(window) + 1)
  end
end
return wait
"""


class RedisLoginWindows:
    """:class:`appliance.auth.controllers.LoginLimiter`'s windows, shared by every host."""

    def __init__(
        self,
        redis: Redis,
        per_address: int,
        per_account: int,
        window_s: int,
        on_error: OnError | None = None,
    ) -> None:
        self._redis = redis
        self._on_error = on_error
        self._limits = (per_address, per_account)
        self._window_s = window_s
        self._reserve = redis.register_script(_RESERVE)

    @staticmethod
    def _keys(address: str, account: str) -> list[str]:
        return [f"estrade:login:address:{address}", f"estrade:login:account:{account}"]

    async def _run(self, address: str, account: str, check_only: bool) -> int:
        args: list[int | str] = [self._window_s, *self._limits, uuid.uuid4().hex, int(check_only)]
        async with counted(self._on_error, "rate_limit"):
            return int(await self._reserve(keys=self._keys(address, account), args=args))

    async def retry_after(self, address: str, account: str) -> int:
        return await self._run(address, account, check_only=True)

    async def reserve(self, address: str, account: str) -> int:
        return await self._run(address, account, check_only=False)

    async def release(self, address: str, account: str) -> None:
        async with counted(self._on_error, "rate_limit"), self._redis.pipeline() as pipe:
            for key in self._keys(address, account):
                pipe.zpopmax(key)
            await pipe.execute()

    async def succeeded(self, address: str, account: str) -> None:
        by_address, by_account = self._keys(address, account)
        async with counted(self._on_error, "rate_limit"), self._redis.pipeline() as pipe:
            pipe.zpopmax(by_address)
            pipe.delete(by_account)
            await pipe.execute()

    async def close(self) -> None:
        await self._redis.aclose()


class _Relay:
    """Publishes this host's access changes and replays the other hosts' ones."""

    def __init__(self, url: str, on_error: OnError | None = None) -> None:
        self.origin = uuid.uuid4().hex
        self._on_error = on_error
        self._redis = Redis.from_url(url)
        self._backend = RedisChannelsPubSubBackend(redis=self._redis, key_prefix="estrade")
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []

    def publish(self, event: str, kwargs: dict[str, Any]) -> None:
        self._outbox.put_nowait(msgspec.json.encode(_Shared(self.origin, event, kwargs)))

    async def start(self, replay: Any) -> None:
        await self._backend.subscribe([ACCESS_CHANNEL])
        self._tasks = [
            asyncio.create_task(self._send(), name="estrade-hosts-send"),
            asyncio.create_task(self._receive(replay), name="estrade-hosts-receive"),
        ]

    def _failed(self, operation: RedisOperation) -> None:
        if self._on_error is not None:
            self._on_error(operation)

    async def _send(self) -> None:
        while True:
            data = await self._outbox.get()
            try:
                await self._backend.publish(data, [ACCESS_CHANNEL])
            except Exception:  # Redis away: the other hosts judge those sockets at reconnect
                self._failed("publish")
                log.warning("could not publish an access change to the other hosts", exc_info=True)

    async def _receive(self, replay: Any) -> None:
        while True:
            try:
                async for _channel, data in self._backend.stream_events():
                    try:
                        shared = msgspec.json.decode(data, type=_Shared)
                    except msgspec.DecodeError:
                        log.warning("ignored a malformed access change from Redis")
                        continue
                    if shared.origin != self.origin and shared.event in SHARED_EVENTS:
                        replay(shared.event, **shared.kwargs)
            except _UNANSWERED as exc:
                self._failed("subscribe")
                log.warning("lost the access channel (%s); subscribing again in 1 s", exc)
                await asyncio.sleep(1)
            except Exception:
                self._failed("subscribe")
                log.warning("lost the access channel; subscribing again in 1 s", exc_info=True)
                await asyncio.sleep(1)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self._backend.on_shutdown()
        finally:
            await self._redis.aclose()


def claim_listener(registry: RoomRegistry) -> EventListener:
    """The listener of :data:`COHORT_CLAIMED` (only ever emitted by another host)."""

    @listener(COHORT_CLAIMED)
    async def cohort_claimed(*, cohort_id: int) -> None:
        registry.end_connections(
            lambda room, conn: room.cohort_id == cohort_id,
            CLOSE_MOVED,
            "the class moved to another server: reconnecting",
            late=lambda room, conn: False,  # who connects here afterwards was sent here
        )

    return cohort_claimed


def event_emitter_for(
    redis_url: str, on_error: OnError | None = None
) -> type[BaseEventEmitterBackend]:
    """The event emitter class to give ``Litestar(event_emitter_backend=...)``: Litestar's own
    alone for one host; with ``redis_url``, one that also shares access changes (a class per
    app, so two apps in one process keep their own relay). ``on_error``: counts the failed
    publishes and subscriptions."""
    if not redis_url:
        return SimpleEventEmitter

    class SharedEventEmitter(SimpleEventEmitter):
        def __init__(self, listeners: Sequence[EventListener]) -> None:
            super().__init__(listeners)
            self.relay: _Relay | None = None

        async def __aenter__(self) -> SharedEventEmitter:
            await super().__aenter__()
            self.relay = _Relay(redis_url, on_error)
            await self.relay.start(super().emit)
            return self

        async def __aexit__(self, *exc: Any) -> None:
            if self.relay is not None:
                await self.relay.stop()
                self.relay = None
            await super().__aexit__(*exc)

        def emit(self, event_id: str, *args: Any, **kwargs: Any) -> None:
            if event_id not in REMOTE_ONLY:
                super().emit(event_id, *args, **kwargs)
            if self.relay is not None and event_id in SHARED_EVENTS and not args:
                self.relay.publish(event_id, kwargs)

    return SharedEventEmitter
