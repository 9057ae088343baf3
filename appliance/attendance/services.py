"""Attendance rules: the hash-chained log, signing windows, signatures, corrections, exports.

Tamper evidence: every record of a cohort is chained. ``hash = sha256(prev_hash + canonical
JSON of the record)``; ``position`` counts records per cohort under a unique index, so two
writers can never fork the chain. :func:`verify_chain` recomputes it; an edited, deleted or
reordered row shows as the first record whose hash no longer matches. (An attacker with write
access to the database could rebuild the whole chain: print or export the last hash, e.g. on
the sign-in sheet, to anchor it outside the database.)
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import zoneinfo
from collections import defaultdict
from typing import Any

import msgspec

from appliance import clock
from appliance.accounts.tables import Cohort, Enrolment, Role, User
from appliance.attendance.schemas import ChainCheck, CorrectionIn, SheetRow, WindowOut
from appliance.attendance.tables import AttendanceRecord, Kind
from appliance.errors import DomainError, field_error, require_visible
from appliance.locks import CohortLocks
from appliance.text import csv_safe

__all__ = [
    "close_window",
    "correct",
    "current_window",
    "day_sheet",
    "export_csv",
    "last_hash",
    "open_window",
    "record_connection",
    "sign",
    "verify_chain",
]

GENESIS = "0" * 64
_HASHED = (
    "cohort",
    "position",
    "kind",
    "at",
    "class_session",
    "user",
    "connection",
    "half",
    "day",
    "window",
    "closes_at",
    "signed_at",
    "address",
    "user_agent",
    "author",
    "reason",
)
# One lock per event loop and cohort: appends of a cohort are serialised in this process; the
# unique (cohort, position) index guards against any other writer.
_lock = CohortLocks()


def _canon(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat(timespec="microseconds")
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _digest(prev_hash: str, fields: dict[str, Any]) -> str:
    body = msgspec.json.encode({k: _canon(fields.get(k)) for k in _HASHED})
    return hashlib.sha256(prev_hash.encode() + body).hexdigest()


async def _append(cohort_id: int, kind: str, **fields: Any) -> AttendanceRecord:
    async with _lock(cohort_id):
        last = (
            await AttendanceRecord.select(AttendanceRecord.position, AttendanceRecord.hash)
            .where(AttendanceRecord.cohort == cohort_id)
            .order_by(AttendanceRecord.position, ascending=False)
            .first()
        )
        position = last["position"] + 1 if last else 1
        prev = last["hash"] if last else GENESIS
        fields = {
            "at": clock.utcnow(),
            **fields,
            "cohort": cohort_id,
            "kind": kind,
            "position": position,
        }
        # Round-trip precision: both engines keep microseconds; hash what is stored.
        rec = AttendanceRecord(**fields, prev_hash=prev, hash=_digest(prev, fields))
        await rec.save()
        return rec


async def _tz(cohort_id: int) -> zoneinfo.ZoneInfo:
    row = await Cohort.select(Cohort.time_zone).where(Cohort.id == cohort_id).first()
    return zoneinfo.ZoneInfo(row["time_zone"] if row else "UTC")


async def record_connection(
    cohort_id: int,
    *,
    connected: bool,
    session_id: int | None,
    user_id: int,
    connection: str,
    address: str | None,
    user_agent: str | None,
    at: dt.datetime | None = None,
) -> None:
    """``at``: when it happened (default now; a disconnect is written after a grace)."""
    await _append(
        cohort_id,
        Kind.connect if connected else Kind.disconnect,
        at=at or clock.utcnow(),
        class_session=session_id,
        user=user_id,
        connection=connection,
        address=(address or "")[:64] or None,
        user_agent=(user_agent or "")[:400] or None,
    )


def _window_out(r: Any) -> WindowOut:
    return WindowOut(
        id=r["id"], half=r["half"], day=r["day"], opened_at=r["at"], closes_at=r["closes_at"]
    )


async def current_window(cohort_id: int) -> WindowOut | None:
    """The signing window open now, if any."""
    opened = (
        await AttendanceRecord.select()
        .where((AttendanceRecord.cohort == cohort_id) & (AttendanceRecord.kind == Kind.window_open))
        .order_by(AttendanceRecord.position, ascending=False)
        .first()
    )
    if opened is None or opened["closes_at"] <= clock.utcnow():
        return None
    closed = await AttendanceRecord.exists().where(
        (AttendanceRecord.cohort == cohort_id)
        & (AttendanceRecord.kind == Kind.window_close)
        & (AttendanceRecord.window == opened["id"])
    )
    return None if closed else _window_out(opened)


async def open_window(
    cohort_id: int, *, session_id: int | None, half: str, minutes: int, by: int
) -> WindowOut:
    if half not in ("morning", "afternoon"):
        raise DomainError("bad_half", "half is morning or afternoon", 422)
    if not 1 <= minutes <= 240:
        raise DomainError("bad_length", "a signing window lasts 1 to 240 minutes", 422)
    if await current_window(cohort_id) is not None:
        raise DomainError("window_open", "a signing window is already open")
    now = clock.utcnow()
    day = now.astimezone(await _tz(cohort_id)).date()
    rec = await _append(
        cohort_id,
        Kind.window_open,
        at=now,
        class_session=session_id,
        half=half,
        day=day,
        closes_at=now + dt.timedelta(minutes=minutes),
        author=by,
    )
    return WindowOut(id=rec.id, half=half, day=day, opened_at=now, closes_at=rec.closes_at)  # type: ignore[arg-type]


async def close_window(cohort_id: int, *, by: int) -> WindowOut:
    window = await current_window(cohort_id)
    if window is None:
        raise DomainError("no_signing_window", "no signing window is open")
    await _append(cohort_id, Kind.window_close, window=window.id, author=by)
    return window


async def sign(
    cohort_id: int,
    *,
    session_id: int | None,
    user_id: int,
    address: str | None,
    user_agent: str | None,
) -> dt.datetime:
    """A learner confirms presence in the open window. The one place a signature is counted."""
    window = await current_window(cohort_id)
    if window is None:
        raise DomainError("no_signing_window", "no signing window is open")
    done = await AttendanceRecord.exists().where(
        (AttendanceRecord.cohort == cohort_id)
        & (AttendanceRecord.kind == Kind.sign)
        & (AttendanceRecord.window == window.id)
        & (AttendanceRecord.user == user_id)
    )
    if done:
        raise DomainError("already_signed", "you already signed for this half-day")
    rec = await _append(
        cohort_id,
        Kind.sign,
        class_session=session_id,
        user=user_id,
        window=window.id,
        half=window.half,
        day=window.day,
        signed_at=clock.utcnow(),
        address=(address or "")[:64] or None,
        user_agent=(user_agent or "")[:400] or None,
    )
    return rec.signed_at


async def correct(cohort_id: int, data: CorrectionIn, *, author: int) -> int:
    """Append a correction (never an edit): who, which half-day, present or not, and why."""
    learner = await Enrolment.exists().where(
        (Enrolment.cohort == cohort_id)
        & (Enrolment.user == data.user_id)
        & (Enrolment.role == Role.learner.value)
    )
    if not learner:
        raise DomainError(
            "not_a_learner", "this user is not a learner of this cohort", 404, field="user_id"
        )
    signed_at = None
    if data.present:
        if data.signed_at is not None and data.signed_at.tzinfo is None:
            raise field_error("signed_at", "give the time with a UTC offset", 422)
        tz = await _tz(cohort_id)
        default = dt.datetime.combine(
            data.day, dt.time(12 if data.half == "morning" else 17, 0), tz
        )
        signed_at = data.signed_at or default
    rec = await _append(
        cohort_id,
        Kind.correction,
        user=data.user_id,
        half=data.half,
        day=data.day,
        signed_at=signed_at,
        author=author,
        reason=require_visible("reason", data.reason),
    )
    return rec.id


async def _rows(cohort_id: int, where: Any = None) -> list[dict[str, Any]]:
    query = AttendanceRecord.select().where(AttendanceRecord.cohort == cohort_id)
    if where is not None:
        query = query.where(where)
    return await query.order_by(AttendanceRecord.position)


async def verify_chain(cohort_id: int) -> ChainCheck:
    prev = GENESIS
    rows = await _rows(cohort_id)
    for i, r in enumerate(rows, start=1):
        if r["position"] != i or r["prev_hash"] != prev or r["hash"] != _digest(prev, r):
            return ChainCheck(ok=False, records=len(rows), first_bad_id=r["id"])
        prev = r["hash"]
    return ChainCheck(ok=True, records=len(rows))


async def last_hash(cohort_id: int) -> str:
    row = (
        await AttendanceRecord.select(AttendanceRecord.hash)
        .where(AttendanceRecord.cohort == cohort_id)
        .order_by(AttendanceRecord.position, ascending=False)
        .first()
    )
    return row["hash"] if row else GENESIS


def _minutes(events: list[dict[str, Any]], day_end: dt.datetime) -> int:
    """Minutes covered by at least one connection. A connect without its disconnect (the
    server stopped) lasts until the user's next connect, else the end of the day (or now)."""
    intervals: list[tuple[dt.datetime, dt.datetime]] = []
    opened: dict[str, dt.datetime] = {}
    connects = [e["at"] for e in events if e["kind"] == Kind.connect]
    for e in events:
        if e["kind"] == Kind.connect:
            opened[e["connection"]] = e["at"]
        elif e["connection"] in opened:
            intervals.append((opened.pop(e["connection"]), e["at"]))
    for start in opened.values():
        later = [c for c in connects if c > start]
        intervals.append((start, min([*later, day_end])))
    total = dt.timedelta()
    end_so_far: dt.datetime | None = None
    for begin, finish in sorted(intervals):
        if end_so_far is not None and begin < end_so_far:
            begin = end_so_far
        if finish > begin:
            total += finish - begin
        end_so_far = max(end_so_far or finish, finish)
    return int(total.total_seconds() // 60)


async def day_sheet(cohort_id: int, first: dt.date, last: dt.date | None = None) -> list[SheetRow]:
    """One row per learner of the cohort and day from ``first`` to ``last`` (inclusive)."""
    last = last or first
    tz = await _tz(cohort_id)
    start = dt.datetime.combine(first, dt.time(), tz)
    end = dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), tz)
    learners = await Enrolment.select(
        Enrolment.user, Enrolment.user.display_name, Enrolment.user.email
    ).where((Enrolment.cohort == cohort_id) & (Enrolment.role == Role.learner.value))
    records = await _rows(
        cohort_id,
        ((AttendanceRecord.at >= start) & (AttendanceRecord.at < end))
        | ((AttendanceRecord.day >= first) & (AttendanceRecord.day <= last)),
    )
    by_user_day: dict[tuple[int, dt.date], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        if r["user"] is None:
            continue
        day = (
            r["day"] if r["kind"] in (Kind.sign, Kind.correction) else r["at"].astimezone(tz).date()
        )
        by_user_day[(r["user"], day)].append(r)
    now = clock.utcnow()
    out: list[SheetRow] = []
    day = first
    while day <= last:
        day_end = min(now, dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), tz))
        for lr in sorted(learners, key=lambda x: (x["user.display_name"].lower(), x["user"])):
            evs = by_user_day.get((lr["user"], day), [])
            conns = [e for e in evs if e["kind"] in (Kind.connect, Kind.disconnect)]
            halves: dict[str, dt.datetime | None] = {"morning": None, "afternoon": None}
            corrected = {"morning": False, "afternoon": False}
            for e in evs:  # in chain order: a later correction wins
                if e["kind"] == Kind.sign and not corrected[e["half"]]:
                    halves[e["half"]] = halves[e["half"]] or e["signed_at"]
                elif e["kind"] == Kind.correction:
                    halves[e["half"]] = e["signed_at"]
                    corrected[e["half"]] = True
            out.append(
                SheetRow(
                    day=day,
                    user_id=lr["user"],
                    display_name=lr["user.display_name"],
                    email=lr["user.email"],
                    morning=halves["morning"],
                    afternoon=halves["afternoon"],
                    morning_corrected=corrected["morning"],
                    afternoon_corrected=corrected["afternoon"],
                    minutes_connected=_minutes(conns, day_end),
                    first_connection=conns[0]["at"] if conns else None,
                    last_connection=conns[-1]["at"] if conns else None,
                )
            )
        day += dt.timedelta(days=1)
    return out


async def export_csv(cohort_id: int, first: dt.date, last: dt.date) -> str:
    tz = await _tz(cohort_id)

    def t(v: dt.datetime | None) -> str:
        return v.astimezone(tz).isoformat(timespec="seconds") if v else ""

    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(
        [
            "date",
            "learner",
            "email",
            "morning_signed_at",
            "morning_corrected",
            "afternoon_signed_at",
            "afternoon_corrected",
            "minutes_connected",
            "first_connection",
            "last_connection",
        ]
    )
    for r in await day_sheet(cohort_id, first, last):
        w.writerow(
            [
                r.day.isoformat(),
                csv_safe(r.display_name),
                r.email,
                t(r.morning),
                "yes" if r.morning_corrected else "",
                t(r.afternoon),
                "yes" if r.afternoon_corrected else "",
                r.minutes_connected,
                t(r.first_connection),
                t(r.last_connection),
            ]
        )
    return out.getvalue()


async def user_names(ids: list[int]) -> dict[int, str]:
    rows = await User.select(User.id, User.display_name).where(User.id.is_in(ids or [-1]))
    return {r["id"]: r["display_name"] for r in rows}


async def has_signed(cohort_id: int, window_id: int, user_id: int) -> bool:
    return bool(
        await AttendanceRecord.exists().where(
            (AttendanceRecord.cohort == cohort_id)
            & (AttendanceRecord.kind == Kind.sign)
            & (AttendanceRecord.window == window_id)
            & (AttendanceRecord.user == user_id)
        )
    )
