"""Chat: send, delete, mute, unmute."""

from appliance.accounts.tables import Enrolment, Role
from appliance.auth.roles import RUNS_CLASS, TAKES_PART
from appliance.chat import services as chat
from appliance.errors import DomainError
from appliance.live import protocol as p
from appliance.live.dispatch import Context, Dispatcher


async def send(ctx: Context, msg: p.ChatSend) -> None:
    conn = ctx.conn
    text = chat.clean_text(msg.text, ctx.settings.chat_max_chars)
    await ctx.room.chat_writer.post(
        chat.Draft(
            author_id=conn.user_id,
            author_name=conn.display_name,
            text=text,
            question=msg.question,
        )
    )


async def delete(ctx: Context, msg: p.ChatDelete) -> None:
    room = ctx.room
    async with room.lock:
        await chat.delete_message(room.cohort_id, msg.message_id, ctx.conn.user_id)
        room.publish(p.ChatDeleted(message_id=msg.message_id))


async def _learner(cohort_id: int, user_id: int) -> None:
    ok = await Enrolment.exists().where(
        (Enrolment.cohort == cohort_id)
        & (Enrolment.user == user_id)
        & (Enrolment.role == Role.learner.value)
    )
    if not ok:
        raise DomainError("no_such_learner", f"user {user_id} is not a learner here", 404)


async def mute(ctx: Context, msg: p.ChatMute) -> None:
    room = ctx.room
    async with room.lock:
        await _learner(room.cohort_id, msg.user_id)
        try:
            await chat.mute(room.cohort_id, room.session_id, msg.user_id, ctx.conn.user_id)
        finally:
            room.chat_writer.forget_mutes()
        room.publish(p.ChatMuted(user_id=msg.user_id))


async def unmute(ctx: Context, msg: p.ChatUnmute) -> None:
    room = ctx.room
    async with room.lock:
        try:
            await chat.unmute(room.cohort_id, room.session_id, msg.user_id)
        finally:
            room.chat_writer.forget_mutes()
        room.publish(p.ChatUnmuted(user_id=msg.user_id))


def register(d: Dispatcher) -> None:
    d.register(p.ChatSend, TAKES_PART, send, rate_limited=True)
    d.register(p.ChatDelete, RUNS_CLASS, delete)
    d.register(p.ChatMute, RUNS_CLASS, mute)
    d.register(p.ChatUnmute, RUNS_CLASS, unmute)
