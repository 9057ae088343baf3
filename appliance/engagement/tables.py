"""Engagement tables: per-cohort thresholds, class days, daily aggregates and live counters.

``EngagementDay`` and ``EngagementClassDay`` are derived data: each row is recomputed from the
raw records (attendance log, chat, votes, ballots, live counters) by
:func:`appliance.engagement.services.aggregate_day`, so they can always be rebuilt.
``EngagementCounter`` is raw data: what the live room knows and nothing else stores (reactions,
raised hands, seconds on low bandwidth), per learner and day. Every table follows its cohort:
deleting a cohort deletes them, like its attendance log.
"""

from piccolo.columns import Boolean, Date, ForeignKey, Integer, Serial, Timestamptz
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from appliance.accounts.tables import Cohort, User

__all__ = ["EngagementClassDay", "EngagementCounter", "EngagementDay", "EngagementSettings"]


class EngagementSettings(Table, tablename="estrade_engagement_settings"):
    """A cohort's signal thresholds (no row: the defaults of ``schemas.Thresholds``)."""

    id = Serial(primary_key=True)
    cohort = ForeignKey(references=Cohort, unique=True, index=True)
    absent_half_days = Integer(default=2)
    attendance_min_pct = Integer(default=80)
    attendance_days = Integer(default=14)
    silent_days = Integer(default=3)
    poll_days = Integer(default=5)
    poll_drop_pct = Integer(default=30)
    network_days = Integer(default=5)
    network_bad_days = Integer(default=2)
    disconnections_per_day = Integer(default=3)
    low_bandwidth_minutes = Integer(default=15)
    late_minutes = Integer(default=10)
    updated_at = Timestamptz(default=TimestamptzNow())


class EngagementClassDay(Table, tablename="estrade_engagement_class_day"):
    """One class day of a cohort (a session started or a signing window opened that day)."""

    id = Serial(primary_key=True)
    cohort = ForeignKey(references=Cohort, index=True)
    day = Date()
    morning_window = Boolean(default=False)
    afternoon_window = Boolean(default=False)
    polls = Integer(default=0)
    final = Boolean(default=False)
    """True once computed after the day ended (the end-of-day run): it no longer changes."""
    computed_at = Timestamptz(default=TimestamptzNow())


class EngagementDay(Table, tablename="estrade_engagement_day"):
    """One learner on one class day (unique per cohort, user and day)."""

    id = Serial(primary_key=True)
    cohort = ForeignKey(references=Cohort, index=True)
    user = ForeignKey(references=User, index=True)
    day = Date()
    minutes_connected = Integer(default=0)
    half_days = Integer(default=0)
    """Half-days expected: those with a signing window (both when none opened that day)."""
    half_days_attended = Integer(default=0)
    """Signed (or corrected present); where no window opened, connected that day."""
    half_days_signed = Integer(default=0)
    morning_signed = Boolean(default=False)
    afternoon_signed = Boolean(default=False)
    late = Integer(default=0)
    """1 when the first connection came ``late_minutes`` after the class started."""
    disconnections = Integer(default=0)
    low_bandwidth_minutes = Integer(default=0)
    messages = Integer(default=0)
    questions = Integer(default=0)
    plus_ones = Integer(default=0)
    polls = Integer(default=0)
    polls_answered = Integer(default=0)
    reactions = Integer(default=0)
    hands = Integer(default=0)
    computed_at = Timestamptz(default=TimestamptzNow())


class EngagementCounter(Table, tablename="estrade_engagement_counter"):
    """What only the live room sees, per learner and day (unique per cohort, user and day)."""

    id = Serial(primary_key=True)
    cohort = ForeignKey(references=Cohort, index=True)
    user = ForeignKey(references=User)
    day = Date()
    reactions = Integer(default=0)
    hands = Integer(default=0)
    low_bandwidth_s = Integer(default=0)
