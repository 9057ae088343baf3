"""Enrolments: who is in a cohort, as trainer or learner (one by one or from a CSV file)."""

from __future__ import annotations

import csv
import io

import msgspec

from appliance import clock
from appliance.accounts import schemas as s
from appliance.accounts.services.cohorts import cohort_out, get_cohort
from appliance.accounts.services.users import normalise_email
from appliance.accounts.tables import Cohort, Enrolment, JoinLink, Role, User
from appliance.db import write_transaction
from appliance.errors import conflict, field_error, is_blank, not_found
from appliance.text import has_control

__all__ = [
    "MAX_IMPORT_ROWS",
    "cohort_detail",
    "enrol",
    "import_learners",
    "members",
    "require_learner",
    "unenrol",
]

MAX_IMPORT_ROWS = 5000


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
        await JoinLink.update({JoinLink.revoked_at: clock.utcnow()}).where(
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
        email = normalise_email(raw_email)

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


async def require_learner(cohort_id: int, user_id: int) -> None:
    """A 404 unless ``user_id`` is enrolled in ``cohort_id`` as a learner."""
    await get_cohort(cohort_id)
    ok = await Enrolment.exists().where(
        (Enrolment.cohort == cohort_id)
        & (Enrolment.user == user_id)
        & (Enrolment.role == Role.learner.value)
    )
    if not ok:
        raise not_found("this user is not a learner of this cohort")
