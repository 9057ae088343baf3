"""Request and response bodies of the accounts API (msgspec Structs, unknown fields refused)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

import msgspec

from appliance.ids import Id
from appliance.text import NO_CONTROL

__all__ = [
    "ClassSessionIn",
    "ClassSessionOut",
    "CohortDetail",
    "CohortIn",
    "CohortOut",
    "CohortPatch",
    "EnrolmentIn",
    "ImportReport",
    "ImportRow",
    "IssuedLink",
    "LinkIssueIn",
    "LinkStatus",
    "Member",
    "UserIn",
    "UserOut",
    "UserPatch",
]

Email = Annotated[
    str,
    msgspec.Meta(
        min_length=3,
        max_length=254,
        pattern=r"^[^@\s<>\"\x00-\x1f\x7f]+@[^@\s<>\"\x00-\x1f\x7f]+\.[^@\s<>\"\x00-\x1f\x7f]+$",
    ),
]
Name = Annotated[str, msgspec.Meta(min_length=1, max_length=120, pattern=NO_CONTROL)]
Locale = Literal["fr", "en"]
RoleName = Literal["admin", "operator", "trainer", "learner"]
Password = Annotated[str, msgspec.Meta(min_length=10, max_length=200)]
TimeZone = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class Base(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class UserIn(Base):
    email: Email
    display_name: Name
    role: RoleName
    locale: Locale = "fr"
    password: Password | None = None


class UserPatch(Base):
    email: Email | None = None
    display_name: Name | None = None
    locale: Locale | None = None
    password: Password | None = None
    active: bool | None = None


class UserOut(Base):
    id: int
    email: str
    display_name: str
    role: RoleName
    locale: Locale
    active: bool
    has_password: bool


class CohortIn(Base):
    name: Name
    first_day: dt.date
    last_day: dt.date
    time_zone: TimeZone = "Europe/Paris"


class CohortPatch(Base):
    name: Name | None = None
    first_day: dt.date | None = None
    last_day: dt.date | None = None
    time_zone: TimeZone | None = None
    archived: bool | None = None


class CohortOut(Base):
    id: int
    name: str
    first_day: dt.date
    last_day: dt.date
    time_zone: str
    archived: bool


class Member(Base):
    id: int
    display_name: str
    email: str
    role: RoleName


class CohortDetail(CohortOut):
    trainers: list[Member]
    learners: list[Member]


class EnrolmentIn(Base):
    user_id: Id


class ImportRow(Base):
    row: int
    email: str
    display_name: str
    status: Literal["created", "existing", "already_enrolled", "error"]
    error: str | None = None


class ImportReport(Base):
    imported: bool
    created: int
    enrolled: int
    errors: int
    rows: list[ImportRow]


MAX_LINK_HOURS = 24 * 366


class LinkIssueIn(Base):
    """Optional body of a link issue: a lifetime in hours instead of the configured days."""

    hours: Annotated[int, msgspec.Meta(ge=1, le=MAX_LINK_HOURS)] | None = None


class IssuedLink(Base):
    user_id: int
    cohort_id: int
    url: str
    expires_at: dt.datetime


class LinkStatus(Base):
    user_id: int
    display_name: str
    email: str
    status: Literal["none", "active", "expired", "revoked"]
    expires_at: dt.datetime | None


class ClassSessionIn(Base):
    scheduled_start: dt.datetime
    scheduled_end: dt.datetime


class ClassSessionOut(Base):
    id: int
    cohort_id: int
    scheduled_start: dt.datetime | None
    scheduled_end: dt.datetime | None
    started_at: dt.datetime | None
    ended_at: dt.datetime | None
