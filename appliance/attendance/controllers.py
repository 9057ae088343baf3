"""Attendance exports (CSV, printable sign-in sheet), corrections and chain check.

Trainers of the cohort and admins read and correct; operators read only (they support the
appliance and may have to hand a sheet to a funder, but never alter attendance).
"""

from __future__ import annotations

import datetime as dt
import html
import zoneinfo
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from appliance.accounts.tables import Role, User
from appliance.attendance import services
from appliance.attendance.schemas import ChainCheck, CorrectionIn
from appliance.auth.guards import cohort_access
from appliance.errors import RuleViolation, field_error
from appliance.ids import PathId
from appliance.text import check_day, check_moment

__all__ = ["AttendanceController"]

READERS = {Role.trainer, Role.admin, Role.operator}
WRITERS = {Role.trainer, Role.admin}
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
        await cohort_access(request.user, cohort_id, READERS)
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
        media_type="text/html",
        include_in_schema=False,
    )
    async def sheet(
        self, request: Request[User, Any, Any], cohort_id: PathId, day: FromPath[str]
    ) -> Response[str]:
        """A printable sign-in sheet for one day."""
        access = await cohort_access(request.user, cohort_id, READERS)
        try:
            the_day = dt.date.fromisoformat(day)
        except ValueError:
            raise field_error("day", f"{day!r} is not a date (YYYY-MM-DD)") from None
        check_day("day", the_day)
        rows = await services.day_sheet(cohort_id, the_day)
        tz = zoneinfo.ZoneInfo(access.cohort.time_zone)
        anchor = await services.last_hash(cohort_id)
        return Response(
            _sheet_html(access.cohort.name, the_day, rows, tz, anchor),
            media_type="text/html; charset=utf-8",
        )

    @post("/api/cohorts/{cohort_id:int}/attendance/corrections", status_code=201)
    async def correct(
        self,
        request: Request[User, Any, Any],
        cohort_id: PathId,
        data: JSONBody[CorrectionIn],
    ) -> dict[str, int]:
        """Add a correction (a new record with its author and reason; nothing is edited)."""
        await cohort_access(request.user, cohort_id, WRITERS)
        check_day("day", data.day)
        if data.signed_at is not None:
            check_moment("signed_at", data.signed_at)
        try:
            record_id = await services.correct(cohort_id, data, author=request.user.id)
        except RuleViolation as exc:
            raise field_error(exc.code, exc.detail, exc.status_code) from None
        return {"id": record_id}

    @get("/api/cohorts/{cohort_id:int}/attendance/verify")
    async def verify(self, request: Request[User, Any, Any], cohort_id: PathId) -> ChainCheck:
        """Recompute the cohort's hash chain: ``ok`` false names the first altered record."""
        await cohort_access(request.user, cohort_id, READERS)
        return await services.verify_chain(cohort_id)


def _sheet_html(
    cohort: str, day: dt.date, rows: list[Any], tz: zoneinfo.ZoneInfo, anchor: str
) -> str:
    e = html.escape

    def t(v: dt.datetime | None, corrected: bool = False) -> str:
        if v is None:
            return "—" + (" (corrigé)" if corrected else "")
        return v.astimezone(tz).strftime("%H:%M") + (" (corrigé)" if corrected else "")

    body = "\n".join(
        "<tr>"
        f"<td>{e(r.display_name)}</td>"
        f"<td>{e(t(r.morning, r.morning_corrected))}</td>"
        f"<td>{e(t(r.afternoon, r.afternoon_corrected))}</td>"
        f"<td>{r.minutes_connected}</td>"
        f"<td>{e(t(r.first_connection))}</td>"
        f"<td>{e(t(r.last_connection))}</td>"
        "<td class=sig></td>"
        "</tr>"
        for r in rows
    )
    return f"""<!doctype html>
<html lang="fr"><head><meta charset="utf-8">
<title>Feuille d'émargement — {e(cohort)} — {day.isoformat()}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ border: 1px solid #444; padding: .4rem .6rem; text-align: left; }}
td.sig {{ width: 10rem; }}
footer {{ margin-top: 1.5rem; font-size: .8rem; color: #555; word-break: break-all; }}
@media print {{ body {{ margin: 0; }} }}
</style></head><body>
<h1>Feuille d'émargement</h1>
<p><strong>{e(cohort)}</strong> — {day.strftime("%d/%m/%Y")} ({e(str(tz))})</p>
<table>
<thead><tr><th>Apprenant</th><th>Matin</th><th>Après-midi</th><th>Minutes connecté</th>
<th>Première connexion</th><th>Dernière connexion</th><th>Signature</th></tr></thead>
<tbody>
{body}
</tbody></table>
<footer>Empreinte du registre (SHA-256 du dernier enregistrement) : {e(anchor)}</footer>
</body></html>
"""
