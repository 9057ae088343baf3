"""What only the live room sees, kept per learner and day; and the end-of-day run.

Raised hands, reactions and time on low bandwidth are live state (not stored by the classroom).
:class:`EngagementLive` counts them without touching the classroom code: it wraps the two
handlers (a hand raised, a reaction: counted once accepted) and samples every
``SAMPLE_S`` seconds which learners are on low bandwidth in a running class (chosen by the
learner or stepped down by the relay). Counts wait in memory and are added to
``EngagementCounter`` at each sample and when the server stops (a crash loses at most one
sample period). The same background task runs the end-of-day aggregation every
``FINALISE_S`` seconds for every cohort with a class day not final yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import zoneinfo
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

from appliance import clock, db
from appliance.accounts.tables import Cohort, Role
from appliance.engagement import services
from appliance.engagement.tables import EngagementCounter
from appliance.live.dispatch import Context, Handler
from appliance.live.room import RoomRegistry

__all__ = ["EngagementLive"]

log = logging.getLogger("estrade.engagement")

SAMPLE_S = 30.0
FINALISE_S = 300.0
COUNTED = {"hand_raise": "hands", "reaction": "reactions"}


class EngagementLive:
    def __init__(self, registry: RoomRegistry, *, sample_s: float | None = None) -> None:
        self.registry = registry
        self.sample_s = sample_s or SAMPLE_S
        self._idle = asyncio.Event()
        """Set while :meth:`run` sleeps (no query under way): shutdown waits for it."""
        self.pending: list[tuple[int, int, str, dt.datetime, int]] = []
        """(cohort, user, counter, when, amount) not yet in the database."""
        self._tz: dict[int, zoneinfo.ZoneInfo] = {}
        self._carry: dict[tuple[int, int], float] = {}
        self._lock = asyncio.Lock()
        self._wrap()

    # ---- counting -------------------------------------------------------------------------
    def _wrap(self) -> None:
        routes = self.registry.dispatcher.routes
        for tag, counter in COUNTED.items():
            route = routes[tag]
            routes[tag] = dataclasses.replace(route, handler=self._counted(route.handler, counter))

    def _counted(self, inner: Handler, counter: str) -> Handler:
        async def handler(ctx: Context, msg: Any) -> None:
            await inner(ctx, msg)  # a refused message (DomainError) is not counted
            if ctx.conn.capacity is Role.learner:
                self.note(ctx.room.cohort_id, ctx.conn.user_id, counter)

        return handler

    def note(self, cohort_id: int, user_id: int, counter: str, amount: int = 1) -> None:
        self.pending.append((cohort_id, user_id, counter, clock.utcnow(), amount))

    def sample(self, seconds: float) -> None:
        """Add ``seconds`` of low bandwidth to each learner on it in a running class."""
        for room in list(self.registry.rooms.values()):
            if room.session is None:
                continue
            users = {
                c.user_id
                for c in room.conns.values()
                if c.capacity is Role.learner and c.low_bandwidth
            }
            for user in users:
                key = (room.cohort_id, user)
                carried = self._carry.get(key, 0.0) + seconds
                whole = int(carried)
                self._carry[key] = carried - whole  # fractions of a second add up
                if whole:
                    self.note(room.cohort_id, user, "low_bandwidth_s", whole)

    async def _zone(self, cohort_id: int) -> zoneinfo.ZoneInfo:
        tz = self._tz.get(cohort_id)
        if tz is None:
            row = await Cohort.select(Cohort.time_zone).where(Cohort.id == cohort_id).first()
            tz = self._tz[cohort_id] = zoneinfo.ZoneInfo(row["time_zone"] if row else "UTC")
        return tz

    async def flush(self) -> int:
        """Add the pending counts to the database; returns how many rows were touched."""
        async with self._lock:
            pending, self.pending = self.pending, []
            if not pending:
                return 0
            sums: dict[tuple[int, int, dt.date], dict[str, int]] = defaultdict(
                lambda: {"reactions": 0, "hands": 0, "low_bandwidth_s": 0}
            )
            for cohort, user, counter, when, amount in pending:
                day = when.astimezone(await self._zone(cohort)).date()
                sums[(cohort, user, day)][counter] += amount
            try:
                async with db.write_transaction(EngagementCounter._meta.db):
                    for (cohort, user, day), add in sums.items():
                        if not any(add.values()):
                            continue
                        where = (
                            (EngagementCounter.cohort == cohort)
                            & (EngagementCounter.user == user)
                            & (EngagementCounter.day == day)
                        )
                        if await EngagementCounter.exists().where(where):
                            await EngagementCounter.update(
                                {
                                    getattr(EngagementCounter, k): getattr(EngagementCounter, k) + v
                                    for k, v in add.items()
                                    if v
                                }
                            ).where(where)
                        else:
                            await EngagementCounter.insert(
                                EngagementCounter(cohort=cohort, user=user, day=day, **add)  # type: ignore[arg-type]
                            )
            except Exception:
                self.pending[:0] = pending  # kept for the next try
                raise
            return len(sums)

    # ---- the background task --------------------------------------------------------------
    async def finalise(self) -> list[tuple[int, dt.date]]:
        """The end-of-day run: every class day that ended and is not final yet, per cohort."""
        done: list[tuple[int, dt.date]] = []
        for row in await Cohort.select(Cohort.id).where(Cohort.archived.eq(False)):
            for day in await services.refresh(row["id"], max_age_s=float("inf")):
                done.append((row["id"], day))
        return done

    async def run(self) -> None:
        since_finalise = FINALISE_S  # finalise once at start: days that ended while stopped
        while True:
            try:
                if since_finalise >= FINALISE_S:
                    since_finalise = 0.0
                    self._idle.clear()
                    await self.finalise()
                self._idle.set()
                await asyncio.sleep(self.sample_s)
                since_finalise += self.sample_s
                self.sample(self.sample_s)
                self._idle.clear()
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("engagement counters: will retry")

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        task = asyncio.create_task(self.run(), name="engagement")
        try:
            yield
        finally:
            # Let a running query finish: a task cancelled inside a new database connection
            # leaves that connection open (an unclosed asyncpg connection at shutdown).
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._idle.wait(), 10)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            with contextlib.suppress(Exception):
                await self.flush()
