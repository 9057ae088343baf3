"""One owner object per cohort (:class:`CohortRoom`) and the registry that holds them.

Every mutation of a cohort's live state goes through its room, so a later step can pin a
cohort to one worker process. Events are fanned out with Litestar's channels: one channel for
the whole cohort and one for its staff. Each payload published on a channel is the event's
sequence number (8 bytes, big endian) followed by its JSON; the ring of recent payloads serves
clients that resume after a reconnect.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import msgspec
from litestar.channels import ChannelsPlugin

from appliance import clock
from appliance.accounts import services as accounts
from appliance.accounts.tables import Role
from appliance.attendance import services as attendance
from appliance.attendance.schemas import WindowOut
from appliance.auth.ratelimit import SlidingWindow
from appliance.auth.roles import SEES_STAFF_VIEW
from appliance.db import DedicatedWriter
from appliance.live import protocol as p
from appliance.metrics.events import EventMetrics
from appliance.metrics.sources import RoomStats
from appliance.polls import services as polls
from appliance.settings import Settings

__all__ = ["REPLACED", "CohortRoom", "Conn", "RoomRegistry", "end_connection"]

REACTION_KINDS = ("lost", "slower", "ok")
REPLACED = 4409
"""Close code of a socket replaced by a newer one of the same session (another tab)."""
REPLACED_REASON = "this class is open in another tab"

_encoder = msgspec.json.Encoder()


def seq_prefix(seq: int) -> bytes:
    return seq.to_bytes(8, "big")


@dataclass(eq=False)
class Conn:
    """One open socket of one participant."""

    id: str
    user_id: int
    display_name: str
    capacity: Role
    address: str | None = None
    user_agent: str | None = None
    low_bandwidth: bool = False
    malformed: int = 0
    send_direct: Callable[[p.Reply], None] | None = None
    """Queues a reply for this socket alone; set by the socket once it streams (None before
    and after)."""
    link_id: int | None = None
    """The join link the session was opened with (learners), to end it when it is revoked."""
    closing: tuple[int, str] | None = None
    """(code, reason) once the server decided to close this socket; its frames are ignored."""
    end: Callable[[], None] | None = None
    """Closes the socket with ``closing`` (after the frames already queued); set by the socket
    once it streams (None before and after)."""
    session_key: str | None = None
    """A digest of the sign-in session the socket was opened with (the per-session limit)."""

    @property
    def is_staff(self) -> bool:
        return self.capacity in SEES_STAFF_VIEW


@dataclass(eq=False)
class CohortRoom:
    cohort_id: int
    settings: Settings
    channels: ChannelsPlugin
    epoch: str = field(default_factory=lambda: secrets.token_hex(8))
    seq: int = 0
    session: p.SessionInfo | None = None
    live_poll_id: int | None = None
    signing: WindowOut | None = None
    conns: dict[str, Conn] = field(default_factory=dict)
    hands: dict[int, str] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    cohort_name: str = ""
    writer: DedicatedWriter | None = None
    """Where chat messages are committed (the registry's); None: Piccolo's own connections."""

    def __post_init__(self) -> None:
        self.ring: deque[tuple[int, bool, bytes]] = deque(maxlen=self.settings.live_resume_events)
        self.reactions: dict[int, tuple[float, str]] = {}
        """Learner -> (when, kind) of their latest reaction, oldest first."""
        self._reactions_sent: dict[str, int] | None = None
        self._reaction_fade: asyncio.TimerHandle | None = None
        self.chat_limiter = SlidingWindow(
            self.settings.chat_rate_limit, self.settings.chat_rate_window_s
        )
        self.message_limiter = SlidingWindow(
            self.settings.live_rate_limit, self.settings.live_rate_window_s
        )
        """Every message type of a learner, keyed ``"<user id>:<type>"``."""
        self._timers: list[asyncio.TimerHandle] = []
        from appliance.live.chat_writer import ChatWriter

        self.chat_writer = ChatWriter(self)

    # ---- channels and resume --------------------------------------------------------------
    @property
    def channel(self) -> str:
        return f"cohort:{self.cohort_id}"

    @property
    def staff_channel(self) -> str:
        return f"cohort:{self.cohort_id}:staff"

    def publish(self, event: p.Event, *, staff_only: bool = False) -> int:
        """Number, keep and broadcast ``event``; returns its sequence number."""
        self.seq += 1
        event.seq = self.seq
        payload = seq_prefix(self.seq) + _encoder.encode(event)
        self.ring.append((self.seq, staff_only, payload))
        self.channels.publish(payload, self.staff_channel if staff_only else self.channel)
        return self.seq

    def replay(self, after: int, *, staff: bool) -> list[bytes] | None:
        """Payloads after ``after`` that a (staff) client may see; None when beyond the ring."""
        if after > self.seq or after < 0:
            return None
        if after == self.seq:
            return []
        oldest = self.ring[0][0] if self.ring else self.seq + 1
        if after + 1 < oldest:
            return None
        return [payload for seq, st, payload in self.ring if seq > after and (staff or not st)]

    # ---- state ----------------------------------------------------------------------------
    async def load(self) -> None:
        """Rebuild the durable part of the live state (after a restart, say)."""
        cs = await accounts.live_class_session(self.cohort_id)
        if cs is not None:
            self.session = p.SessionInfo(class_session_id=cs.id, started_at=cs.started_at)
        poll = await polls.live_poll(self.cohort_id)
        self.live_poll_id = poll.id if poll else None
        self.set_signing(await attendance.current_window(self.cohort_id))

    @property
    def session_id(self) -> int | None:
        return self.session.class_session_id if self.session else None

    def state_of(self, user_id: int) -> p.ParticipantState:
        if self.session is None:
            return "waiting"
        if any(c.low_bandwidth for c in self.conns.values() if c.user_id == user_id):
            return "low_bandwidth"
        return "in_class"

    def participant(self, conn: Conn) -> p.Participant:
        return p.Participant(
            user_id=conn.user_id,
            display_name=conn.display_name,
            role=conn.capacity.value,
            state=self.state_of(conn.user_id),
            hand_raised=conn.user_id in self.hands,
        )

    def participants(self) -> list[p.Participant]:
        seen: dict[int, Conn] = {}
        for c in self.conns.values():
            seen.setdefault(c.user_id, c)
        return sorted(
            (self.participant(c) for c in seen.values()),
            key=lambda x: (x.role != "trainer", x.display_name.lower(), x.user_id),
        )

    def connected_users(self) -> set[int]:
        return {c.user_id for c in self.conns.values()}

    def add(self, conn: Conn) -> None:
        first = conn.user_id not in self.connected_users()
        self.conns[conn.id] = conn
        if first:
            self.publish(p.Presence(participant=self.participant(conn), connected=True))

    def remove(self, conn: Conn) -> None:
        self.conns.pop(conn.id, None)
        if conn.user_id not in self.connected_users():
            if self.hands.pop(conn.user_id, None) is not None:
                self.publish(p.HandLowered(user_id=conn.user_id, by=conn.user_id))
            self.publish(p.Presence(participant=self.participant(conn), connected=False))

    def presence_changed(self, conn: Conn) -> None:
        self.publish(p.Presence(participant=self.participant(conn), connected=True))

    def send_to_user(self, user_id: int, reply: p.Reply) -> None:
        for c in self.conns.values():
            if c.user_id == user_id and c.send_direct is not None:
                c.send_direct(reply)

    # ---- reactions ------------------------------------------------------------------------
    def reaction_counts(self) -> dict[str, int]:
        """Learners per kind whose latest reaction is within the window (one each)."""
        horizon = time.monotonic() - self.settings.reaction_window_s
        while self.reactions:
            user_id, (at, _) = next(iter(self.reactions.items()))
            if at > horizon:
                break
            del self.reactions[user_id]
        counts = Counter(kind for _, kind in self.reactions.values())
        return {k: counts.get(k, 0) for k in REACTION_KINDS}

    def _publish_reactions(self) -> None:
        counts = self.reaction_counts()
        if counts == self._reactions_sent:
            return
        self._reactions_sent = counts
        self.publish(
            p.Reactions(counts=counts, window_s=self.settings.reaction_window_s), staff_only=True
        )

    def react(self, user_id: int, kind: str) -> None:
        """A learner's reaction: it replaces their previous one and counts once per window.

        The counters are published when they change, and again when a reaction fades out
        (one timer per room, for the oldest reaction).
        """
        self.reactions.pop(user_id, None)  # re-inserted last: the dict stays oldest first
        self.reactions[user_id] = (time.monotonic(), kind)
        self._publish_reactions()
        if self._reaction_fade is None:
            self._schedule_fade()

    def _schedule_fade(self) -> None:
        self._reaction_fade = None
        if not self.reactions:
            return
        oldest = next(iter(self.reactions.values()))[0]
        delay = oldest + self.settings.reaction_window_s - time.monotonic() + 0.01
        self._reaction_fade = asyncio.get_running_loop().call_later(max(0.0, delay), self._fade)

    def _fade(self) -> None:
        self._publish_reactions()
        self._schedule_fade()

    # ---- signing window -------------------------------------------------------------------
    def set_signing(self, window: WindowOut | None) -> None:
        self.signing = window
        if window is None:
            return
        loop = asyncio.get_running_loop()
        delay = (window.closes_at - clock.utcnow()).total_seconds()
        self._timers.append(loop.call_later(max(0.0, delay), self._signing_expired, window.id))

    def _signing_expired(self, window_id: int) -> None:
        if self.signing is not None and self.signing.id == window_id:
            self.signing = None
            self.publish(p.SigningClosed(window_id=window_id))

    def close(self) -> None:
        for t in self._timers:
            t.cancel()
        if self._reaction_fade is not None:
            self._reaction_fade.cancel()

    # ---- metrics --------------------------------------------------------------------------
    def stats(self) -> RoomStats:
        """The metrics layer's view of this room (``appliance.metrics.LiveRoomsSource``)."""
        counts: Counter[tuple[str, p.ParticipantState]] = Counter()
        for part in self.participants():
            counts[(part.role, part.state)] += 1
        return RoomStats(
            cohort_id=self.cohort_id, started=self.session is not None, participants=dict(counts)
        )


class RoomRegistry:
    """The live rooms of this process, on ``app.state.live``; handlers register here too."""

    def __init__(self, settings: Settings, channels: ChannelsPlugin) -> None:
        from appliance.live.dispatch import Dispatcher

        self.settings = settings
        self.channels = channels
        self.rooms: dict[int, CohortRoom] = {}
        self.dispatcher = Dispatcher()
        self._loading: dict[int, asyncio.Future[CohortRoom]] = {}
        self.metrics: EventMetrics | None = None
        """Set by the app: classroom events are counted here."""
        self.writer: DedicatedWriter | None = None
        """Set by the app: the rooms' chat is committed through it (closed at shutdown)."""
        self.join_hooks: list[Callable[[CohortRoom, Conn], None]] = []
        """Called once a socket streams (after ``welcome``): e.g. the media bridge's config."""
        self.leave_hooks: list[Callable[[CohortRoom, Conn], Awaitable[None]]] = []
        """Awaited after a socket closed and left its room."""
        from appliance.live.attendance_log import ConnectionLog
        from appliance.live.failures import FailureLog

        self.failures = FailureLog()
        """Handler failures: a traceback once per message type and error per minute."""

        self.attendance = ConnectionLog(settings)
        """Learners' connect / disconnect records (one pair per span of presence)."""
        self.access_changes = 0
        """How many access changes (see :meth:`end_connections`) this process has seen."""
        self._recent: deque[tuple[int, Match, int, str]] = deque(maxlen=256)
        self._by_session: dict[tuple[str, int], list[Conn]] = {}
        """(session digest, cohort) -> its open sockets, oldest first."""

    async def room(self, cohort_id: int) -> CohortRoom:
        room = self.rooms.get(cohort_id)
        if room is not None:
            return room
        pending = self._loading.get(cohort_id)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[CohortRoom] = asyncio.get_running_loop().create_future()
        self._loading[cohort_id] = fut
        try:
            room = CohortRoom(
                cohort_id=cohort_id,
                settings=self.settings,
                channels=self.channels,
                writer=self.writer,
            )
            await room.load()
            self.rooms[cohort_id] = room
            if self.metrics is not None:
                self.metrics.room_opened(cohort_id)
            fut.set_result(room)
            return room
        except BaseException as exc:
            fut.set_exception(exc)
            fut.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            del self._loading[cohort_id]

    def room_stats(self) -> list[RoomStats]:
        """Per room with someone connected or a started session: cohort id, whether the session
        is started, and participants counted by (role, state) — for the metrics collector."""
        return [r.stats() for r in self.rooms.values() if r.conns or r.session is not None]

    def count(self, message: p.ClientMessage, cohort_id: int) -> None:
        """Count an accepted classroom message in the metrics."""
        m = self.metrics
        if m is None:
            return
        if isinstance(message, p.ChatSend):
            (m.question if message.question else m.chat_message)(cohort_id)
        elif isinstance(message, p.PollVote | p.PollChangeVote):
            m.poll_vote(cohort_id)
        elif isinstance(message, p.Reaction):
            m.reaction(cohort_id)
        elif isinstance(message, p.AttendanceSign):
            m.attendance_confirmed(cohort_id)

    def close(self) -> None:
        for r in self.rooms.values():
            r.close()

    def end_connections(
        self, match: Match, code: int, reason: str, *, late: Match | None = None
    ) -> int:
        """Close every socket whose room and :class:`Conn` satisfy ``match``; returns how many.

        ``late`` (default ``match``) is kept for sockets whose connect was checked before this
        call but that join their room after it: :meth:`catch_up` applies it to them.
        """
        self.access_changes += 1
        self._recent.append((self.access_changes, late or match, code, reason))
        ended = 0
        for room in self.rooms.values():
            for conn in list(room.conns.values()):
                if match(room, conn) and end_connection(conn, code, reason):
                    ended += 1
        return ended

    def admit(self, room: CohortRoom, conn: Conn) -> list[Conn]:
        """Count ``conn`` against its session's limit; close the oldest beyond it (4409).

        One learner in two tabs would otherwise watch in both while the relay sends to one, and
        one session could hold sockets until the server runs out of file descriptors.
        Returns the sockets told to close.
        """
        if conn.session_key is None:
            return []
        held = self._by_session.setdefault((conn.session_key, room.cohort_id), [])
        held.append(conn)
        limit = (
            self.settings.ws_learner_sockets_per_session
            if conn.capacity is Role.learner
            else self.settings.ws_staff_sockets_per_session
        )
        replaced = []
        while len(held) > limit:
            old = held.pop(0)
            if end_connection(old, REPLACED, REPLACED_REASON):
                replaced.append(old)
        return replaced

    def release(self, room: CohortRoom, conn: Conn) -> None:
        """``conn`` closed: it no longer counts against its session's limit."""
        key = (conn.session_key or "", room.cohort_id)
        held = self._by_session.get(key)
        if held is None:
            return
        if conn in held:
            held.remove(conn)
        if not held:
            del self._by_session[key]

    def catch_up(self, room: CohortRoom, conn: Conn, checked_at: int) -> None:
        """Apply the access changes made since ``checked_at`` to a socket that just joined."""
        for n, match, code, reason in self._recent:
            if n > checked_at and match(room, conn):
                end_connection(conn, code, reason)
                return


Match = Callable[[CohortRoom, Conn], bool]


def end_connection(conn: Conn, code: int, reason: str) -> bool:
    """Close ``conn`` with (code, reason) after the frames already queued for it; its later
    frames are ignored. False when it is closing already."""
    if conn.closing is not None:
        return False
    conn.closing = (code, reason)
    if conn.end is not None:
        conn.end()
    return True
