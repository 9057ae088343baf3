"""Group commit for chat: a busy room stores its messages in batches, one commit each.

Storing each message on its own (its own commit, under the room lock) made every message wait
for the previous one's fsync. On a shared disk that fsync took over 20 ms for a while after
the connect storm of a class start, so at 50 messages/s the room fell behind and the queue
grew for the whole run (benchmarks/chat.py: p99 1.4 s on disk, 21 ms on tmpfs, same code).
Here the first message of an idle room is written at once; messages that arrive meanwhile
wait and are written together by the next commit. A message is published, and its sender
acked, only once it is stored.

The batches go through the room's :class:`appliance.db.DedicatedWriter` (one per process): on
SQLite one connection kept open (its INSERT committed, the WAL fsynced, before it returns)
rather than a new connection per query whose close could checkpoint the WAL
(docs/architecture.md "Chat storage").
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from appliance.chat import services as chat
from appliance.chat.schemas import ChatMessageOut
from appliance.errors import DomainError
from appliance.live import protocol as p

if TYPE_CHECKING:
    from appliance.live.room import CohortRoom

__all__ = ["ChatWriter"]

MAX_BATCH = 200


class ChatWriter:
    """One per room: stores chat drafts in order and publishes them under the room lock."""

    def __init__(self, room: CohortRoom) -> None:
        self.room = room
        self._pending: list[tuple[chat.Draft, asyncio.Future[ChatMessageOut | DomainError]]] = []
        self._task: asyncio.Task[None] | None = None
        self._mutes: tuple[int | None, frozenset[int]] | None = None

    async def _muted(self) -> frozenset[int]:
        """The room's muted users for its current session, read once and kept.

        Mutes change only through this room (handlers/chat.py, under the room lock), which
        calls :meth:`forget_mutes`; a new session reads them again. So a batch costs one
        statement, its INSERT.
        """
        session_id = self.room.session_id
        if self._mutes is None or self._mutes[0] != session_id:
            self._mutes = (session_id, await chat.muted_users(self.room.cohort_id, session_id))
        return self._mutes[1]

    def forget_mutes(self) -> None:
        """Mutes changed (or may have): read them again before the next batch."""
        self._mutes = None

    async def post(self, draft: chat.Draft) -> ChatMessageOut:
        """Store and publish ``draft``; raises the DomainError that refused it."""
        fut: asyncio.Future[ChatMessageOut | DomainError] = (
            asyncio.get_running_loop().create_future()
        )
        self._pending.append((draft, fut))
        if self._task is None:
            self._task = asyncio.create_task(self._drain())
        result = await fut
        if isinstance(result, DomainError):
            raise result
        return result

    async def _drain(self) -> None:
        room = self.room
        try:
            while self._pending:
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                try:
                    async with room.lock:
                        writer = room.writer
                        async with writer.connection() if writer else contextlib.nullcontext():
                            results = await chat.post_messages(
                                room.cohort_id,
                                room.session_id,
                                [d for d, _ in batch],
                                muted=await self._muted(),
                            )
                        # Committed (on disk) by then: only now published, and acked below.
                        for r in results:
                            if isinstance(r, ChatMessageOut):
                                room.publish(p.ChatMessage(message=r))
                except Exception as exc:  # the senders get a server_error; the room goes on
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for (_, fut), r in zip(batch, results, strict=True):
                    if not fut.done():  # its sender went away: the message is stored anyway
                        fut.set_result(r)
        finally:
            self._task = None
