"""A media worker process: one ``MediaServer`` served over the channel (docs/media-workers.md).

``python -m appliance.media.worker --fd N --index K``: ``N`` is this process's end of a UNIX
``socketpair`` made by the web process (no socket file, so nobody else can connect). Its
settings arrive as the first message (``Configure``: the web process's own, with this worker's
slice of the media port range), so a worker never disagrees with the web process about them.
It stops when the channel closes (the web process stopped or died: no orphan keeps ports open)
or on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvloop

from ..settings import SettingsError, load_settings
from .channel import Channel, ChannelClosed, ChannelError, open_channel
from .errors import MediaError, MediaEvent
from .ladder import LadderPolicy
from .pipe import PipeHub
from .room import MediaRoom
from .server import MediaServer
from .wire import (
    Answer,
    CloseRoom,
    Configure,
    Failed,
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
    Request,
    StartRecording,
    StatsPush,
    StatsReply,
    StopRecording,
    Subscribe,
    Unpublish,
    event_to_wire,
)

__all__ = ["ChannelObserver", "Worker", "main"]

logger = logging.getLogger(__name__)

STATS_INTERVAL_S = 1.0
OBSERVE_FLUSH_S = 0.5
"""How long a worker gathers observer calls (metrics) before sending them in one message."""


class ChannelObserver:
    """A ``MediaObserver`` whose calls cross the channel, gathered: the calls of the next
    :data:`OBSERVE_FLUSH_S` go as one :class:`ObservedBatch` (PLI and NACK counts summed per
    direction), so the web process wakes once for them rather than once per call."""

    def __init__(self, send: Any, flush_s: float | None = None) -> None:
        self._send = send
        self.flush_s = OBSERVE_FLUSH_S if flush_s is None else flush_s
        self._calls: list[Observed] = []
        self._counts: dict[tuple[str, str], int] = {}
        self._timer: asyncio.TimerHandle | None = None

    def _add(self, call: Observed) -> None:
        self._calls.append(call)
        self._schedule()

    def _count(self, method: str, direction: str, n: int) -> None:
        key = (method, direction)
        if key not in self._counts:
            self._counts[key] = 0
            self._calls.append(Observed(method=method, args=(direction, 0)))  # type: ignore[arg-type]
        self._counts[key] += n
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.flush_s, self.flush)

    def flush(self) -> None:
        """Send what was gathered now (also at the timer)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._calls:
            return
        calls, self._calls = self._calls, []
        for i, call in enumerate(calls):
            if call.method in ("pli", "nack") and call.args[1] == 0:
                n = self._counts.get((call.method, str(call.args[0])), 0)
                calls[i] = Observed(method=call.method, args=(call.args[0], n))
        self._counts.clear()
        self._send(ObservedBatch(calls=calls))

    def pli(self, direction: str, n: int = 1) -> None:
        self._count("pli", direction, n)

    def nack(self, direction: str, n: int = 1) -> None:
        self._count("nack", direction, n)

    def ice_failed(self) -> None:
        self._add(Observed(method="ice_failed"))

    def dtls_failed(self) -> None:
        self._add(Observed(method="dtls_failed"))

    def connection_established(self, *, relayed: bool) -> None:
        self._add(Observed(method="connection_established", kwargs={"relayed": relayed}))

    def first_frame(self, seconds: float) -> None:
        self._add(Observed(method="first_frame", args=(seconds,)))

    def keyframe_waited(self, seconds: float) -> None:
        self._add(Observed(method="keyframe_waited", args=(seconds,)))

    def learner_report(self, cohort_id: int, *, rtt_s: float, loss_ratio: float) -> None:
        kwargs: dict[str, float | bool] = {"rtt_s": rtt_s, "loss_ratio": loss_ratio}
        self._add(Observed(method="learner_report", args=(cohort_id,), kwargs=kwargs))


class Worker:
    """Serves one channel: a ``Configure`` first, then each request in its own task (as
    concurrent as in one process)."""

    def __init__(self, channel: Channel[Request]) -> None:
        self.channel = channel
        self.server: MediaServer | None = None
        self.pipes: PipeHub | None = None
        self.index = -1
        self._tasks: set[asyncio.Task[None]] = set()
        self.observer: ChannelObserver | None = None

    def _send(self, message: Any) -> None:
        with contextlib.suppress(ChannelClosed):  # the web process is gone: run() is ending
            self.channel.write(message)

    def _on_event(self, event: MediaEvent) -> None:
        self._send(event_to_wire(event))

    def _configure(self, request: Configure) -> MediaServer:
        settings = load_settings(env={}, **request.settings)
        self.index = request.index
        ladder = LadderPolicy(
            down_loss=settings.media_step_down_loss, down_rtt_s=settings.media_step_down_rtt_s
        )
        self.observer = ChannelObserver(self._send)
        return MediaServer(settings, self._on_event, ladder=ladder, observer=self.observer)

    async def _next(self) -> Request | None:
        try:
            return await self.channel.receive()
        except ChannelClosed:
            return None
        except ChannelError:
            # A bad frame from our own web process: a bug or a version mismatch. The stream
            # cannot be trusted any more; stop (the web process notices and restarts us).
            logger.exception("media worker: bad frame on the channel")
            return None

    async def run(self) -> None:
        """Serve until the channel closes (or the task is cancelled), then close every peer."""
        pusher: asyncio.Task[None] | None = None
        try:
            first = await self._next()
            if not isinstance(first, Configure):
                logger.error("media worker: the channel did not start with Configure")
                return
            try:
                self.server = self._configure(first)
            except (SettingsError, TypeError) as exc:
                self._send(Failed(id=first.id, code="bad_settings", message=str(exc)))
                return
            server = self.server
            self.pipes = PipeHub(server.get_room, server.settings.media_pipe_batch_ms / 1000)
            if first.pipe_path:
                try:
                    await self.pipes.listen(first.pipe_path)
                except OSError as exc:
                    self._send(Failed(id=first.id, code="bad_settings", message=str(exc)))
                    return
            self._send(Ok(id=first.id))
            pusher = asyncio.ensure_future(self._push_stats(self.server))
            while (request := await self._next()) is not None:
                task = asyncio.ensure_future(self._handle(self.server, request))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            if pusher is not None:
                pusher.cancel()
                await asyncio.gather(pusher, return_exceptions=True)
            if self.pipes is not None:
                await self.pipes.close()
            if self.server is not None:
                await self.server.close()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            if self.observer is not None:
                self.observer.flush()
            await self.channel.close()

    async def _push_stats(self, server: MediaServer) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(STATS_INTERVAL_S)
            # The same measure as the web process's LoopMonitor (metrics/looplag.py).
            lag = max(0.0, time.perf_counter() - start - STATS_INTERVAL_S)
            usage = resource.getrusage(resource.RUSAGE_SELF)
            cpu = usage.ru_utime + usage.ru_stime
            self._send(StatsPush(stats=server.stats(), cpu_s=cpu, loop_lag_s=lag))

    async def _handle(self, server: MediaServer, request: Request) -> None:
        reply: Ok | Offered | StatsReply | Failed
        try:
            reply = await self._call(server, request)
        except MediaError as exc:
            reply = Failed(id=request.id, code=exc.code, message=exc.message)
        except Exception:
            logger.exception("media worker: %s failed", type(request).__name__)
            reply = Failed(
                id=request.id, code="media_failed", message="the media relay failed on this request"
            )
        self._send(reply)

    def _hub(self) -> PipeHub:
        if self.pipes is None:
            raise MediaError("no_pipes", "this media worker has no pipes")
        return self.pipes

    def _pipe_in(self, server: MediaServer, request: PipeIn) -> None:
        """Serve part of a class from its owner's frames (docs/media-workers.md "Pipes")."""
        pipes = self._hub()
        if request.cohort not in pipes.piped and server.get_room(request.cohort) is not None:
            raise MediaError("room_owned", "this worker receives the class's trainer itself")
        try:
            pipes.open_piped(server.room(request.cohort), request.live)
        except ValueError as exc:
            raise MediaError("room_owned", str(exc)) from None

    async def _pipe_out(self, server: MediaServer, request: PipeOut) -> None:
        """Send the frames of a class this worker owns to a sibling worker too."""
        pipes = self._hub()
        room = self._room(server, request.cohort)
        if request.cohort in pipes.piped:
            raise MediaError("room_piped", "this worker does not receive the class's trainer")
        try:
            await pipes.feed(room, request.to, request.path, request.generation)
        except OSError as exc:
            why = f"no pipe to worker {request.to}: {exc}"
            raise MediaError("media_unavailable", why) from None

    @staticmethod
    def _room(server: MediaServer, cohort_id: int) -> MediaRoom:
        room = server.get_room(cohort_id)
        if room is None:
            raise MediaError("room_closed", "the class's media is closed")
        return room

    async def _call(self, server: MediaServer, request: Request) -> Ok | Offered | StatsReply:
        rid = request.id
        if isinstance(request, Configure):
            raise MediaError("already_configured", "this media worker is already configured")
        if isinstance(request, Publish):
            if self.pipes is not None and request.cohort in self.pipes.piped:
                raise MediaError("room_piped", "this worker does not receive the class's trainer")
            room = server.room(request.cohort)
            answer = await room.publish(request.sdp, request.slots, trainer_id=request.trainer)
            return Ok(id=rid, value=answer)
        if isinstance(request, Subscribe):
            offer = await self._room(server, request.cohort).subscribe(request.learner)
            return Offered(id=rid, sdp=offer.sdp, slots=offer.slots)
        if isinstance(request, Answer):
            await self._room(server, request.cohort).accept_answer(request.learner, request.sdp)
        elif isinstance(request, Quality):
            self._room(server, request.cohort).set_quality(request.learner, request.level)
        elif isinstance(request, Leave | Unpublish):
            found = server.get_room(request.cohort)
            if found is not None:
                if isinstance(request, Leave):
                    await found.leave(request.learner, reason=request.reason)
                else:
                    await found.unpublish()
        elif isinstance(request, CloseRoom):
            if self.pipes is not None:
                self.pipes.forget(request.cohort)
            await server.close_room(request.cohort)
        elif isinstance(request, PipeIn):
            self._pipe_in(server, request)
        elif isinstance(request, PipeOut):
            await self._pipe_out(server, request)
        elif isinstance(request, GetStats):
            return StatsReply(id=rid, stats=server.stats())
        elif isinstance(request, StartRecording):
            await server.start_recording(request.cohort, Path(request.directory))
        elif isinstance(request, StopRecording):
            await server.stop_recording(request.cohort)
        return Ok(id=rid)


async def serve(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.close()
        raise SystemExit(f"media worker: --fd {fd} is not a UNIX stream socket")
    channel: Channel[Request] = await open_channel(sock, Request)
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):  # SIGTERM: run() closes every peer
        await Worker(channel).run()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m appliance.media.worker",
        description="An Estrade media worker; started by the web process, not by hand.",
    )
    parser.add_argument("--fd", type=int, required=True, help="this worker's socketpair end")
    parser.add_argument("--index", type=int, default=0, help="the worker's number (for logs)")
    args = parser.parse_args(argv)
    # Ctrl-C in a terminal reaches the whole process group: the web process closes the channel
    # (and the worker then closes its peers and exits); a traceback here would only be noise.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=os.environ.get("ESTRADE_LOG_LEVEL", "info").upper(),
        format=f"media-worker {args.index}: %(levelname)s %(name)s %(message)s",
    )
    # aioice logs every candidate pair's state at INFO: one line per check and learner.
    logging.getLogger("aioice").setLevel(logging.WARNING)
    # The imported modules (aiortc, PyAV...) live as long as the process: out of the
    # collector's sight, a full collection does not pause the relay to scan them (cli.py).
    gc.freeze()
    uvloop.run(serve(args.fd))  # the loop `estrade serve` runs the relay on today
    return 0


if __name__ == "__main__":
    sys.exit(main())
