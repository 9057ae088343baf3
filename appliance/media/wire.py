"""What crosses the channel between the web process and a media worker (docs/media-workers.md).

Requests (web -> worker) carry an ``id`` and get exactly one reply with the same ``id``:
:class:`Ok`, :class:`Offered`, :class:`StatsReply` or :class:`Failed` (a ``MediaError``'s code
and message). Events (worker -> web) carry no id: the relay's :data:`MediaEvent` s, each
:class:`~appliance.media.observer.MediaObserver` call, and the worker's stats every second.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from .errors import (
    LearnerClosed,
    MediaEvent,
    PublisherClosed,
    QualityChanged,
    RecordingEnded,
    RecordingReason,
    TracksChanged,
)
from .recorder import RecordingFiles
from .server import MediaServerStats

__all__ = [
    "Answer",
    "CloseRoom",
    "Closed",
    "Configure",
    "Failed",
    "FromWorker",
    "GetStats",
    "Leave",
    "Observed",
    "ObservedBatch",
    "Offered",
    "Ok",
    "PipeIn",
    "PipeOut",
    "Publish",
    "Quality",
    "QualityStep",
    "RecordingStopped",
    "Request",
    "StartRecording",
    "StatsPush",
    "StatsReply",
    "StopRecording",
    "Subscribe",
    "Tracks",
    "Unpublish",
    "Unpublished",
    "WireEvent",
    "event_from_wire",
    "event_to_wire",
]


class _Message(msgspec.Struct, tag_field="t", forbid_unknown_fields=True, kw_only=True):
    pass


class _Request(_Message):
    id: int


# ---- requests: web -> worker ----------------------------------------------------------------
class Configure(_Request, tag="configure"):
    """The first request, answered with ``Ok`` once the worker's relay is up (the handshake).

    ``settings`` are the web process's own (``msgspec.to_builtins``), this worker's port
    slice already applied; the worker validates them again with ``load_settings``.
    """

    index: int
    settings: dict[str, Any]
    pipe_path: str = ""
    """Where this worker listens for pipes from its siblings (docs/media-workers.md "Pipes");
    empty: no pipes."""


class Publish(_Request, tag="publish"):
    cohort: int
    sdp: str
    slots: dict[str, str] | None = None
    trainer: int | None = None


class Unpublish(_Request, tag="unpublish"):
    cohort: int


class Subscribe(_Request, tag="subscribe"):
    cohort: int
    learner: int


class Answer(_Request, tag="answer"):
    cohort: int
    learner: int
    sdp: str


class Quality(_Request, tag="quality"):
    cohort: int
    learner: int
    level: str


class Leave(_Request, tag="leave"):
    cohort: int
    learner: int
    reason: str


class CloseRoom(_Request, tag="close_room"):
    cohort: int


class GetStats(_Request, tag="get_stats"):
    pass


class StartRecording(_Request, tag="start_recording"):
    """Record the cohort's class into ``directory`` (docs/recordings.md)."""

    cohort: int
    directory: str


class StopRecording(_Request, tag="stop_recording"):
    """Answered once the recording's files are finalized (its ``RecordingStopped`` first)."""

    cohort: int


class PipeIn(_Request, tag="pipe_in"):
    """Serve part of ``cohort``'s learners from frames piped by its owner (opens the room
    here as a piped one, or updates its live slots)."""

    cohort: int
    live: tuple[str, ...] = ()


class PipeOut(_Request, tag="pipe_out"):
    """Pipe ``cohort``'s frames (this worker owns it) to worker ``to``, listening at ``path``;
    ``generation`` is that worker's process id (a restarted one gets a new connection)."""

    cohort: int
    to: int
    path: str
    generation: int


Request = (
    Configure
    | Publish
    | Unpublish
    | Subscribe
    | Answer
    | Quality
    | Leave
    | CloseRoom
    | GetStats
    | StartRecording
    | StopRecording
    | PipeIn
    | PipeOut
)


# ---- replies: worker -> web -------------------------------------------------------------------
class Ok(_Request, tag="ok"):
    value: str | None = None
    """The answer SDP for ``Publish``; nothing otherwise."""


class Offered(_Request, tag="offered"):
    sdp: str
    slots: dict[str, str]


class StatsReply(_Request, tag="stats"):
    stats: MediaServerStats


class Failed(_Request, tag="failed"):
    code: str
    message: str


# ---- events: worker -> web --------------------------------------------------------------------
class Tracks(_Message, tag="tracks"):
    cohort: int
    live: tuple[str, ...]


class QualityStep(_Message, tag="quality_step"):
    cohort: int
    learner: int
    level: str
    automatic: bool
    reason: str


class Closed(_Message, tag="closed"):
    cohort: int
    learner: int
    reason: str


class Unpublished(_Message, tag="unpublished"):
    cohort: int
    reason: str


class RecordingStopped(_Message, tag="recording_ended"):
    cohort: int
    directory: str
    reason: RecordingReason
    result: RecordingFiles | None = None


ObserverMethod = Literal[
    "pli",
    "nack",
    "ice_failed",
    "dtls_failed",
    "connection_established",
    "first_frame",
    "keyframe_waited",
    "learner_report",
]


class Observed(_Message, tag="observed"):
    """One ``MediaObserver`` call, replayed on the web process's observer (its metrics)."""

    method: ObserverMethod
    args: tuple[str | int | float, ...] = ()
    kwargs: dict[str, float | bool] = {}


class ObservedBatch(_Message, tag="observed_batch"):
    """The ``MediaObserver`` calls of the last :data:`~.worker.OBSERVE_FLUSH_S`, in order (PLI
    and NACK counts summed per direction): one message, one wake-up of the web process, where
    one per call (a receiver report per learner, a NACK per lost packet) cost the classroom's
    event loop a wake-up each."""

    calls: list[Observed]


class StatsPush(_Message, tag="stats_push"):
    stats: MediaServerStats
    cpu_s: float = 0.0
    """CPU seconds the worker process used since it started (all its threads)."""
    loop_lag_s: float = 0.0
    """How late the worker's event loop ran this push's one-second timer."""


WireEvent = Tracks | QualityStep | Closed | Unpublished | RecordingStopped
FromWorker = (
    Ok
    | Offered
    | StatsReply
    | Failed
    | Tracks
    | QualityStep
    | Closed
    | Unpublished
    | RecordingStopped
    | Observed
    | ObservedBatch
    | StatsPush
)


def event_to_wire(event: MediaEvent) -> WireEvent:
    if isinstance(event, TracksChanged):
        return Tracks(cohort=event.cohort_id, live=event.live)
    if isinstance(event, QualityChanged):
        return QualityStep(
            cohort=event.cohort_id,
            learner=event.learner_id,
            level=event.level,
            automatic=event.automatic,
            reason=event.reason,
        )
    if isinstance(event, PublisherClosed):
        return Unpublished(cohort=event.cohort_id, reason=event.reason)
    if isinstance(event, RecordingEnded):
        return RecordingStopped(
            cohort=event.cohort_id,
            directory=event.directory,
            reason=event.reason,
            result=event.result,
        )
    return Closed(cohort=event.cohort_id, learner=event.learner_id, reason=event.reason)


def event_from_wire(message: WireEvent) -> MediaEvent:
    if isinstance(message, Tracks):
        return TracksChanged(message.cohort, tuple(message.live))
    if isinstance(message, QualityStep):
        return QualityChanged(
            message.cohort, message.learner, message.level, message.automatic, message.reason
        )
    if isinstance(message, Unpublished):
        return PublisherClosed(message.cohort, message.reason)
    if isinstance(message, RecordingStopped):
        return RecordingEnded(message.cohort, message.directory, message.reason, message.result)
    return LearnerClosed(message.cohort, message.learner, message.reason)
