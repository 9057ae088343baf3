"""Polls, their choices and the learners' ballots."""

from piccolo.columns import JSON, Boolean, ForeignKey, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from appliance.accounts.tables import ClassSession, Cohort, User

__all__ = ["Ballot", "Poll", "PollChoice"]


class Poll(Table, tablename="estrade_poll"):
    id = Serial(primary_key=True)
    cohort = ForeignKey(references=Cohort, index=True)
    class_session = ForeignKey(references=ClassSession, null=True, default=None)
    created_by = ForeignKey(references=User)
    question = Text()
    multiple = Boolean(default=False)
    anonymous = Boolean(default=True)
    status = Varchar(length=8, default="draft")
    results_shown = Boolean(default=False)
    created_at = Timestamptz(default=TimestamptzNow())
    launched_at = Timestamptz(null=True, default=None)
    closed_at = Timestamptz(null=True, default=None)


class PollChoice(Table, tablename="estrade_poll_choice"):
    id = Serial(primary_key=True)
    poll = ForeignKey(references=Poll, index=True)
    position = Integer()
    label = Text()


class Ballot(Table, tablename="estrade_ballot"):
    """One ballot per learner and poll (unique index in the migrations); ``choices`` holds
    the chosen positions as a JSON list."""

    id = Serial(primary_key=True)
    poll = ForeignKey(references=Poll, index=True)
    user = ForeignKey(references=User)
    choices = JSON()
    created_at = Timestamptz(default=TimestamptzNow())
    updated_at = Timestamptz(default=TimestamptzNow())
