"""Class session start and end; ping and heartbeat."""

from appliance.accounts import services as accounts
from appliance.auth.roles import EVERYONE, RUNS_CLASS
from appliance.live import protocol as p
from appliance.live.dispatch import Context, Dispatcher


async def ping(ctx: Context, msg: p.Ping) -> None:
    ctx.reply(p.Pong(ref=msg.ref))


async def heartbeat(ctx: Context, msg: p.HeartbeatIn) -> None:
    """Nothing to do: any frame keeps the socket alive (see ``socket._receive_loop``)."""


async def start(ctx: Context, msg: p.SessionStart) -> None:
    room = ctx.room
    async with room.lock:
        cs = await accounts.start_live_session(room.cohort_id)
        room.session = p.SessionInfo(class_session_id=cs.id, started_at=cs.started_at)
        room.publish(p.SessionStarted(session=room.session))


async def end(ctx: Context, msg: p.SessionEnd) -> None:
    room = ctx.room
    async with room.lock:
        cs = await accounts.end_live_session(room.cohort_id)
        room.session = None
        room.publish(p.SessionEnded(class_session_id=cs.id, ended_at=cs.ended_at))


def register(d: Dispatcher) -> None:
    d.register(p.Ping, EVERYONE, ping)
    d.register(p.HeartbeatIn, EVERYONE, heartbeat)
    d.register(p.SessionStart, RUNS_CLASS, start)
    d.register(p.SessionEnd, RUNS_CLASS, end)
