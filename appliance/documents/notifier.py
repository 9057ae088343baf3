"""How a pushed document reaches the classroom, without this package knowing about sockets.

The classroom (``live/``) provides an object with this shape and puts it on
``app.state.document_notifier``; until then :class:`NullNotifier` drops the notices.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from appliance.documents.schemas import DocumentOut

__all__ = ["DocumentNotifier", "NullNotifier"]


@runtime_checkable
class DocumentNotifier(Protocol):
    async def document_pushed(self, cohort_id: int, doc: DocumentOut) -> None:
        """Tell the cohort's connected learners that ``doc`` is there (``doc.download_url``)."""
        ...


class NullNotifier:
    """The default: no classroom is listening."""

    async def document_pushed(self, cohort_id: int, doc: DocumentOut) -> None:
        return None
