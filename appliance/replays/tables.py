"""Replays: a cohort's recording policy, its recordings and what was pushed while recording.

The media files live on disk under ``data_dir/recordings/{cohort_id}/{recording_id}``
(docs/replays.md); a row points at its directory, which the code builds from the ids alone.
Every table follows its cohort (deleting a cohort deletes its rows; the sweep the files).
"""

from enum import StrEnum

from piccolo.columns import (
    BigInt,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    Serial,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from appliance.accounts.tables import ClassSession, Cohort, User
from appliance.documents.tables import Document

__all__ = ["ChatNames", "Recording", "RecordingDocument", "RecordingPolicy", "RecordingStatus"]


class ChatNames(StrEnum):
    """How learners' names appear in a replay's chat."""

    names = "names"
    initials = "initials"
    none = "none"


class RecordingStatus(StrEnum):
    recording = "recording"
    ready = "ready"
    failed = "failed"


class RecordingPolicy(Table, tablename="estrade_recording_policy"):
    """A cohort's recording settings (no row: the defaults, recording off)."""

    id = Serial(primary_key=True)
    cohort = ForeignKey(references=Cohort, unique=True, index=True, on_delete=OnDelete.cascade)
    enabled = Boolean(default=False)
    notice = Text(default="")
    chat_names = Varchar(length=16, default=ChatNames.names.value, choices=ChatNames)
    retention_days = Integer(default=30)
    quota_bytes = BigInt(default=20 * 1024**3)
    updated_at = Timestamptz(default=TimestamptzNow())


class Recording(Table, tablename="estrade_recording"):
    """One recording of one class session (a session may have several: stop, start again)."""

    id = Serial(primary_key=True)
    cohort = ForeignKey(references=Cohort, index=True, on_delete=OnDelete.cascade)
    class_session = ForeignKey(references=ClassSession, index=True, on_delete=OnDelete.cascade)
    started_by = ForeignKey(references=User, null=True, on_delete=OnDelete.set_null)
    directory = Varchar(length=500)
    """Relative to ``data_dir``: ``recordings/{cohort_id}/{recording_id}``."""
    started_at = Timestamptz(default=TimestamptzNow())
    ended_at = Timestamptz(null=True, default=None)
    status = Varchar(length=16, default=RecordingStatus.recording.value, choices=RecordingStatus)
    duration_s = Float(default=0.0)
    audio_bytes = BigInt(default=0)
    camera_bytes = BigInt(default=0)
    screen_bytes = BigInt(default=0)
    end_reason = Varchar(length=32, null=True, default=None)
    """``stopped``, ``write_error``, ``disk_full``, ``relay_restarted``, ``room_closed``,
    ``session_ended``, ``quota``, ``server_restarted``."""
    failure = Text(null=True, default=None)
    """Why the recording failed or was cut short, for staff (``None``: ended normally)."""


class RecordingDocument(Table, tablename="estrade_recording_document"):
    """A document pushed to the class while it was recorded (for the replay's timeline)."""

    id = Serial(primary_key=True)
    recording = ForeignKey(references=Recording, index=True, on_delete=OnDelete.cascade)
    document = ForeignKey(references=Document, null=True, on_delete=OnDelete.set_null)
    title = Varchar(length=200)
    pushed_at = Timestamptz(default=TimestamptzNow())
