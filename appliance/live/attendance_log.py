"""Learners' connect / disconnect records: one pair per span of presence, not per socket.

A learner with two tabs is one span; a learner whose last socket closes and who is back within
``attendance_reconnect_grace_s`` (a reload, a network blip, a reconnect storm) stays in the
same span. The disconnect is written when the grace has passed, with the time the last socket
really closed: the record stays exact to that grace, and a storm of reconnects writes nothing.
Pending disconnects are written at shutdown (:meth:`ConnectionLog.flush`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from appliance import clock
from appliance.accounts.tables import Role
from appliance.attendance import services as attendance

if TYPE_CHECKING:
    from appliance.live.room import CohortRoom, Conn
    from appliance.settings import Settings

__all__ = ["ConnectionLog"]

log = logging.getLogger("estrade.live.attendance")


@dataclass(eq=False)
class _Span:
    connection: str
    """The id written in the span's connect record (its first socket's)."""
    sockets: int = 1
    closing: asyncio.TimerHandle | None = None
    """The pending disconnect, while the learner has no socket open."""
    closed_at: dt.datetime | None = None


@dataclass(frozen=True)
class _Closed:
    cohort_id: int
    user_id: int
    connection: str
    session_id: int | None
    address: str | None
    user_agent: str | None
    at: dt.datetime


class ConnectionLog:
    """One per process (``RoomRegistry.attendance``)."""

    def __init__(self, settings: Settings) -> None:
        self.grace_s = settings.attendance_reconnect_grace_s
        self._spans: dict[tuple[int, int], _Span] = {}
        self._pending: dict[tuple[int, int], _Closed] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopping = False

    async def connected(self, room: CohortRoom, conn: Conn) -> None:
        if conn.capacity is not Role.learner:
            return
        key = (room.cohort_id, conn.user_id)
        span = self._spans.get(key)
        if span is not None:  # another tab, or back within the grace: the span goes on
            span.sockets += 1
            if span.closing is not None:
                span.closing.cancel()
                span.closing = None
                self._pending.pop(key, None)
            return
        self._spans[key] = _Span(connection=conn.id)
        await attendance.record_connection(
            room.cohort_id,
            connected=True,
            session_id=room.session_id,
            user_id=conn.user_id,
            connection=conn.id,
            address=conn.address,
            user_agent=conn.user_agent,
        )

    async def disconnected(self, room: CohortRoom, conn: Conn) -> None:
        if conn.capacity is not Role.learner:
            return
        key = (room.cohort_id, conn.user_id)
        span = self._spans.get(key)
        if span is None:
            return
        span.sockets -= 1
        if span.sockets > 0:
            return
        closed = _Closed(
            cohort_id=room.cohort_id,
            user_id=conn.user_id,
            connection=span.connection,
            session_id=room.session_id,
            address=conn.address,
            user_agent=conn.user_agent,
            at=clock.utcnow(),
        )
        if self.grace_s <= 0 or self._stopping:
            del self._spans[key]
            await self._write(closed)
            return
        self._pending[key] = closed
        span.closing = asyncio.get_running_loop().call_later(self.grace_s, self._expire, key, span)

    def _expire(self, key: tuple[int, int], span: _Span) -> None:
        if self._spans.get(key) is not span or span.sockets > 0:
            return
        del self._spans[key]
        closed = self._pending.pop(key)
        task = asyncio.ensure_future(self._write(closed))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, closed: _Closed) -> None:
        try:
            await attendance.record_connection(
                closed.cohort_id,
                connected=False,
                session_id=closed.session_id,
                user_id=closed.user_id,
                connection=closed.connection,
                address=closed.address,
                user_agent=closed.user_agent,
                at=closed.at,
            )
        except Exception:  # attendance must not take the class down; the log says what failed
            log.exception("could not record the disconnect of user %s", closed.user_id)

    async def flush(self) -> None:
        """Write the pending disconnects now (at shutdown, before the database closes); the
        sockets that close after this are written at once."""
        self._stopping = True
        for key, closed in list(self._pending.items()):
            span = self._spans.pop(key, None)
            if span is not None and span.closing is not None:
                span.closing.cancel()
            del self._pending[key]
            await self._write(closed)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
