"""Chat messages (a question is a message with ``is_question``), +1 votes and mutes."""

from piccolo.columns import Boolean, ForeignKey, Serial, Text, Timestamptz
from piccolo.columns.defaults.timestamptz import TimestamptzNow
from piccolo.table import Table

from appliance.accounts.tables import ClassSession, Cohort, User

__all__ = ["ChatMessage", "ChatMute", "QuestionVote"]


class ChatMessage(Table, tablename="estrade_chat_message"):
    id = Serial(primary_key=True)
    cohort = ForeignKey(references=Cohort, index=True)
    class_session = ForeignKey(references=ClassSession, null=True, default=None)
    author = ForeignKey(references=User)
    text = Text()
    is_question = Boolean(default=False)
    created_at = Timestamptz(default=TimestamptzNow())
    deleted_at = Timestamptz(null=True, default=None)
    deleted_by = ForeignKey(references=User, null=True, default=None)
    answered_at = Timestamptz(null=True, default=None)


class QuestionVote(Table, tablename="estrade_question_vote"):
    """One +1 per learner and question (unique index in the migrations)."""

    id = Serial(primary_key=True)
    message = ForeignKey(references=ChatMessage, index=True)
    user = ForeignKey(references=User)
    created_at = Timestamptz(default=TimestamptzNow())


class ChatMute(Table, tablename="estrade_chat_mute"):
    """A learner muted in chat for one class session (``class_session`` null: before it starts)."""

    id = Serial(primary_key=True)
    cohort = ForeignKey(references=Cohort, index=True)
    class_session = ForeignKey(references=ClassSession, null=True, default=None)
    user = ForeignKey(references=User)
    muted_by = ForeignKey(references=User)
    created_at = Timestamptz(default=TimestamptzNow())
    lifted_at = Timestamptz(null=True, default=None)
