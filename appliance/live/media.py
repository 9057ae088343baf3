"""Media signalling over the classroom socket: the ``media_*`` messages and the relay's events.

The relay (``appliance/media/``, docs/media.md) knows peer connections by user id; this bridge
knows which socket of which user asked for them. It routes the relay's events to the cohort
(``media_tracks``) or to one learner's socket (``media_quality``, ``media_closed``), closes a
learner's or the trainer's connection when their socket closes, and shows the relay's figures
to the metrics layer (``MediaSource``), without learner ids.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.auth.roles import LEARNERS, RUNS_CLASS
from appliance.errors import DomainError
from appliance.live import protocol as p
from appliance.live.dispatch import Context, Dispatcher
from appliance.live.room import CohortRoom, Conn
from appliance.media import (
    LearnerClosed,
    MediaError,
    MediaEvent,
    MediaServer,
    PublisherClosed,
    QualityChanged,
    RecordingEnded,
    TracksChanged,
)
from appliance.media.ladder import LadderPolicy
from appliance.media.observer import MediaObserver
from appliance.media.remote import RemoteMediaServer
from appliance.metrics.sources import LearnerLink, MediaWorker, RecordingTotals, RoomMedia

if TYPE_CHECKING:
    from appliance.live.room import RoomRegistry

__all__ = ["MediaBridge"]

log = logging.getLogger("estrade.live.media")
SLOT_NAMES = ("audio", "camera", "screen")
# LearnerClosed reasons the learner's own socket caused: nobody to tell.
_SILENT = frozenset({"replaced", "socket_closed"})


class MediaBridge:
    """One per app (``app.state.media``); :meth:`start` in the lifespan, :meth:`close` after."""

    def __init__(self, registry: RoomRegistry) -> None:
        self.registry = registry
        self.server: MediaServer | RemoteMediaServer | None = None
        self._learner_conns: dict[tuple[int, int], str] = {}
        """(cohort, learner) -> id of the socket that subscribed."""
        self._publishers: dict[int, tuple[str, int]] = {}
        """cohort -> (socket id, user id) of the trainer publishing."""
        self._levels: dict[tuple[int, int], str] = {}
        """(cohort, learner) -> the level the learner asked for (kept across reconnects)."""
        self.recording_listener: Callable[[RecordingEnded], Awaitable[None]] | None = None
        """Told when a recording ends, for any reason (set by the replay side at start-up)."""
        self._listening: set[asyncio.Task[Any]] = set()
        registry.join_hooks.append(self.joined)
        registry.leave_hooks.append(self.left)
        self.register(registry.dispatcher)

    # ---- lifecycle ------------------------------------------------------------------------
    async def start(self, observer: MediaObserver | None = None) -> None:
        """Create the relay (call from the app's lifespan): in this process, or, with
        ``media_worker_count`` > 0 (the default: one per core), in that many worker processes
        (docs/media-workers.md)."""
        settings = self.registry.settings
        if count := settings.media_worker_count:
            remote = self.server = RemoteMediaServer(settings, self.on_event, observer=observer)
            try:
                await remote.start(count)
            except BaseException:
                await self.close()  # the workers already started: the app does not start
                raise
            return
        ladder = LadderPolicy(
            down_loss=settings.media_step_down_loss, down_rtt_s=settings.media_step_down_rtt_s
        )
        self.server = MediaServer(settings, self.on_event, ladder=ladder, observer=observer)

    async def close(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            await server.close()
        if self._listening:  # recordings that ended with the relay: their rows get updated
            await asyncio.gather(*self._listening, return_exceptions=True)
        self._learner_conns.clear()
        self._publishers.clear()

    def _server(self) -> MediaServer | RemoteMediaServer:
        if self.server is None:
            raise DomainError("media_unavailable", "the media relay is not running")
        return self.server

    # ---- socket hooks ---------------------------------------------------------------------
    def joined(self, room: CohortRoom, conn: Conn) -> None:
        """Right after ``welcome``: ICE servers (fresh TURN credentials) and the live tracks."""
        if self.server is None or conn.send_direct is None:
            return
        media_room = self.server.get_room(room.cohort_id)
        live = media_room.live if media_room is not None else ()
        ice_servers = self.server.ice_servers(str(conn.user_id))
        tracks = {s: s in live for s in SLOT_NAMES}
        conn.send_direct(p.MediaConfig(ice_servers=ice_servers, tracks=tracks))

    async def left(self, room: CohortRoom, conn: Conn) -> None:
        """The socket closed: drop that learner's or trainer's connection; close an empty room."""
        server = self.server
        if server is None:
            return
        cid = room.cohort_id
        media_room = server.get_room(cid)
        key = (cid, conn.user_id)
        if self._learner_conns.get(key) == conn.id:
            del self._learner_conns[key]
            if media_room is not None:
                await media_room.leave(conn.user_id, reason="socket_closed")
        publisher = self._publishers.get(cid)
        if publisher is not None and publisher[0] == conn.id:
            del self._publishers[cid]
            if media_room is not None:
                await media_room.unpublish()
        if media_room is not None and not room.conns:
            await server.close_room(cid)
            for k in [k for k in self._levels if k[0] == cid]:
                del self._levels[k]

    def _conn(self, room: CohortRoom, learner_id: int) -> Conn | None:
        conn_id = self._learner_conns.get((room.cohort_id, learner_id))
        return room.conns.get(conn_id) if conn_id is not None else None

    # ---- recordings (docs/recordings.md) -------------------------------------------------
    async def start_recording(self, cohort_id: int, directory: Path) -> None:
        """Record the cohort's class into ``directory`` (whatever the trainer publishes while
        on; nothing yet is fine). A keyframe is asked for now and when a video track starts."""
        await self._server().start_recording(cohort_id, directory)

    async def stop_recording(self, cohort_id: int) -> None:
        """End the recording (its files finalized, ``RecordingEnded`` sent); no-op if none."""
        if self.server is not None:
            await self.server.stop_recording(cohort_id)

    def recording(self, cohort_id: int) -> bool:
        return self.server is not None and self.server.recording(cohort_id)

    def _recording_ended(self, event: RecordingEnded) -> None:
        listener = self.recording_listener
        if listener is None:
            log.info("recording of cohort %s ended (%s)", event.cohort_id, event.reason)
            return
        task = asyncio.ensure_future(listener(event))
        self._listening.add(task)
        task.add_done_callback(self._listened)

    def _listened(self, task: asyncio.Task[Any]) -> None:
        self._listening.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("the recording listener failed", exc_info=task.exception())

    # ---- relay events (called synchronously by the relay) ---------------------------------
    def on_event(self, event: MediaEvent) -> None:
        if isinstance(event, RecordingEnded):
            self._recording_ended(event)
            return
        room = self.registry.rooms.get(event.cohort_id)
        if room is None:
            return
        if isinstance(event, TracksChanged):
            room.publish(p.MediaTracks(tracks={s: s in event.live for s in SLOT_NAMES}))
        elif isinstance(event, QualityChanged):
            conn = self._conn(room, event.learner_id)
            if conn is None:
                return
            if conn.send_direct is not None:
                level, automatic, reason = event.level, event.automatic, event.reason
                conn.send_direct(p.MediaQuality(level=level, automatic=automatic, reason=reason))
            self._set_presence(room, conn, event.level)
        elif isinstance(event, PublisherClosed):
            # The relay lost the trainer's connection (a media worker restarted): their page
            # publishes again on media_closed.
            publisher = self._publishers.pop(room.cohort_id, None)
            trainer = room.conns.get(publisher[0]) if publisher is not None else None
            if trainer is not None and trainer.send_direct is not None:
                trainer.send_direct(p.MediaClosed(reason=event.reason))
        elif isinstance(event, LearnerClosed):
            if event.reason in _SILENT:
                return
            conn = self._conn(room, event.learner_id)
            self._learner_conns.pop((room.cohort_id, event.learner_id), None)
            if conn is not None and conn.send_direct is not None:
                conn.send_direct(p.MediaClosed(reason=event.reason))

    @staticmethod
    def _set_presence(room: CohortRoom, conn: Conn, level: str) -> None:
        before = room.state_of(conn.user_id)
        conn.low_bandwidth = level != "full"
        if room.state_of(conn.user_id) != before:
            room.presence_changed(conn)

    # ---- handlers -------------------------------------------------------------------------
    def register(self, d: Dispatcher) -> None:
        d.register(p.MediaPublish, RUNS_CLASS, self.publish)
        d.register(p.MediaUnpublish, RUNS_CLASS, self.unpublish)
        d.register(p.MediaSubscribe, LEARNERS, self.subscribe)
        d.register(p.MediaAnswerIn, LEARNERS, self.answer)
        d.register(p.MediaQualitySet, LEARNERS, self.quality)

    async def publish(self, ctx: Context, msg: p.MediaPublish) -> None:
        cid, conn = ctx.room.cohort_id, ctx.conn
        media_room = self._server().room(cid)
        before = self._publishers.get(cid)
        if before is not None and before[0] != conn.id and before[1] == conn.user_id:
            # The same trainer from a new socket (a reloaded console, a reconnect before the
            # server saw the old link die): its browser made a new peer connection, so the
            # old one is dropped rather than renegotiated with an offer it never made.
            del self._publishers[cid]
            await media_room.unpublish()
        try:
            answer = await media_room.publish(msg.sdp, msg.slots, trainer_id=conn.user_id)
        except MediaError as exc:
            if exc.code == "media_unavailable":
                # Its media worker died meanwhile: this trainer is told to publish again
                # (media_closed) once a worker is back, as if it had published.
                self._publishers[cid] = (conn.id, conn.user_id)
            raise
        self._publishers[cid] = (conn.id, conn.user_id)
        ctx.reply(p.MediaAnswer(sdp=answer))

    async def unpublish(self, ctx: Context, msg: p.MediaUnpublish) -> None:
        cid = ctx.room.cohort_id
        publisher = self._publishers.get(cid)
        if publisher is None or publisher[1] != ctx.conn.user_id:
            raise DomainError("not_publishing", "you are not publishing media in this class")
        del self._publishers[cid]
        media_room = self._server().get_room(cid)
        if media_room is not None:
            await media_room.unpublish()

    async def subscribe(self, ctx: Context, msg: p.MediaSubscribe) -> None:
        cid, uid = ctx.room.cohort_id, ctx.conn.user_id
        # Only a presenting trainer opens a media room (rooms are a scarce, server-wide
        # resource): a learner never creates one, so idle cohorts cannot use them up.
        media_room = self._server().get_room(cid)
        if media_room is None:
            raise DomainError(
                "no_class_media",
                "the trainer is not presenting: media starts when they do (media_tracks)",
            )
        other = self._conn(ctx.room, uid)
        if other is not None and other is not ctx.conn and other.send_direct is not None:
            # The same learner subscribes from another window or device: the old one is
            # told (instead of freezing on its last frame) and does not take it back alone.
            other.send_direct(p.MediaClosed(reason="replaced"))
        # Claimed before awaiting: an older socket of this learner closing meanwhile (the tab
        # this one replaced) must not drop the connection being made here in its leave hook.
        self._learner_conns[(cid, uid)] = ctx.conn.id
        offer = await media_room.subscribe(uid)
        level = self._levels.get((cid, uid), "full")
        if level != "full":
            media_room.set_quality(uid, level)
        ctx.reply(p.MediaOffer(sdp=offer.sdp, slots=offer.slots))

    async def answer(self, ctx: Context, msg: p.MediaAnswerIn) -> None:
        cid, uid = ctx.room.cohort_id, ctx.conn.user_id
        media_room = self._server().get_room(cid)
        if media_room is None or self._learner_conns.get((cid, uid)) != ctx.conn.id:
            raise DomainError("no_offer", "send media_subscribe first, from this connection")
        await media_room.accept_answer(uid, msg.sdp)

    async def quality(self, ctx: Context, msg: p.MediaQualitySet) -> None:
        """The learner's choice: remembered, shown in presence, applied if media is on."""
        room, conn = ctx.room, ctx.conn
        self._levels[(room.cohort_id, conn.user_id)] = msg.level
        self._set_presence(room, conn, msg.level)
        media_room = self._server().get_room(room.cohort_id)
        if media_room is not None and self._conn(room, conn.user_id) is conn:
            try:
                media_room.set_quality(conn.user_id, msg.level)
            except MediaError as exc:
                if exc.code != "not_subscribed":  # not receiving yet: applied at subscribe
                    raise

    # ---- metrics (appliance.metrics.MediaSource, MediaWorkersSource) ----------------------
    def media_workers(self) -> list[MediaWorker]:
        if not isinstance(self.server, RemoteMediaServer):
            return []
        return [
            MediaWorker(
                worker=w.worker,
                up=w.up,
                rooms=w.rooms,
                learners=w.learners,
                cpu_seconds=w.cpu_seconds,
                loop_lag_s=w.loop_lag_s,
                restarts=w.restarts,
            )
            for w in self.server.worker_stats()
        ]

    def recording_totals(self) -> RecordingTotals:
        """Recordings now and since start, and the disk they go to (metrics.RecordingsSource)."""
        stats = self.server.stats() if self.server is not None else None
        folder = Path(self.registry.settings.data_dir) / "recordings"
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent  # not created yet: the disk it will be on
        usage = shutil.disk_usage(folder)
        return RecordingTotals(
            active=stats.recordings if stats is not None else 0,
            bytes_written=stats.recording_bytes if stats is not None else 0,
            segments_failed=stats.recording_segments_failed if stats is not None else 0,
            disk_free_bytes=usage.free,
            disk_size_bytes=usage.total,
        )

    def media_stats(self) -> list[RoomMedia]:
        if self.server is None:
            return []
        rooms: list[RoomMedia] = []
        for cid, st in self.server.stats().by_room.items():
            live = st.tracks_published
            links = [
                LearnerLink(
                    rtt_s=lr.rtt_s, loss_ratio=lr.loss or 0.0, relayed=lr.relayed, path=lr.path
                )
                for lr in st.per_learner.values()
                if lr.rtt_s is not None
            ]
            rooms.append(
                RoomMedia(
                    cohort_id=cid,
                    video_tracks=sum(1 for s in live if s != "audio"),
                    audio_tracks=sum(1 for s in live if s == "audio"),
                    learners_subscribed=st.learners,
                    bytes_forwarded=st.bytes_forwarded,
                    packets_forwarded=st.packets_forwarded,
                    send_bitrate_bps=st.send_bitrate_bps,
                    learners=links,
                )
            )
        return rooms
