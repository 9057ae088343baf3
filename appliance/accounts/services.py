"""All queries and rules for users, cohorts, enrolments, class sessions and join links."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import secrets
import zoneinfo
from collections.abc import Iterable

import msgspec

from appliance.accounts import schemas as s
from appliance.accounts.tables import ClassSession, Cohort, Enrolment, JoinLink, Role, User
from appliance.auth.passwords import hash_password_off_loop
from appliance.db import write_transaction
from appliance.errors import (
    DomainError,
    conflict,
    field_error,
    is_blank,
    not_found,
    require_visible,
)
from appliance.text import check_day, check_moment, has_control

__all__ = [
    "archive_cohort",
    "create_cohort",
    "create_user",
    "dead_links",
    "enrol",
    "export_links_csv",
    "hash_secret",
    "import_learners",
    "issue_link",
    "link_statuses",
    "live_link_pairs",
    "resolve_link",
    "revoke_links",
    "unenrol",
    "update_cohort",
    "update_user",
]

MAX_IMPORT_ROWS = 5000


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def hash_secret(secret: str) -> str:
    # Join-link secrets are 256 random bits: a plain SHA-256 is enough to make a stolen
    # database useless, and lets the link be found by its hash.
    return hashlib.sha256(secret.encode()).hexdigest()


def user_out(u: User) -> s.UserOut:
    return s.UserOut(
        id=u.id,
        email=u.email,
        display_name=u.display_name,
        role=u.role,  # type: ignore[arg-type]
        locale=u.locale,  # type: ignore[arg-type]
        active=u.active,
        has_password=bool(u.password_hash),
    )


def cohort_out(c: Cohort) -> s.CohortOut:
    return s.CohortOut(
        id=c.id,
        name=c.name,
        first_day=c.first_day,
        last_day=c.last_day,
        time_zone=c.time_zone,
        archived=c.archived,
    )


def _normalise_email(email: str) -> str:
    return email.strip().lower()


async def get_user(user_id: int) -> User:
    user = await User.objects().where(User.id == user_id).first()
    if user is None:
        raise not_found("user not found")
    return user


async def get_cohort(cohort_id: int) -> Cohort:
    cohort = await Cohort.objects().where(Cohort.id == cohort_id).first()
    if cohort is None:
        raise not_found("cohort not found")
    return cohort


async def _email_taken(email: str, exclude_id: int | None = None) -> bool:
    query = User.exists().where(User.email == email)
    if exclude_id is not None:
        query = User.exists().where((User.email == email) & (User.id != exclude_id))
    return bool(await query)


async def create_user(data: s.UserIn) -> User:
    email = _normalise_email(data.email)
    if await _email_taken(email):
        raise conflict("email", "a user with this email already exists")
    user = User(
        email=email,
        display_name=require_visible("display_name", data.display_name),
        role=data.role,
        locale=data.locale,
        password_hash=await hash_password_off_loop(data.password) if data.password else None,
    )
    await user.save()
    return user


async def update_user(user_id: int, data: s.UserPatch) -> User:
    user = await get_user(user_id)
    if data.email is not None:
        email = _normalise_email(data.email)
        if await _email_taken(email, exclude_id=user_id):
            raise conflict("email", "a user with this email already exists")
        user.email = email
    if data.display_name is not None:
        user.display_name = require_visible("display_name", data.display_name)
    if data.locale is not None:
        user.locale = data.locale
    if data.password is not None:
        user.password_hash = await hash_password_off_loop(data.password)
    if data.active is not None:
        user.active = data.active
    await user.save()
    if data.active is False:
        await _revoke_all_links_of(user_id)
    return user


async def _revoke_all_links_of(user_id: int) -> None:
    await JoinLink.update({JoinLink.revoked_at: utcnow()}).where(
        (JoinLink.user == user_id) & JoinLink.revoked_at.is_null()
    )


def _check_days(first: dt.date, last: dt.date) -> None:
    check_day("first_day", first)
    check_day("last_day", last)
    if last < first:
        raise field_error("last_day", "the last day is before the first day")


def _check_tz(tz: str) -> None:
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        raise field_error("time_zone", f"unknown time zone {tz!r}") from None


async def create_cohort(data: s.CohortIn) -> Cohort:
    _check_days(data.first_day, data.last_day)
    _check_tz(data.time_zone)
    cohort = Cohort(
        name=data.name.strip(),
        first_day=data.first_day,
        last_day=data.last_day,
        time_zone=data.time_zone,
    )
    await cohort.save()
    return cohort


async def update_cohort(cohort_id: int, data: s.CohortPatch) -> Cohort:
    cohort = await get_cohort(cohort_id)
    first = data.first_day or cohort.first_day
    last = data.last_day or cohort.last_day
    _check_days(first, last)
    if data.time_zone is not None:
        _check_tz(data.time_zone)
        cohort.time_zone = data.time_zone
    if data.name is not None:
        cohort.name = data.name.strip()
    if data.archived is not None:
        cohort.archived = data.archived
    cohort.first_day, cohort.last_day = first, last
    await cohort.save()
    return cohort


async def archive_cohort(cohort_id: int) -> Cohort:
    return await update_cohort(cohort_id, s.CohortPatch(archived=True))


async def members(cohort_id: int) -> tuple[list[s.Member], list[s.Member]]:
    rows = await Enrolment.select(
        Enrolment.user.id,
        Enrolment.user.display_name,
        Enrolment.user.email,
        Enrolment.role,
    ).where(Enrolment.cohort == cohort_id)
    trainers: list[s.Member] = []
    learners: list[s.Member] = []
    for r in sorted(rows, key=lambda r: (r["user.display_name"].lower(), r["user.id"])):
        m = s.Member(
            id=r["user.id"],
            display_name=r["user.display_name"],
            email=r["user.email"],
            role=r["role"],
        )
        (trainers if r["role"] == Role.trainer.value else learners).append(m)
    return trainers, learners


async def cohort_detail(cohort: Cohort) -> s.CohortDetail:
    trainers, learners = await members(cohort.id)
    return s.CohortDetail(
        **msgspec.structs.asdict(cohort_out(cohort)), trainers=trainers, learners=learners
    )


async def enrol(cohort_id: int, user_id: int) -> User:
    await get_cohort(cohort_id)
    user = await User.objects().where(User.id == user_id).first()
    if user is None:
        raise field_error("user_id", f"no user with id {user_id}", status_code=404)
    if user.role not in (Role.trainer.value, Role.learner.value):
        raise field_error("user_id", f"a {user.role} cannot be enrolled in a cohort", 422)
    exists = await Enrolment.exists().where(
        (Enrolment.cohort == cohort_id) & (Enrolment.user == user_id)
    )
    if exists:
        raise conflict("user_id", "this user is already enrolled in this cohort")
    await Enrolment(cohort=cohort_id, user=user_id, role=user.role).save()
    return user


async def unenrol(cohort_id: int, user_id: int) -> None:
    await get_cohort(cohort_id)
    exists = await Enrolment.exists().where(
        (Enrolment.cohort == cohort_id) & (Enrolment.user == user_id)
    )
    if not exists:
        raise not_found("this user is not enrolled in this cohort")
    async with write_transaction(Enrolment._meta.db):
        await Enrolment.delete().where(
            (Enrolment.cohort == cohort_id) & (Enrolment.user == user_id)
        )
        await JoinLink.update({JoinLink.revoked_at: utcnow()}).where(
            (JoinLink.cohort == cohort_id)
            & (JoinLink.user == user_id)
            & JoinLink.revoked_at.is_null()
        )


def _parse_csv(text: str) -> list[tuple[int, str, str, bool]]:
    """(row number, name, email, extra columns?) for every non-empty line; a header line is
    skipped.

    Raises:
        DomainError: 422 when the csv module cannot read the file (a field over its
            131 072-character limit, a NUL byte); the message names the line.
    """
    rows: list[tuple[int, str, str, bool]] = []
    # newline="": the csv module splits lines itself, so CR-only line ends (old Mac
    # spreadsheets) and line breaks inside quoted fields are read as the csv module documents.
    reader = csv.reader(io.StringIO(text, newline=""))
    last_line = 0
    try:
        for fields in reader:
            # Rows are numbered by the line they start on (a quoted field may span lines).
            number, last_line = last_line + 1, reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            if not rows and [f.strip().lower() for f in fields[:2]] in (
                ["name", "email"],
                ["nom", "email"],
                ["nom", "e-mail"],
            ):
                continue
            name = fields[0].strip() if fields else ""
            email = fields[1].strip() if len(fields) > 1 else ""
            extra = bool(",".join(fields[2:]).strip())
            rows.append((number, name, email, extra))
    except csv.Error as exc:
        raise field_error("body", f"line {reader.line_num}: {exc}", 422) from None
    return rows


async def import_learners(cohort_id: int, text: str) -> s.ImportReport:
    """Create and enrol learners from ``name,email`` lines, all or nothing."""
    await get_cohort(cohort_id)
    parsed = _parse_csv(text)
    if not parsed:
        raise field_error("body", "the CSV file has no rows (expected: name,email)", 422)
    if len(parsed) > MAX_IMPORT_ROWS:
        raise field_error("body", f"at most {MAX_IMPORT_ROWS} rows per import", 422)
    report: list[s.ImportRow] = []
    seen: set[str] = set()
    to_create: list[User] = []
    to_enrol: list[int] = []
    enrolled_ids = {
        r["user"]
        for r in await Enrolment.select(Enrolment.user).where(Enrolment.cohort == cohort_id)
    }
    for number, name, raw_email, extra in parsed:
        email = _normalise_email(raw_email)

        def err(message: str, number: int = number, name: str = name, email: str = email) -> None:
            report.append(
                s.ImportRow(
                    row=number, email=email, display_name=name, status="error", error=message
                )
            )

        if extra:
            err("too many columns (expected: name,email)")
            continue
        if is_blank(name):
            err("the name is empty")
            continue
        if has_control(name):
            err("the name contains control characters")
            continue
        if len(name) > 120:
            err("the name is longer than 120 characters")
            continue
        try:
            msgspec.convert({"email": email}, EmailOnly)
        except msgspec.ValidationError:
            err(f"{raw_email!r} is not an email address")
            continue
        if email in seen:
            err("this email appears twice in the file")
            continue
        seen.add(email)
        existing = await User.objects().where(User.email == email).first()
        if existing is None:
            to_create.append(User(email=email, display_name=name, role=Role.learner.value))
            report.append(s.ImportRow(row=number, email=email, display_name=name, status="created"))
        elif existing.role != Role.learner.value:
            err(f"this email belongs to a {existing.role}, not a learner")
        elif existing.id in enrolled_ids:
            report.append(
                s.ImportRow(row=number, email=email, display_name=name, status="already_enrolled")
            )
        else:
            to_enrol.append(existing.id)
            report.append(
                s.ImportRow(row=number, email=email, display_name=name, status="existing")
            )
    errors = sum(1 for r in report if r.status == "error")
    if errors:
        return s.ImportReport(imported=False, created=0, enrolled=0, errors=errors, rows=report)
    async with write_transaction(User._meta.db):
        for user in to_create:
            await user.save()
            to_enrol.append(user.id)
        if to_enrol:
            await Enrolment.insert(
                *[
                    Enrolment(cohort=cohort_id, user=uid, role=Role.learner.value)
                    for uid in to_enrol
                ]
            )
    return s.ImportReport(
        imported=True, created=len(to_create), enrolled=len(to_enrol), errors=0, rows=report
    )


class EmailOnly(msgspec.Struct):
    email: s.Email


async def _learner_enrolment(cohort_id: int, user_id: int) -> None:
    await get_cohort(cohort_id)
    ok = await Enrolment.exists().where(
        (Enrolment.cohort == cohort_id)
        & (Enrolment.user == user_id)
        & (Enrolment.role == Role.learner.value)
    )
    if not ok:
        raise not_found("this user is not a learner of this cohort")


async def issue_link(
    cohort_id: int, user_id: int, *, base_url: str, ttl_days: int, ttl_hours: int | None = None
) -> s.IssuedLink:
    """Issue a fresh personal link, revoking the learner's previous links for this cohort.

    The link lasts ``ttl_hours`` when given (a short trial, a one-day course), else ``ttl_days``.
    """
    await _learner_enrolment(cohort_id, user_id)
    ttl = dt.timedelta(hours=ttl_hours) if ttl_hours else dt.timedelta(days=ttl_days)
    return (await _issue_many(cohort_id, [user_id], base_url=base_url, ttl=ttl))[0]


async def expire_links(cohort_id: int, user_id: int) -> int:
    """End a learner's active links now: they show "expired" (not "revoked") from then on."""
    await _learner_enrolment(cohort_id, user_id)
    now = utcnow()
    active = (
        (JoinLink.cohort == cohort_id)
        & (JoinLink.user == user_id)
        & JoinLink.revoked_at.is_null()
        & (JoinLink.expires_at > now)
    )
    async with write_transaction(JoinLink._meta.db):
        count = await JoinLink.count().where(active)
        await JoinLink.update({JoinLink.expires_at: now}).where(active)
    return int(count)


async def _issue_many(
    cohort_id: int, user_ids: Iterable[int], *, base_url: str, ttl: dt.timedelta
) -> list[s.IssuedLink]:
    now = utcnow()
    expires = now + ttl
    issued: list[s.IssuedLink] = []
    async with write_transaction(JoinLink._meta.db):
        for user_id in user_ids:
            await JoinLink.update({JoinLink.revoked_at: now}).where(
                (JoinLink.cohort == cohort_id)
                & (JoinLink.user == user_id)
                & JoinLink.revoked_at.is_null()
            )
            secret = secrets.token_urlsafe(32)
            await JoinLink(
                user=user_id, cohort=cohort_id, secret_hash=hash_secret(secret), expires_at=expires
            ).save()
            issued.append(
                s.IssuedLink(
                    user_id=user_id,
                    cohort_id=cohort_id,
                    url=f"{base_url}/join/{secret}",
                    expires_at=expires,
                )
            )
    return issued


async def revoke_links(cohort_id: int, user_id: int) -> int:
    await _learner_enrolment(cohort_id, user_id)
    active = (
        (JoinLink.cohort == cohort_id) & (JoinLink.user == user_id) & JoinLink.revoked_at.is_null()
    )
    async with write_transaction(JoinLink._meta.db):
        count = await JoinLink.count().where(active)
        await JoinLink.update({JoinLink.revoked_at: utcnow()}).where(active)
    return int(count)


async def dead_links(link_ids: Iterable[int]) -> set[int]:
    """Those of ``link_ids`` that no longer open a session (revoked, expired or deleted)."""
    ids = set(link_ids)
    if not ids:
        return set()
    alive = await JoinLink.select(JoinLink.id).where(
        JoinLink.id.is_in(list(ids))
        & JoinLink.revoked_at.is_null()
        & (JoinLink.expires_at > utcnow())
    )
    return ids - {r["id"] for r in alive}


async def live_link_pairs(pairs: Iterable[tuple[int, int]]) -> set[tuple[int, int]]:
    """Those (cohort_id, user_id) of ``pairs`` where the learner holds a live join link."""
    wanted = set(pairs)
    if not wanted:
        return set()
    rows = await JoinLink.select(JoinLink.cohort, JoinLink.user).where(
        JoinLink.user.is_in(sorted({u for _, u in wanted}))
        & JoinLink.revoked_at.is_null()
        & (JoinLink.expires_at > utcnow())
    )
    return wanted & {(r["cohort"], r["user"]) for r in rows}


async def expired_links(link_ids: Iterable[int]) -> set[int]:
    """Those of ``link_ids`` that reached their expiry without being revoked."""
    ids = list(link_ids)
    if not ids:
        return set()
    rows = await JoinLink.select(JoinLink.id).where(
        JoinLink.id.is_in(ids) & JoinLink.revoked_at.is_null() & (JoinLink.expires_at <= utcnow())
    )
    return {r["id"] for r in rows}


async def users_whose_link_expired(user_ids: Iterable[int]) -> set[int]:
    """Those of ``user_ids`` whose latest link expired without being revoked."""
    ids = list(user_ids)
    if not ids:
        return set()
    rows = (
        await JoinLink.select(JoinLink.user, JoinLink.revoked_at, JoinLink.expires_at)
        .where(JoinLink.user.is_in(ids))
        .order_by(JoinLink.id)
    )
    latest = {r["user"]: r for r in rows}
    now = utcnow()
    return {u for u, r in latest.items() if r["revoked_at"] is None and r["expires_at"] <= now}


async def link_statuses(cohort_id: int) -> list[s.LinkStatus]:
    await get_cohort(cohort_id)
    _, learners = await members(cohort_id)
    links = await JoinLink.select().where(JoinLink.cohort == cohort_id).order_by(JoinLink.id)
    latest = {link["user"]: link for link in links}
    now = utcnow()
    out = []
    for m in learners:
        link = latest.get(m.id)
        status = "none"
        expires = None
        if link is not None:
            expires = link["expires_at"]
            if link["revoked_at"] is not None:
                status = "revoked"
            elif expires <= now:
                status = "expired"
            else:
                status = "active"
        out.append(
            s.LinkStatus(
                user_id=m.id,
                display_name=m.display_name,
                email=m.email,
                status=status,  # type: ignore[arg-type]
                expires_at=expires,
            )
        )
    return out


async def export_links_csv(cohort_id: int, *, base_url: str, ttl_days: int) -> str:
    """Fresh links for every active learner of the cohort, as CSV for a mail merge.

    Secrets are only stored hashed, so an export issues new links (the old ones stop working).
    """
    await get_cohort(cohort_id)
    _, learners = await members(cohort_id)
    active = {
        r["id"]
        for r in await User.select(User.id).where(
            User.id.is_in([m.id for m in learners] or [-1]) & User.active.eq(True)
        )
    }
    chosen = [m for m in learners if m.id in active]
    issued = await _issue_many(
        cohort_id, [m.id for m in chosen], base_url=base_url, ttl=dt.timedelta(days=ttl_days)
    )
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["name", "email", "join_url", "expires_at"])
    for m, link in zip(chosen, issued, strict=True):
        writer.writerow([_csv_safe(m.display_name), m.email, link.url, link.expires_at.isoformat()])
    return out.getvalue()


def _csv_safe(value: str) -> str:
    # Spreadsheet formula injection: a cell starting with = + - @ is shown as text.
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


async def resolve_link(secret: str) -> JoinLink | None:
    """The active link for ``secret`` (not revoked, not expired, user active), or None."""
    if not secret or len(secret) > 100:
        return None
    link = await JoinLink.objects().where(JoinLink.secret_hash == hash_secret(secret)).first()
    return link


async def create_class_session(cohort_id: int, data: s.ClassSessionIn) -> s.ClassSessionOut:
    await get_cohort(cohort_id)
    if data.scheduled_start.tzinfo is None or data.scheduled_end.tzinfo is None:
        raise field_error("scheduled_start", "give times with a UTC offset")
    check_moment("scheduled_start", data.scheduled_start)
    check_moment("scheduled_end", data.scheduled_end)
    if data.scheduled_end <= data.scheduled_start:
        raise field_error("scheduled_end", "the end is not after the start")
    cs = ClassSession(
        cohort=cohort_id, scheduled_start=data.scheduled_start, scheduled_end=data.scheduled_end
    )
    await cs.save()
    return class_session_out(cs)


def class_session_out(cs: ClassSession) -> s.ClassSessionOut:
    return s.ClassSessionOut(
        id=cs.id,
        cohort_id=cs.cohort if isinstance(cs.cohort, int) else cs.cohort.id,
        scheduled_start=cs.scheduled_start,
        scheduled_end=cs.scheduled_end,
        started_at=cs.started_at,
        ended_at=cs.ended_at,
    )


async def list_class_sessions(cohort_id: int) -> list[s.ClassSessionOut]:
    await get_cohort(cohort_id)
    rows = (
        await ClassSession.objects()
        .where(ClassSession.cohort == cohort_id)
        .order_by(ClassSession.scheduled_start)
    )
    return [class_session_out(r) for r in rows]


async def cohorts_of(user: User) -> list[Cohort]:
    if user.role in (Role.admin.value, Role.operator.value):
        return await Cohort.objects().order_by(Cohort.first_day)
    ids = [
        r["cohort"]
        for r in await Enrolment.select(Enrolment.cohort).where(Enrolment.user == user.id)
    ]
    if user.role == Role.learner.value:
        # A learner's cohorts are those they hold a live join link for (guards.cohort_access).
        ids = [c for c, _ in await live_link_pairs((c, user.id) for c in ids)]
    if not ids:
        return []
    query = Cohort.objects().where(Cohort.id.is_in(ids))
    if user.role == Role.learner.value:
        query = query.where(Cohort.archived.eq(False))
    return await query.order_by(Cohort.first_day)


async def live_class_session(cohort_id: int) -> ClassSession | None:
    """The cohort's class session that is started and not ended, if any."""
    return (
        await ClassSession.objects()
        .where(
            (ClassSession.cohort == cohort_id)
            & ClassSession.started_at.is_not_null()
            & ClassSession.ended_at.is_null()
        )
        .first()
    )


async def start_live_session(cohort_id: int) -> ClassSession:
    """Start today's class session: the one scheduled today (cohort time), else a new one."""
    if await live_class_session(cohort_id) is not None:
        raise DomainError("session_already_started", "the class session is already started")
    cohort = await get_cohort(cohort_id)
    tz = zoneinfo.ZoneInfo(cohort.time_zone)
    now = utcnow()
    today = now.astimezone(tz).date()
    day_start = dt.datetime.combine(today, dt.time(), tz)
    scheduled = (
        await ClassSession.objects()
        .where(
            (ClassSession.cohort == cohort_id)
            & ClassSession.started_at.is_null()
            & (ClassSession.scheduled_start >= day_start)
            & (ClassSession.scheduled_start < day_start + dt.timedelta(days=1))
        )
        .order_by(ClassSession.scheduled_start)
        .first()
    )
    cs = scheduled or ClassSession(cohort=cohort_id)
    cs.started_at = now
    await cs.save()
    return cs


async def end_live_session(cohort_id: int) -> ClassSession:
    cs = await live_class_session(cohort_id)
    if cs is None:
        raise DomainError("session_not_started", "no class session is running")
    cs.ended_at = utcnow()
    await cs.save()
    return cs
