"""Engagement aggregates: computed from the raw records, read fast, exported.

A *class day* is a day (in the cohort's time zone) on which a class session started or a
signing window opened. :func:`aggregate_day` recomputes one class day of a cohort from the raw
records — the attendance log (the same minute count as the sign-in sheet), chat messages and
questions, question +1s, poll ballots and the live counters — and replaces that day's rows in
``EngagementDay`` in one transaction, so running it again (after a restart, say) gives the same
rows. :func:`refresh` runs it for the days that ended and were not final yet (the end-of-day
run) and for today when its figures are older than ``TODAY_MAX_AGE_S`` (on demand).

Reads (:func:`cohort_view`) touch only the aggregate tables: range totals are summed by the
database, and the per-day rows are read for the last ``LOOKBACK_DAYS`` class days only.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import time
import zoneinfo
from collections import OrderedDict, defaultdict
from typing import Any

import msgspec
from piccolo.query.functions.aggregate import Count, Sum

from appliance import clock, db
from appliance.accounts.tables import ClassSession, Cohort, Enrolment, Role, User
from appliance.attendance.services import _minutes
from appliance.attendance.tables import AttendanceRecord, Kind
from appliance.chat.tables import ChatMessage, QuestionVote
from appliance.engagement import signals
from appliance.engagement.schemas import (
    CohortEngagement,
    DayOut,
    LearnerDetail,
    LearnerRow,
    MySummary,
    StripDay,
    Thresholds,
    Totals,
)
from appliance.engagement.tables import (
    EngagementClassDay,
    EngagementCounter,
    EngagementDay,
    EngagementSettings,
)
from appliance.locks import CohortLocks
from appliance.polls.tables import Ballot, Poll
from appliance.text import csv_safe

__all__ = [
    "aggregate_day",
    "cohort_view",
    "export_csv",
    "get_thresholds",
    "learner_detail",
    "my_summary",
    "refresh",
    "set_thresholds",
]

TODAY_MAX_AGE_S = 60
"""Today's figures are recomputed on read when older than this."""
LOOKBACK_DAYS = 20
"""Signals look this many class days back from the end of the range (more when a cohort's
thresholds need it: see :func:`_lookback`), and ``attendance_days`` calendar days."""
STRIP_DAYS = 20
"""Squares in each learner's strip on the cohort page (the last class days of the range)."""
_SUMMED = (
    "minutes_connected",
    "half_days",
    "half_days_attended",
    "half_days_signed",
    "late",
    "disconnections",
    "low_bandwidth_minutes",
    "messages",
    "questions",
    "plus_ones",
    "polls",
    "polls_answered",
    "reactions",
    "hands",
)


# One lock per event loop and cohort: a day's rows are replaced by one writer at a time (two
# concurrent delete-then-insert would collide on the unique index on PostgreSQL).
_lock = CohortLocks()


async def _cohort(cohort_id: int) -> dict[str, Any]:
    row = (
        await Cohort.select(Cohort.id, Cohort.time_zone, Cohort.first_day)
        .where(Cohort.id == cohort_id)
        .first()
    )
    if row is None:
        raise LookupError(f"no cohort {cohort_id}")
    return row


def _bounds(day: dt.date, tz: zoneinfo.ZoneInfo) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.combine(day, dt.time(), tz)
    return start, dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tz)


# ---- thresholds -------------------------------------------------------------------------------
async def get_thresholds(cohort_id: int) -> Thresholds:
    row = await EngagementSettings.select().where(EngagementSettings.cohort == cohort_id).first()
    if row is None:
        return Thresholds()
    return Thresholds(**{f: row[f] for f in Thresholds.__struct_fields__})


async def set_thresholds(cohort_id: int, t: Thresholds) -> Thresholds:
    values = {f: getattr(t, f) for f in Thresholds.__struct_fields__}
    async with db.write_transaction(EngagementSettings._meta.db):
        existing = await EngagementSettings.exists().where(EngagementSettings.cohort == cohort_id)
        if existing:
            await EngagementSettings.update(
                {
                    **{getattr(EngagementSettings, k): v for k, v in values.items()},
                    EngagementSettings.updated_at: clock.utcnow(),
                }
            ).where(EngagementSettings.cohort == cohort_id)
        else:
            await EngagementSettings(cohort=cohort_id, **values).save()
    return t


# ---- computing ------------------------------------------------------------------------------
async def _learners_on(cohort_id: int, end: dt.datetime) -> dict[int, str]:
    rows = await Enrolment.select(Enrolment.user, Enrolment.user.display_name).where(
        (Enrolment.cohort == cohort_id)
        & (Enrolment.role == Role.learner.value)
        & (Enrolment.created_at < end)
    )
    return {r["user"]: r["user.display_name"] for r in rows}


async def aggregate_day(
    cohort_id: int, day: dt.date, *, thresholds: Thresholds | None = None
) -> int:
    """Recompute one day of a cohort from the raw records; returns the learner rows written.

    A day with no class (no session started, no signing window) leaves no rows. Learners are
    those enrolled before the day ended plus anyone with attendance records that day (a learner
    removed later keeps the days they attended).
    """
    async with _lock(cohort_id):
        return await _aggregate_day(cohort_id, day, thresholds)


async def _aggregate_day(cohort_id: int, day: dt.date, thresholds: Thresholds | None) -> int:
    cohort = await _cohort(cohort_id)
    tz = zoneinfo.ZoneInfo(cohort["time_zone"])
    start, end = _bounds(day, tz)
    now = clock.utcnow()
    t = thresholds or await get_thresholds(cohort_id)

    sessions = await ClassSession.select(ClassSession.started_at).where(
        (ClassSession.cohort == cohort_id)
        & (ClassSession.started_at >= start)
        & (ClassSession.started_at < end)
    )
    columns = (
        AttendanceRecord.position,
        AttendanceRecord.kind,
        AttendanceRecord.at,
        AttendanceRecord.user,
        AttendanceRecord.connection,
        AttendanceRecord.half,
        AttendanceRecord.day,
        AttendanceRecord.signed_at,
    )
    # Two indexed reads instead of one OR over the cohort's whole log: what was written that
    # day (cohort, at), and the corrections of that day written any time (cohort, kind).
    that_day = await AttendanceRecord.select(*columns).where(
        (AttendanceRecord.cohort == cohort_id)
        & (AttendanceRecord.at >= start)
        & (AttendanceRecord.at < end)
    )
    corrections = await AttendanceRecord.select(*columns).where(
        (AttendanceRecord.cohort == cohort_id)
        & (AttendanceRecord.kind == Kind.correction)
        & (AttendanceRecord.day == day)
    )
    seen = {r["position"] for r in that_day}
    records = sorted(
        [*that_day, *(r for r in corrections if r["position"] not in seen)],
        key=lambda r: r["position"],
    )
    windows = {r["half"] for r in records if r["kind"] == Kind.window_open and r["day"] == day}
    engine = EngagementDay._meta.db
    if not sessions and not windows:
        async with db.write_transaction(engine):
            await EngagementDay.delete().where(
                (EngagementDay.cohort == cohort_id) & (EngagementDay.day == day)
            )
            await EngagementClassDay.delete().where(
                (EngagementClassDay.cohort == cohort_id) & (EngagementClassDay.day == day)
            )
        return 0

    learners = await _learners_on(cohort_id, end)
    by_user: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["user"] is not None:
            by_user[r["user"]].append(r)
    staff = {
        r["user"]
        for r in await Enrolment.select(Enrolment.user).where(
            (Enrolment.cohort == cohort_id) & (Enrolment.role != Role.learner.value)
        )
    }
    users = set(learners) | {u for u in by_user if u not in staff and u not in learners}
    # A learner removed from the cohort still has records: kept, but not staff (never enrolled
    # as learner and still staff) nor admins who looked in.
    if users - set(learners):
        roles = await User.select(User.id, User.role).where(User.id.is_in(list(users)))
        users = {r["id"] for r in roles if r["role"] == Role.learner.value}

    class_start = min((s["started_at"] for s in sessions), default=None)
    day_end = min(now, end)

    messages: dict[int, int] = defaultdict(int)
    questions: dict[int, int] = defaultdict(int)
    for r in (
        await ChatMessage.select(
            ChatMessage.author, ChatMessage.is_question, Count(ChatMessage.id, alias="n")
        )
        .where(
            (ChatMessage.cohort == cohort_id)
            & (ChatMessage.created_at >= start)
            & (ChatMessage.created_at < end)
            & ChatMessage.deleted_at.is_null()
        )
        .group_by(ChatMessage.author, ChatMessage.is_question)
    ):
        (questions if r["is_question"] else messages)[r["author"]] += r["n"]
    plus_ones = {
        r["user"]: r["n"]
        for r in await QuestionVote.select(QuestionVote.user, Count(QuestionVote.id, alias="n"))
        .where(
            (QuestionVote.message.cohort == cohort_id)
            & (QuestionVote.created_at >= start)
            & (QuestionVote.created_at < end)
        )
        .group_by(QuestionVote.user)
    }
    poll_ids = [
        r["id"]
        for r in await Poll.select(Poll.id).where(
            (Poll.cohort == cohort_id) & (Poll.launched_at >= start) & (Poll.launched_at < end)
        )
    ]
    answered: dict[int, int] = {}
    if poll_ids:
        answered = {
            r["user"]: r["n"]
            for r in await Ballot.select(Ballot.user, Count(Ballot.id, alias="n"))
            .where(Ballot.poll.is_in(poll_ids))
            .group_by(Ballot.user)
        }
    counters = {
        r["user"]: r
        for r in await EngagementCounter.select().where(
            (EngagementCounter.cohort == cohort_id) & (EngagementCounter.day == day)
        )
    }

    rows: list[EngagementDay] = []
    for user in sorted(users):
        evs = by_user.get(user, [])
        conns = [
            e for e in evs if e["kind"] in (Kind.connect, Kind.disconnect) and e["at"] >= start
        ]
        conns = [e for e in conns if e["at"] < end]
        minutes = _minutes(conns, day_end)
        signed = {"morning": False, "afternoon": False}
        corrected = {"morning": False, "afternoon": False}
        for e in evs:  # chain order: a later correction wins, as on the sign-in sheet
            if e["day"] != day or e["half"] not in signed:
                continue
            if e["kind"] == Kind.sign and not corrected[e["half"]]:
                signed[e["half"]] = True
            elif e["kind"] == Kind.correction:
                signed[e["half"]] = e["signed_at"] is not None
                corrected[e["half"]] = True
        expected = [h for h in ("morning", "afternoon") if h in windows or corrected[h]]
        if expected:
            half_days, attended = len(expected), sum(signed[h] for h in expected)
        else:  # no signing window that day: a half-day counts as attended when connected
            half_days, attended = 2, 2 if minutes > 0 else 0
        first = next((e["at"] for e in conns if e["kind"] == Kind.connect), None)
        late = (
            first is not None
            and class_start is not None
            and first > class_start + dt.timedelta(minutes=t.late_minutes)
        )
        c = counters.get(user)
        rows.append(
            EngagementDay(
                cohort=cohort_id,
                user=user,
                day=day,
                minutes_connected=minutes,
                half_days=half_days,
                half_days_attended=attended,
                half_days_signed=sum(signed.values()),
                morning_signed=signed["morning"],
                afternoon_signed=signed["afternoon"],
                late=int(late),
                disconnections=_interruptions(conns),
                low_bandwidth_minutes=(c["low_bandwidth_s"] // 60) if c else 0,
                messages=messages.get(user, 0),
                questions=questions.get(user, 0),
                plus_ones=plus_ones.get(user, 0),
                polls=len(poll_ids),
                polls_answered=answered.get(user, 0),
                reactions=c["reactions"] if c else 0,
                hands=c["hands"] if c else 0,
                computed_at=now,
            )
        )
    final = end <= now
    async with db.write_transaction(engine):
        await EngagementDay.delete().where(
            (EngagementDay.cohort == cohort_id) & (EngagementDay.day == day)
        )
        for chunk in range(0, len(rows), 500):
            await EngagementDay.insert(*rows[chunk : chunk + 500])
        await EngagementClassDay.delete().where(
            (EngagementClassDay.cohort == cohort_id) & (EngagementClassDay.day == day)
        )
        await EngagementClassDay(
            cohort=cohort_id,
            day=day,
            morning_window="morning" in windows,
            afternoon_window="afternoon" in windows,
            polls=len(poll_ids),
            final=final,
            computed_at=now,
        ).save()
    return len(rows)


def _interruptions(conns: list[dict[str, Any]]) -> int:
    """Times the learner's last open connection closed and they came back later that day."""
    open_: set[str] = set()
    count = 0
    pending = False
    for e in sorted(conns, key=lambda e: e["at"]):  # stable: chain order within a time
        if e["kind"] == Kind.connect:
            if pending and not open_:
                count += 1
            pending = False
            open_.add(e["connection"])
        elif e["connection"] in open_:
            open_.discard(e["connection"])
            pending = not open_
    return count


async def _class_days_pending(
    cohort_id: int, tz: zoneinfo.ZoneInfo, today: dt.date
) -> set[dt.date]:
    """Days that had a class but whose aggregates are missing or not final (or were corrected
    after they were computed)."""
    done = {
        r["day"]: r
        for r in await EngagementClassDay.select(
            EngagementClassDay.day, EngagementClassDay.final, EngagementClassDay.computed_at
        ).where(EngagementClassDay.cohort == cohort_id)
    }
    final_days = [d for d, r in done.items() if r["final"]]
    since = max(final_days) if final_days else None
    days: set[dt.date] = {d for d, r in done.items() if not r["final"]}
    started = ClassSession.select(ClassSession.started_at).where(
        (ClassSession.cohort == cohort_id) & ClassSession.started_at.is_not_null()
    )
    opened = AttendanceRecord.select(AttendanceRecord.day).where(
        (AttendanceRecord.cohort == cohort_id) & (AttendanceRecord.kind == Kind.window_open)
    )
    if since is not None:
        after = dt.datetime.combine(since + dt.timedelta(days=1), dt.time(), tz)
        started = started.where(ClassSession.started_at >= after)
        opened = opened.where(AttendanceRecord.day > since)
    days |= {r["started_at"].astimezone(tz).date() for r in await started}
    days |= {r["day"] for r in await opened}
    for r in await AttendanceRecord.select(AttendanceRecord.day, AttendanceRecord.at).where(
        (AttendanceRecord.cohort == cohort_id) & (AttendanceRecord.kind == Kind.correction)
    ):
        known = done.get(r["day"])
        if known is None or r["at"] > known["computed_at"]:
            days.add(r["day"])
    return {d for d in days if d <= today}


_checked: dict[int, float] = {}
"""When each cohort was last brought up to date by a read (monotonic seconds)."""


async def refresh(cohort_id: int, *, max_age_s: float = TODAY_MAX_AGE_S) -> list[dt.date]:
    """Bring the aggregates up to date: every ended class day not final yet (the end-of-day
    run), and today when older than ``max_age_s``. Returns the days recomputed.

    Reads call it with the default ``max_age_s``: within that time of the last check nothing is
    queried at all (a page read then costs only its own queries).
    """
    if max_age_s == TODAY_MAX_AGE_S:
        last = _checked.get(cohort_id)
        if last is not None and time.monotonic() - last < max_age_s:
            return []
    _checked[cohort_id] = time.monotonic()
    cohort = await _cohort(cohort_id)
    tz = zoneinfo.ZoneInfo(cohort["time_zone"])
    now = clock.utcnow()
    today = now.astimezone(tz).date()
    pending = await _class_days_pending(cohort_id, tz, today)
    if today in pending:
        row = (
            await EngagementClassDay.select(EngagementClassDay.computed_at)
            .where((EngagementClassDay.cohort == cohort_id) & (EngagementClassDay.day == today))
            .first()
        )
        if row is not None and (now - row["computed_at"]).total_seconds() < max_age_s:
            pending.discard(today)
    t = await get_thresholds(cohort_id)
    for day in sorted(pending):
        await aggregate_day(cohort_id, day, thresholds=t)
    return sorted(pending)


# ---- reading --------------------------------------------------------------------------------
def _totals(sums: dict[str, Any] | None, class_days: int) -> Totals:
    s = {k: int((sums or {}).get(k) or 0) for k in _SUMMED}
    return Totals(
        class_days=class_days,
        half_days=s["half_days"],
        half_days_signed=s["half_days_signed"],
        attendance_rate=(
            round(s["half_days_attended"] / s["half_days"], 4) if s["half_days"] else None
        ),
        minutes_connected=s["minutes_connected"],
        late=s["late"],
        disconnections=s["disconnections"],
        low_bandwidth_minutes=s["low_bandwidth_minutes"],
        messages=s["messages"],
        questions=s["questions"],
        plus_ones=s["plus_ones"],
        polls=s["polls"],
        polls_answered=s["polls_answered"],
        poll_rate=round(s["polls_answered"] / s["polls"], 4) if s["polls"] else None,
        reactions=s["reactions"],
        hands=s["hands"],
    )


async def _sums(
    cohort_id: int, first: dt.date, last: dt.date, user: int | None = None
) -> dict[int, dict[str, Any]]:
    """Range totals per learner, summed by the database."""
    where = (
        (EngagementDay.cohort == cohort_id)
        & (EngagementDay.day >= first)
        & (EngagementDay.day <= last)
    )
    if user is not None:
        where = where & (EngagementDay.user == user)
    query = (
        EngagementDay.select(
            EngagementDay.user,
            Count(EngagementDay.id, alias="class_days"),
            *(Sum(getattr(EngagementDay, k), alias=k) for k in _SUMMED),
        )
        .where(where)
        .group_by(EngagementDay.user)
    )
    return {r["user"]: r for r in await query}


_DAY_COLUMNS = ("morning_signed", "afternoon_signed", *_SUMMED)
# The day rows travel packed in one text column: converting 18 typed values per row costs
# several times more than the query itself on a 200-learner page (see benchmarks/engagement.py).
_PACKED = " || ',' || ".join(f'"{c}"' for c in _DAY_COLUMNS)
_TRUE = {"1", "t", "true"}


def _unpack(user: int, day: dt.date, packed: str) -> dict[str, Any]:
    values = packed.split(",")
    row: dict[str, Any] = dict(zip(_SUMMED, map(int, values[2:]), strict=True))
    row["user"], row["day"] = user, day
    row["morning_signed"] = values[0] in _TRUE
    row["afternoon_signed"] = values[1] in _TRUE
    return row


async def _day_rows(
    cohort_id: int, first: dt.date, last: dt.date, user: int | None = None
) -> dict[int, list[dict[str, Any]]]:
    """Each learner's day rows from ``first`` to ``last``, oldest first."""
    sql = (
        f'SELECT "user", day, {_PACKED} AS packed FROM estrade_engagement_day'  # noqa: S608
        " WHERE cohort = {} AND day >= {} AND day <= {}"
    )
    args: list[Any] = [cohort_id, first, last]
    if user is not None:
        sql += ' AND "user" = {}'
        args.append(user)
    rows = await EngagementDay.raw(sql + " ORDER BY day", *args)
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        out[r["user"]].append(_unpack(r["user"], r["day"], r["packed"]))
    return out


def _lookback(t: Thresholds) -> int:
    return max(
        LOOKBACK_DAYS, t.absent_half_days, 2 * t.silent_days, 2 * t.poll_days + 5, t.network_days
    )


async def _lookback_start(cohort_id: int, last: dt.date, t: Thresholds) -> dt.date:
    """The oldest day the signals (and the strips) need to see, ending at ``last``."""
    recent = (
        await EngagementClassDay.select(EngagementClassDay.day)
        .where((EngagementClassDay.cohort == cohort_id) & (EngagementClassDay.day <= last))
        .order_by(EngagementClassDay.day, ascending=False)
        .limit(_lookback(t))
    )
    oldest = recent[-1]["day"] if recent else last
    return min(oldest, last - dt.timedelta(days=t.attendance_days - 1))


def _strip(rows: list[dict[str, Any]], first: dt.date) -> list[StripDay]:
    return [
        StripDay(
            day=r["day"],
            half_days=r["half_days"],
            signed=r["half_days_attended"],
            minutes=r["minutes_connected"],
            actions=signals.actions(r),
        )
        for r in rows
        if r["day"] >= first
    ][-STRIP_DAYS:]


def _sort_key(row: LearnerRow) -> tuple[int, int, str, int]:
    weight = max((signals.RULE_WEIGHT[s.rule] for s in row.signals), default=0)
    return (-len(row.signals), -weight, row.display_name.lower(), row.user_id)


async def current_learners(cohort_id: int) -> dict[int, str]:
    rows = await Enrolment.select(Enrolment.user, Enrolment.user.display_name).where(
        (Enrolment.cohort == cohort_id) & (Enrolment.role == Role.learner.value)
    )
    return {r["user"]: r["user.display_name"] for r in rows}


VIEW_CACHE_SIZE = 64
_views: OrderedDict[tuple[int, int, dt.date, dt.date], tuple[Any, CohortEngagement]] = OrderedDict()

SHORT_RANGE_DAYS = 62
"""Ranges up to this long read their day rows once and sum them here (no SUM query)."""


def _sum_rows(rows: list[dict[str, Any]], first: dt.date) -> dict[str, Any] | None:
    mine = [r for r in rows if r["day"] >= first]
    if not mine:
        return None
    out: dict[str, Any] = {k: sum(r[k] for r in mine) for k in _SUMMED}
    out["class_days"] = len(mine)
    return out


async def cohort_view(cohort_id: int, first: dt.date, last: dt.date) -> CohortEngagement:
    """The cohort page: current learners sorted by signals, range totals and per-day strips.

    Five queries whatever the cohort's size: thresholds; learners and class days side by side;
    then the day rows the signals and strips need (from the lookback, or from the start of a
    short range) and, for a long range only, the range totals summed by the database.

    The last views are kept in memory with what they were computed from (thresholds, learners,
    number of class days and the latest ``computed_at``): while none of these changes — no day
    recomputed, no threshold or enrolment changed — a read costs only the first three queries.
    """
    t = await get_thresholds(cohort_id)
    learners, days = await asyncio.gather(
        current_learners(cohort_id),
        EngagementClassDay.select(EngagementClassDay.day, EngagementClassDay.computed_at)
        .where((EngagementClassDay.cohort == cohort_id) & (EngagementClassDay.day <= last))
        .order_by(EngagementClassDay.day),
    )
    version = (
        msgspec.json.encode(t),
        tuple(sorted(learners.items())),
        len(days),
        max((d["computed_at"] for d in days), default=None),
    )
    key = (id(EngagementDay._meta.db), cohort_id, first, last)
    cached = _views.get(key)
    if cached is not None and cached[0] == version:
        _views.move_to_end(key)
        return cached[1]
    view = await _cohort_view(cohort_id, first, last, t, learners, days)
    _views[key] = (version, view)
    while len(_views) > VIEW_CACHE_SIZE:
        _views.popitem(last=False)
    return view


async def _cohort_view(
    cohort_id: int,
    first: dt.date,
    last: dt.date,
    t: Thresholds,
    learners: dict[int, str],
    days: list[dict[str, Any]],
) -> CohortEngagement:
    recent = days[-_lookback(t) :]
    start = min(
        recent[0]["day"] if recent else last, last - dt.timedelta(days=t.attendance_days - 1)
    )
    short = (last - first).days < SHORT_RANGE_DAYS
    if short:
        start = min(start, first)
        rows = await _day_rows(cohort_id, start, last)
        sums = {user: total for user, mine in rows.items() if (total := _sum_rows(mine, first))}
    else:
        rows, sums = await asyncio.gather(
            _day_rows(cohort_id, start, last), _sums(cohort_id, first, last)
        )
    out = []
    for user, name in learners.items():
        mine = rows.get(user, [])
        sums_user = sums.get(user)
        out.append(
            LearnerRow(
                user_id=user,
                display_name=name,
                signals=signals.evaluate(mine, t, last),
                totals=_totals(sums_user, int(sums_user["class_days"]) if sums_user else 0),
                strip=_strip(mine, first),
            )
        )
    out.sort(key=_sort_key)
    return CohortEngagement(
        cohort_id=cohort_id,
        date_from=first,
        date_to=last,
        class_days=[d["day"] for d in days if d["day"] >= first],
        thresholds=t,
        learners=out,
        computed_at=max((d["computed_at"] for d in days), default=None),
    )


def _day_out(r: dict[str, Any]) -> DayOut:
    return DayOut(
        day=r["day"],
        half_days=r["half_days"],
        half_days_signed=r["half_days_signed"],
        **{
            k: r[k]
            for k in DayOut.__struct_fields__
            if k not in ("day", "half_days", "half_days_signed")
        },
    )


async def learner_detail(
    cohort_id: int, user_id: int, first: dt.date, last: dt.date
) -> LearnerDetail | None:
    """One current learner's days in the range, totals and signals (None: not a learner here)."""
    learners = await current_learners(cohort_id)
    if user_id not in learners:
        return None
    t = await get_thresholds(cohort_id)
    start = min(first, await _lookback_start(cohort_id, last, t))
    mine = (await _day_rows(cohort_id, start, last, user_id)).get(user_id, [])
    sums = (await _sums(cohort_id, first, last, user_id)).get(user_id)
    return LearnerDetail(
        cohort_id=cohort_id,
        user_id=user_id,
        display_name=learners[user_id],
        date_from=first,
        date_to=last,
        signals=signals.evaluate(mine, t, last),
        totals=_totals(sums, int(sums["class_days"]) if sums else 0),
        days=[_day_out(r) for r in mine if r["day"] >= first],
    )


async def my_summary(cohort_id: int, user_id: int, first: dt.date, last: dt.date) -> MySummary:
    sums = (await _sums(cohort_id, first, last, user_id)).get(user_id)
    tot = _totals(sums, int(sums["class_days"]) if sums else 0)
    return MySummary(
        date_from=first,
        date_to=last,
        class_days=tot.class_days,
        attendance_rate=tot.attendance_rate,
        half_days_signed=tot.half_days_signed,
        half_days=tot.half_days,
        minutes_connected=tot.minutes_connected,
        messages=tot.messages,
        questions=tot.questions,
        polls_answered=tot.polls_answered,
        polls=tot.polls,
        reactions=tot.reactions,
    )


async def today_of(cohort_id: int, time_zone: str | None = None) -> dt.date:
    """Today in the cohort's time zone (``time_zone`` when the caller has it already)."""
    if time_zone is None:
        time_zone = (await _cohort(cohort_id))["time_zone"]
    return clock.utcnow().astimezone(zoneinfo.ZoneInfo(time_zone)).date()


CSV_COLUMNS = [
    "learner",
    "email",
    "still_enrolled",
    "class_days",
    "attendance_rate",
    "half_days",
    "half_days_signed",
    "minutes_connected",
    "late_arrivals",
    "disconnections",
    "low_bandwidth_minutes",
    "messages",
    "questions",
    "plus_ones",
    "polls",
    "polls_answered",
    "poll_participation_rate",
    "reactions",
    "hands",
]


async def export_csv(cohort_id: int, first: dt.date, last: dt.date) -> str:
    """One row per learner with class days in the range, including learners removed since
    (their history stays): attendance rate, half-days signed, minutes, participation counts."""
    sums = await _sums(cohort_id, first, last)
    enrolled = await current_learners(cohort_id)
    people = {
        r["id"]: r
        for r in await User.select(User.id, User.display_name, User.email).where(
            User.id.is_in(list(sums) or [-1])
        )
    }
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(CSV_COLUMNS)

    def pct(x: float | None) -> str:
        return "" if x is None else f"{100 * x:.1f}"

    for user in sorted(sums, key=lambda u: (people[u]["display_name"].lower(), u)):
        s = sums[user]
        tot = _totals(s, int(s["class_days"]))
        w.writerow(
            [
                csv_safe(people[user]["display_name"]),
                csv_safe(people[user]["email"]),
                "yes" if user in enrolled else "no",
                tot.class_days,
                pct(tot.attendance_rate),
                tot.half_days,
                tot.half_days_signed,
                tot.minutes_connected,
                tot.late,
                tot.disconnections,
                tot.low_bandwidth_minutes,
                tot.messages,
                tot.questions,
                tot.plus_ones,
                tot.polls,
                tot.polls_answered,
                pct(tot.poll_rate),
                tot.reactions,
                tot.hands,
            ]
        )
    return out.getvalue()
