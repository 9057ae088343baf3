"""Who may do what: one place for role and cohort checks, used by routes and socket messages.

Policy (docs/security.md): an unauthenticated request gets 401; a signed-in user asking for a
role-restricted route gets 403; a cohort the user does not belong to answers 404, so cohort ids
do not leak; a cohort the user can see but where their role may not act answers 403.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.types import Guard

from appliance import clock
from appliance.accounts.tables import Cohort, Enrolment, JoinLink, Role, User
from appliance.auth.roles import RUNS_CLASS
from appliance.auth.sessions import check_csrf_binding
from appliance.errors import DomainError, not_found

__all__ = ["Access", "cohort_access", "require_roles", "user_from_connection"]


@dataclass(frozen=True, slots=True)
class Access:
    """The outcome of a cohort check: who acts, on which cohort, in which capacity."""

    user: User
    cohort: Cohort
    capacity: Role

    @property
    def is_staff_of_cohort(self) -> bool:
        return self.capacity in RUNS_CLASS


async def user_from_connection(
    session: dict[str, Any], connection: ASGIConnection[Any, Any, Any, Any]
) -> User | None:
    """Load the signed-in user from the session; ``None`` (401) when it is no longer valid.

    A learner's session holds only while the join link it was opened with holds (not revoked,
    not expired; revoked on unenrolment and deactivation): a learner has no other way in.
    An unsafe request must carry the CSRF token bound to the session (403 otherwise).
    """
    uid = session.get("uid")
    if not isinstance(uid, int) or not isinstance(session.get("csrf"), str):
        return None  # no session, or one made before CSRF tokens were bound: sign in again
    check_csrf_binding(session, connection)
    exp = session.get("exp")
    if isinstance(exp, int | float) and time.time() >= exp:
        return None
    user = await User.objects().where((User.id == uid) & (User.active.eq(True))).first()
    if user is None:
        return None
    link_id = session.get("link")
    if link_id is None:
        return None if user.role == Role.learner.value else user
    now = clock.utcnow()
    link = await JoinLink.objects().where(JoinLink.id == link_id).first()
    if (
        link is None
        or link.user != uid
        or link.revoked_at is not None
        or link.expires_at <= now
        or user.role != Role.learner.value
    ):
        return None
    return user


async def _live_link(cohort_id: int, user_id: int) -> bool:
    return bool(
        await JoinLink.exists().where(
            (JoinLink.cohort == cohort_id)
            & (JoinLink.user == user_id)
            & JoinLink.revoked_at.is_null()
            & (JoinLink.expires_at > clock.utcnow())
        )
    )


def require_roles(*roles: Role) -> Guard:
    """A route guard: the signed-in user's role must be one of ``roles`` (else 403)."""
    allowed = {r.value for r in roles}

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if connection.scope.get("method") == "OPTIONS":
            # Litestar answers OPTIONS itself (an ``Allow`` header, no handler runs) and the
            # session middleware skips it, so there is no user to check: reading one was a 500.
            return
        user = connection.user
        if user is None or user.role not in allowed:
            raise PermissionDeniedException(detail="your role may not do this")

    guard.__name__ = f"require_{'_or_'.join(sorted(allowed))}"
    return guard


async def cohort_access(user: User, cohort_id: int, allow: frozenset[Role] | set[Role]) -> Access:
    """Check that ``user`` may act on ``cohort_id`` in one of the ``allow`` capacities.

    Admins and operators see every cohort (as admin / operator); trainers and learners see the
    cohorts they are enrolled in. Learners do not see archived cohorts.

    Raises:
        DomainError: ``not_found`` (404) when the cohort does not exist or the user is not
            part of it, ``forbidden`` (403) when the user is part of it but not in an allowed
            capacity.
    """
    cohort = await Cohort.objects().where(Cohort.id == cohort_id).first()
    if cohort is None:
        raise not_found("cohort not found")
    role = Role(user.role)
    capacity: Role
    if role in (Role.admin, Role.operator):
        capacity = role
    else:
        enrolment = (
            await Enrolment.select(Enrolment.role)
            .where((Enrolment.cohort == cohort_id) & (Enrolment.user == user.id))
            .first()
        )
        if enrolment is None or (role is Role.learner and cohort.archived):
            raise not_found("cohort not found")
        capacity = Role(enrolment["role"])
        if capacity is Role.learner and not await _live_link(cohort_id, user.id):
            # A learner's way into a cohort is that cohort's join link: revoking it closes the
            # cohort even to a session opened with another cohort's link.
            raise not_found("cohort not found")
    if capacity not in allow:
        raise DomainError("forbidden", "your role in this cohort may not do this", 403)
    return Access(user=user, cohort=cohort, capacity=capacity)
