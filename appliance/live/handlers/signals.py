"""Signals: raised hands, quick reactions, low-bandwidth mode. Live state only (not stored)."""

from appliance.accounts.tables import Role
from appliance.auth.roles import LEARNERS, TAKES_PART
from appliance.errors import DomainError
from appliance.live import protocol as p
from appliance.live.dispatch import Context, Dispatcher


async def raise_hand(ctx: Context, msg: p.HandRaise) -> None:
    room, conn = ctx.room, ctx.conn
    if conn.user_id in room.hands:
        raise DomainError("hand_already_raised", "your hand is already raised")
    room.hands[conn.user_id] = conn.display_name
    room.publish(p.HandRaised(user_id=conn.user_id, display_name=conn.display_name))


async def lower_hand(ctx: Context, msg: p.HandLower) -> None:
    room, conn = ctx.room, ctx.conn
    target = msg.user_id or conn.user_id
    if conn.capacity is Role.learner and target != conn.user_id:
        raise DomainError("forbidden", "a learner lowers only their own hand", 403)
    if conn.capacity is not Role.learner and msg.user_id is None:
        raise DomainError("user_id_required", "say whose hand to lower (user_id)", 422)
    if room.hands.pop(target, None) is None:
        raise DomainError("hand_not_raised", "this hand is not raised")
    room.publish(p.HandLowered(user_id=target, by=conn.user_id))


async def react(ctx: Context, msg: p.Reaction) -> None:
    """The one place a reaction is counted (once per learner per window)."""
    ctx.room.react(ctx.conn.user_id, msg.kind)


async def low_bandwidth(ctx: Context, msg: p.SetLowBandwidth) -> None:
    room, conn = ctx.room, ctx.conn
    before = room.state_of(conn.user_id)
    conn.low_bandwidth = msg.on
    if room.state_of(conn.user_id) != before:
        room.presence_changed(conn)


def register(d: Dispatcher) -> None:
    d.register(p.HandRaise, LEARNERS, raise_hand)
    d.register(p.HandLower, TAKES_PART, lower_hand)
    d.register(p.Reaction, LEARNERS, react)
    d.register(p.SetLowBandwidth, frozenset(Role), low_bandwidth)
