"""Attendance exports (CSV, printable sign-in sheet), corrections and chain check.

Trainers of the cohort and admins read and correct; operators read only (they support the
appliance and may have to hand a sheet to a funder, but never alter attendance).
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody
from litestar.response import Template

from appliance import clock
from appliance.accounts.tables import User
from appliance.attendance import services
from appliance.attendance.schemas import ChainCheck, CorrectionIn
from appliance.auth.guards import cohort_access
from appliance.auth.roles import RUNS_CLASS, SEES_STAFF_VIEW
from appliance.errors import field_error
from appliance.ids import PathId
from appliance.text import check_day, check_moment
from appliance.web.render import PAGE_HEADERS, request_language, translate

__all__ = ["AttendanceController"]

MAX_DAYS = 366


def _range(first: dt.date, last: dt.date) -> None:
    check_day("date_from", first)
    check_day("date_to", last)
    if last < first:
        raise field_error("to", "the end date is before the start date")
    if (last - first).days >= MAX_DAYS:
        raise field_error("to", f"at most {MAX_DAYS} days per export")


class AttendanceController(Controller):
    tags = ["attendance"]

    @get("/api/cohorts/{cohort_id:int}/attendance.csv", media_type="text/csv")
    async def export_csv(
        self,
        request: Request[User, Any, Any],
        cohort_id: PathId,
        date_from: FromQuery[dt.date],
        date_to: FromQuery[dt.date],
    ) -> Response[str]:
        """One row per learner and day: half-day signatures, minutes and first/last connection."""
        await cohort_access(request.user, cohort_id, SEES_STAFF_VIEW)
        _range(date_from, date_to)
        body = await services.export_csv(cohort_id, date_from, date_to)
        name = f"attendance-{cohort_id}-{date_from}-{date_to}.csv"
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    @get(
        "/cohorts/{cohort_id:int}/attendance/{day:str}/sheet",
        media_type="text/html; charset=utf-8",
        include_in_schema=False,
    )
    async def sheet(
        self, request: Request[User, Any, Any], cohort_id: PathId, day: FromPath[str]
    ) -> Template:
        """A printable sign-in sheet for one day, in the viewer's language."""
        access = await cohort_access(request.user, cohort_id, SEES_STAFF_VIEW)
        tz = zoneinfo.ZoneInfo(access.cohort.time_zone)
        try:
            # "today" is the cohort's today (the viewer's clock may be in another time zone).
            the_day = (
                clock.utcnow().astimezone(tz).date()
                if day == "today"
                else dt.date.fromisoformat(day)
            )
        except ValueError:
            raise field_error("day", f"{day!r} is not a date (YYYY-MM-DD or today)") from None
        check_day("day", the_day)
        rows = await services.day_sheet(cohort_id, the_day)
        anchor = await services.last_hash(cohort_id)
        lang = request_language(request.headers, request.cookies)
        return Template(
            template_name="sheet.html",
            context=_sheet_context(lang, access.cohort.name, the_day, rows, tz, anchor),
            media_type="text/html; charset=utf-8",
            headers=dict(PAGE_HEADERS),
        )

    @post("/api/cohorts/{cohort_id:int}/attendance/corrections", status_code=201)
    async def correct(
        self,
        request: Request[User, Any, Any],
        cohort_id: PathId,
        data: JSONBody[CorrectionIn],
    ) -> dict[str, int]:
        """Add a correction (a new record with its author and reason; nothing is edited)."""
        await cohort_access(request.user, cohort_id, RUNS_CLASS)
        check_day("day", data.day)
        if data.signed_at is not None:
            check_moment("signed_at", data.signed_at)
        record_id = await services.correct(cohort_id, data, author=request.user.id)
        return {"id": record_id}

    @get("/api/cohorts/{cohort_id:int}/attendance/verify")
    async def verify(self, request: Request[User, Any, Any], cohort_id: PathId) -> ChainCheck:
        """Recompute the cohort's hash chain: ``ok`` false names the first altered record."""
        await cohort_access(request.user, cohort_id, SEES_STAFF_VIEW)
        return await services.verify_chain(cohort_id)


_DAY_FORMAT = {"fr": "%d/%m/%Y", "en": "%Y-%m-%d"}


def _sheet_context(
    lang: str, cohort: str, day: dt.date, rows: list[Any], tz: zoneinfo.ZoneInfo, anchor: str
) -> dict[str, Any]:
    """What the sheet template shows; names stay plain text (the template escapes them)."""
    corrected = translate(lang, "sheet.corrected")

    def t(v: dt.datetime | None, was_corrected: bool = False) -> str:
        text = "—" if v is None else v.astimezone(tz).strftime("%H:%M")
        return f"{text} {corrected}" if was_corrected else text

    return {
        "lang": lang,
        "t": functools.partial(translate, lang),
        "cohort": cohort,
        "day": day.strftime(_DAY_FORMAT[lang]),
        "day_iso": day.isoformat(),
        "zone": str(tz),
        "anchor": anchor,
        "rows": [
            {
                "name": r.display_name,
                "morning": t(r.morning, r.morning_corrected),
                "afternoon": t(r.afternoon, r.afternoon_corrected),
                "minutes": r.minutes_connected,
                "first": t(r.first_connection),
                "last": t(r.last_connection),
            }
            for r in rows
        ],
    }
