"""The relay of one process: settings, rooms, limits, the ladder's clock and the counters."""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiortc import RTCPeerConnection

from ..settings import Settings
from .errors import MediaError, MediaEvent, RecordingEnded, RecordingReason, too_many_rooms
from .hooks import check_private_hooks
from .ladder import LadderPolicy
from .network import IceScope, browser_ice_servers, install_aioice_patch, rtc_configuration
from .observer import MediaObserver, NullObserver
from .recorder import Recorder, RecordingFiles
from .room import MediaRoom, MediaRoomStats

__all__ = ["MediaServer", "MediaServerStats"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MediaServerStats:
    """The relay's figures: its rooms, and what failed since the process started."""

    rooms: int
    ice_failures: int
    connections_lost: int
    connect_timeouts: int
    by_room: dict[int, MediaRoomStats]
    """By cohort id."""
    recordings: int = 0
    """Recordings running now."""
    recording_bytes: int = 0
    """Bytes of frames recordings wrote since the process started."""
    recording_segments_failed: int = 0
    """Recording segments that could not be written or closed since the process started."""


class MediaServer:
    """Entry point for the socket handlers: ``server.room(cohort_id)`` then the room's calls.

    Args:
        settings: the appliance settings (``media_*``, ``stun_url``, ``turn_*``).
        on_event: called synchronously with each :data:`MediaEvent` (tracks changed, a
            learner moved on the ladder, a learner's connection closed).
        ladder: thresholds of the automatic ladder.
        observer: told of PLIs, NACKs, connections, first frames... (the metrics layer).
    """

    def __init__(
        self,
        settings: Settings,
        on_event: Callable[[MediaEvent], None] | None = None,
        ladder: LadderPolicy | None = None,
        observer: MediaObserver | None = None,
    ) -> None:
        check_private_hooks()
        install_aioice_patch()
        self.settings = settings
        self.observer: MediaObserver = observer or NullObserver()
        self.ice_scope = IceScope(
            settings.media_interface, settings.media_port_min, settings.media_port_max
        )
        self.public_address = settings.media_public_address
        self.max_learners = settings.media_max_learners_per_room
        self.max_rooms = settings.media_max_rooms
        self.ladder = ladder or LadderPolicy()
        self.counters: collections.Counter[str] = collections.Counter()
        self._on_event = on_event
        self._rooms: dict[int, MediaRoom] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._monitor: asyncio.Task[None] | None = None
        self.recorders: dict[int, Recorder] = {}
        """Recordings by cohort id (recorder.py); one ends when its room closes."""

    def room(self, cohort_id: int) -> MediaRoom:
        """The cohort's media room, created on first use (refused above ``media_max_rooms``)."""
        room = self._rooms.get(cohort_id)
        if room is not None:
            return room
        if len(self._rooms) >= self.max_rooms:
            raise too_many_rooms(self.max_rooms)
        room = self._rooms[cohort_id] = MediaRoom(self, cohort_id)
        if self._monitor is None:
            self._monitor = asyncio.ensure_future(self._watch_links())
        return room

    def get_room(self, cohort_id: int) -> MediaRoom | None:
        """The cohort's media room if it is open (never creates one)."""
        return self._rooms.get(cohort_id)

    async def close_room(self, cohort_id: int) -> None:
        room = self._rooms.pop(cohort_id, None)
        await self._end_recording(cohort_id, "room_closed")
        if room is not None:
            await room.close()

    async def close(self) -> None:
        for cohort_id in list(self._rooms):
            await self.close_room(cohort_id)
        for cohort_id in list(self.recorders):
            await self._end_recording(cohort_id, "room_closed")
        if self._monitor is not None:
            self._monitor.cancel()
            await asyncio.gather(self._monitor, return_exceptions=True)
            self._monitor = None
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- recordings (recorder.py, docs/recordings.md) ---------------------------------------

    async def start_recording(self, cohort_id: int, directory: Path) -> None:
        """Record the cohort's class into ``directory`` from now on. Opens the cohort's media
        room if needed (as with media workers, where the room is placed on a worker now): the
        recording ends when the room closes."""
        if cohort_id in self.recorders:
            raise MediaError("already_recording", "this class is already being recorded")
        self.room(cohort_id)  # too_many_rooms: refused before anything starts
        s = self.settings
        recorder = Recorder(
            cohort_id,
            Path(directory),
            self._recording_ended,
            segment_s=s.recording_segment_s,
            min_free_bytes=s.recording_min_free_mb * 1024 * 1024,
        )
        self.recorders[cohort_id] = recorder
        recorder.attach(self._rooms[cohort_id].sources)

    async def stop_recording(self, cohort_id: int) -> None:
        """End the cohort's recording (finalized before this returns); no-op if none."""
        await self._end_recording(cohort_id, "stopped")

    def recording(self, cohort_id: int) -> bool:
        return cohort_id in self.recorders

    async def _end_recording(self, cohort_id: int, reason: RecordingReason) -> None:
        recorder = self.recorders.get(cohort_id)
        if recorder is not None:
            await recorder.stop(reason)

    def _recording_ended(
        self, recorder: Recorder, reason: RecordingReason, result: RecordingFiles | None
    ) -> None:
        if self.recorders.get(recorder.cohort_id) is recorder:
            del self.recorders[recorder.cohort_id]
        self.counters["recording_bytes"] += recorder.stats.bytes_written
        self.counters["recording_segments_failed"] += recorder.stats.segments_failed
        self.emit(RecordingEnded(recorder.cohort_id, str(recorder.directory), reason, result))

    def ice_servers(self, user: str = "") -> list[dict[str, str]]:
        """``iceServers`` for a browser, with fresh time-limited TURN credentials."""
        s = self.settings
        return browser_ice_servers(s.stun_url, s.turn_url, s.turn_secret, s.turn_ttl_s, user)

    def new_peer_connection(self) -> RTCPeerConnection:
        s = self.settings
        return RTCPeerConnection(
            rtc_configuration(s.stun_url, s.turn_url, s.turn_secret, s.turn_ttl_s)
        )

    def emit(self, event: MediaEvent) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                logger.exception("media event handler failed on %r", event)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _watch_links(self) -> None:
        while True:
            await asyncio.sleep(self.ladder.interval_s)
            for room in list(self._rooms.values()):
                room.sample_bitrate()
                try:
                    await room.sample_links()
                except Exception:
                    logger.exception("ladder sampling failed in room %s", room.cohort_id)

    def stats(self) -> MediaServerStats:
        return MediaServerStats(
            rooms=len(self._rooms),
            ice_failures=self.counters["ice_failures"],
            connections_lost=self.counters["connections_lost"],
            connect_timeouts=self.counters["connect_timeouts"],
            by_room={cohort_id: room.stats() for cohort_id, room in self._rooms.items()},
            recordings=len(self.recorders),
            recording_bytes=self.counters["recording_bytes"]
            + sum(r.stats.bytes_written for r in self.recorders.values()),
            recording_segments_failed=self.counters["recording_segments_failed"]
            + sum(r.stats.segments_failed for r in self.recorders.values()),
        )
