"""The admin API: cohorts, users, enrolments, CSV import, join links, class sessions."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.params import FromQuery, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_204_NO_CONTENT, HTTP_422_UNPROCESSABLE_ENTITY

from appliance.accounts import events, services
from appliance.accounts import schemas as s
from appliance.accounts.tables import Role, User
from appliance.auth.guards import cohort_access, require_roles
from appliance.auth.roles import EVERYONE
from appliance.errors import field_error
from appliance.ids import PathId
from appliance.openapi import raw_body
from appliance.settings import Settings
from appliance.state import app_state

__all__ = ["AdminCohortController", "AdminUserController", "MyCohortsController"]


def _settings(request: Request[Any, Any, Any]) -> Settings:
    return app_state(request).settings


def _announce_user(request: Request[Any, Any, Any], user_id: int, patch: s.UserPatch) -> None:
    if patch.active is False:
        request.app.emit(events.USER_DEACTIVATED, user_id=user_id)


def _announce_cohort(request: Request[Any, Any, Any], cohort_id: int, patch: s.CohortPatch) -> None:
    if patch.archived is True:
        request.app.emit(events.COHORT_ARCHIVED, cohort_id=cohort_id)


class AdminUserController(Controller):
    path = "/api/admin/users"
    tags = ["admin"]
    guards = [require_roles(Role.admin)]

    @post("/")
    async def create_user(self, data: JSONBody[s.UserIn]) -> s.UserOut:
        """Create a staff member or a learner."""
        return services.user_out(await services.create_user(data))

    @get("/")
    async def list_users(self, role: FromQuery[str | None] = None) -> list[s.UserOut]:
        query = User.objects().order_by(User.display_name)
        if role is not None:
            if role not in {r.value for r in Role}:
                raise field_error("role", f"unknown role {role!r}")
            query = query.where(User.role == role)
        return [services.user_out(u) for u in await query]

    @get("/{user_id:int}")
    async def get_user(self, user_id: PathId) -> s.UserOut:
        return services.user_out(await services.get_user(user_id))

    @patch("/{user_id:int}")
    async def update_user(
        self, request: Request[Any, Any, Any], user_id: PathId, data: JSONBody[s.UserPatch]
    ) -> s.UserOut:
        user = await services.update_user(user_id, data)
        _announce_user(request, user_id, data)
        return services.user_out(user)

    @post("/{user_id:int}/archive", status_code=HTTP_200_OK)
    async def archive_user(self, request: Request[Any, Any, Any], user_id: PathId) -> s.UserOut:
        """Deactivate an account: it can no longer sign in, its join links are revoked, its
        classroom sockets are closed."""
        patch = s.UserPatch(active=False)
        user = await services.update_user(user_id, patch)
        _announce_user(request, user_id, patch)
        return services.user_out(user)


class AdminCohortController(Controller):
    path = "/api/admin/cohorts"
    tags = ["admin"]
    guards = [require_roles(Role.admin)]

    @post("/")
    async def create_cohort(self, data: JSONBody[s.CohortIn]) -> s.CohortOut:
        return services.cohort_out(await services.create_cohort(data))

    @get("/")
    async def list_cohorts(self, archived: FromQuery[bool] = False) -> list[s.CohortOut]:
        from appliance.accounts.tables import Cohort

        rows = await Cohort.objects().where(Cohort.archived == archived).order_by(Cohort.first_day)
        return [services.cohort_out(c) for c in rows]

    @get("/{cohort_id:int}")
    async def get_cohort(self, cohort_id: PathId) -> s.CohortDetail:
        return await services.cohort_detail(await services.get_cohort(cohort_id))

    @patch("/{cohort_id:int}")
    async def update_cohort(
        self,
        request: Request[Any, Any, Any],
        cohort_id: PathId,
        data: JSONBody[s.CohortPatch],
    ) -> s.CohortOut:
        cohort = await services.update_cohort(cohort_id, data)
        _announce_cohort(request, cohort_id, data)
        return services.cohort_out(cohort)

    @post("/{cohort_id:int}/archive", status_code=HTTP_200_OK)
    async def archive_cohort(
        self, request: Request[Any, Any, Any], cohort_id: PathId
    ) -> s.CohortOut:
        cohort = await services.archive_cohort(cohort_id)
        _announce_cohort(request, cohort_id, s.CohortPatch(archived=True))
        return services.cohort_out(cohort)

    @post("/{cohort_id:int}/enrolments", status_code=201)
    async def enrol(self, cohort_id: PathId, data: JSONBody[s.EnrolmentIn]) -> s.Member:
        """Enrol a trainer or a learner (the enrolment takes the user's role)."""
        user = await services.enrol(cohort_id, data.user_id)
        return s.Member(
            id=user.id,
            display_name=user.display_name,
            email=user.email,
            role=user.role,  # type: ignore[arg-type]
        )

    @delete("/{cohort_id:int}/enrolments/{user_id:int}", status_code=HTTP_204_NO_CONTENT)
    async def unenrol(
        self, request: Request[Any, Any, Any], cohort_id: PathId, user_id: PathId
    ) -> None:
        """Unenrol a user: their join links for the cohort are revoked, their sockets closed."""
        await services.unenrol(cohort_id, user_id)
        request.app.emit(events.ENROLMENT_ENDED, cohort_id=cohort_id, user_id=user_id)
        request.app.emit(events.LINKS_REVOKED, user_ids=[user_id])

    @post(
        "/{cohort_id:int}/learners/import",
        status_code=HTTP_200_OK,
        summary="Import learners from CSV (name,email); all rows or none",
        operation_class=raw_body("text/csv", "UTF-8 CSV: name,email per line", binary=False),
    )
    async def import_learners(
        self,
        request: Request[Any, Any, Any],
        cohort_id: PathId,
    ) -> Response[s.ImportReport]:
        """The request body is the CSV file itself (``Content-Type: text/csv``)."""
        data = await request.body()
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise field_error("body", "the CSV file is not UTF-8 text", 422) from None
        report = await services.import_learners(cohort_id, text)
        return Response(
            report, status_code=HTTP_200_OK if report.imported else HTTP_422_UNPROCESSABLE_ENTITY
        )

    @post("/{cohort_id:int}/learners/{user_id:int}/join-link", status_code=201)
    async def issue_link(
        self,
        request: Request[Any, Any, Any],
        cohort_id: PathId,
        user_id: PathId,
        data: JSONBody[s.LinkIssueIn | None] = None,
    ) -> s.IssuedLink:
        """Issue (or re-issue) a learner's personal link; earlier links stop working.

        ``{"hours": N}`` makes it last N hours instead of ``join_link_ttl_days``.
        """
        st = _settings(request)
        issued = await services.issue_link(
            cohort_id,
            user_id,
            base_url=st.resolved_public_url,
            ttl_days=st.join_link_ttl_days,
            ttl_hours=data.hours if data else None,
        )
        request.app.emit(events.LINKS_REVOKED, user_ids=[user_id])
        return issued

    @post("/{cohort_id:int}/learners/{user_id:int}/join-link/revoke", status_code=HTTP_200_OK)
    async def revoke_link(
        self, request: Request[Any, Any, Any], cohort_id: PathId, user_id: PathId
    ) -> dict[str, int]:
        """Revoke a learner's links for this cohort: the sessions opened with them end."""
        revoked = await services.revoke_links(cohort_id, user_id)
        request.app.emit(events.LINKS_REVOKED, user_ids=[user_id])
        return {"revoked": revoked}

    @post("/{cohort_id:int}/learners/{user_id:int}/join-link/expire", status_code=HTTP_200_OK)
    async def expire_link(
        self, request: Request[Any, Any, Any], cohort_id: PathId, user_id: PathId
    ) -> dict[str, int]:
        """End a learner's link now (it shows as expired; a new link can be issued later)."""
        expired = await services.expire_links(cohort_id, user_id)
        request.app.emit(events.LINKS_REVOKED, user_ids=[user_id])
        return {"expired": expired}

    @get("/{cohort_id:int}/join-links")
    async def link_statuses(self, cohort_id: PathId) -> list[s.LinkStatus]:
        return await services.link_statuses(cohort_id)

    @post(
        "/{cohort_id:int}/join-links/export",
        status_code=HTTP_200_OK,
        media_type="text/csv",
        summary="Issue fresh links for every learner and return them as CSV",
    )
    async def export_links(
        self, request: Request[Any, Any, Any], cohort_id: PathId
    ) -> Response[str]:
        st = _settings(request)
        body = await services.export_links_csv(
            cohort_id, base_url=st.resolved_public_url, ttl_days=st.join_link_ttl_days
        )
        request.app.emit(events.LINKS_REVOKED, user_ids=None)  # every learner got a new link
        return Response(
            body,
            media_type="text/csv; charset=utf-8",
            headers={
                "Content-Disposition": f'attachment; filename="cohort-{cohort_id}-join-links.csv"'
            },
        )

    @post("/{cohort_id:int}/sessions", status_code=201)
    async def create_class_session(
        self, cohort_id: PathId, data: JSONBody[s.ClassSessionIn]
    ) -> s.ClassSessionOut:
        return await services.create_class_session(cohort_id, data)

    @get("/{cohort_id:int}/sessions")
    async def list_class_sessions(self, cohort_id: PathId) -> list[s.ClassSessionOut]:
        return await services.list_class_sessions(cohort_id)


class MyCohortsController(Controller):
    path = "/api/cohorts"
    tags = ["cohorts"]

    @get("/")
    async def my_cohorts(self, request: Request[User, Any, Any]) -> list[s.CohortOut]:
        """The cohorts the signed-in user may open (all of them for admins and operators)."""
        return [services.cohort_out(c) for c in await services.cohorts_of(request.user)]

    @get("/{cohort_id:int}/sessions")
    async def class_sessions(
        self, request: Request[User, Any, Any], cohort_id: PathId
    ) -> list[s.ClassSessionOut]:
        """The cohort's class sessions, for anyone part of it (the waiting room's next time)."""
        await cohort_access(request.user, cohort_id, EVERYONE)
        return await services.list_class_sessions(cohort_id)
