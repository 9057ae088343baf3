"""The web process's side of the media workers: the same calls as ``MediaServer``, over channels.

``RemoteMediaServer`` has the methods ``MediaBridge`` uses (``room``, ``get_room``,
``close_room``, ``close``, ``ice_servers``, ``stats``) and its rooms those of ``MediaRoom``
(``publish``, ``unpublish``, ``subscribe``, ``accept_answer``, ``set_quality``, ``leave``,
``live``), so the bridge does not know where the relay runs. A room lives in one worker, the
least loaded when it opens. Not wired into ``estrade serve`` yet: docs/media-workers.md.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import socket
import sys
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
    RecordingEnded,
    TracksChanged,
)
from .ladder import LEVELS
from .network import browser_ice_servers
from .observer import MediaObserver, NullObserver
from .room import SubscribeOffer
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
    Offered,
    Ok,
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
    "spawn_worker",
    "worker_port_slice",
    "worker_settings",
]

logger = logging.getLogger(__name__)

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
    """A cohort's media room in a worker: the calls of ``MediaRoom`` the bridge makes."""

    def __init__(self, worker: WorkerClient, cohort_id: int) -> None:
        self.worker = worker
        self.cohort_id = cohort_id
        self.live: tuple[str, ...] = ()
        """The slots the trainer sends (from the worker's ``TracksChanged``)."""
        self.learners: set[int] = set()
        """Learners subscribed (kept from subscribe, leave and ``LearnerClosed``)."""

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
        reply = await self.worker.request(
            lambda i: Subscribe(id=i, cohort=self.cohort_id, learner=learner_id)
        )
        assert isinstance(reply, Offered)
        self.learners.add(learner_id)
        return SubscribeOffer(reply.sdp, reply.slots)

    async def accept_answer(self, learner_id: int, answer_sdp: str) -> None:
        await self.worker.request(
            lambda i: Answer(id=i, cohort=self.cohort_id, learner=learner_id, sdp=answer_sdp)
        )

    def set_quality(self, learner_id: int, level: str) -> None:
        """Checked here (synchronous, as in one process), applied by the worker."""
        if level not in LEVELS:
            raise MediaError("bad_level", f"quality must be one of {', '.join(LEVELS)}")
        if learner_id not in self.learners:
            raise MediaError("not_subscribed", "this learner receives no media")
        future = self.worker.send(
            lambda i: Quality(id=i, cohort=self.cohort_id, learner=learner_id, level=level)
        )
        future.add_done_callback(_log_refusal)

    async def leave(self, learner_id: int, reason: str = "left") -> None:
        self.learners.discard(learner_id)
        await _unless_lost(
            self.worker,
            lambda i: Leave(id=i, cohort=self.cohort_id, learner=learner_id, reason=reason),
        )

    @property
    def learner_ids(self) -> tuple[int, ...]:
        return tuple(self.learners)


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

    async def start(self, count: int) -> None:
        """Start ``count`` worker processes and wait until each one's relay is up.

        Raises:
            SettingsError: the port range has fewer ports than workers.
            MediaError: a worker refused its settings or died while starting.
        """
        self._values = [worker_settings(self.settings, k, count) for k in range(count)]
        for index in range(count):
            worker = await spawn_worker(index, self.on_message, self._worker_lost)
            self.workers.append(worker)  # closed by close() even if it fails to start
            await self._configure(worker, self._values[index])

    @staticmethod
    async def _configure(worker: WorkerClient, values: dict[str, Any]) -> None:
        await worker.request(lambda i: Configure(id=i, index=worker.index, settings=values))

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
                continue
            del self._rooms[cid]
            cohorts.append(cid)
            # Learners' pages subscribe again after media_closed; they get the media once the
            # trainer's page, told by PublisherClosed, has published again (media_tracks).
            for learner_id in sorted(room.learners):
                self._emit(LearnerClosed(cid, learner_id, "relay_restarted"))
            room.learners.clear()
            if room.live:
                room.live = ()
                self._emit(TracksChanged(cid, ()))
        self._recordings_lost(worker)
        if any(not w.lost.is_set() for w in self.workers):
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
            await self._configure(worker, self._values[dead.index])
        except MediaError:
            return  # it died again: _worker_lost runs for it and tries once more
        self.restarts[dead.index] += 1
        logger.info("media worker %s restarted", dead.index)
        for cid in self._republish.pop(dead.index, []):
            self._emit(PublisherClosed(cid, "relay_restarted"))

    def on_message(self, index: int, message: FromWorker) -> None:
        """An event from worker ``index`` (replies never come here)."""
        if isinstance(message, Observed):
            method: Any = getattr(self.observer, message.method)
            method(*message.args, **message.kwargs)
        elif isinstance(message, StatsPush):
            self._stats[index] = message.stats
            self._figures[index] = message
        elif isinstance(message, RecordingStopped):
            self._recordings.pop(message.cohort, None)
            self._emit(event_from_wire(message))
        elif isinstance(message, Tracks | QualityStep | Closed | Unpublished):
            event = event_from_wire(message)
            room = self._rooms.get(event.cohort_id)
            if room is not None and room.worker.index == index:
                if isinstance(event, TracksChanged):
                    room.live = event.live
                elif isinstance(event, LearnerClosed):
                    room.learners.discard(event.learner_id)
            self._emit(event)

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
            raise MediaError(
                "too_many_rooms",
                f"this server already relays {self.max_rooms} classes; try again later",
            )
        alive = [w for w in self.workers if not w.lost.is_set()]
        if not alive:
            raise _unavailable()
        worker = min(alive, key=self._load)
        room = self._rooms[cohort_id] = RemoteRoom(worker, cohort_id)
        return room

    def _load(self, worker: WorkerClient) -> tuple[int, int, int]:
        rooms = [r for r in self._rooms.values() if r.worker is worker]
        return sum(len(r.learners) for r in rooms), len(rooms), worker.index

    def get_room(self, cohort_id: int) -> RemoteRoom | None:
        return self._rooms.get(cohort_id)

    async def close_room(self, cohort_id: int) -> None:
        room = self._rooms.pop(cohort_id, None)
        if room is not None:
            await _unless_lost(room.worker, lambda i: CloseRoom(id=i, cohort=cohort_id))

    async def close(self) -> None:
        self._closing = True
        for task in self._restarting:
            task.cancel()
        await asyncio.gather(*self._restarting, return_exceptions=True)
        self._rooms.clear()
        workers, self.workers = self.workers, []
        await asyncio.gather(*(w.close() for w in workers))

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
            rooms = [r for r in self._rooms.values() if r.worker is worker]
            pushed = self._figures.get(worker.index)
            workers.append(
                WorkerStats(
                    worker=worker.index,
                    up=not worker.lost.is_set(),
                    rooms=len(rooms),
                    learners=sum(len(r.learners) for r in rooms),
                    cpu_seconds=pushed.cpu_s if pushed is not None else 0.0,
                    loop_lag_s=pushed.loop_lag_s if pushed is not None else 0.0,
                    restarts=self.restarts[worker.index],
                )
            )
        return workers

    def stats(self) -> MediaServerStats:
        """The last figures each worker pushed (at most a second old), added up."""
        parts: Sequence[MediaServerStats] = list(self._stats.values())
        by_room = {cid: st for part in parts for cid, st in part.by_room.items()}
        return MediaServerStats(
            rooms=sum(p.rooms for p in parts),
            ice_failures=sum(p.ice_failures for p in parts),
            connections_lost=sum(p.connections_lost for p in parts),
            connect_timeouts=sum(p.connect_timeouts for p in parts),
            by_room=by_room,
            recordings=sum(p.recordings for p in parts),
            recording_bytes=sum(p.recording_bytes for p in parts),
            recording_segments_failed=sum(p.recording_segments_failed for p in parts),
        )
