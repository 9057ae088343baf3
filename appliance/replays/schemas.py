"""Bodies of the replays API (msgspec Structs, unknown fields refused)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec

__all__ = [
    "PolicyIn",
    "PolicyOut",
    "RecordingUsage",
    "ReplayDetail",
    "ReplayOut",
    "TimelineItem",
]

ChatNamesMode = Literal["names", "initials", "none"]
Notice = Annotated[str, msgspec.Meta(max_length=2000)]
MAX_QUOTA = 2**50  # 1 PiB: beyond is a typo


class PolicyIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A cohort's recording settings (fields left out keep their default)."""

    enabled: bool = False
    notice: Notice = ""
    chat_names: ChatNamesMode = "names"
    retention_days: Annotated[int, msgspec.Meta(ge=0, le=3650)] = 30
    """Days the replays are kept after the cohort's last day."""
    quota_bytes: Annotated[int, msgspec.Meta(ge=0, le=MAX_QUOTA)] = 20 * 1024**3


class PolicyOut(msgspec.Struct, kw_only=True):
    cohort_id: int
    enabled: bool
    notice: str
    chat_names: ChatNamesMode
    retention_days: int
    quota_bytes: int
    used_bytes: int
    expires_on: dt.date
    """The day the cohort's replays are deleted (its last day plus the retention)."""


class RecordingUsage(msgspec.Struct, kw_only=True):
    used_bytes: int
    quota_bytes: int


class ReplayOut(msgspec.Struct, kw_only=True):
    id: int
    class_session_id: int
    started_at: dt.datetime
    ended_at: dt.datetime | None
    status: str
    duration_s: float
    bytes: dict[str, int]
    """Bytes per kind (audio, camera, screen) of the final files."""
    files: dict[str, str]
    """Kind -> URL of its WebM file (only kinds that were recorded)."""
    end_reason: str | None = None
    failure: str | None = None
    """Staff only."""


class TimelineItem(msgspec.Struct, kw_only=True):
    t: float
    """Seconds from the start of the recording."""
    kind: Literal["chat", "question", "poll", "document"]
    text: str
    author: str = ""
    """Per the cohort's chat names mode (empty: no name)."""
    author_role: str = ""
    url: str | None = None


class ReplayDetail(msgspec.Struct, kw_only=True):
    replay: ReplayOut
    cohort_name: str
    chat_names: ChatNamesMode
    timeline: list[TimelineItem]
    presence: dict[str, list[list[float]]] = {}
    """Video kind -> [[from, to], ...]: seconds when it was live (the page shows the camera
    as the main view where the screen was off)."""
