"""Engagement aggregates from constructed raw records, and the signal rules at their boundaries.

Every test here runs on SQLite and on PostgreSQL (the ``world`` fixture's database).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from appliance.accounts import services as accounts
from appliance.accounts.tables import ClassSession, Enrolment, User
from appliance.attendance.services import _append, verify_chain
from appliance.attendance.tables import Kind
from appliance.chat.tables import ChatMessage, QuestionVote
from appliance.engagement import services
from appliance.engagement.live import EngagementLive
from appliance.engagement.schemas import Thresholds
from appliance.engagement.tables import EngagementClassDay, EngagementDay
from appliance.polls.tables import Ballot, Poll
from tests.helpers.world import World, add_user

PARIS = zoneinfo.ZoneInfo("Europe/Paris")
DAY = dt.date(2026, 11, 3)


def at(hour: int, minute: int = 0, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), PARIS)


async def backdate_enrolments(cohort_id: int, when: dt.datetime) -> None:
    await Enrolment.update({Enrolment.created_at: when}).where(Enrolment.cohort == cohort_id)


async def connect(cohort: int, user: int, conn: str, start: dt.datetime, end: dt.datetime | None):
    await _append(cohort, Kind.connect, at=start, user=user, connection=conn)
    if end is not None:
        await _append(cohort, Kind.disconnect, at=end, user=user, connection=conn)


DATA_COLUMNS = (
    "user",
    "day",
    "minutes_connected",
    "half_days",
    "half_days_attended",
    "half_days_signed",
    "morning_signed",
    "afternoon_signed",
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


async def rows_of(cohort_id: int, day: dt.date) -> dict[int, dict[str, Any]]:
    rows = await EngagementDay.select(*(getattr(EngagementDay, c) for c in DATA_COLUMNS)).where(
        (EngagementDay.cohort == cohort_id) & (EngagementDay.day == day)
    )
    return {r["user"]: r for r in rows}


async def test_a_class_day_is_aggregated_from_the_raw_records(world: World, app: Any) -> None:
    c, a, trainer = world.cohort.id, world.learner.id, world.trainer.id
    b = (await add_user("bea@example.org", "learner", password=None)).id
    await accounts.enrol(c, b)
    await backdate_enrolments(c, at(8, 0, DAY - dt.timedelta(days=7)))
    await ClassSession(cohort=c, started_at=at(9), ended_at=at(17)).save()
    await _append(c, Kind.window_open, at=at(9, 5), half="morning", day=DAY,
                  closes_at=at(9, 20), author=trainer)  # fmt: skip
    # a: on time, one interruption (10:00-10:05), a second tab that does not count as one
    await connect(c, a, "a1", at(8, 55), at(10))
    await connect(c, a, "a2", at(10, 5), at(12))
    await connect(c, a, "a3", at(11), at(11, 30))
    await _append(c, Kind.sign, at=at(9, 6), user=a, half="morning", day=DAY, window=1,
                  signed_at=at(9, 6))  # fmt: skip
    # b: 20 minutes late, never signs
    await connect(c, b, "b1", at(9, 30), at(11, 30))
    # the trainer is connected too, and is no learner
    await connect(c, trainer, "t1", at(8, 50), at(17))
    for text, question in (("hello", False), ("again", False), ("why?", True)):
        await ChatMessage(cohort=c, author=a, text=text, is_question=question,
                          created_at=at(10, 30)).save()  # fmt: skip
    deleted = ChatMessage(cohort=c, author=b, text="spam", created_at=at(10, 31),
                          deleted_at=at(10, 32))  # fmt: skip
    await deleted.save()
    question = await ChatMessage.objects().where(ChatMessage.is_question.eq(True)).first()
    await QuestionVote(message=question.id, user=b, created_at=at(10, 40)).save()
    poll = Poll(cohort=c, created_by=trainer, question="?", status="closed", launched_at=at(11))
    await poll.save()
    await Ballot(poll=poll.id, user=a, choices=[0]).save()
    # the day before had no class; its activity makes no row
    await connect(
        c, a, "a0", at(10, 0, DAY - dt.timedelta(days=1)), at(11, 0, DAY - dt.timedelta(days=1))
    )
    live: EngagementLive = app.state.engagement
    for counter, n in (("reactions", 3), ("hands", 1), ("low_bandwidth_s", 930)):
        live.pending.append((c, a, counter, at(10, 10), n))
    await live.flush()

    assert await services.aggregate_day(c, DAY) == 2
    assert await services.aggregate_day(c, DAY - dt.timedelta(days=1)) == 0
    rows = await rows_of(c, DAY)
    assert set(rows) == {a, b}
    expect_a = {
        "minutes_connected": 65 + 115,
        "half_days": 1,
        "half_days_attended": 1,
        "half_days_signed": 1,
        "morning_signed": True,
        "afternoon_signed": False,
        "late": 0,
        "disconnections": 1,
        "low_bandwidth_minutes": 15,
        "messages": 2,
        "questions": 1,
        "plus_ones": 0,
        "polls": 1,
        "polls_answered": 1,
        "reactions": 3,
        "hands": 1,
    }
    assert {k: rows[a][k] for k in expect_a} == expect_a
    expect_b = {
        "minutes_connected": 120,
        "half_days": 1,
        "half_days_attended": 0,
        "late": 1,
        "disconnections": 0,
        "messages": 0,
        "plus_ones": 1,
        "polls_answered": 0,
        "reactions": 0,
    }
    assert {k: rows[b][k] for k in expect_b} == expect_b
    days = await EngagementClassDay.select().where(EngagementClassDay.cohort == c)
    assert [(d["day"], d["morning_window"], d["afternoon_window"], d["final"]) for d in days] == [
        (DAY, True, False, True)
    ]
    # the correction of b's morning (a new record) is picked up by the next refresh
    await _append(c, Kind.correction, user=b, half="morning", day=DAY, signed_at=at(12),
                  author=trainer, reason="signed on paper")  # fmt: skip
    assert DAY in await services.refresh(c)
    assert (await rows_of(c, DAY))[b]["half_days_attended"] == 1
    assert await services.refresh(c) == []  # nothing left to do: the day is final
    assert (await verify_chain(c)).ok

    # a learner removed from the cohort leaves the page but keeps the days they attended
    await accounts.unenrol(c, b)
    await services.aggregate_day(c, DAY)
    assert set(await rows_of(c, DAY)) == {a, b}
    view = await services.cohort_view(c, DAY, DAY)
    assert [r.user_id for r in view.learners] == [a]
    csv_text = await services.export_csv(c, DAY, DAY)
    assert "Bea,bea@example.org,no,1,100.0,1,1,120" in csv_text


async def test_today_after_a_restart_equals_a_recomputation(world: World, app: Any) -> None:
    """Today's figures computed on demand, more activity, a restart: the refreshed rows equal
    those recomputed from nothing."""
    from appliance.app import create_app

    c, a = world.cohort.id, world.learner.id
    today = await services.today_of(c)
    start = dt.datetime.combine(today, dt.time(), PARIS)
    now = dt.datetime.now(dt.UTC)
    step = (now - start) / 10
    await backdate_enrolments(c, start - dt.timedelta(days=1))
    await ClassSession(cohort=c, started_at=start + step).save()
    await connect(world.cohort.id, a, "x1", start + step, start + 2 * step)
    await ChatMessage(cohort=c, author=a, text="one", created_at=start + 2 * step).save()
    assert await services.refresh(c) == [today]
    assert (await rows_of(c, today))[a]["messages"] == 1
    assert await services.refresh(c) == []  # fresh enough: not recomputed on every read

    # more happens; the server stops (counters flushed by its lifespan) and starts again
    await connect(c, a, "x2", start + 3 * step, None)  # still connected at the restart
    await ChatMessage(cohort=c, author=a, text="two", is_question=True,
                      created_at=start + 4 * step).save()  # fmt: skip
    live: EngagementLive = app.state.engagement
    live.note(c, a, "hands")
    await live.flush()  # what its lifespan does when the server stops
    assert live.pending == []
    restarted = create_app(app.state.settings)
    async with restarted.lifespan():
        assert await services.refresh(c, max_age_s=0) == [today]
        after_restart = await rows_of(c, today)
        await EngagementDay.delete().where(EngagementDay.cohort == c)
        await services.aggregate_day(c, today)
        recomputed = await rows_of(c, today)
    minutes_apart = abs(
        after_restart[a].pop("minutes_connected") - recomputed[a].pop("minutes_connected")
    )
    assert minutes_apart <= 1  # the open connection grows with the clock
    assert after_restart == recomputed
    assert recomputed[a]["messages"] == 1 and recomputed[a]["questions"] == 1
    assert recomputed[a]["hands"] == 1
    day = await EngagementClassDay.select().where(EngagementClassDay.cohort == c).first()
    assert day["final"] is False  # today is not over


# ---- signals at their boundaries ------------------------------------------------------------
CLASS_DAYS = [dt.date(2026, 11, 2) + dt.timedelta(days=i) for i in range(20)]
LAST = CLASS_DAYS[-1]


def day_row(**kw: Any) -> dict[str, Any]:
    """A learner's day: present all day, signed both half-days, one message, no poll."""
    base = {
        "minutes_connected": 420,
        "half_days": 2,
        "half_days_attended": 2,
        "half_days_signed": 2,
        "morning_signed": True,
        "afternoon_signed": True,
        "late": 0,
        "disconnections": 0,
        "low_bandwidth_minutes": 0,
        "messages": 1,
        "questions": 0,
        "plus_ones": 0,
        "polls": 0,
        "polls_answered": 0,
        "reactions": 0,
        "hands": 0,
    }
    return {**base, **kw}


ABSENT = {"minutes_connected": 0, "half_days_attended": 0, "half_days_signed": 0,
          "morning_signed": False, "afternoon_signed": False, "messages": 0}  # fmt: skip
AFTERNOON_MISSED = {"half_days_attended": 1, "half_days_signed": 1, "afternoon_signed": False}
SILENT = {"messages": 0}


def polls(asked: int, answered: int) -> dict[str, int]:
    return {"polls": asked, "polls_answered": answered}


ONE_HALF = {"half_days": 1, "half_days_attended": 0, "half_days_signed": 0,
            "morning_signed": False, "afternoon_signed": False}  # fmt: skip


def poll_days(older: tuple[int, int], recent: list[tuple[int, int]]) -> dict[int, dict[str, Any]]:
    """Five older days with polls at ``older`` (asked, answered), then the ``recent`` days."""
    days = {i: polls(*a) for i, a in enumerate(reversed(recent))}
    days.update({len(recent) + i: polls(*older) for i in range(5)})
    return days


# name -> ({index from the end (0 = last day): overrides}, rules expected); other days day_row()
LEARNERS: dict[str, tuple[dict[int, dict[str, Any]], set[str]]] = {
    "steady": ({}, set()),
    # absent: 2 half-days in a row fire (default 2), 1 does not, even across two days
    "absent_one_half_day": ({0: AFTERNOON_MISSED}, set()),
    "absent_fires": ({0: ABSENT | {"minutes_connected": 420, "messages": 1}}, {"absent"}),
    "absent_across_days": ({0: ONE_HALF, 1: AFTERNOON_MISSED}, {"absent"}),
    # attendance over the last 14 days (28 half-days here): 23 attended is 82 %, 22 is 78.6 %
    "attendance_82": ({3: ABSENT, 5: ABSENT, 10: AFTERNOON_MISSED}, set()),
    "attendance_78": (
        {3: ABSENT, 5: ABSENT, 10: AFTERNOON_MISSED, 12: AFTERNOON_MISSED},
        {"low_attendance"},
    ),
    # silent: 3 connected days without any action fire (absent days skipped), 2 do not
    "silent_two": ({0: SILENT, 1: SILENT}, set()),
    "silent_three": (
        {0: ABSENT, 1: ABSENT, 2: SILENT, 3: SILENT, 4: SILENT},
        {"silent", "absent"},
    ),
    "silent_but_reacts": ({0: SILENT | {"reactions": 1}, 1: SILENT, 2: SILENT}, set()),
    # polls: the last 5 days with polls against the 5 before; a 30-point drop fires, 29 not
    "polls_drop_30": (poll_days((10, 10), [(10, 7)] * 5), {"polls_falling"}),
    "polls_drop_29": (poll_days((20, 20), [(20, 14)] * 4 + [(20, 15)]), set()),
    # network: 2 bad days among the last 5 fire (3 disconnections, or 15 minutes low bandwidth)
    "network_fires": ({1: {"disconnections": 3}, 4: {"low_bandwidth_minutes": 15}}, {"network"}),
    "network_just_below": (
        {1: {"disconnections": 2}, 4: {"low_bandwidth_minutes": 14}, 5: {"disconnections": 9}},
        set(),
    ),
}


async def test_signals_fire_at_their_boundaries(world: World) -> None:
    c = world.cohort.id
    users: dict[str, int] = {}
    for name in LEARNERS:
        users[name] = (await add_user(f"{name}@example.org", "learner", password=None)).id
        await accounts.enrol(c, users[name])
    await Enrolment.delete().where(Enrolment.user == world.learner.id)
    rows = []
    for name, (overrides, _) in LEARNERS.items():
        for i, day in enumerate(reversed(CLASS_DAYS)):
            rows.append(
                EngagementDay(
                    cohort=c, user=users[name], day=day, **day_row(**overrides.get(i, {}))
                )
            )
    await EngagementDay.insert(*rows)
    await EngagementClassDay.insert(
        *(EngagementClassDay(cohort=c, day=d, final=True) for d in CLASS_DAYS)
    )

    view = await services.cohort_view(c, CLASS_DAYS[0], LAST)
    got = {r.display_name.lower(): {s.rule for s in r.signals} for r in view.learners}
    assert got == {name: rules for name, (_, rules) in LEARNERS.items()}
    # sorted by signals: the two-signal learner first, steady ones last
    assert view.learners[0].display_name.lower() == "silent_three"
    assert not view.learners[-1].signals
    by_name = {r.display_name.lower(): r for r in view.learners}
    silent = next(s for s in by_name["silent_three"].signals if s.rule == "silent")
    assert silent.days == [CLASS_DAYS[-5], CLASS_DAYS[-4], CLASS_DAYS[-3]]
    absent = next(s for s in by_name["silent_three"].signals if s.rule == "absent")
    assert absent.days == CLASS_DAYS[-2:] and absent.detail["half_days"] == 4
    network = by_name["network_fires"].signals[0]
    assert network.advice == "low_bandwidth_mode" and network.days == [
        CLASS_DAYS[-5],
        CLASS_DAYS[-2],
    ]
    low = next(s for s in by_name["attendance_78"].signals if s.rule == "low_attendance")
    assert low.detail["rate_pct"] == 78.6 and low.detail["threshold_pct"] == 80
    assert low.days == [CLASS_DAYS[-13], CLASS_DAYS[-11], CLASS_DAYS[-6], CLASS_DAYS[-4]]
    falling = by_name["polls_drop_30"].signals[0]
    assert falling.detail["rate_pct"] == 70.0 and falling.detail["before_pct"] == 100.0
    assert len(by_name["steady"].strip) == services.STRIP_DAYS

    # a view is kept while nothing it was computed from changes; a recomputed day renews it
    assert await services.cohort_view(c, CLASS_DAYS[0], LAST) is view
    steady = users["steady"]
    await EngagementDay.update({EngagementDay.messages: 0}).where(EngagementDay.user == steady)
    await EngagementClassDay.update(
        {EngagementClassDay.computed_at: dt.datetime.now(dt.UTC)}
    ).where(EngagementClassDay.day == LAST)
    again = await services.cohort_view(c, CLASS_DAYS[0], LAST)
    assert again is not view
    assert {s.rule for s in next(r for r in again.learners if r.user_id == steady).signals} == {
        "silent"
    }
    await EngagementDay.update({EngagementDay.messages: 1}).where(EngagementDay.user == steady)
    await EngagementClassDay.update(
        {EngagementClassDay.computed_at: dt.datetime.now(dt.UTC)}
    ).where(EngagementClassDay.day == LAST)

    # thresholds are per cohort: stricter silence fires on two days; the other cohort keeps defaults
    await services.set_thresholds(c, Thresholds(silent_days=2))
    view = await services.cohort_view(c, CLASS_DAYS[0], LAST)
    assert "silent" in {
        s.rule for s in next(r for r in view.learners if r.user_id == users["silent_two"]).signals
    }
    assert (await services.get_thresholds(world.other_cohort.id)) == Thresholds()

    detail = await services.learner_detail(c, users["absent_fires"], LAST, LAST)
    assert detail is not None and [d.day for d in detail.days] == [LAST]
    assert detail.totals.attendance_rate == 0.0 and detail.signals[0].rule == "absent"
    assert await services.learner_detail(c, world.other_learner.id, LAST, LAST) is None
    assert await User.exists().where(User.id == users["steady"])


def test_attendance_exactly_at_the_threshold_does_not_fire() -> None:
    """The rule is 'below': 3 of 4 half-days with a 75 % threshold is fine, 2 of 4 is not."""
    from appliance.engagement.signals import evaluate

    t = Thresholds(attendance_min_pct=75, attendance_days=2, absent_half_days=9)
    days = [CLASS_DAYS[-2], CLASS_DAYS[-1]]
    at_75 = [day_row(day=days[0]), day_row(day=days[1], **AFTERNOON_MISSED)]
    assert evaluate(at_75, t, days[1]) == []
    at_50 = [day_row(day=days[0], **AFTERNOON_MISSED), day_row(day=days[1], **AFTERNOON_MISSED)]
    (low,) = evaluate(at_50, t, days[1])
    assert low.rule == "low_attendance" and low.days == days and low.detail["rate_pct"] == 50.0
    # days after the end of the range are not looked at
    later_absent = [day_row(day=days[0]), day_row(day=days[1], **ABSENT)]
    assert evaluate(later_absent, t, days[0]) == []
    assert [s.rule for s in evaluate(later_absent, t, days[1])] == ["low_attendance"]
