"""Cohorts: a group of learners with its trainers, dates and time zone."""

from __future__ import annotations

import datetime as dt
import zoneinfo

from appliance.accounts import schemas as s
from appliance.accounts.tables import Cohort
from appliance.errors import field_error, not_found
from appliance.text import check_day

__all__ = ["archive_cohort", "cohort_out", "create_cohort", "get_cohort", "update_cohort"]


def cohort_out(c: Cohort) -> s.CohortOut:
    return s.CohortOut(
        id=c.id,
        name=c.name,
        first_day=c.first_day,
        last_day=c.last_day,
        time_zone=c.time_zone,
        archived=c.archived,
    )


async def get_cohort(cohort_id: int) -> Cohort:
    cohort = await Cohort.objects().where(Cohort.id == cohort_id).first()
    if cohort is None:
        raise not_found("cohort not found")
    return cohort


def _check_days(first: dt.date, last: dt.date) -> None:
    check_day("first_day", first)
    check_day("last_day", last)
    if last < first:
        raise field_error("last_day", "the last day is before the first day")


def _check_tz(tz: str) -> None:
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise field_error("time_zone", f"unknown time zone {tz!r}") from None


async def create_cohort(data: s.CohortIn) -> Cohort:
    _check_days(data.first_day, data.last_day)
    _check_tz(data.time_zone)
    cohort = Cohort(
        name=data.name.strip(),
        first_day=data.first_day,
        last_day=data.last_day,
        time_zone=data.time_zone,
    )
    await cohort.save()
    return cohort


async def update_cohort(cohort_id: int, data: s.CohortPatch) -> Cohort:
    cohort = await get_cohort(cohort_id)
    first = data.first_day or cohort.first_day
    last = data.last_day or cohort.last_day
    _check_days(first, last)
    if data.time_zone is not None:
        _check_tz(data.time_zone)
        cohort.time_zone = data.time_zone
    if data.name is not None:
        cohort.name = data.name.strip()
    if data.archived is not None:
        cohort.archived = data.archived
    cohort.first_day, cohort.last_day = first, last
    await cohort.save()
    return cohort


async def archive_cohort(cohort_id: int) -> Cohort:
    return await update_cohort(cohort_id, s.CohortPatch(archived=True))
