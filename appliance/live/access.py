"""Sockets follow access changes: the accounts domain announces them (Litestar events), the
rooms close the sockets of whoever lost access. No query per message: one per event at most.

Close codes (docs/protocol.md): 4401 the session is over (account deactivated, join link
revoked or replaced); 4404 the user is no longer part of this cohort (unenrolled, or a learner
of an archived cohort). A reconnect is refused the same way (401 / 404 checks on connect).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from litestar.events import EventListener, listener

from appliance.accounts import events
from appliance.accounts import services as accounts
from appliance.accounts.tables import Role
from appliance.live.room import CohortRoom, Conn, RoomRegistry

__all__ = ["CLOSE_COHORT_GONE", "CLOSE_SESSION_ENDED", "access_listeners", "end_at_session_expiry"]

CLOSE_SESSION_ENDED = 4401
REVOKED = "your join link was revoked: open your new link to come back"
EXPIRED = "your join link has expired: ask for a new one"
CLOSE_COHORT_GONE = 4404


def access_listeners(registry: RoomRegistry) -> list[EventListener]:
    """The listeners to give ``Litestar(listeners=...)`` for ``registry``'s sockets."""

    @listener(events.USER_DEACTIVATED)
    async def user_deactivated(*, user_id: int) -> None:
        registry.end_connections(
            lambda room, conn: conn.user_id == user_id,
            CLOSE_SESSION_ENDED,
            "your account was deactivated",
        )

    @listener(events.ENROLMENT_ENDED)
    async def enrolment_ended(*, cohort_id: int, user_id: int) -> None:
        registry.end_connections(
            lambda room, conn: room.cohort_id == cohort_id and conn.user_id == user_id,
            CLOSE_COHORT_GONE,
            "you are no longer enrolled in this cohort",
        )

    @listener(events.COHORT_ARCHIVED)
    async def cohort_archived(*, cohort_id: int) -> None:
        # Staff still see an archived cohort (cohort_access): only learners lose it.
        registry.end_connections(
            lambda room, conn: room.cohort_id == cohort_id and conn.capacity is Role.learner,
            CLOSE_COHORT_GONE,
            "this cohort was archived",
        )

    @listener(events.LINKS_REVOKED)
    async def links_revoked(*, user_ids: list[int] | None) -> None:
        def concerned(room: CohortRoom, conn: Conn) -> bool:
            return conn.link_id is not None and (user_ids is None or conn.user_id in user_ids)

        # A socket that joins its room while the queries below run was caught up (catch_up)
        # before this change was recorded, and is not in the sets they compute: it is judged as
        # a late one (``late``), as if it had joined just after.
        present = {id(c) for room in registry.rooms.values() for c in room.conns.values()}

        def joined_meanwhile(room: CohortRoom, conn: Conn) -> bool:
            return id(conn) not in present and concerned(room, conn)

        # A learner may hold a session from another cohort's link: ask which links died.
        links = {
            c.link_id
            for room in registry.rooms.values()
            for c in room.conns.values()
            if c.link_id is not None and concerned(room, c)
        }
        # ...and in which cohorts they still hold a live link (a cohort's own link is the way
        # into it, whichever link opened the session).
        pairs = {
            (room.cohort_id, c.user_id)
            for room in registry.rooms.values()
            for c in room.conns.values()
            if c.link_id is not None and concerned(room, c)
        }
        dead = await accounts.dead_links(links) if links else set()
        closed = pairs - await accounts.live_link_pairs(pairs)
        # Expired ones (an admin's "expire now") say so: the page then explains expiry. A socket
        # still joining its room is judged by its user's latest link.
        expired = await accounts.expired_links(dead) if dead else set()
        lapsed = await accounts.users_whose_link_expired(user_ids) if user_ids else set()
        if expired or lapsed:
            registry.end_connections(
                lambda room, conn: (
                    conn.link_id in expired
                    or (joined_meanwhile(room, conn) and conn.user_id in lapsed)
                ),
                CLOSE_SESSION_ENDED,
                EXPIRED,
                late=lambda room, conn: concerned(room, conn) and conn.user_id in lapsed,
            )
        registry.end_connections(
            lambda room, conn: (
                conn.link_id in dead
                or (conn.link_id is not None and (room.cohort_id, conn.user_id) in closed)
                or joined_meanwhile(room, conn)
            ),
            CLOSE_SESSION_ENDED,
            REVOKED,
            late=concerned,
        )

    return [user_deactivated, enrolment_ended, cohort_archived, links_revoked]


def end_at_session_expiry(conn: Conn, session: Any) -> asyncio.TimerHandle | None:
    """Close ``conn`` (4401) when its session expires: a learner's socket does not outlive the
    join link it came in with. Returns the timer to cancel when the socket ends first."""
    exp = session.get("exp") if isinstance(session, dict) else None
    if not isinstance(exp, int | float):
        return None

    def expire() -> None:
        if conn.closing is None:
            conn.closing = (CLOSE_SESSION_ENDED, "your join link expired: ask for a new one")
            if conn.end is not None:
                conn.end()

    return asyncio.get_running_loop().call_later(max(0.0, exp - time.time()), expire)


async def dead_link_close(link_id: int | None) -> tuple[int, str] | None:
    """(4401, why) when the join link a learner's session was opened with no longer holds.

    For a socket refused at connect: a link revoked or expired after the session was checked
    but before the cohort was (an admin's click while the page loads) is told like an open
    socket is, so the page explains it instead of "no such cohort" (4404).
    """
    if link_id is None or not await accounts.dead_links([link_id]):
        return None
    expired = await accounts.expired_links([link_id])
    return CLOSE_SESSION_ENDED, EXPIRED if expired else REVOKED
