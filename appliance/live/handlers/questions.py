"""Questions: +1 votes (learners) and marking answered (trainers)."""

from appliance.auth.roles import LEARNERS, RUNS_CLASS
from appliance.chat import services as chat
from appliance.live import protocol as p
from appliance.live.dispatch import Context, Dispatcher


async def vote(ctx: Context, msg: p.QuestionVote) -> None:
    room = ctx.room
    async with room.lock:
        votes = await chat.vote_question(room.cohort_id, msg.message_id, ctx.conn.user_id)
        room.publish(p.QuestionVoted(message_id=msg.message_id, votes=votes))


async def answer(ctx: Context, msg: p.QuestionAnswer) -> None:
    room = ctx.room
    async with room.lock:
        await chat.answer_question(room.cohort_id, msg.message_id)
        room.publish(p.QuestionAnswered(message_id=msg.message_id))


def register(d: Dispatcher) -> None:
    d.register(p.QuestionVote, LEARNERS, vote)
    d.register(p.QuestionAnswer, RUNS_CLASS, answer)
