"""Documents pushed by the trainer reach the cohort's sockets as ``document_pushed`` events."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from appliance.documents.schemas import DocumentOut
from appliance.live import protocol as p

if TYPE_CHECKING:
    from appliance.live.room import RoomRegistry

__all__ = ["LiveDocumentNotifier"]

log = logging.getLogger("estrade.live")


class LiveDocumentNotifier:
    """The ``appliance.documents.notifier.DocumentNotifier`` of a running classroom."""

    def __init__(self, registry: RoomRegistry) -> None:
        self.registry = registry
        self.listeners: list[Callable[[int, DocumentOut], Awaitable[None]]] = []
        """Awaited after each push (the recording notes it for the replay's timeline)."""

    async def document_pushed(self, cohort_id: int, doc: DocumentOut) -> None:
        room = await self.registry.room(cohort_id)
        notice = p.DocumentNotice(
            id=doc.id,
            title=doc.title,
            original_name=doc.original_name,
            media_type=doc.media_type,
            size=doc.size,
            download_url=doc.download_url,
            preview_url=doc.preview_url,
        )
        async with room.lock:
            room.publish(p.DocumentPushed(document=notice))
        for listener in self.listeners:
            try:
                await listener(cohort_id, doc)
            except Exception:  # the push happened: a listener's failure does not undo it
                log.exception("listener %r failed on document %s", listener, doc.id)
