"""The signal rules: plain functions over one learner's daily aggregates, no black box.

Each rule looks at the learner's class days up to the end of the range (oldest first) and, when
it fires, says which rule, on which days and with which figures. Thresholds come from the
cohort's :class:`~appliance.engagement.schemas.Thresholds`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from appliance.engagement.schemas import Signal, Thresholds

__all__ = ["RULE_WEIGHT", "actions", "evaluate", "half_day_units"]

RULE_WEIGHT = {"absent": 5, "low_attendance": 4, "silent": 3, "polls_falling": 2, "network": 1}
"""Order of concern, for sorting learners: a learner who stopped coming comes first."""

Row = dict[str, Any]


def actions(r: Row) -> int:
    """Participation actions of a day: messages, questions, +1s, ballots, reactions, hands."""
    return int(
        r["messages"]
        + r["questions"]
        + r["plus_ones"]
        + r["polls_answered"]
        + r["reactions"]
        + r["hands"]
    )


def half_day_units(r: Row) -> list[bool]:
    """The day's expected half-days in order (morning first), True when attended."""
    n, attended = r["half_days"], r["half_days_attended"]
    if n == 2 and attended == 1:
        return [bool(r["morning_signed"]), bool(r["afternoon_signed"])]
    return [i < attended for i in range(n)]


def _absent(rows: Sequence[Row], t: Thresholds) -> Signal | None:
    run_days: list[dt.date] = []
    run = 0
    for r in reversed(rows):
        units = half_day_units(r)
        stop = False
        for attended in reversed(units):
            if attended:
                stop = True
                break
            run += 1
            if not run_days or run_days[-1] != r["day"]:
                run_days.append(r["day"])
        if stop:
            break
    if run >= t.absent_half_days:
        return Signal(
            rule="absent",
            days=sorted(run_days),
            detail={"half_days": run, "threshold": t.absent_half_days},
        )
    return None


def _low_attendance(rows: Sequence[Row], t: Thresholds, until: dt.date) -> Signal | None:
    since = until - dt.timedelta(days=t.attendance_days - 1)
    window = [r for r in rows if since <= r["day"] <= until]
    expected = sum(r["half_days"] for r in window)
    if not expected:
        return None
    attended = sum(r["half_days_attended"] for r in window)
    pct = 100 * attended / expected
    if pct >= t.attendance_min_pct:
        return None
    return Signal(
        rule="low_attendance",
        days=[r["day"] for r in window if r["half_days_attended"] < r["half_days"]],
        detail={
            "rate_pct": round(pct, 1),
            "threshold_pct": t.attendance_min_pct,
            "half_days": expected,
            "half_days_attended": attended,
            "from": since.isoformat(),
            "to": until.isoformat(),
        },
    )


def _silent(rows: Sequence[Row], t: Thresholds) -> Signal | None:
    """Connected but silent on the last ``silent_days`` days they were connected."""
    days: list[dt.date] = []
    for r in reversed(rows):
        if r["minutes_connected"] <= 0:
            continue  # absent days are the absent rule's business; they do not break the run
        if actions(r) > 0:
            break
        days.append(r["day"])
    if len(days) >= t.silent_days:
        return Signal(
            rule="silent", days=sorted(days), detail={"days": len(days), "threshold": t.silent_days}
        )
    return None


def _rate(rows: Sequence[Row]) -> float:
    answered: int = sum(r["polls_answered"] for r in rows)
    asked: int = sum(r["polls"] for r in rows)
    return answered / asked


def _polls_falling(rows: Sequence[Row], t: Thresholds) -> Signal | None:
    with_polls = [r for r in rows if r["polls"] > 0]
    n = t.poll_days
    if len(with_polls) < 2 * n:
        return None
    recent, before = with_polls[-n:], with_polls[-2 * n : -n]
    now_pct, before_pct = 100 * _rate(recent), 100 * _rate(before)
    if before_pct - now_pct < t.poll_drop_pct:
        return None
    return Signal(
        rule="polls_falling",
        days=[r["day"] for r in recent],
        detail={
            "rate_pct": round(now_pct, 1),
            "before_pct": round(before_pct, 1),
            "drop_threshold_pct": t.poll_drop_pct,
            "since": before[0]["day"].isoformat(),
        },
    )


def _network(rows: Sequence[Row], t: Thresholds) -> Signal | None:
    window = list(rows[-t.network_days :])
    bad = [
        r
        for r in window
        if r["disconnections"] >= t.disconnections_per_day
        or r["low_bandwidth_minutes"] >= t.low_bandwidth_minutes
    ]
    if len(bad) < t.network_bad_days:
        return None
    return Signal(
        rule="network",
        days=[r["day"] for r in bad],
        detail={
            "bad_days": len(bad),
            "of_days": len(window),
            "disconnections": sum(r["disconnections"] for r in bad),
            "low_bandwidth_minutes": sum(r["low_bandwidth_minutes"] for r in bad),
            "disconnections_per_day": t.disconnections_per_day,
            "low_bandwidth_minutes_threshold": t.low_bandwidth_minutes,
        },
        advice="low_bandwidth_mode",
    )


def evaluate(rows: Sequence[Row], t: Thresholds, until: dt.date) -> list[Signal]:
    """Every signal that fires for one learner, given their day rows up to ``until`` (sorted)."""
    rows = [r for r in rows if r["day"] <= until]
    found = [
        _absent(rows, t),
        _low_attendance(rows, t, until),
        _silent(rows, t),
        _polls_falling(rows, t),
        _network(rows, t),
    ]
    return [s for s in found if s is not None]
