"""The classroom socket: ``/ws/cohorts/{cohort_id}``.

Authenticated by the session cookie (SessionAuth covers websockets); cohort membership is
checked on connect with ``cohort_access`` and the sender's capacity on every message.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from collections.abc import Callable
from typing import Any

import msgspec
from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from litestar.params import FromPath

from appliance.accounts.tables import Role, User
from appliance.attendance import services as attendance
from appliance.auth.guards import cohort_access
from appliance.auth.origin import same_origin
from appliance.auth.roles import EVERYONE, RATE_LIMITED
from appliance.auth.sessions import SESSION_COOKIE
from appliance.chat import services as chat
from appliance.errors import DomainError
from appliance.hosts import COHORT_CLAIMED
from appliance.live import protocol as p
from appliance.live.access import dead_link_close, end_at_session_expiry
from appliance.live.dispatch import Context
from appliance.live.room import CohortRoom, Conn, RoomRegistry, end_connection, seq_prefix
from appliance.polls import services as polls
from appliance.state import app_state

__all__ = ["classroom_socket"]

log = logging.getLogger("estrade.live")
_encoder = msgspec.json.Encoder()
DIRECT = seq_prefix(0)
CLOSE = b"\xff" * 8
"""Queued (by identity) to make the socket's sender close it with ``Conn.closing``."""
IDLE = 4408
"""Close code of a socket that sent nothing for ``ws_idle_timeout_s`` (a dead link)."""


class _RefOnly(msgspec.Struct):
    ref: str | None = None


_ref_decoder = msgspec.json.Decoder(_RefOnly)


def _refusal(exc: DomainError, tag: str, ref: str | None) -> p.Reply:
    """The one translation of a service's refusal for the socket: ``error`` with its code
    (``forbidden`` when the rule is about who may send it)."""
    if exc.code == "forbidden":
        return p.Forbidden(message_type=tag, detail=exc.detail, ref=ref)
    return p.Error(code=exc.code, detail=exc.detail, ref=ref, limit=exc.limit)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _session_key(socket: WebSocket[Any, Any, Any]) -> str | None:
    """A digest of the session cookie: the per-session socket limit, without keeping the id."""
    sid = socket.cookies.get(SESSION_COOKIE)
    return hashlib.sha256(sid.encode()).hexdigest()[:32] if sid else None


def _link_of(socket: WebSocket[Any, Any, Any]) -> int | None:
    session = socket.scope.get("session")
    link = session.get("link") if isinstance(session, dict) else None
    return link if isinstance(link, int) else None


async def _welcome(room: CohortRoom, conn: Conn, resumed: bool) -> p.Welcome:
    """The state a client starts from; built under the room lock so ``seq`` is exact."""
    staff = conn.is_staff
    w = p.Welcome(
        protocol=p.PROTOCOL_VERSION,
        epoch=room.epoch,
        seq=room.seq,
        resumed=resumed,
        you=room.participant(conn),
        cohort_id=room.cohort_id,
        staff=staff,
        session=room.session,
        participants=room.participants(),
        signing=room.signing,
        cohort_name=room.cohort_name,
        heartbeat_s=room.settings.ws_idle_timeout_s / 3,
    )
    if resumed:
        return w
    cid = room.cohort_id
    w.chat = await chat.recent_messages(cid, room.settings.chat_history)
    w.questions = await chat.open_questions(cid)
    if room.live_poll_id is not None:
        w.live_poll = await polls.live_poll(cid)
        if staff:
            w.results = await polls.results(cid, room.live_poll_id, with_names=True)
        else:
            w.my_ballot = await polls.ballot_of(room.live_poll_id, conn.user_id)
    if staff:
        w.polls = await polls.list_polls(cid)
        w.reactions = room.reaction_counts()
    elif room.signing is not None:
        w.signed = await attendance.has_signed(cid, room.signing.id, conn.user_id)
    w.muted = await chat.is_muted(cid, room.session_id, conn.user_id)
    return w


async def _record(registry: RoomRegistry, room: CohortRoom, conn: Conn, connected: bool) -> None:
    try:
        if connected:
            await registry.attendance.connected(room, conn)
        else:
            await registry.attendance.disconnected(room, conn)
    except Exception:  # attendance must not take the class down; the log says what failed
        log.exception("could not record %s of user %s", connected, conn.user_id)


async def _handle(
    registry: RoomRegistry, room: CohortRoom, conn: Conn, data: str | bytes
) -> list[p.Reply] | None:
    """Decode and run one frame; returns the direct replies (None: malformed frame)."""
    settings = registry.settings
    try:
        msg = registry.dispatcher.decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        # RecursionError: JSON nested deeper than msgspec's limit (a hostile frame).
        conn.malformed += 1
        if not isinstance(exc, msgspec.ValidationError):  # ValidationError is a DecodeError
            return [p.Error(code="malformed", detail=f"not JSON: {exc}")]
        try:  # valid JSON, wrong shape: echo the ref so the client knows which message failed
            ref = _ref_decoder.decode(data).ref
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            ref = None
        return [p.Error(code="invalid_message", detail=str(exc), ref=ref)]
    tag = p.tag_of(type(msg))
    route = registry.dispatcher.routes[tag]
    if conn.capacity not in route.roles:
        return [
            p.Forbidden(
                message_type=tag,
                detail=f"a {conn.capacity.value} may not send {tag}",
                ref=msg.ref,
            )
        ]
    # `heartbeat` is exempt: the page answers the server's own beat (one per beat, no reply, no
    # fan-out), and refusing it would drop a live learner as a dead link.
    if conn.capacity in RATE_LIMITED and tag != "heartbeat":
        # Every message type of a learner (and an operator) is limited per user, whatever
        # socket it comes from; chat has its own, stricter limit on top.
        key, chat_key = f"{conn.user_id}:{tag}", str(conn.user_id)
        chat_limited = route.rate_limited and conn.capacity is Role.learner
        wait = room.message_limiter.retry_after(key) or (
            room.chat_limiter.retry_after(chat_key) if chat_limited else 0
        )
        if wait:
            return [p.RateLimited(message_type=tag, retry_after=wait, ref=msg.ref)]
        room.message_limiter.hit(key)
        if chat_limited:
            room.chat_limiter.hit(chat_key)
    ctx = Context(room=room, conn=conn, settings=settings)
    try:
        await route.handler(ctx, msg)
    except DomainError as exc:
        return [_refusal(exc, tag, msg.ref)]
    except Exception as exc:
        registry.failures.log(tag, exc)
        return [p.Error(code="server_error", detail="the server could not do this", ref=msg.ref)]
    registry.count(msg, room.cohort_id)
    registry.dispatcher.accepted(ctx, msg)
    if msg.ref is not None and tag not in ("ping", "heartbeat"):
        ctx.replies.append(p.Ack(ref=msg.ref))
    return ctx.replies


@websocket("/ws/cohorts/{cohort_id:int}", guards=[same_origin])
async def classroom_socket(socket: WebSocket[User, Any, Any], cohort_id: FromPath[int]) -> None:
    """One participant's classroom connection (protocol: docs/protocol.md)."""
    registry = app_state(socket).live
    checked_at = registry.access_changes  # changes after this are applied once it joins
    try:
        access = await cohort_access(socket.user, cohort_id, EVERYONE)
    except DomainError as exc:
        # Accept then close, so the client reads why (4404: no such cohort for you; 4401 when
        # the learner's link died meanwhile).
        code, reason = await dead_link_close(_link_of(socket)) or (
            4000 + exc.status_code,
            exc.detail,
        )
        await socket.accept()
        await socket.close(code=code, reason=reason)
        return
    await socket.accept()
    opened_here = cohort_id not in registry.rooms
    room = await registry.room(cohort_id)
    if opened_here and app_state(socket).settings.redis_url:  # several hosts (hosts.py)
        socket.app.emit(COHORT_CLAIMED, cohort_id=cohort_id)
    room.cohort_name = access.cohort.name  # kept fresh by every connect, for welcome
    user = access.user
    conn = Conn(
        id=secrets.token_hex(8),
        user_id=user.id,
        display_name=user.display_name,
        capacity=access.capacity,
        address=socket.client.host if socket.client else None,
        user_agent=socket.headers.get("user-agent"),
        link_id=_link_of(socket),
        session_key=_session_key(socket),
    )
    epoch = socket.query_params.get("epoch")
    last_seq = _int(socket.query_params.get("last_seq"))
    channels = [room.channel, room.staff_channel] if conn.is_staff else [room.channel]

    gauge = registry.metrics.websocket_open() if registry.metrics else contextlib.nullcontext()
    with gauge:
        await _serve(socket, registry, room, conn, channels, epoch, last_seq, checked_at)


async def _serve(
    socket: WebSocket[User, Any, Any],
    registry: RoomRegistry,
    room: CohortRoom,
    conn: Conn,
    channels: list[str],
    epoch: str | None,
    last_seq: int | None,
    checked_at: int,
) -> None:
    async with registry.channels.start_subscription(channels) as subscriber:
        await _record(registry, room, conn, connected=True)
        async with room.lock:
            room.add(conn)
            registry.catch_up(room, conn, checked_at)
            registry.admit(room, conn)
            replay = None
            if epoch is not None and last_seq is not None:
                replay = room.replay(last_seq, staff=conn.is_staff) if epoch == room.epoch else None
            welcome = await _welcome(room, conn, resumed=replay is not None)
        expiry: asyncio.TimerHandle | None = None
        try:
            if epoch is not None and replay is None:
                why = "server restarted" if epoch != room.epoch else "too many events missed"
                await socket.send_data(_encoder.encode(p.Reload(reason=why)))
            await socket.send_data(_encoder.encode(welcome))
            for payload in replay or []:
                await socket.send_data(payload[8:])
            snapshot_seq = welcome.seq

            # One sender per socket: channel events and direct replies share the subscriber's
            # queue, so frames never interleave and events already replayed are skipped.
            def direct(reply: p.Reply) -> None:
                subscriber.put_nowait(DIRECT + _encoder.encode(reply))

            conn.send_direct = direct
            for joined in registry.join_hooks:
                try:
                    joined(room, conn)
                except Exception:
                    log.exception("join hook %r failed", joined)

            # Closing goes through the same queue: frames queued before it are sent first.
            def end() -> None:
                subscriber.put_nowait(CLOSE)

            conn.end = end
            if conn.closing is not None:
                end()
            expiry = end_at_session_expiry(conn, socket.scope.get("session"))

            async def on_event(payload: bytes) -> None:
                if payload is CLOSE and conn.closing is not None:
                    code, reason = conn.closing
                    with contextlib.suppress(Exception):
                        await socket.close(code=code, reason=reason)
                    return
                seq = int.from_bytes(payload[:8], "big")
                if seq and seq <= snapshot_seq:
                    return
                # A socket that went away: the receive loop sees the disconnect and cleans up.
                with contextlib.suppress(Exception):
                    await socket.send_data(payload[8:])

            async with subscriber.run_in_background(on_event, join=False):
                await _receive_loop(socket, registry, room, conn, direct)
        except WebSocketDisconnect:
            pass
        finally:
            if expiry is not None:
                expiry.cancel()
            conn.send_direct = conn.end = None
            async with room.lock:
                room.remove(conn)
                registry.release(room, conn)
            for left in registry.leave_hooks:
                try:
                    await left(room, conn)
                except Exception:
                    log.exception("leave hook %r failed", left)
            await _record(registry, room, conn, connected=False)


_closing: set[asyncio.Task[None]] = set()


def _close_later(socket: WebSocket[Any, Any, Any], code: int, reason: str) -> None:
    async def close() -> None:
        with contextlib.suppress(Exception):
            await socket.close(code=code, reason=reason)

    task = asyncio.get_running_loop().create_task(close())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


async def _receive_loop(
    socket: WebSocket[Any, Any, Any],
    registry: RoomRegistry,
    room: CohortRoom,
    conn: Conn,
    send: Callable[[p.Reply], None],
) -> None:
    """Handle ``conn``'s frames until it closes; replies and heartbeats go through ``send``."""
    settings = registry.settings
    loop = asyncio.get_running_loop()
    # Heartbeat: a link that dies silently (a phone losing its network) sends no close; the
    # server hears nothing for ws_idle_timeout_s, closes it and the learner is recorded as gone.
    # Every third of that it sends `heartbeat`, which the client answers, so a live but quiet
    # page is never dropped and the page itself notices a dead server (docs/protocol.md).
    idle = settings.ws_idle_timeout_s
    beat = idle / 3
    heard = loop.time()
    next_beat = heard + beat
    while True:
        try:
            async with asyncio.timeout_at(min(next_beat, heard + idle)):
                event = await socket.receive()
        except TimeoutError:
            now = loop.time()
            if now - heard >= idle:
                log.info(
                    "socket %s of user %s silent for %.1f s: closed", conn.id, conn.user_id, idle
                )
                # In the background: on a dead link the closing handshake waits for the peer
                # (10 s in websockets, which does not let itself be cancelled), while leaving the
                # room and recording the disconnect must not. The transport is closed when this
                # handler returns.
                _close_later(socket, IDLE, f"nothing received for {idle:g} s")
                return
            if now >= next_beat:
                next_beat = now + beat
                send(p.Heartbeat(interval_s=beat))
            continue
        heard = loop.time()
        if event["type"] == "websocket.disconnect":
            return
        if conn.closing is not None:  # no longer allowed here: wait for the close to finish
            continue
        data: str | bytes = event.get("text") or event.get("bytes") or b""  # type: ignore[assignment]
        size = len(data)
        if isinstance(data, str) and size * 4 > settings.ws_max_frame_bytes:
            size = len(data.encode())
        if size > settings.ws_max_frame_bytes:
            # Through the socket's queue, so every reply queued before is sent first (messages
            # are handled one at a time: earlier ones' acks are queued by now).
            end_connection(conn, 1009, f"frame over {settings.ws_max_frame_bytes} bytes")
            continue
        replies = await _handle(registry, room, conn, data)
        if replies is None:
            continue
        for r in replies:
            send(r)
        if conn.malformed >= settings.ws_malformed_limit and any(
            isinstance(r, p.Error) and r.code in ("malformed", "invalid_message") for r in replies
        ):
            end_connection(conn, 1008, "too many malformed messages")
