"""The replays API and page (docs/replays.md).

- ``/api/admin/cohorts/{id}/recording``: the cohort's recording policy (admins).
- ``/api/cohorts/{id}/recording``: the same, read-only, for the cohort's trainers.
- ``/api/cohorts/{id}/replays``: the replays of the cohort's class sessions (its learners and
  staff), one replay's timeline, its WebM files (``Range``, ``ETag``), deletion (staff).

Operators read nothing here (403); another cohort answers 404 like the rest of the API.
"""

from __future__ import annotations

from typing import Any, Literal

from litestar import Controller, Request, Response, delete, get, put
from litestar.params import FromPath, JSONBody

from appliance.accounts.tables import Role, User
from appliance.auth.guards import cohort_access, require_roles
from appliance.auth.roles import ADMINS, RUNS_CLASS, TAKES_PART
from appliance.documents.serve import serve_file
from appliance.errors import not_found
from appliance.ids import PathId
from appliance.replays import schemas as s
from appliance.replays import services
from appliance.state import app_state
from appliance.web.pages import cohort_page

__all__ = ["RecordingPolicyController", "ReplayController", "ReplayPage"]

AnyRequest = Request[User, Any, Any]
Kind = Literal["audio", "camera", "screen"]


class RecordingPolicyController(Controller):
    tags = ["replays"]

    @get("/api/admin/cohorts/{cohort_id:int}/recording", guards=[require_roles(Role.admin)])
    async def admin_get(self, request: AnyRequest, cohort_id: PathId) -> s.PolicyOut:
        """The cohort's recording policy and storage used."""
        await cohort_access(request.user, cohort_id, ADMINS)
        return await services.get_policy(cohort_id)

    @put("/api/admin/cohorts/{cohort_id:int}/recording", guards=[require_roles(Role.admin)])
    async def admin_put(
        self, request: AnyRequest, cohort_id: PathId, data: JSONBody[s.PolicyIn]
    ) -> s.PolicyOut:
        """Replace the policy (fields left out take their default: recording off)."""
        await cohort_access(request.user, cohort_id, ADMINS)
        return await services.set_policy(cohort_id, data)

    @get("/api/cohorts/{cohort_id:int}/recording")
    async def staff_get(self, request: AnyRequest, cohort_id: PathId) -> s.PolicyOut:
        """The policy as the cohort's trainers see it (read-only)."""
        await cohort_access(request.user, cohort_id, RUNS_CLASS)
        return await services.get_policy(cohort_id)


class ReplayController(Controller):
    path = "/api/cohorts/{cohort_id:int}/replays"
    tags = ["replays"]

    @get("/")
    async def list_replays(self, request: AnyRequest, cohort_id: PathId) -> list[s.ReplayOut]:
        """Replays of the cohort, newest first (staff also see running and failed ones)."""
        access = await cohort_access(request.user, cohort_id, TAKES_PART)
        return await services.list_replays(cohort_id, staff=access.is_staff_of_cohort)

    @get("/{recording_id:int}")
    async def detail(
        self, request: AnyRequest, cohort_id: PathId, recording_id: PathId
    ) -> s.ReplayDetail:
        """One replay and its timeline: chat, questions, polls, pushed documents."""
        access = await cohort_access(request.user, cohort_id, TAKES_PART)
        return await services.replay_detail(
            cohort_id,
            recording_id,
            staff=access.is_staff_of_cohort,
            settings=app_state(request).settings,
        )

    @delete("/{recording_id:int}", status_code=204)
    async def delete_replay(
        self, request: AnyRequest, cohort_id: PathId, recording_id: PathId
    ) -> None:
        """Delete the replay's files and row (trainers of the cohort, admins)."""
        await cohort_access(request.user, cohort_id, RUNS_CLASS)
        row = await services.get_recording(cohort_id, recording_id)
        await services.delete_recording(app_state(request).settings, row)

    @get("/{recording_id:int}/files/{kind:str}")
    async def file(
        self, request: AnyRequest, cohort_id: PathId, recording_id: PathId, kind: FromPath[str]
    ) -> Response[Any]:
        """One kind's WebM file (audio, camera or screen), with ``Range`` and ``ETag``."""
        access = await cohort_access(request.user, cohort_id, TAKES_PART)
        if kind not in ("audio", "camera", "screen"):
            raise not_found("no such file")
        row = await services.readable_recording(
            cohort_id, recording_id, staff=access.is_staff_of_cohort
        )
        settings = app_state(request).settings
        path = services.directory_of(settings, cohort_id, row.id) / f"{kind}.webm"
        try:
            st = path.stat()
        except FileNotFoundError:
            raise not_found("no such file") from None
        return serve_file(
            request,
            path,
            size=st.st_size,
            etag_value=f"rec-{row.id}-{kind}-{st.st_size}-{st.st_mtime_ns}",
            media_type="video/webm" if kind != "audio" else "audio/webm",
            headers={"Content-Disposition": f'inline; filename="replay-{row.id}-{kind}.webm"'},
        )


class ReplayPage(Controller):
    include_in_schema = False
    opt = {"exclude_from_auth": True}

    @get("/cohorts/{cohort_id:int}/replays")
    async def page(self, request: Request[Any, Any, Any], cohort_id: PathId) -> Response[Any]:
        """The replays of a cohort (its learners, trainers, admins)."""
        return await cohort_page(request, "replays", cohort_id, TAKES_PART)
