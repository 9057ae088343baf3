"""Attendance: signing windows (trainers) and signatures (learners)."""

from appliance.attendance import services as attendance
from appliance.auth.roles import LEARNERS, RUNS_CLASS
from appliance.live import protocol as p
from appliance.live.dispatch import Context, Dispatcher


async def open_window(ctx: Context, msg: p.SigningOpen) -> None:
    room = ctx.room
    async with room.lock:
        window = await attendance.open_window(
            room.cohort_id,
            session_id=room.session_id,
            half=msg.half,
            minutes=msg.minutes or ctx.settings.signing_window_minutes,
            by=ctx.conn.user_id,
        )
        room.set_signing(window)
        room.publish(p.SigningOpened(window=window))


async def close_window(ctx: Context, msg: p.SigningClose) -> None:
    room = ctx.room
    async with room.lock:
        window = await attendance.close_window(room.cohort_id, by=ctx.conn.user_id)
        room.signing = None
        room.publish(p.SigningClosed(window_id=window.id))


async def sign(ctx: Context, msg: p.AttendanceSign) -> None:
    room, conn = ctx.room, ctx.conn
    async with room.lock:
        signed_at = await attendance.sign(
            room.cohort_id,
            session_id=room.session_id,
            user_id=conn.user_id,
            address=conn.address,
            user_agent=conn.user_agent,
        )
        room.publish(p.AttendanceSigned(user_id=conn.user_id, signed_at=signed_at), staff_only=True)


def register(d: Dispatcher) -> None:
    d.register(p.SigningOpen, RUNS_CLASS, open_window)
    d.register(p.SigningClose, RUNS_CLASS, close_window)
    d.register(p.AttendanceSign, LEARNERS, sign)
