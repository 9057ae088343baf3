"""All rules and queries of the chat: messages, questions, +1 votes, mutes."""

from __future__ import annotations

import unicodedata
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from appliance import clock
from appliance.chat.schemas import ChatMessageOut
from appliance.chat.tables import ChatMessage, ChatMute, QuestionVote
from appliance.errors import DomainError

__all__ = [
    "Draft",
    "answer_question",
    "delete_message",
    "is_muted",
    "mute",
    "muted_users",
    "open_questions",
    "post_messages",
    "recent_messages",
    "unmute",
    "vote_question",
]


def clean_text(text: str, max_chars: int) -> str:
    """Strip, refuse empty or too long text, drop control characters (keep newlines, tabs)."""
    text = "".join(
        c for c in text if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf", "Cs")
    ).strip()
    if not text:
        raise DomainError("empty_message", "the message is empty", 422)
    if len(text) > max_chars:
        raise DomainError(
            "message_too_long",
            f"a message has at most {max_chars} characters (this one has {len(text)})",
            422,
            limit=max_chars,
        )
    return text


async def is_muted(cohort_id: int, session_id: int | None, user_id: int) -> bool:
    where = (
        (ChatMute.cohort == cohort_id) & (ChatMute.user == user_id) & ChatMute.lifted_at.is_null()
    )
    if session_id is None:
        where &= ChatMute.class_session.is_null()
    else:
        where &= ChatMute.class_session == session_id
    return bool(await ChatMute.exists().where(where))


@dataclass(frozen=True, slots=True)
class Draft:
    """A chat message to store, its text already cleaned (:func:`clean_text`)."""

    author_id: int
    author_name: str
    text: str
    question: bool


async def muted_users(
    cohort_id: int, session_id: int | None, among: Collection[int] | None = None
) -> frozenset[int]:
    """Who is muted in the cohort's chat for ``session_id`` (only those ``among``, if given)."""
    where = (ChatMute.cohort == cohort_id) & ChatMute.lifted_at.is_null()
    if among is not None:
        where &= ChatMute.user.is_in(list(among))
    if session_id is None:
        where &= ChatMute.class_session.is_null()
    else:
        where &= ChatMute.class_session == session_id
    return frozenset(r["user"] for r in await ChatMute.select(ChatMute.user).where(where))


async def post_messages(
    cohort_id: int,
    session_id: int | None,
    drafts: list[Draft],
    *,
    muted: Collection[int] | None = None,
) -> list[ChatMessageOut | DomainError]:
    """Store chat messages and questions, in order: the one place a chat message is stored.

    One INSERT stores the drafts whose authors are not muted, so a busy room pays one commit
    per batch rather than per message. ``muted``: the muted users, when the caller knows them
    (the live room keeps them: live/chat_writer.py); otherwise one query reads them first.
    Returns, per draft, the stored message or the :class:`DomainError` that refused it (its
    author is muted).
    """
    # No transaction: on SQLite a read-then-write transaction fails at once ("database is
    # locked") when another connection writes meanwhile, and BEGIN and COMMIT would cost two
    # more round trips per batch. Mutes change under the room lock, which the caller holds, so
    # the read stays true; the INSERT is atomic (and durable when it returns) on its own.
    if muted is None:
        muted = await muted_users(cohort_id, session_id, among={d.author_id for d in drafts})
    now = clock.utcnow()
    rows = [
        ChatMessage(
            cohort=cohort_id,
            class_session=session_id,
            author=d.author_id,
            text=d.text,
            is_question=d.question,
            created_at=now,
        )
        for d in drafts
        if d.author_id not in muted
    ]
    if rows:
        await ChatMessage.insert(*rows)  # sets each row's id
    stored = iter(rows)
    out: list[ChatMessageOut | DomainError] = []
    for d in drafts:
        if d.author_id in muted:
            out.append(
                DomainError("muted", "the trainer has muted you in chat for this session", 403)
            )
            continue
        row = next(stored)
        out.append(
            ChatMessageOut(
                id=row.id,
                author_id=d.author_id,
                author_name=d.author_name,
                text=d.text,
                question=d.question,
                created_at=now,
            )
        )
    return out


async def _message(cohort_id: int, message_id: int) -> ChatMessage:
    msg = (
        await ChatMessage.objects()
        .where(
            (ChatMessage.id == message_id)
            & (ChatMessage.cohort == cohort_id)
            & ChatMessage.deleted_at.is_null()
        )
        .first()
    )
    if msg is None:
        raise DomainError("no_such_message", f"no message {message_id} in this cohort", 404)
    return msg


async def delete_message(cohort_id: int, message_id: int, by: int) -> None:
    await _message(cohort_id, message_id)
    await ChatMessage.update(
        {ChatMessage.deleted_at: clock.utcnow(), ChatMessage.deleted_by: by}
    ).where(ChatMessage.id == message_id)


async def mute(cohort_id: int, session_id: int | None, user_id: int, by: int) -> None:
    if await is_muted(cohort_id, session_id, user_id):
        raise DomainError("already_muted", "this learner is already muted")
    await ChatMute(
        cohort=cohort_id,
        class_session=session_id,
        user=user_id,
        muted_by=by,
        created_at=clock.utcnow(),
    ).save()


async def unmute(cohort_id: int, session_id: int | None, user_id: int) -> None:
    if not await is_muted(cohort_id, session_id, user_id):
        raise DomainError("not_muted", "this learner is not muted")
    where = (
        (ChatMute.cohort == cohort_id) & (ChatMute.user == user_id) & ChatMute.lifted_at.is_null()
    )
    await ChatMute.update({ChatMute.lifted_at: clock.utcnow()}).where(where)


async def vote_question(cohort_id: int, message_id: int, user_id: int) -> int:
    """A learner's +1 on someone else's open question; returns the new count of votes."""
    msg = await _message(cohort_id, message_id)
    if not msg.is_question:
        raise DomainError("not_a_question", f"message {message_id} is not a question", 422)
    if msg.author == user_id:
        raise DomainError("own_question", "you cannot +1 your own question", 422)
    if msg.answered_at is not None:
        raise DomainError("question_answered", "this question is already answered")
    voted = await QuestionVote.exists().where(
        (QuestionVote.message == message_id) & (QuestionVote.user == user_id)
    )
    if voted:
        raise DomainError("already_voted", "you already gave this question your +1")
    await QuestionVote(message=message_id, user=user_id, created_at=clock.utcnow()).save()
    return int(await QuestionVote.count().where(QuestionVote.message == message_id))


async def answer_question(cohort_id: int, message_id: int) -> None:
    msg = await _message(cohort_id, message_id)
    if not msg.is_question:
        raise DomainError("not_a_question", f"message {message_id} is not a question", 422)
    if msg.answered_at is not None:
        raise DomainError("question_answered", "this question is already answered")
    await ChatMessage.update({ChatMessage.answered_at: clock.utcnow()}).where(
        ChatMessage.id == message_id
    )


async def _out(rows: list[dict[str, Any]]) -> list[ChatMessageOut]:
    ids = [r["id"] for r in rows if r["is_question"]]
    votes: dict[int, int] = {}
    if ids:
        for v in await QuestionVote.select(QuestionVote.message).where(
            QuestionVote.message.is_in(ids)
        ):
            votes[v["message"]] = votes.get(v["message"], 0) + 1
    return [
        ChatMessageOut(
            id=r["id"],
            author_id=r["author"],
            author_name=r["author.display_name"],
            text=r["text"],
            question=r["is_question"],
            created_at=r["created_at"],
            votes=votes.get(r["id"], 0),
            answered=r["answered_at"] is not None,
        )
        for r in rows
    ]


_COLUMNS = (
    ChatMessage.id,
    ChatMessage.author,
    ChatMessage.author.display_name,
    ChatMessage.text,
    ChatMessage.is_question,
    ChatMessage.created_at,
    ChatMessage.answered_at,
)


async def recent_messages(cohort_id: int, limit: int) -> list[ChatMessageOut]:
    """The last ``limit`` messages still shown, oldest first."""
    rows = (
        await ChatMessage.select(*_COLUMNS)
        .where((ChatMessage.cohort == cohort_id) & ChatMessage.deleted_at.is_null())
        .order_by(ChatMessage.id, ascending=False)
        .limit(limit)
    )
    return await _out(list(reversed(rows)))


async def open_questions(cohort_id: int) -> list[ChatMessageOut]:
    """Unanswered questions, most +1s first, then oldest first."""
    rows = await ChatMessage.select(*_COLUMNS).where(
        (ChatMessage.cohort == cohort_id)
        & ChatMessage.deleted_at.is_null()
        & ChatMessage.is_question.eq(True)
        & ChatMessage.answered_at.is_null()
    )
    out = await _out(rows)
    return sorted(out, key=lambda m: (-m.votes, m.created_at, m.id))
