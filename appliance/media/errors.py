"""Errors and events of the media relay: plain data, so the socket layer can forward them."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.errors import DomainError

from .recorder import RecordingFiles, RecordingReason

__all__ = [
    "LearnerClosed",
    "MediaError",
    "MediaEvent",
    "PublisherClosed",
    "QualityChanged",
    "RecordingEnded",
    "RecordingReason",
    "TracksChanged",
    "too_many_rooms",
]


class MediaError(DomainError):
    """A refused media request. ``code`` is stable (for clients), ``message`` is for people.

    A :class:`~appliance.errors.DomainError` (409), so the socket sends it as any refusal.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)

    @property
    def message(self) -> str:
        return self.detail


def too_many_rooms(max_rooms: int) -> MediaError:
    """A new room refused: the server (every worker together) relays ``max_rooms`` already."""
    return MediaError(
        "too_many_rooms", f"this server already relays {max_rooms} classes; try again later"
    )


@dataclass(frozen=True, slots=True)
class TracksChanged:
    """The trainer started or stopped a slot; ``live`` lists the slots now sending."""

    cohort_id: int
    live: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class QualityChanged:
    """A learner moved on the ladder (``full`` > ``screen`` > ``audio``)."""

    cohort_id: int
    learner_id: int
    level: str
    automatic: bool
    reason: str


@dataclass(frozen=True, slots=True)
class LearnerClosed:
    """A learner's peer connection closed.

    ``reason``: left, replaced, failed, ice_failed, connection_lost, connect_timeout (no
    answer or no connection within ``MediaRoom.connect_timeout_s``) or room_closed.
    """

    cohort_id: int
    learner_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class PublisherClosed:
    """The trainer's peer connection closed without the trainer asking.

    ``reason``: relay_restarted (the media worker relaying the class died and was restarted;
    docs/media-workers.md). The trainer's page publishes again.
    """

    cohort_id: int
    reason: str


@dataclass(frozen=True, slots=True)
class RecordingEnded:
    """A recording ended (docs/recordings.md): asked (``stopped``), or not.

    ``reason``: stopped, write_error, disk_full, relay_restarted (the media worker recording it
    died) or room_closed. ``result`` is None when the recorder could not finalize the directory
    (the web side calls ``finalize_directory`` itself then).
    """

    cohort_id: int
    directory: str
    reason: RecordingReason
    result: RecordingFiles | None


MediaEvent = TracksChanged | QualityChanged | LearnerClosed | PublisherClosed | RecordingEnded
