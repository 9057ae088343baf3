"""Polls: create, launch, vote, change a vote, close, show results."""

from appliance.auth.roles import LEARNERS, RUNS_CLASS
from appliance.live import protocol as p
from appliance.live.dispatch import Context, Dispatcher
from appliance.live.room import CohortRoom
from appliance.polls import services as polls
from appliance.polls.schemas import PollIn


async def _publish_results(room: CohortRoom, poll_id: int, *, everyone: bool) -> None:
    staff = await polls.results(room.cohort_id, poll_id, with_names=True)
    room.publish(p.PollResultsEvent(results=staff), staff_only=True)
    if everyone:
        public = await polls.results(room.cohort_id, poll_id, with_names=False)
        room.publish(p.PollResultsEvent(results=public))


async def create(ctx: Context, msg: p.PollCreate) -> None:
    room = ctx.room
    data = PollIn(
        question=msg.question, choices=msg.choices, multiple=msg.multiple, anonymous=msg.anonymous
    )
    async with room.lock:
        poll = await polls.create_poll(room.cohort_id, ctx.conn.user_id, data)
        room.publish(p.PollCreated(poll=poll), staff_only=True)


async def launch(ctx: Context, msg: p.PollLaunch) -> None:
    room = ctx.room
    async with room.lock:
        poll = await polls.launch_poll(room.cohort_id, msg.poll_id, room.session_id)
        room.live_poll_id = poll.id
        room.publish(p.PollLaunched(poll=poll))
        await _publish_results(room, poll.id, everyone=False)


async def _vote(ctx: Context, poll_id: int, choices: list[int], change: bool) -> None:
    room = ctx.room
    async with room.lock:
        await polls.vote(room.cohort_id, poll_id, ctx.conn.user_id, choices, change=change)
        await _publish_results(room, poll_id, everyone=False)


async def vote(ctx: Context, msg: p.PollVote) -> None:
    await _vote(ctx, msg.poll_id, msg.choices, change=False)


async def change_vote(ctx: Context, msg: p.PollChangeVote) -> None:
    await _vote(ctx, msg.poll_id, msg.choices, change=True)


async def close(ctx: Context, msg: p.PollClose) -> None:
    room = ctx.room
    async with room.lock:
        poll = await polls.close_poll(room.cohort_id, msg.poll_id, msg.show_results)
        room.live_poll_id = None
        room.publish(p.PollClosed(poll=poll))
        await _publish_results(room, poll.id, everyone=msg.show_results)


async def show_results(ctx: Context, msg: p.PollShowResults) -> None:
    room = ctx.room
    async with room.lock:
        poll = await polls.show_results(room.cohort_id, msg.poll_id)
        room.publish(p.PollClosed(poll=poll))
        await _publish_results(room, poll.id, everyone=True)


def register(d: Dispatcher) -> None:
    d.register(p.PollCreate, RUNS_CLASS, create)
    d.register(p.PollLaunch, RUNS_CLASS, launch)
    d.register(p.PollVote, LEARNERS, vote)
    d.register(p.PollChangeVote, LEARNERS, change_vote)
    d.register(p.PollClose, RUNS_CLASS, close)
    d.register(p.PollShowResults, RUNS_CLASS, show_results)
