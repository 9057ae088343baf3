"""What only the live room sees, kept per learner and day; and the end-of-day run.

Raised hands, reactions and time on low bandwidth are live state (not stored by the classroom).
:class:`EngagementLive` counts them without touching the classroom code: it observes the
messages the dispatcher accepted (a hand raised, a reaction) and samples every
``SAMPLE_S`` seconds which learners are on low bandwidth in a running class (chosen by the
learner or stepped down by the relay). Counts wait in memory and are added to
``EngagementCounter`` at each sample and when the server stops (a crash loses at most one
sample period). The same background task runs the end-of-day aggregation every
``FINALISE_S`` seconds for every cohort with a class day not final yet.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from appliance.live import protocol as p
from appliance.live.dispatch import Context
from appliance.live.room import RoomRegistry

__all__ = ["EngagementLive"]

log = logging.getLogger("estrade.engagement")

SAMPLE_S = 30.0
FINALISE_S = 300.0
STOP_S = 10.0
"""How long a stopping server waits for the running end-of-day step before cancelling it."""
COUNTED = {"hand_raise": "hands", "reaction": "reactions"}


class EngagementLive:
    def __init__(self, registry: RoomRegistry, *, sample_s: float | None = None) -> None:
        self.registry = registry
        self.sample_s = sample_s or SAMPLE_S
        self.pending: list[tuple[int, int, str, dt.datetime, int]] = []
        """(cohort, user, counter, when, amount) not yet in the database."""
        self._tz: dict[int, zoneinfo.ZoneInfo] = {}
        self._carry: dict[tuple[int, int], float] = {}
        self._lock = asyncio.Lock()
        registry.dispatcher.on_accepted(self._count)

    # ---- counting -------------------------------------------------------------------------
    def _count(self, ctx: Context, msg: Any) -> None:
        """A hand raised or a reaction, accepted (a refused one never gets here)."""
        counter = COUNTED.get(p.tag_of(type(msg)))
        if counter is not None and ctx.conn.capacity is Role.learner:
            self.note(ctx.room.cohort_id, ctx.conn.user_id, counter)

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

    async def run(self, stop: asyncio.Event) -> None:
        """Sample and finalise until ``stop`` is set (checked between steps)."""
        since_finalise = FINALISE_S  # finalise once at start: days that ended while stopped
        while not stop.is_set():
            try:
                if since_finalise >= FINALISE_S:
                    since_finalise = 0.0
                    await self.finalise()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.sample_s)
                    return
                since_finalise += self.sample_s
                self.sample(self.sample_s)
                await self.flush()
            except Exception:
                log.exception("engagement counters: will retry")

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(self.run(stop), name="engagement")
        try:
            yield
        finally:
            # Stopped between queries, not cancelled in one: a query cancelled on a connection
            # opened for it (no pool) never closes that connection (Piccolo closes it only
            # after a result or a PostgresError), and asyncpg warns when it is collected.
            stop.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), STOP_S)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            except asyncio.CancelledError:
                task.cancel()
                raise
            with contextlib.suppress(Exception):
                await self.flush()
