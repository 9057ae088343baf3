"""A generated cohort for tests, the benchmark and demonstrations, written in bulk.

:func:`seed_cohort` creates a cohort with ``learners`` learners and ``days`` class days
(weekdays) of daily aggregates, with a few kinds of learners so that every signal shows:
most are steady; some stop coming, some go silent, some have network trouble, some answer
fewer and fewer polls. With ``raw_day`` it also writes one day of *raw* records (a class
session, a signing window, connections with a valid hash chain, signatures, chat, +1s, polls
and ballots) for timing the end-of-day computation (:func:`services.aggregate_day`).
"""

from __future__ import annotations

import datetime as dt
import random
import zoneinfo
from dataclasses import dataclass
from typing import Any

from appliance import clock
from appliance.accounts.tables import ClassSession, Cohort, Enrolment, User
from appliance.attendance.services import GENESIS, _digest
from appliance.attendance.tables import AttendanceRecord, Kind
from appliance.chat.tables import ChatMessage, QuestionVote
from appliance.engagement.tables import EngagementClassDay, EngagementDay
from appliance.polls.tables import Ballot, Poll, PollChoice

__all__ = ["Seeded", "class_days", "raw_class_day", "seed_cohort"]

CHUNK = 400
PROFILES = ("steady",) * 14 + ("dropping", "silent", "network", "polls_falling", "late_joiner")


@dataclass
class Seeded:
    cohort_id: int
    trainer_id: int
    learner_ids: list[int]
    profiles: dict[int, str]
    days: list[dt.date]


def class_days(first: dt.date, n: int) -> list[dt.date]:
    out: list[dt.date] = []
    day = first
    while len(out) < n:
        if day.weekday() < 5:
            out.append(day)
        day += dt.timedelta(days=1)
    return out


async def _bulk(table: Any, rows: list[Any]) -> None:
    for i in range(0, len(rows), CHUNK):
        await table.insert(*rows[i : i + CHUNK])


def _day_row(profile: str, i: int, n: int, rnd: random.Random) -> dict[str, Any]:
    """One learner's aggregates on class day ``i`` of ``n`` for a profile."""
    recent = n - i  # 1 on the last day
    present = rnd.random() < 0.96
    if profile == "dropping" and recent <= 8:
        present = rnd.random() < 0.15 and recent > 3
    halves = 2
    attended = (2 if rnd.random() < 0.97 else 1) if present else 0
    polls = rnd.choice((0, 1, 2, 3))
    answer_rate = 0.9
    if profile == "polls_falling" and recent <= 12:
        polls = max(polls, 2)  # polls every day lately: the last five against the five before
        answer_rate = 0.2 if recent <= 5 else 0.9
    active = present
    if profile == "silent" and recent <= 6:
        active = False
    messages = rnd.randint(0, 6) if active else 0
    network = profile == "network" and (recent <= 3 or (recent <= 5 and rnd.random() < 0.7))
    return {
        "minutes_connected": rnd.randint(330, 420) if present else 0,
        "half_days": halves,
        "half_days_attended": attended,
        "half_days_signed": attended,
        "morning_signed": attended >= 1,
        "afternoon_signed": attended == 2,
        "late": int(present and rnd.random() < 0.05),
        "disconnections": rnd.randint(3, 8) if network else int(rnd.random() < 0.1),
        "low_bandwidth_minutes": rnd.randint(20, 90) if network else 0,
        "messages": messages,
        "questions": int(active and rnd.random() < 0.3),
        "plus_ones": rnd.randint(0, 2) if active else 0,
        "polls": polls,
        "polls_answered": sum(rnd.random() < answer_rate for _ in range(polls)) if active else 0,
        "reactions": rnd.randint(1, 5) if active else 0,
        "hands": int(active and rnd.random() < 0.2),
    }


async def seed_cohort(
    *,
    name: str = "Generated cohort",
    learners: int = 200,
    days: int = 150,
    first_day: dt.date = dt.date(2026, 1, 5),
    raw_day: dt.date | None = None,
    time_zone: str = "Europe/Paris",
    seed: int = 16,
) -> Seeded:
    rnd = random.Random(seed)  # noqa: S311 - made-up data, not secrets
    all_days = class_days(first_day, days)
    cohort = Cohort(
        name=name,
        first_day=all_days[0],
        last_day=max(all_days[-1], raw_day or all_days[-1]),
        time_zone=time_zone,
    )
    await cohort.save()
    cid = cohort.id
    tag = f"c{cid}"
    trainer = User(email=f"trainer-{tag}@example.org", display_name="Trainer", role="trainer")
    await trainer.save()
    await Enrolment(cohort=cid, user=trainer.id, role="trainer").save()
    first_names = ("Alix", "Bastien", "Chloé", "Dounia", "Élise", "Farid", "Gaëlle", "Hugo")
    await _bulk(
        User,
        [
            User(
                email=f"learner{n:03d}-{tag}@example.org",
                display_name=f"{first_names[n % len(first_names)]} {n:03d}",
                role="learner",
            )
            for n in range(learners)
        ],
    )
    ids = [
        r["id"]
        for r in await User.select(User.id)
        .where(User.email.like(f"learner%-{tag}@example.org"))
        .order_by(User.id)
    ]
    enrolled_at = dt.datetime.combine(all_days[0] - dt.timedelta(days=7), dt.time(), dt.UTC)
    await _bulk(
        Enrolment,
        [Enrolment(cohort=cid, user=u, role="learner", created_at=enrolled_at) for u in ids],
    )
    profiles = {u: PROFILES[i % len(PROFILES)] if i else "steady" for i, u in enumerate(ids)}
    now = clock.utcnow()
    rows: list[EngagementDay] = []
    for u in ids:
        start = len(all_days) // 2 if profiles[u] == "late_joiner" else 0
        for i, day in enumerate(all_days[start:], start=start):
            values = _day_row(profiles[u], i, len(all_days), rnd)
            rows.append(EngagementDay(cohort=cid, user=u, day=day, computed_at=now, **values))
    await _bulk(EngagementDay, rows)
    await _bulk(
        EngagementClassDay,
        [
            EngagementClassDay(
                cohort=cid, day=d, morning_window=True, afternoon_window=True, final=True
            )
            for d in all_days
        ],
    )
    seeded = Seeded(cid, trainer.id, ids, profiles, all_days)
    if raw_day is not None:
        await raw_class_day(seeded, raw_day, time_zone=time_zone, seed=seed)
    return seeded


async def raw_class_day(
    seeded: Seeded, day: dt.date, *, time_zone: str = "Europe/Paris", seed: int = 16
) -> None:
    """Write one class day of raw records for a generated cohort (appended to its log)."""
    rnd = random.Random(seed + day.toordinal())  # noqa: S311 - made-up data, not secrets
    tz = zoneinfo.ZoneInfo(time_zone)
    await _raw_day(seeded.cohort_id, seeded.trainer_id, seeded.learner_ids, day, tz, rnd)


async def _raw_day(
    cid: int,
    trainer: int,
    learners: list[int],
    day: dt.date,
    tz: zoneinfo.ZoneInfo,
    rnd: random.Random,
) -> None:
    """One class day of raw records, as the classroom would have written them."""

    def at(hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(hour, minute, second), tz)

    session = ClassSession(cohort=cid, started_at=at(9), ended_at=at(17))
    await session.save()
    events: list[dict[str, Any]] = []

    def add(kind: str, when: dt.datetime, **fields: Any) -> None:
        events.append({"kind": kind, "at": when, "class_session": session.id, **fields})

    windows = {"morning": (at(9, 5), 1), "afternoon": (at(14, 5), 2)}
    for half, (opened, _) in windows.items():
        add(
            Kind.window_open,
            opened,
            half=half,
            day=day,
            closes_at=opened + dt.timedelta(minutes=15),
            author=trainer,
        )
    for n, u in enumerate(learners):
        if rnd.random() < 0.05:
            continue  # absent
        arrive = at(8, 50) + dt.timedelta(minutes=rnd.randint(0, 25))
        add(Kind.connect, arrive, user=u, connection=f"{u}-1")
        add(Kind.disconnect, at(12, 30), user=u, connection=f"{u}-1")
        add(Kind.connect, at(13, 55), user=u, connection=f"{u}-2")
        if n % 7 == 0:  # an interruption in the afternoon
            add(Kind.disconnect, at(15, 0), user=u, connection=f"{u}-2")
            add(Kind.connect, at(15, 3), user=u, connection=f"{u}-3")
            add(Kind.disconnect, at(17), user=u, connection=f"{u}-3")
        else:
            add(Kind.disconnect, at(17), user=u, connection=f"{u}-2")
        for half, (opened, _) in windows.items():
            if rnd.random() < 0.95:
                signed = opened + dt.timedelta(seconds=rnd.randint(5, 600))
                add(Kind.sign, signed, user=u, half=half, day=day, signed_at=signed)
    events.sort(key=lambda e: e["at"])
    records: list[AttendanceRecord] = []
    prev = GENESIS
    last = (
        await AttendanceRecord.select(AttendanceRecord.position, AttendanceRecord.hash)
        .where(AttendanceRecord.cohort == cid)
        .order_by(AttendanceRecord.position, ascending=False)
        .first()
    )
    position = last["position"] if last else 0
    prev = last["hash"] if last else GENESIS
    for e in events:
        position += 1
        fields = {**e, "cohort": cid, "position": position}
        digest = _digest(prev, fields)
        records.append(AttendanceRecord(**fields, prev_hash=prev, hash=digest))
        prev = digest
    await _bulk(AttendanceRecord, records)

    messages = [
        ChatMessage(
            cohort=cid,
            class_session=session.id,
            author=u,
            text=f"message {k}",
            is_question=k == 0 and rnd.random() < 0.3,
            created_at=at(10) + dt.timedelta(seconds=rnd.randint(0, 20000)),
        )
        for u in learners
        for k in range(rnd.randint(0, 4))
    ]
    await _bulk(ChatMessage, messages)
    questions = [
        r["id"]
        for r in await ChatMessage.select(ChatMessage.id).where(
            (ChatMessage.class_session == session.id) & ChatMessage.is_question.eq(True)
        )
    ]
    votes = [
        QuestionVote(message=q, user=u, created_at=at(11))
        for q in questions[:20]
        for u in rnd.sample(learners, min(10, len(learners)))
    ]
    await _bulk(QuestionVote, votes)
    for p in range(4):
        poll = Poll(
            cohort=cid,
            class_session=session.id,
            created_by=trainer,
            question=f"Poll {p}",
            status="closed",
            launched_at=at(10 + p),
            closed_at=at(10 + p, 10),
        )
        await poll.save()
        await PollChoice.insert(
            PollChoice(poll=poll.id, position=0, label="yes"),
            PollChoice(poll=poll.id, position=1, label="no"),
        )
        await _bulk(
            Ballot,
            [Ballot(poll=poll.id, user=u, choices=[0]) for u in learners if rnd.random() < 0.8],
        )
