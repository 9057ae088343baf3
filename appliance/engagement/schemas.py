"""What the engagement domain takes and hands out (msgspec Structs)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec

__all__ = [
    "CohortEngagement",
    "DayOut",
    "LearnerDetail",
    "LearnerRow",
    "MySummary",
    "Signal",
    "Thresholds",
    "Totals",
]

SignalRule = Literal["absent", "low_attendance", "silent", "polls_falling", "network"]


def _n(lo: int, hi: int) -> msgspec.Meta:
    return msgspec.Meta(ge=lo, le=hi)


class Thresholds(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A cohort's signal thresholds; every field has a default (docs/engagement.md)."""

    absent_half_days: Annotated[int, _n(1, 20)] = 2
    """``absent``: this many half-days in a row not signed (or absent, where no window opened)."""
    attendance_min_pct: Annotated[int, _n(1, 100)] = 80
    """``low_attendance``: attendance rate below this over the last ``attendance_days``."""
    attendance_days: Annotated[int, _n(1, 90)] = 14
    silent_days: Annotated[int, _n(1, 30)] = 3
    """``silent``: connected, yet no message, +1, vote or reaction on this many class days."""
    poll_days: Annotated[int, _n(1, 30)] = 5
    """``polls_falling``: poll participation over the last ``poll_days`` class days with polls..."""
    poll_drop_pct: Annotated[int, _n(1, 100)] = 30
    """...at least this many points below the ``poll_days`` before."""
    network_days: Annotated[int, _n(1, 30)] = 5
    """``network``: among the last ``network_days`` class days, ``network_bad_days`` with..."""
    network_bad_days: Annotated[int, _n(1, 30)] = 2
    disconnections_per_day: Annotated[int, _n(1, 1000)] = 3
    """...at least this many interrupted connections..."""
    low_bandwidth_minutes: Annotated[int, _n(1, 1440)] = 15
    """...or at least this many minutes on low bandwidth."""
    late_minutes: Annotated[int, _n(0, 240)] = 10
    """A first connection this long after the class started counts as a late arrival."""


class Signal(msgspec.Struct, kw_only=True):
    """A rule that fired, with the figures and the days it is based on."""

    rule: SignalRule
    days: list[dt.date]
    detail: dict[str, float | int | str]
    advice: str | None = None
    """``network``: "low_bandwidth_mode" (a connection problem, not a motivation one)."""


class Totals(msgspec.Struct, kw_only=True):
    class_days: int
    half_days: int
    half_days_signed: int
    attendance_rate: float | None
    minutes_connected: int
    late: int
    disconnections: int
    low_bandwidth_minutes: int
    messages: int
    questions: int
    plus_ones: int
    polls: int
    polls_answered: int
    poll_rate: float | None
    reactions: int
    hands: int


class DayOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    day: dt.date
    half_days: int
    half_days_signed: int
    minutes_connected: int = 0
    late: bool = False
    disconnections: int = 0
    low_bandwidth_minutes: int = 0
    messages: int = 0
    questions: int = 0
    plus_ones: int = 0
    polls: int = 0
    polls_answered: int = 0
    reactions: int = 0
    hands: int = 0


class StripDay(msgspec.Struct, kw_only=True, array_like=True):
    """One square of the strip: the day, signed/expected half-days, participation actions."""

    day: dt.date
    half_days: int
    signed: int
    minutes: int
    actions: int


class LearnerRow(msgspec.Struct, kw_only=True):
    user_id: int
    display_name: str
    signals: list[Signal]
    totals: Totals
    strip: list[StripDay]


class CohortEngagement(msgspec.Struct, kw_only=True):
    cohort_id: int
    date_from: dt.date
    date_to: dt.date
    class_days: list[dt.date]
    thresholds: Thresholds
    learners: list[LearnerRow]
    computed_at: dt.datetime | None


class LearnerDetail(msgspec.Struct, kw_only=True):
    cohort_id: int
    user_id: int
    display_name: str
    date_from: dt.date
    date_to: dt.date
    signals: list[Signal]
    totals: Totals
    days: list[DayOut]


class MySummary(msgspec.Struct, kw_only=True):
    """What a learner sees of themselves: attendance and participation, nobody else's."""

    date_from: dt.date
    date_to: dt.date
    class_days: int
    attendance_rate: float | None
    half_days_signed: int
    half_days: int
    minutes_connected: int
    messages: int
    questions: int
    polls_answered: int
    polls: int
    reactions: int
