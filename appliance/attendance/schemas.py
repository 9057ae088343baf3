"""What the attendance domain takes and hands out (msgspec Structs)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec

from appliance.ids import Id
from appliance.text import NO_NUL

__all__ = ["ChainCheck", "CorrectionIn", "SheetRow", "WindowOut"]

Half = Literal["morning", "afternoon"]


class WindowOut(msgspec.Struct, kw_only=True):
    id: int
    half: Half
    day: dt.date
    opened_at: dt.datetime
    closes_at: dt.datetime


class SheetRow(msgspec.Struct, kw_only=True):
    """One learner on one day, as the sign-in sheet and the CSV show it."""

    day: dt.date
    user_id: int
    display_name: str
    email: str
    morning: dt.datetime | None
    afternoon: dt.datetime | None
    morning_corrected: bool
    afternoon_corrected: bool
    minutes_connected: int
    first_connection: dt.datetime | None
    last_connection: dt.datetime | None


class CorrectionIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    user_id: Id
    day: dt.date
    half: Half
    present: bool
    signed_at: dt.datetime | None = None
    """The time to record for a present learner (default: the end of the half-day's window)."""
    reason: Annotated[str, msgspec.Meta(min_length=3, max_length=1000, pattern=NO_NUL)]


class ChainCheck(msgspec.Struct, kw_only=True):
    ok: bool
    records: int
    first_bad_id: int | None = None
