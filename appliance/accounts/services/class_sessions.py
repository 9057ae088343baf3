"""Class sessions: scheduled times of a cohort, and the one the trainer started live."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from appliance import clock
from appliance.accounts import schemas as s
from appliance.accounts.services.cohorts import get_cohort
from appliance.accounts.tables import ClassSession
from appliance.errors import DomainError, field_error
from appliance.text import check_moment

__all__ = [
    "class_session_out",
    "create_class_session",
    "end_live_session",
    "list_class_sessions",
    "live_class_session",
    "start_live_session",
]


async def create_class_session(cohort_id: int, data: s.ClassSessionIn) -> s.ClassSessionOut:
    await get_cohort(cohort_id)
    if data.scheduled_start.tzinfo is None or data.scheduled_end.tzinfo is None:
        raise field_error("scheduled_start", "give times with a UTC offset")
    check_moment("scheduled_start", data.scheduled_start)
    check_moment("scheduled_end", data.scheduled_end)
    if data.scheduled_end <= data.scheduled_start:
        raise field_error("scheduled_end", "the end is not after the start")
    cs = ClassSession(
        cohort=cohort_id, scheduled_start=data.scheduled_start, scheduled_end=data.scheduled_end
    )
    await cs.save()
    return class_session_out(cs)


def class_session_out(cs: ClassSession) -> s.ClassSessionOut:
    return s.ClassSessionOut(
        id=cs.id,
        cohort_id=cs.cohort if isinstance(cs.cohort, int) else cs.cohort.id,
        scheduled_start=cs.scheduled_start,
        scheduled_end=cs.scheduled_end,
        started_at=cs.started_at,
        ended_at=cs.ended_at,
    )


async def list_class_sessions(cohort_id: int) -> list[s.ClassSessionOut]:
    await get_cohort(cohort_id)
    rows = (
        await ClassSession.objects()
        .where(ClassSession.cohort == cohort_id)
        .order_by(ClassSession.scheduled_start)
    )
    return [class_session_out(r) for r in rows]


async def live_class_session(cohort_id: int) -> ClassSession | None:
    """The cohort's class session that is started and not ended, if any."""
    return (
        await ClassSession.objects()
        .where(
            (ClassSession.cohort == cohort_id)
            & ClassSession.started_at.is_not_null()
            & ClassSession.ended_at.is_null()
        )
        .first()
    )


async def start_live_session(cohort_id: int) -> ClassSession:
    """Start today's class session: the one scheduled today (cohort time), else a new one."""
    if await live_class_session(cohort_id) is not None:
        raise DomainError("session_already_started", "the class session is already started")
    cohort = await get_cohort(cohort_id)
    tz = zoneinfo.ZoneInfo(cohort.time_zone)
    now = clock.utcnow()
    today = now.astimezone(tz).date()
    day_start = dt.datetime.combine(today, dt.time(), tz)
    scheduled = (
        await ClassSession.objects()
        .where(
            (ClassSession.cohort == cohort_id)
            & ClassSession.started_at.is_null()
            & (ClassSession.scheduled_start >= day_start)
            & (ClassSession.scheduled_start < day_start + dt.timedelta(days=1))
        )
        .order_by(ClassSession.scheduled_start)
        .first()
    )
    cs = scheduled or ClassSession(cohort=cohort_id)
    cs.started_at = now
    await cs.save()
    return cs


async def end_live_session(cohort_id: int) -> ClassSession:
    cs = await live_class_session(cohort_id)
    if cs is None:
        raise DomainError("session_not_started", "no class session is running")
    cs.ended_at = clock.utcnow()
    await cs.save()
    return cs
