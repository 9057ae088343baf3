"""The HTML pages: where ``/`` leads each role, sign-in, link problems and the page shells.

Every page checks the visitor itself (pages are excluded from the JSON 401 of the API): not signed
in leads to ``/login?next=...``, a wrong role gets a 403 page, a cohort the visitor is not part of
gets the same 404 page as an unknown one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

from litestar import Controller, Request, Response, Router, get
from litestar.datastructures import CacheControlHeader
from litestar.params import FromQuery
from litestar.response import Redirect
from litestar.static_files import create_static_files_router

from appliance import clock
from appliance.accounts import services
from appliance.accounts.tables import JoinLink, Role, User
from appliance.auth.guards import cohort_access, user_from_connection
from appliance.auth.roles import ADMINS, OPERATES, RUNS_CLASS, TAKES_PART
from appliance.errors import DomainError
from appliance.ids import PathId
from appliance.web.render import render_page, request_language

__all__ = ["LINK_PROBLEMS", "PageController", "html_not_found", "static_files_router"]

STATIC_DIR = Path(__file__).parent / "static"
LINK_PROBLEMS = (
    "unknown",
    "revoked",
    "expired",
    "password_required",
    "wrong_password",
    "join",  # a valid link: the page joins (POST) at once
    "switch",  # a valid link opened while someone else is signed in: the page asks first
)
# Where a signed-in user lands on ``/``, by role (learners go to their classroom).
HOME = {Role.admin: "/admin", Role.operator: "/operator", Role.trainer: "/cohorts"}

AnyRequest = Request[Any, Any, Any]


def static_files_router() -> Router:
    """``/static/...``: the CSS, ES modules and translations shipped in this package."""
    return create_static_files_router(
        path="/static",
        directories=[STATIC_DIR],
        # Revalidate on every load: files change with each upgrade and carry no version in
        # their names (no build step); ETags keep revalidation cheap.
        cache_control=CacheControlHeader(no_cache=True),
        opt={"exclude_from_auth": True},
        include_in_schema=False,
    )


def _lang(request: AnyRequest) -> str:
    return request_language(request.headers, request.cookies)


def _page(request: AnyRequest, page: str, **kwargs: Any) -> Response[str]:
    return render_page(page, lang=_lang(request), **kwargs)


def _error(request: AnyRequest, status: int) -> Response[str]:
    return _page(request, "error", data={"status": status}, status_code=status)


async def cohort_page(
    request: AnyRequest, page: str, cohort_id: int, allow: frozenset[Role]
) -> Response[Any]:
    """A page of one cohort for those ``allow`` lets in (else sign-in, 404 or 403 page)."""
    user = await _visitor(request)
    if user is None:
        return await _to_login(request)
    try:
        access = await cohort_access(user, cohort_id, allow)
    except DomainError as exc:  # not_found or forbidden: the error page says which
        return _error(request, exc.status_code)
    return _page(
        request,
        page,
        data={"cohort-id": cohort_id, "role": user.role, "capacity": access.capacity.value},
    )


def html_not_found(request: AnyRequest) -> Response[str] | None:
    """The 404 page for a browser asking for an unknown page (API clients keep their JSON)."""
    path = request.url.path
    if request.method != "GET" or path.startswith(("/api/", "/static/", "/schema")):
        return None
    if "text/html" not in request.headers.get("accept", ""):
        return None
    return _error(request, 404)


async def _to_login(request: AnyRequest) -> Redirect:
    """Staff go to sign in; a learner whose link stopped working is told why instead."""
    link_id = _session(request).get("link")
    if link_id is not None:
        link = await JoinLink.objects().where(JoinLink.id == link_id).first()
        # Expired only when it is (a deactivated learner's valid link is "no longer valid").
        expired = link is not None and link.revoked_at is None and link.expires_at <= clock.utcnow()
        reason = "expired" if expired else "revoked"
        return Redirect(path=f"/link-problem?reason={reason}", status_code=303)
    return Redirect(path=f"/login?next={quote(request.url.path)}", status_code=303)


def _session(request: AnyRequest) -> dict[str, Any]:
    session = request.scope.get("session")
    return session if isinstance(session, dict) else {}


async def _visitor(request: AnyRequest) -> User | None:
    return await user_from_connection(_session(request), request)


async def _learner_home(request: AnyRequest, user: User) -> str:
    link_id = _session(request).get("link")
    if link_id is not None:
        row = await JoinLink.select(JoinLink.cohort).where(JoinLink.id == link_id).first()
        if row is not None:
            return f"/classroom/{row['cohort']}"
    cohorts = await services.cohorts_of(user)
    return f"/classroom/{cohorts[0].id}" if cohorts else "/link-problem?reason=revoked"


class PageController(Controller):
    """Server-rendered shells; each page's ES module fills it from the JSON API."""

    include_in_schema = False
    opt = {"exclude_from_auth": True}

    @get("/")
    async def home(self, request: AnyRequest) -> Redirect:
        """Send each visitor where their role works: sign-in, admin, operator, cohorts, class."""
        user = await _visitor(request)
        if user is None:
            if _session(request).get("link") is not None:
                return await _to_login(request)
            return Redirect(path="/login", status_code=303)
        role = Role(user.role)
        target = HOME.get(role) or await _learner_home(request, user)
        return Redirect(path=target, status_code=303)

    @get("/login")
    async def login(self, request: AnyRequest) -> Response[str] | Redirect:
        """Staff sign-in. A learner whose join link stopped working (a page of theirs met a 401
        and came here) is told why instead: the staff form is no use to them."""
        if _session(request).get("link") is not None and await _visitor(request) is None:
            return await _to_login(request)
        return _page(request, "login")

    @get("/link-problem")
    async def link_problem(
        self, request: AnyRequest, reason: FromQuery[str] = "unknown"
    ) -> Response[str]:
        """Why a join link did not open a session, and the way forward."""
        if reason not in LINK_PROBLEMS:
            reason = "unknown"
        return _page(request, "link-problem", data={"reason": reason})

    async def _staff_page(
        self, request: AnyRequest, page: str, roles: frozenset[Role], **data: str | int
    ) -> Response[Any]:
        user = await _visitor(request)
        if user is None:
            return await _to_login(request)
        if Role(user.role) not in roles:
            return _error(request, 403)
        return _page(request, page, data={"role": user.role, **data})

    @get("/admin")
    async def admin_cohorts(self, request: AnyRequest) -> Response[Any]:
        return await self._staff_page(request, "admin-cohorts", ADMINS)

    @get("/admin/people")
    async def admin_people(self, request: AnyRequest) -> Response[Any]:
        return await self._staff_page(request, "admin-people", ADMINS)

    @get("/admin/cohorts/{cohort_id:int}")
    async def admin_cohort(self, request: AnyRequest, cohort_id: PathId) -> Response[Any]:
        return await self._staff_page(request, "admin-cohort", ADMINS, cohort_id=cohort_id)

    @get("/cohorts")
    async def my_cohorts(self, request: AnyRequest) -> Response[Any]:
        """A trainer's cohorts, each with its console (admins see all of them)."""
        return await self._staff_page(request, "cohorts", RUNS_CLASS)

    @get("/operator")
    async def operator(self, request: AnyRequest) -> Response[Any]:
        return await self._staff_page(request, "operator", OPERATES)

    @get("/classroom/{cohort_id:int}")
    async def classroom(self, request: AnyRequest, cohort_id: PathId) -> Response[Any]:
        """The learner's classroom (trainers and admins may look at it too)."""
        return await cohort_page(request, "classroom", cohort_id, TAKES_PART)

    @get("/cohorts/{cohort_id:int}/console")
    async def console(self, request: AnyRequest, cohort_id: PathId) -> Response[Any]:
        """The trainer's console for one cohort."""
        return await cohort_page(request, "console", cohort_id, RUNS_CLASS)
