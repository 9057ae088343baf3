"""Poll results export (CSV), for trainers of the cohort, admins and operators (read only)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get

from appliance.accounts.tables import User
from appliance.auth.guards import cohort_access
from appliance.auth.roles import SEES_STAFF_VIEW
from appliance.ids import PathId
from appliance.polls import services
from appliance.polls.schemas import PollOut

__all__ = ["PollController"]


class PollController(Controller):
    tags = ["polls"]

    @get("/api/cohorts/{cohort_id:int}/polls")
    async def list_polls(
        self, request: Request[User, Any, Any], cohort_id: PathId
    ) -> list[PollOut]:
        await cohort_access(request.user, cohort_id, SEES_STAFF_VIEW)
        return await services.list_polls(cohort_id)

    @get("/api/cohorts/{cohort_id:int}/polls.csv", media_type="text/csv")
    async def export_csv(
        self, request: Request[User, Any, Any], cohort_id: PathId
    ) -> Response[str]:
        """Results of every launched poll of the cohort, one row per choice."""
        await cohort_access(request.user, cohort_id, SEES_STAFF_VIEW)
        return Response(
            await services.export_csv(cohort_id),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="polls-{cohort_id}.csv"'},
        )
