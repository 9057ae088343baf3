"""Engagement routes: the cohort view, a learner's detail, thresholds, CSV export, the page.

Trainers of the cohort and admins only; a learner reads their own summary (``/me``) and
nothing about others; operators see nothing personal (403). A cohort the user is not part of
answers 404, like the rest of the API.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from litestar import Controller, Request, Response, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody

from appliance.accounts.tables import User
from appliance.auth.guards import Access, cohort_access
from appliance.auth.roles import LEARNERS, RUNS_CLASS
from appliance.engagement import services
from appliance.engagement.schemas import (
    CohortEngagement,
    LearnerDetail,
    MySummary,
    Thresholds,
)
from appliance.errors import field_error, not_found
from appliance.web.pages import cohort_page

__all__ = ["EngagementController", "EngagementPage"]

DEFAULT_DAYS = 28
MAX_DAYS = 366


async def _range(
    access: Access, date_from: dt.date | None, date_to: dt.date | None
) -> tuple[dt.date, dt.date]:
    last = date_to or await services.today_of(access.cohort.id, access.cohort.time_zone)
    first = date_from or last - dt.timedelta(days=DEFAULT_DAYS - 1)
    if last < first:
        raise field_error("date_to", "the end date is before the start date")
    if (last - first).days >= MAX_DAYS:
        raise field_error("date_to", f"at most {MAX_DAYS} days at once")
    return first, last


class EngagementController(Controller):
    tags = ["engagement"]
    path = "/api/cohorts/{cohort_id:int}"

    @get("/engagement")
    async def cohort(
        self,
        request: Request[User, Any, Any],
        cohort_id: FromPath[int],
        date_from: FromQuery[dt.date | None] = None,
        date_to: FromQuery[dt.date | None] = None,
    ) -> CohortEngagement:
        """Current learners sorted by signals, with range totals and a strip of recent days.

        Default range: the 28 days up to today (cohort time zone). Today's figures are
        recomputed when older than a minute; ended days not yet final are computed first.
        """
        access = await cohort_access(request.user, cohort_id, RUNS_CLASS)
        first, last = await _range(access, date_from, date_to)
        await services.refresh(cohort_id)
        return await services.cohort_view(cohort_id, first, last)

    @get("/engagement/learners/{user_id:int}")
    async def learner(
        self,
        request: Request[User, Any, Any],
        cohort_id: FromPath[int],
        user_id: FromPath[int],
        date_from: FromQuery[dt.date | None] = None,
        date_to: FromQuery[dt.date | None] = None,
    ) -> LearnerDetail:
        """One learner of the cohort: every class day of the range, totals and signals."""
        access = await cohort_access(request.user, cohort_id, RUNS_CLASS)
        first, last = await _range(access, date_from, date_to)
        await services.refresh(cohort_id)
        detail = await services.learner_detail(cohort_id, user_id, first, last)
        if detail is None:
            raise not_found("no such learner in this cohort")
        return detail

    @get("/engagement/me")
    async def me(
        self,
        request: Request[User, Any, Any],
        cohort_id: FromPath[int],
        date_from: FromQuery[dt.date | None] = None,
        date_to: FromQuery[dt.date | None] = None,
    ) -> MySummary:
        """A learner's own attendance rate and participation (default: the whole cohort)."""
        access = await cohort_access(request.user, cohort_id, LEARNERS)
        last = date_to or await services.today_of(cohort_id, access.cohort.time_zone)
        first = date_from or access.cohort.first_day
        if last < first:
            raise field_error("date_to", "the end date is before the start date")
        await services.refresh(cohort_id)
        return await services.my_summary(cohort_id, request.user.id, first, last)

    @get("/engagement/settings")
    async def get_settings(
        self, request: Request[User, Any, Any], cohort_id: FromPath[int]
    ) -> Thresholds:
        """The cohort's signal thresholds (defaults until changed)."""
        await cohort_access(request.user, cohort_id, RUNS_CLASS)
        return await services.get_thresholds(cohort_id)

    @put("/engagement/settings")
    async def put_settings(
        self,
        request: Request[User, Any, Any],
        cohort_id: FromPath[int],
        data: JSONBody[Thresholds],
    ) -> Thresholds:
        """Replace the thresholds (fields left out take their default)."""
        await cohort_access(request.user, cohort_id, RUNS_CLASS)
        return await services.set_thresholds(cohort_id, data)

    @post("/engagement/refresh", status_code=200)
    async def refresh(
        self, request: Request[User, Any, Any], cohort_id: FromPath[int]
    ) -> dict[str, list[dt.date]]:
        """Recompute today now (and any ended class day not final yet)."""
        await cohort_access(request.user, cohort_id, RUNS_CLASS)
        return {"days": await services.refresh(cohort_id, max_age_s=0)}

    @get("/engagement.csv", media_type="text/csv")
    async def export_csv(
        self,
        request: Request[User, Any, Any],
        cohort_id: FromPath[int],
        date_from: FromQuery[dt.date],
        date_to: FromQuery[dt.date],
    ) -> Response[str]:
        """Per learner over the range (learners removed since included): attendance rate,
        half-days signed, minutes connected, participation counts. Formula-safe."""
        access = await cohort_access(request.user, cohort_id, RUNS_CLASS)
        first, last = await _range(access, date_from, date_to)
        await services.refresh(cohort_id)
        name = f"engagement-{cohort_id}-{first}-{last}.csv"
        return Response(
            await services.export_csv(cohort_id, first, last),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )


class EngagementPage(Controller):
    include_in_schema = False
    opt = {"exclude_from_auth": True}

    @get("/cohorts/{cohort_id:int}/engagement")
    async def page(
        self, request: Request[Any, Any, Any], cohort_id: FromPath[int]
    ) -> Response[Any]:
        """The engagement page of a cohort (trainers of the cohort, admins)."""
        return await cohort_page(request, "engagement", cohort_id, RUNS_CLASS)
