"""Recording a class (issue #14, docs/replays.md): the trainer's ``recording_start`` and
``recording_stop``, the "recording" state every socket sees, the end of a recording (whatever
ended it), the per-cohort quota while it runs, and the daily retention sweep.

The media side (writing the trainer's frames to WebM files) is the media bridge's
(:meth:`MediaBridge.start_recording`); this module owns the database rows and what people see.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.auth.roles import RUNS_CLASS
from appliance.documents.schemas import DocumentOut
from appliance.errors import DomainError
from appliance.live import protocol as p
from appliance.live.dispatch import Context
from appliance.media import RecordingEnded, RecordingFiles
from appliance.replays import services
from appliance.replays.tables import Recording, RecordingStatus

if TYPE_CHECKING:
    from appliance.live.media import MediaBridge
    from appliance.live.room import CohortRoom, Conn, RoomRegistry

__all__ = ["LiveRecordings"]

log = logging.getLogger("estrade.live.recording")
STOP_S = 10.0


@dataclass(eq=False)
class Active:
    recording_id: int
    directory: Path
    started_at: Any
    notice: str
    quota_bytes: int
    stop_reason: str | None = None
    """Why this side stopped it (``quota``, ``session_ended``), kept over the bridge's
    ``stopped``."""
    watcher: asyncio.Task[None] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(eq=False)
class LiveRecordings:
    """One per app (``app.state.recordings``)."""

    registry: RoomRegistry
    media: MediaBridge
    active: dict[int, Active] = field(default_factory=dict)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        d = self.registry.dispatcher
        d.register(p.RecordingStart, RUNS_CLASS, self.start)
        d.register(p.RecordingStop, RUNS_CLASS, self.stop)
        d.on_accepted(self._session_ended)
        self.registry.join_hooks.append(self.joined)
        self.media.recording_listener = self.ended

    @property
    def settings(self) -> Any:
        return self.registry.settings

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- what every socket sees -----------------------------------------------------------
    def joined(self, room: CohortRoom, conn: Conn) -> None:
        if conn.send_direct is None:
            return
        self._spawn(self._tell(room, conn))

    async def _tell(self, room: CohortRoom, conn: Conn) -> None:
        try:
            enabled, notice = await services.notice_of(room.cohort_id)
        except Exception:  # the class goes on without the notice
            log.exception("cannot read the recording policy of cohort %s", room.cohort_id)
            return
        active = self.active.get(room.cohort_id)
        if conn.send_direct is not None:
            conn.send_direct(
                p.RecordingState(
                    enabled=enabled,
                    notice=notice,
                    recording=active is not None,
                    started_at=active.started_at if active is not None else None,
                )
            )

    # ---- trainer's messages ---------------------------------------------------------------
    async def start(self, ctx: Context, msg: p.RecordingStart) -> None:
        room = ctx.room
        cid = room.cohort_id
        async with room.lock:
            if room.session is None:
                raise DomainError(
                    "session_not_started", "start the class session before recording it"
                )
            if cid in self.active:
                raise DomainError("already_recording", "this class is already being recorded")
            row, policy = await services.start_recording(
                self.settings, cid, room.session.class_session_id, ctx.conn.user_id
            )
            directory = services.directory_of(self.settings, cid, row.id)
            try:
                await self.media.start_recording(cid, directory)
            except Exception as exc:
                await services.end_recording(
                    row, "write_error", RecordingFiles(0.0, {}), f"could not start: {exc}"
                )
                raise DomainError(
                    "recording_failed", "the recording could not start (see the server log)"
                ) from exc
            active = Active(
                recording_id=row.id,
                directory=directory,
                started_at=row.started_at,
                notice=policy.notice,
                quota_bytes=policy.quota_bytes,
            )
            self.active[cid] = active
            active.watcher = watcher = asyncio.create_task(
                self._watch(cid, active), name=f"rec-{row.id}"
            )
            self._tasks.add(watcher)
            watcher.add_done_callback(self._tasks.discard)
            room.publish(
                p.RecordingChanged(
                    recording=True,
                    notice=policy.notice,
                    started_at=row.started_at,
                    recording_id=row.id,
                )
            )

    async def stop(self, ctx: Context, msg: p.RecordingStop) -> None:
        if ctx.room.cohort_id not in self.active:
            raise DomainError("not_recording", "this class is not being recorded")
        await self.stop_cohort(ctx.room.cohort_id, "stopped")

    async def stop_cohort(self, cohort_id: int, reason: str) -> None:
        """Stop the cohort's recording (if any); ``ended`` updates the row and tells everyone."""
        active = self.active.get(cohort_id)
        if active is None:
            return
        if reason != "stopped":
            active.stop_reason = reason
        await self.media.stop_recording(cohort_id)

    def _session_ended(self, ctx: Context, msg: Any) -> None:
        if isinstance(msg, p.SessionEnd) and ctx.room.cohort_id in self.active:
            self._spawn(self.stop_cohort(ctx.room.cohort_id, "session_ended"))

    # ---- quota while recording ------------------------------------------------------------
    async def _watch(self, cohort_id: int, active: Active) -> None:
        """Stop the recording when the cohort's recordings would pass their quota."""
        while self.active.get(cohort_id) is active:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(active.done.wait(), self.settings.recording_check_s)
            if active.done.is_set() or self.active.get(cohort_id) is not active:
                return
            try:
                used = await services.cohort_used_bytes(cohort_id, self.settings)
            except Exception:
                log.exception("cannot measure the recordings of cohort %s", cohort_id)
                continue
            if used >= active.quota_bytes:
                log.warning("cohort %s: recording stopped at its quota (%d bytes)", cohort_id, used)
                await self.stop_cohort(cohort_id, "quota")
                return

    # ---- the bridge's RecordingEnded ------------------------------------------------------
    async def ended(self, event: RecordingEnded) -> None:
        """A recording ended (stopped, write error, disk full, relay restarted, room closed)."""
        cid = event.cohort_id
        rid = _recording_id(cid, event.directory)
        active = self.active.get(cid)
        if active is not None and active.recording_id == rid:
            del self.active[cid]
            active.done.set()  # its quota watcher ends between two queries, never inside one
        else:
            active = None
        reason = (active.stop_reason if active is not None else None) or event.reason
        row = await self._row_of(cid, rid)
        if row is None and active is None:
            log.warning("RecordingEnded for no running recording: %s", event.directory)
            return
        result = event.result
        if row is not None:
            failure = _FAILURES.get(reason)
            if result is None:
                try:
                    result = await services.finalize(self.settings, row)
                except Exception as exc:
                    log.exception("cannot finalize recording %s", row.id)
                    result, failure = RecordingFiles(0.0, {}), f"could not finalize: {exc}"
            await services.end_recording(row, reason, result, failure)
        room = self.registry.rooms.get(cid)
        if room is not None:
            room.publish(
                p.RecordingChanged(
                    recording=False, reason=reason, recording_id=row.id if row else None
                )
            )

    async def _row_of(self, cohort_id: int, recording_id: int | None) -> Recording | None:
        if recording_id is None:
            return None
        return (
            await Recording.objects()
            .where(
                (Recording.cohort == cohort_id)
                & (Recording.id == recording_id)
                & (Recording.status == RecordingStatus.recording.value)
            )
            .first()
        )

    # ---- documents pushed while recording -------------------------------------------------
    async def document_pushed(self, cohort_id: int, doc: DocumentOut) -> None:
        active = self.active.get(cohort_id)
        if active is not None:
            await services.note_document(active.recording_id, doc.id, doc.title)

    # ---- lifecycle ------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Any) -> AsyncIterator[None]:
        """Finalize what a killed server left open, then sweep expired replays daily."""
        try:
            count = await services.recover_interrupted(self.settings)
            if count:
                log.info("finalized %d recording(s) left open by a stopped server", count)
        except Exception:
            log.exception("cannot finalize the recordings left open")
        stop = asyncio.Event()
        sweeper = asyncio.create_task(self._sweep_loop(stop), name="recordings-sweep")
        try:
            yield
        finally:
            stop.set()  # between queries, never inside one (see appliance/engagement/live.py)
            try:
                await asyncio.wait_for(asyncio.shield(sweeper), STOP_S)
            except TimeoutError:
                sweeper.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sweeper
            for cid in list(self.active):
                with contextlib.suppress(Exception):
                    await self.stop_cohort(cid, "room_closed")
            for active in list(self.active.values()):
                active.done.set()
            for task in list(self._tasks):
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(asyncio.shield(task), STOP_S)

    async def _sweep_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await services.sweep_expired(self.settings)
            except Exception:
                log.exception("the recordings sweep failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.settings.recording_sweep_s)


def _recording_id(cohort_id: int, directory: str) -> int | None:
    """The recording a directory of the contract's layout (``.../recordings/{cohort}/{id}``)
    belongs to, whether the path is relative or absolute; None for any other path."""
    path = Path(directory)
    if path.parent.name != str(cohort_id) or path.parent.parent.name != "recordings":
        return None
    return int(path.name) if path.name.isdigit() and len(path.name) < 10 else None


_FAILURES = {
    "write_error": "a write error stopped the recording",
    "disk_full": "the disk was full: the recording stopped",
    "relay_restarted": "the media relay restarted: the recording stopped",
    "quota": "the cohort's recordings reached their storage quota: the recording stopped",
}
