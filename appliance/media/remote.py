"""The web process's side of the media workers: the same calls as ``MediaServer``, over channels.

``RemoteMediaServer`` has the methods ``MediaBridge`` uses (``room``, ``get_room``,
``close_room``, ``close``, ``ice_servers``, ``stats``) and its rooms those of ``MediaRoom``
(``publish``, ``unpublish``, ``subscribe``, ``accept_answer``, ``set_quality``, ``leave``,
``live``), so the bridge does not know where the relay runs. A room's trainer is received by
one worker (its owner, the least loaded when the room opens); once the owner serves
``media_worker_learners`` of its learners, new ones go to the least-loaded worker of the room
and the owner pipes the class's frames there (media/pipe.py). docs/media-workers.md.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from ..settings import Settings, SettingsError
from .channel import Channel, ChannelClosed, ChannelError, open_channel
from .errors import (
    LearnerClosed,
    MediaError,
    MediaEvent,
    PublisherClosed,
    QualityChanged,
    RecordingEnded,
    TracksChanged,
    too_many_rooms,
)
from .ladder import LEVELS
from .network import browser_ice_servers
from .observer import MediaObserver, NullObserver
from .room import MediaRoomStats, SubscribeOffer
from .server import MediaServerStats
from .wire import (
    Answer,
    Closed,
    CloseRoom,
    Configure,
    Failed,
    FromWorker,
    GetStats,
    Leave,
    Observed,
    ObservedBatch,
    Offered,
    Ok,
    PipeIn,
    PipeOut,
    Publish,
    Quality,
    QualityStep,
    RecordingStopped,
    Request,
    StartRecording,
    StatsPush,
    StatsReply,
    StopRecording,
    Subscribe,
    Tracks,
    Unpublish,
    Unpublished,
    event_from_wire,
)

__all__ = [
    "RemoteMediaServer",
    "RemoteRoom",
    "WorkerClient",
    "WorkerStats",
    "merge_room_stats",
    "spawn_worker",
    "worker_port_slice",
    "worker_settings",
]

logger = logging.getLogger(__name__)

#: Once a class spreads, its owner counts as serving this many more learners than it does:
#: receiving the trainer (SRTP, frame assembly, NACKs, RTX) costs about what sending to eight
#: learners does (benchmarks/relay.py, camera + Opus: the owner's idle CPU ~0.033 core over
#: ~0.004 per learner), so new learners go to the siblings until the *work* is even.
TRAINER_LEARNERS = 8

Reply = Ok | Offered | StatsReply


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """One worker process's figures (the metrics layer's ``MediaWorker``)."""

    worker: int
    """Its index: 0..media_workers-1."""
    up: bool
    rooms: int
    learners: int
    cpu_seconds: float
    """CPU seconds of its current process (all threads)."""
    loop_lag_s: float
    restarts: int


_ids = itertools.count(1)


class WorkerClient:
    """One worker's channel: requests matched to replies by id, everything else to ``on_message``.

    Args:
        index: the worker's number (its port slice, its ``worker`` label).
        channel: the web process's end of the channel.
        on_message: called with (index, event) for each event the worker sends.
        process: the worker's process, if this client started it (awaited on close).
        on_lost: called once when the channel ends (the worker died or was closed).
    """

    def __init__(
        self,
        index: int,
        channel: Channel[FromWorker],
        on_message: Callable[[int, FromWorker], None],
        process: asyncio.subprocess.Process | None = None,
        on_lost: Callable[[WorkerClient], None] | None = None,
    ) -> None:
        self.index = index
        self.channel = channel
        self.process = process
        self._on_message = on_message
        self._on_lost = on_lost
        self.started_at = time.monotonic()
        self._pending: dict[int, asyncio.Future[Reply]] = {}
        self.lost: asyncio.Event = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    async def request(self, make: Callable[[int], Request]) -> Reply:
        """Send ``make(id)`` and wait for its reply; a ``Failed`` is raised as ``MediaError``."""
        future = self.send(make)
        return await future

    def send(self, make: Callable[[int], Request]) -> asyncio.Future[Reply]:
        """Send without waiting (the future holds the reply or the ``MediaError``)."""
        if self.lost.is_set():
            raise _unavailable()
        rid = next(_ids)
        future: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        try:
            self.channel.write(make(rid))
        except ChannelError:
            del self._pending[rid]
            raise _unavailable() from None
        return future

    async def _read(self) -> None:
        try:
            while True:
                message = await self.channel.receive()
                if isinstance(message, Ok | Offered | StatsReply | Failed):
                    future = self._pending.pop(message.id, None)
                    if future is None or future.done():
                        continue
                    if isinstance(message, Failed):
                        future.set_exception(MediaError(message.code, message.message))
                    else:
                        future.set_result(message)
                else:
                    self._on_message(self.index, message)
        except ChannelClosed:
            pass
        except ChannelError:
            logger.exception("media worker %s sent a bad frame; dropping it", self.index)
        finally:
            self.lost.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(_unavailable())
            self._pending.clear()
            if self._on_lost is not None:
                try:
                    self._on_lost(self)
                except Exception:
                    logger.exception("media worker %s: the lost handler failed", self.index)

    async def close(self) -> None:
        """Close the channel (the worker then closes its peers and exits) and wait for it."""
        await self.channel.close()
        await asyncio.gather(self._reader, return_exceptions=True)
        if self.process is not None:
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


def worker_port_slice(port_min: int, port_max: int, index: int, count: int) -> tuple[int, int]:
    """Worker ``index``'s share of ``port_min..port_max``: disjoint, equal, in order.

    ``(0, 0)`` (no range: ephemeral ports) stays ``(0, 0)``.

    Raises:
        SettingsError: the range has fewer ports than workers.
    """
    if not 0 <= index < count:
        raise SettingsError(f"worker index {index} is not within 0..{count - 1}")
    if port_min == 0 and port_max == 0:
        return 0, 0
    size = (port_max - port_min + 1) // count
    if size < 1:
        raise SettingsError(
            f"setting 'media_port_min': {port_min}-{port_max} has fewer ports than {count} workers"
        )
    low = port_min + index * size
    return low, low + size - 1


def worker_settings(settings: Settings, index: int, count: int) -> dict[str, Any]:
    """What ``Configure`` carries to worker ``index``: the settings, with its port slice."""
    low, high = worker_port_slice(settings.media_port_min, settings.media_port_max, index, count)
    values: dict[str, Any] = msgspec.to_builtins(settings, enc_hook=str)  # Path -> str
    values.update(media_port_min=low, media_port_max=high)
    # Secrets the relay never uses stay in the web process (turn_secret: the relay's TURN use).
    values.update(secret_key="", metrics_token="")
    return values


def _gone(worker: WorkerClient) -> bool:
    """Whether the worker is lost or its process has ended, even if its channel's end is not
    read yet (several killed at once). The process is not reaped: asyncio's watcher does it."""
    if worker.lost.is_set():
        return True
    process = worker.process
    if process is None:
        return False
    if process.returncode is not None:
        return True
    try:
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        return os.waitid(os.P_PID, process.pid, flags) is not None
    except ChildProcessError:  # reaped already
        return True


def _unavailable() -> MediaError:
    return MediaError("media_unavailable", "the media relay is restarting; try again")


async def spawn_worker(
    index: int,
    on_message: Callable[[int, FromWorker], None],
    on_lost: Callable[[WorkerClient], None] | None = None,
) -> WorkerClient:
    """Start ``python -m appliance.media.worker`` with one end of a socketpair (not configured
    yet: send ``Configure`` first)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "appliance.media.worker",
            f"--fd={theirs.fileno()}",
            f"--index={index}",
            pass_fds=(theirs.fileno(),),
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    channel: Channel[FromWorker] = await open_channel(ours, FromWorker)
    return WorkerClient(index, channel, on_message, process, on_lost)


class RemoteRoom:
    """A cohort's media room in the workers: the calls of ``MediaRoom`` the bridge makes.

    ``worker`` receives the trainer (the owner); each learner is placed on one worker
    (``placed``), the owner or a sibling fed through a pipe (``pipes``).
    """

    def __init__(
        self, worker: WorkerClient, cohort_id: int, server: RemoteMediaServer | None = None
    ) -> None:
        self.worker = worker
        self.cohort_id = cohort_id
        self.live: tuple[str, ...] = ()
        """The slots the trainer sends (from the owner's ``TracksChanged``)."""
        self.placed: dict[int, WorkerClient] = {}
        """Learner id -> the worker serving it (kept from subscribe, leave, ``LearnerClosed``)."""
        self.pipes: dict[int, asyncio.Task[None]] = {}
        """Sibling worker index -> the pipe to it being opened or open."""
        self.subscribing: dict[int, WorkerClient] = {}
        """Learners whose ``Subscribe`` is on its way: a close the worker tells meanwhile is
        the old connection's (closed by the page before subscribing again)."""
        self._server = server

    @property
    def learners(self) -> set[int]:
        """Learners subscribed, on every worker."""
        return set(self.placed)

    def worker_of(self, learner_id: int) -> WorkerClient:
        return self.placed.get(learner_id, self.worker)

    async def publish(
        self, offer_sdp: str, slots: Mapping[str, str] | None = None, trainer_id: int | None = None
    ) -> str:
        cid, given = self.cohort_id, dict(slots) if slots is not None else None
        reply = await self.worker.request(
            lambda i: Publish(id=i, cohort=cid, sdp=offer_sdp, slots=given, trainer=trainer_id)
        )
        assert isinstance(reply, Ok) and reply.value is not None
        return reply.value

    async def unpublish(self) -> None:
        await _unless_lost(self.worker, lambda i: Unpublish(id=i, cohort=self.cohort_id))

    async def subscribe(self, learner_id: int) -> SubscribeOffer:
        server, cid = self._server, self.cohort_id
        old = self.placed.get(learner_id)
        target = self.worker
        if server is not None:
            limit = server.settings.media_max_learners_per_room
            if old is None and len(self.placed) >= limit:
                raise MediaError(
                    "room_full", f"this class already has {limit} learners receiving media"
                )
            target = server.place(self, learner_id)
        # Placed before the first await: learners subscribing together spread at once.
        self.placed[learner_id] = target
        try:
            if old is not None and old is not target:
                # Moved to another worker: the old connection goes (its close is not told).
                await _unless_lost(
                    old, lambda i: Leave(id=i, cohort=cid, learner=learner_id, reason="replaced")
                )
            if target is not self.worker:
                assert server is not None
                await server.pipe(self, target)
            self.subscribing[learner_id] = target
            try:
                reply = await target.request(
                    lambda i: Subscribe(id=i, cohort=cid, learner=learner_id)
                )
            finally:
                if self.subscribing.get(learner_id) is target:
                    del self.subscribing[learner_id]
        except BaseException:
            if self.placed.get(learner_id) is target:
                del self.placed[learner_id]
            raise
        assert isinstance(reply, Offered)
        return SubscribeOffer(reply.sdp, reply.slots)

    async def accept_answer(self, learner_id: int, answer_sdp: str) -> None:
        await self.worker_of(learner_id).request(
            lambda i: Answer(id=i, cohort=self.cohort_id, learner=learner_id, sdp=answer_sdp)
        )

    def set_quality(self, learner_id: int, level: str) -> None:
        """Checked here (synchronous, as in one process), applied by the learner's worker."""
        if level not in LEVELS:
            raise MediaError("bad_level", f"quality must be one of {', '.join(LEVELS)}")
        if learner_id not in self.placed:
            raise MediaError("not_subscribed", "this learner receives no media")
        future = self.worker_of(learner_id).send(
            lambda i: Quality(id=i, cohort=self.cohort_id, learner=learner_id, level=level)
        )
        future.add_done_callback(_log_refusal)

    async def leave(self, learner_id: int, reason: str = "left") -> None:
        worker = self.placed.pop(learner_id, self.worker)
        await _unless_lost(
            worker,
            lambda i: Leave(id=i, cohort=self.cohort_id, learner=learner_id, reason=reason),
        )

    @property
    def learner_ids(self) -> tuple[int, ...]:
        return tuple(self.placed)


async def _unless_lost(worker: WorkerClient, make: Callable[[int], Request]) -> None:
    """A request that closes something: nothing to do if the worker died (the connection went
    with it), so socket-close hooks never fail on a restarting worker."""
    if worker.lost.is_set():
        return
    try:
        await worker.request(make)
    except MediaError as exc:
        if exc.code != "media_unavailable":
            raise


def _pipe_in(cohort: int, live: tuple[str, ...]) -> Callable[[int], Request]:
    return lambda i: PipeIn(id=i, cohort=cohort, live=live)


def _close_room(cohort: int) -> Callable[[int], Request]:
    return lambda i: CloseRoom(id=i, cohort=cohort)


def _retrieve(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


def _log_refusal(future: asyncio.Future[Reply]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.info("media worker refused a quality change: %s", future.exception())


class RemoteMediaServer:
    """The relay in worker processes, seen from the web process (docs/media-workers.md).

    Args:
        settings: the appliance settings (``media_max_rooms``, ``stun_url``, ``turn_*``).
        on_event: called synchronously with each :data:`MediaEvent`, as by ``MediaServer``.
        observer: the web process's metrics; the workers' observer calls are replayed on it.
    """

    def __init__(
        self,
        settings: Settings,
        on_event: Callable[[MediaEvent], None] | None = None,
        observer: MediaObserver | None = None,
    ) -> None:
        self.settings = settings
        self.max_rooms = settings.media_max_rooms
        self.observer: MediaObserver = observer or NullObserver()
        self.workers: list[WorkerClient] = []
        self._on_event = on_event
        self._rooms: dict[int, RemoteRoom] = {}
        self._stats: dict[int, MediaServerStats] = {}
        self._values: list[dict[str, Any]] = []
        self._closing = False
        self._restarting: set[asyncio.Task[None]] = set()
        self.restarts: collections.Counter[int] = collections.Counter()
        """Restarts after dying, by worker index (for the metrics layer)."""
        self._figures: dict[int, StatsPush] = {}
        self._failures: collections.Counter[int] = collections.Counter()
        self._republish: dict[int, list[int]] = {}
        """Worker index -> cohorts whose trainer is told to publish again once it is back."""
        self._recordings: dict[int, tuple[WorkerClient, str]] = {}
        """Cohort -> the worker recording it and the directory (docs/recordings.md)."""
        self._pipe_dir = ""
        """A directory only this user can enter, holding each worker's pipe socket."""
        self._closers: set[asyncio.Task[None]] = set()
        self._retired: collections.Counter[tuple[int, int]] = collections.Counter()
        """(cohort, worker index) of siblings' parts being closed: their learners' closes are
        not told (those learners were told ``relay_restarted``, or their sockets are gone)."""

    async def start(self, count: int) -> None:
        """Start ``count`` worker processes and wait until each one's relay is up.

        Raises:
            SettingsError: the port range has fewer ports than workers.
            MediaError: a worker refused its settings or died while starting.
        """
        self._values = [worker_settings(self.settings, k, count) for k in range(count)]
        if count > 1:
            self._pipe_dir = tempfile.mkdtemp(prefix="estrade-pipes-")  # mode 0700
        for index in range(count):
            worker = await spawn_worker(index, self.on_message, self._worker_lost)
            self.workers.append(worker)  # closed by close() even if it fails to start
            await self._configure(worker)

    def pipe_path(self, index: int) -> str:
        """Worker ``index``'s pipe socket (empty: one worker, no pipes)."""
        return os.path.join(self._pipe_dir, f"w{index}.sock") if self._pipe_dir else ""

    async def _configure(self, worker: WorkerClient) -> None:
        values, path = self._values[worker.index], self.pipe_path(worker.index)
        await worker.request(
            lambda i: Configure(id=i, index=worker.index, settings=values, pipe_path=path)
        )

    # ---- supervision -----------------------------------------------------------------------
    restart_delay_s = 0.5
    """Wait before starting a dead worker again; doubled (up to 30 s) each further time it died
    within ``restart_delay_s`` x 20 of starting, so a worker that cannot run is not respawned in
    a tight loop."""

    def _worker_lost(self, worker: WorkerClient) -> None:
        """A worker's channel ended: its rooms are gone, their people are told, it restarts."""
        if self._closing:
            return
        code = worker.process.returncode if worker.process is not None else None
        logger.error("media worker %s stopped (exit %s); restarting it", worker.index, code)
        self._stats.pop(worker.index, None)
        self._figures.pop(worker.index, None)
        cohorts: list[int] = []
        for cid, room in list(self._rooms.items()):
            if room.worker is not worker:
                # A sibling of the room died: only its learners subscribe again (they land on
                # a live worker); the trainer and the other learners go on.
                room.pipes.pop(worker.index, None)
                for learner_id, where in sorted(room.placed.items()):
                    if where is worker:
                        del room.placed[learner_id]
                        self._emit(LearnerClosed(cid, learner_id, "relay_restarted"))
                continue
            del self._rooms[cid]
            cohorts.append(cid)
            # Learners' pages subscribe again after media_closed; they get the media once the
            # trainer's page, told by PublisherClosed, has published again (media_tracks).
            for learner_id in sorted(room.placed):
                self._emit(LearnerClosed(cid, learner_id, "relay_restarted"))
            room.placed.clear()
            self._close_pipes(room)
            if room.live:
                room.live = ()
                self._emit(TracksChanged(cid, ()))
        self._recordings_lost(worker)
        if any(not _gone(w) for w in self.workers):
            for cid in cohorts:  # another worker takes the class now
                self._emit(PublisherClosed(cid, "relay_restarted"))
        else:  # nowhere to publish yet: the trainer is told once this worker is back
            self._republish.setdefault(worker.index, []).extend(cohorts)
        if time.monotonic() - worker.started_at < self.restart_delay_s * 20:
            self._failures[worker.index] += 1  # died soon after starting: back off
        else:
            self._failures[worker.index] = 1
        delay = min(self.restart_delay_s * 2 ** (self._failures[worker.index] - 1), 30.0)
        task = asyncio.ensure_future(self._restart(worker, delay))
        self._restarting.add(task)
        task.add_done_callback(self._restarting.discard)

    async def _restart(self, dead: WorkerClient, delay: float) -> None:
        await dead.close()  # reaps the process (killed if the channel broke but it lives on)
        await asyncio.sleep(delay)
        if self._closing:
            return
        try:
            worker = await spawn_worker(dead.index, self.on_message, self._worker_lost)
        except OSError:
            logger.exception("media worker %s could not be started again", dead.index)
            return
        self.workers[dead.index] = worker
        try:
            await self._configure(worker)
        except MediaError:
            return  # it died again: _worker_lost runs for it and tries once more
        self.restarts[dead.index] += 1
        logger.info("media worker %s restarted", dead.index)
        for cid in self._republish.pop(dead.index, []):
            self._emit(PublisherClosed(cid, "relay_restarted"))

    def on_message(self, index: int, message: FromWorker) -> None:
        """An event from worker ``index`` (replies never come here)."""
        if isinstance(message, ObservedBatch):
            for call in message.calls:
                self._observe(call)
        elif isinstance(message, Observed):
            self._observe(message)
        elif isinstance(message, StatsPush):
            self._stats[index] = message.stats
            self._figures[index] = message
        elif isinstance(message, RecordingStopped):
            self._recordings.pop(message.cohort, None)
            self._emit(event_from_wire(message))
        elif isinstance(message, Tracks | QualityStep | Closed | Unpublished):
            event = event_from_wire(message)
            if (event.cohort_id, index) in self._retired:
                return  # a sibling's part of a class being closed
            room = self._rooms.get(event.cohort_id)
            if room is not None and isinstance(event, TracksChanged | PublisherClosed):
                if room.worker.index != index:
                    return  # a sibling's piped room closing: the owner speaks for the class
                if isinstance(event, TracksChanged):
                    room.live = event.live
                    for sibling in room.pipes:  # the siblings' learners follow the tracks
                        worker = self.workers[sibling]
                        if not worker.lost.is_set():
                            make = _pipe_in(room.cohort_id, event.live)
                            worker.send(make).add_done_callback(_log_refusal)
            elif room is not None and isinstance(event, LearnerClosed | QualityChanged):
                where = room.placed.get(event.learner_id)
                if where is not None and where.index != index:
                    return  # from the worker this learner left (moved, or replaced there)
                coming = room.subscribing.get(event.learner_id)
                if isinstance(event, LearnerClosed) and coming is not None:
                    return  # its old connection, closed before it subscribed again
                if isinstance(event, LearnerClosed):
                    room.placed.pop(event.learner_id, None)
            self._emit(event)

    def _observe(self, call: Observed) -> None:
        method: Any = getattr(self.observer, call.method)
        method(*call.args, **call.kwargs)

    def _emit(self, event: MediaEvent) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                logger.exception("media event handler failed on %r", event)

    def room(self, cohort_id: int) -> RemoteRoom:
        """The cohort's room, placed on the least-loaded worker when it opens."""
        room = self._rooms.get(cohort_id)
        if room is not None:
            return room
        if len(self._rooms) >= self.max_rooms:
            raise too_many_rooms(self.max_rooms)
        alive = [w for w in self.workers if not _gone(w)]
        if not alive:
            raise _unavailable()
        worker = min(alive, key=self._load)
        room = self._rooms[cohort_id] = RemoteRoom(worker, cohort_id, self)
        return room

    def _learners_on(self, worker: WorkerClient) -> int:
        return sum(1 for r in self._rooms.values() for w in r.placed.values() if w is worker)

    def _load(self, worker: WorkerClient) -> tuple[int, int, int]:
        rooms = sum(1 for r in self._rooms.values() if r.worker is worker)
        return self._learners_on(worker), rooms, worker.index

    def place(self, room: RemoteRoom, learner_id: int) -> WorkerClient:
        """The worker for a learner of ``room`` (new, or subscribing again: not counted): its
        owner until it serves ``media_worker_learners`` of them, then the live worker with the
        least of the room's work — its learners, the owner's plus :data:`TRAINER_LEARNERS` for
        the trainer it receives (then the fewest learners, then the lowest index)."""
        owner = room.worker
        alive = [w for w in self.workers if not _gone(w)]
        here = collections.Counter(w.index for lid, w in room.placed.items() if lid != learner_id)
        share = self.settings.media_worker_learners
        if not self._pipe_dir or here[owner.index] < share or owner not in alive:
            return owner
        here[owner.index] += TRAINER_LEARNERS
        return min(alive, key=lambda w: (here[w.index], self._learners_on(w), w.index))

    async def pipe(self, room: RemoteRoom, target: WorkerClient) -> None:
        """Have ``room``'s owner pipe its frames to ``target`` (once; later callers wait)."""
        task = room.pipes.get(target.index)
        if task is None:
            task = room.pipes[target.index] = asyncio.ensure_future(self._open_pipe(room, target))
            task.add_done_callback(_retrieve)  # when nobody waits any more (the room closed)
        try:
            await asyncio.shield(task)
        except MediaError:
            if room.pipes.get(target.index) is task:
                del room.pipes[target.index]
            raise

    async def _open_pipe(self, room: RemoteRoom, target: WorkerClient) -> None:
        cid, live = room.cohort_id, room.live
        await target.request(lambda i: PipeIn(id=i, cohort=cid, live=live))
        path = self.pipe_path(target.index)
        pid = target.process.pid if target.process is not None else target.index
        await room.worker.request(
            lambda i: PipeOut(id=i, cohort=cid, to=target.index, path=path, generation=pid)
        )

    def _close_pipes(self, room: RemoteRoom) -> None:
        """The siblings' parts of a room that ended (closed, or its owner died)."""
        for index in room.pipes:
            self._retired[(room.cohort_id, index)] += 1  # now: its events may be on their way
            closer = asyncio.ensure_future(self._close_part(room.cohort_id, index))
            self._closers.add(closer)
            closer.add_done_callback(self._closers.discard)
        room.pipes.clear()

    def get_room(self, cohort_id: int) -> RemoteRoom | None:
        return self._rooms.get(cohort_id)

    async def _close_part(self, cohort: int, index: int) -> None:
        key = (cohort, index)
        try:
            await _unless_lost(self.workers[index], _close_room(cohort))
        finally:
            self._retired[key] -= 1
            if not self._retired[key]:
                del self._retired[key]

    async def close_room(self, cohort_id: int) -> None:
        room = self._rooms.pop(cohort_id, None)
        if room is not None:
            self._close_pipes(room)
            await _unless_lost(room.worker, lambda i: CloseRoom(id=i, cohort=cohort_id))

    async def close(self) -> None:
        self._closing = True
        for task in self._restarting:
            task.cancel()
        await asyncio.gather(*self._restarting, return_exceptions=True)
        self._rooms.clear()
        await asyncio.gather(*self._closers, return_exceptions=True)
        workers, self.workers = self.workers, []
        await asyncio.gather(*(w.close() for w in workers))
        if self._pipe_dir:
            shutil.rmtree(self._pipe_dir, ignore_errors=True)

    def ice_servers(self, user: str = "") -> list[dict[str, str]]:
        """``iceServers`` for a browser, with fresh time-limited TURN credentials."""
        s = self.settings
        return browser_ice_servers(s.stun_url, s.turn_url, s.turn_secret, s.turn_ttl_s, user)

    # ---- recordings: in the worker that relays the class (docs/recordings.md) -------------
    async def start_recording(self, cohort_id: int, directory: Path) -> None:
        if cohort_id in self._recordings:
            raise MediaError("already_recording", "this class is already being recorded")
        worker = self.room(cohort_id).worker
        folder = str(directory)
        await worker.request(lambda i: StartRecording(id=i, cohort=cohort_id, directory=folder))
        self._recordings[cohort_id] = (worker, folder)

    async def stop_recording(self, cohort_id: int) -> None:
        found = self._recordings.get(cohort_id)
        if found is not None:
            await _unless_lost(found[0], lambda i: StopRecording(id=i, cohort=cohort_id))

    def recording(self, cohort_id: int) -> bool:
        return cohort_id in self._recordings

    def _recordings_lost(self, worker: WorkerClient) -> None:
        """The worker died: its recordings ended there (the web side finalizes them)."""
        for cid, (owner, folder) in list(self._recordings.items()):
            if owner is worker:
                del self._recordings[cid]
                self._emit(RecordingEnded(cid, folder, "relay_restarted", None))

    async def fetch_stats(self) -> MediaServerStats:
        """Every worker's figures now (the operator page; a scrape uses :meth:`stats`)."""
        alive = [w for w in self.workers if not w.lost.is_set()]
        replies = await asyncio.gather(*(w.request(lambda i: GetStats(id=i)) for w in alive))
        for worker, reply in zip(alive, replies, strict=True):
            assert isinstance(reply, StatsReply)
            self._stats[worker.index] = reply.stats
        return self.stats()

    def worker_stats(self) -> list[WorkerStats]:
        """Each worker's figures, for ``/metrics`` (label ``worker``) and the operator page."""
        workers: list[WorkerStats] = []
        for worker in self.workers:
            rooms = [
                r for r in self._rooms.values() if r.worker is worker or worker.index in r.pipes
            ]
            pushed = self._figures.get(worker.index)
            workers.append(
                WorkerStats(
                    worker=worker.index,
                    up=not worker.lost.is_set(),
                    rooms=len(rooms),
                    learners=self._learners_on(worker),
                    cpu_seconds=pushed.cpu_s if pushed is not None else 0.0,
                    loop_lag_s=pushed.loop_lag_s if pushed is not None else 0.0,
                    restarts=self.restarts[worker.index],
                )
            )
        return workers

    def stats(self) -> MediaServerStats:
        """The last figures each worker pushed (at most a second old), added up."""
        parts: Sequence[MediaServerStats] = list(self._stats.values())
        seen: dict[int, list[tuple[int, MediaRoomStats]]] = {}
        for index, part in self._stats.items():
            for cid, st in part.by_room.items():
                seen.setdefault(cid, []).append((index, st))
        by_room: dict[int, MediaRoomStats] = {}
        for cid, found in seen.items():
            room = self._rooms.get(cid)
            owner = room.worker.index if room is not None else found[0][0]
            by_room[cid] = merge_room_stats(owner, found)
        return MediaServerStats(
            rooms=len(by_room),  # a class over several workers counts once
            ice_failures=sum(p.ice_failures for p in parts),
            connections_lost=sum(p.connections_lost for p in parts),
            connect_timeouts=sum(p.connect_timeouts for p in parts),
            by_room=by_room,
            recordings=sum(p.recordings for p in parts),
            recording_bytes=sum(p.recording_bytes for p in parts),
            recording_segments_failed=sum(p.recording_segments_failed for p in parts),
        )


def merge_room_stats(owner: int, parts: Sequence[tuple[int, MediaRoomStats]]) -> MediaRoomStats:
    """One room's figures from the workers serving it: what the trainer sent from its owner,
    what went to learners added up over the owner and its siblings."""
    if len(parts) == 1:
        return parts[0][1]
    first = next((st for index, st in parts if index == owner), parts[0][1])
    rooms = [st for _, st in parts]
    joins = [s for st in rooms for s in st.join_to_first_frame_s]
    return dataclasses.replace(
        first,
        learners=sum(st.learners for st in rooms),
        frames_forwarded=sum(st.frames_forwarded for st in rooms),
        bytes_forwarded=sum(st.bytes_forwarded for st in rooms),
        send_bitrate_bps=sum(st.send_bitrate_bps for st in rooms),
        packets_forwarded=sum(st.packets_forwarded for st in rooms),
        queue_overflows=sum(st.queue_overflows for st in rooms),
        keyframe_requests=sum(st.keyframe_requests for st in rooms),
        plis_in=sum(st.plis_in for st in rooms),
        nacks_in=sum(st.nacks_in for st in rooms),
        keyframe_wait_s_max=max(st.keyframe_wait_s_max for st in rooms),
        join_to_first_frame_s=joins[-200:],
        per_learner={k: v for st in rooms for k, v in st.per_learner.items()},
    )
