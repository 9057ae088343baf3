"""Users, cohorts, enrolments, class sessions and personal join links."""

from enum import StrEnum

from piccolo.columns import (
    Boolean,
    Date,
    ForeignKey,
    Serial,
    Timestamptz,
    Varchar,
)
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

__all__ = ["ClassSession", "Cohort", "Enrolment", "JoinLink", "Role", "User"]


class Role(StrEnum):
    admin = "admin"
    operator = "operator"
    trainer = "trainer"
    learner = "learner"


class User(Table, tablename="estrade_user"):
    id = Serial(primary_key=True)
    email = Varchar(length=254, unique=True, index=True)
    display_name = Varchar(length=120)
    role = Varchar(length=16, choices=Role)
    locale = Varchar(length=2, default="fr")
    password_hash = Varchar(length=200, null=True, default=None)
    active = Boolean(default=True)
    created_at = Timestamptz(default=TimestamptzNow())


class Cohort(Table, tablename="estrade_cohort"):
    id = Serial(primary_key=True)
    name = Varchar(length=120)
    first_day = Date()
    last_day = Date()
    time_zone = Varchar(length=64, default="Europe/Paris")
    archived = Boolean(default=False)
    created_at = Timestamptz(default=TimestamptzNow())


class Enrolment(Table, tablename="estrade_enrolment"):
    """A user's membership of a cohort, as trainer or learner (unique per cohort and user,
    by an index created in the initial migration)."""

    id = Serial(primary_key=True)
    cohort = ForeignKey(references=Cohort, index=True)
    user = ForeignKey(references=User, index=True)
    role = Varchar(length=16)
    created_at = Timestamptz(default=TimestamptzNow())


class ClassSession(Table, tablename="estrade_class_session"):
    """One live session of a cohort (usually one per day)."""

    id = Serial(primary_key=True)
    cohort = ForeignKey(references=Cohort, index=True)
    scheduled_start = Timestamptz(null=True, default=None)
    scheduled_end = Timestamptz(null=True, default=None)
    started_at = Timestamptz(null=True, default=None)
    ended_at = Timestamptz(null=True, default=None)


class JoinLink(Table, tablename="estrade_join_link"):
    """A learner's personal link into a cohort. Only the SHA-256 of the secret is stored."""

    id = Serial(primary_key=True)
    user = ForeignKey(references=User, index=True)
    cohort = ForeignKey(references=Cohort, index=True)
    secret_hash = Varchar(length=64, unique=True, index=True)
    created_at = Timestamptz(default=TimestamptzNow())
    expires_at = Timestamptz()
    revoked_at = Timestamptz(null=True, default=None)
