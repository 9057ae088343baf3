"""A media worker process: one ``MediaServer`` served over the channel (docs/media-workers.md).

``python -m appliance.media.worker --fd N --index K --count C``: ``N`` is this process's end
of a UNIX ``socketpair`` made by the web process (no socket file, so nobody else can connect);
the worker takes slice ``K`` of ``C`` of the media port range. It reads its settings from
the same environment / ``ESTRADE_CONFIG`` as the web process. It stops when the channel closes
(the web process stopped or died: no orphan keeps ports open) or on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import Sequence
from typing import Any

import uvloop

from ..settings import Settings, SettingsError, load_settings
from .channel import Channel, ChannelClosed, ChannelError, open_channel
from .errors import MediaError, MediaEvent
from .ladder import LadderPolicy
from .room import MediaRoom
from .server import MediaServer
from .wire import (
    Answer,
    CloseRoom,
    Failed,
    GetStats,
    Leave,
    Observed,
    Offered,
    Ok,
    Publish,
    Quality,
    Request,
    StatsPush,
    StatsReply,
    Subscribe,
    Unpublish,
    event_to_wire,
)

__all__ = ["ChannelObserver", "Worker", "main", "worker_port_slice"]

logger = logging.getLogger(__name__)

STATS_INTERVAL_S = 1.0


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


class ChannelObserver:
    """A ``MediaObserver`` whose every call crosses the channel as an :class:`Observed`."""

    def __init__(self, send: Any) -> None:
        self._send = send

    def pli(self, direction: str, n: int = 1) -> None:
        self._send(Observed(method="pli", args=(direction, n)))

    def nack(self, direction: str, n: int = 1) -> None:
        self._send(Observed(method="nack", args=(direction, n)))

    def ice_failed(self) -> None:
        self._send(Observed(method="ice_failed"))

    def dtls_failed(self) -> None:
        self._send(Observed(method="dtls_failed"))

    def connection_established(self, *, relayed: bool) -> None:
        self._send(Observed(method="connection_established", kwargs={"relayed": relayed}))

    def first_frame(self, seconds: float) -> None:
        self._send(Observed(method="first_frame", args=(seconds,)))

    def keyframe_waited(self, seconds: float) -> None:
        self._send(Observed(method="keyframe_waited", args=(seconds,)))

    def learner_report(self, cohort_id: int, *, rtt_s: float, loss_ratio: float) -> None:
        kwargs: dict[str, float | bool] = {"rtt_s": rtt_s, "loss_ratio": loss_ratio}
        self._send(Observed(method="learner_report", args=(cohort_id,), kwargs=kwargs))


class Worker:
    """Serves one channel: each request in its own task (as concurrent as in one process)."""

    def __init__(self, settings: Settings, channel: Channel[Request]) -> None:
        self.channel = channel
        ladder = LadderPolicy(
            down_loss=settings.media_step_down_loss, down_rtt_s=settings.media_step_down_rtt_s
        )
        self.server = MediaServer(
            settings, self._on_event, ladder=ladder, observer=ChannelObserver(self._send)
        )
        self._tasks: set[asyncio.Task[None]] = set()

    def _send(self, message: Any) -> None:
        with contextlib.suppress(ChannelClosed):  # the web process is gone: run() is ending
            self.channel.write(message)

    def _on_event(self, event: MediaEvent) -> None:
        self._send(event_to_wire(event))

    async def run(self) -> None:
        """Serve until the channel closes (or the task is cancelled), then close every peer."""
        pusher = asyncio.ensure_future(self._push_stats())
        try:
            while True:
                try:
                    request = await self.channel.receive()
                except ChannelClosed:
                    break
                except ChannelError:
                    # A bad frame from our own web process: a bug or a version mismatch.
                    # The stream cannot be trusted any more; stop (the supervisor restarts).
                    logger.exception("media worker: bad frame on the channel")
                    break
                task = asyncio.ensure_future(self._handle(request))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            pusher.cancel()
            await asyncio.gather(pusher, return_exceptions=True)
            await self.server.close()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.channel.close()

    async def _push_stats(self) -> None:
        while True:
            await asyncio.sleep(STATS_INTERVAL_S)
            self._send(StatsPush(stats=self.server.stats()))

    async def _handle(self, request: Request) -> None:
        reply: Ok | Offered | StatsReply | Failed
        try:
            reply = await self._call(request)
        except MediaError as exc:
            reply = Failed(id=request.id, code=exc.code, message=exc.message)
        except Exception:
            logger.exception("media worker: %s failed", type(request).__name__)
            reply = Failed(
                id=request.id, code="media_failed", message="the media relay failed on this request"
            )
        self._send(reply)

    def _room(self, cohort_id: int) -> MediaRoom:
        room = self.server.get_room(cohort_id)
        if room is None:
            raise MediaError("room_closed", "the class's media is closed")
        return room

    async def _call(self, request: Request) -> Ok | Offered | StatsReply:
        rid = request.id
        if isinstance(request, Publish):
            room = self.server.room(request.cohort)
            answer = await room.publish(request.sdp, request.slots, trainer_id=request.trainer)
            return Ok(id=rid, value=answer)
        if isinstance(request, Subscribe):
            offer = await self._room(request.cohort).subscribe(request.learner)
            return Offered(id=rid, sdp=offer.sdp, slots=offer.slots)
        if isinstance(request, Answer):
            await self._room(request.cohort).accept_answer(request.learner, request.sdp)
        elif isinstance(request, Quality):
            self._room(request.cohort).set_quality(request.learner, request.level)
        elif isinstance(request, Leave | Unpublish):
            found = self.server.get_room(request.cohort)
            if found is not None:
                if isinstance(request, Leave):
                    await found.leave(request.learner, reason=request.reason)
                else:
                    await found.unpublish()
        elif isinstance(request, CloseRoom):
            await self.server.close_room(request.cohort)
        elif isinstance(request, GetStats):
            return StatsReply(id=rid, stats=self.server.stats())
        return Ok(id=rid)


async def serve(settings: Settings, fd: int) -> None:
    sock = socket.socket(fileno=fd)
    if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
        sock.close()
        raise SettingsError(f"--fd {fd} is not a UNIX stream socket")
    channel: Channel[Request] = await open_channel(sock, Request)
    worker = Worker(settings, channel)
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):  # SIGTERM: run() closes every peer
        await worker.run()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.media.worker")
    parser.add_argument("--fd", type=int, required=True, help="this worker's socketpair end")
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--count", type=int, default=1)
    args = parser.parse_args(argv)
    try:
        base = load_settings()
        low, high = worker_port_slice(
            base.media_port_min, base.media_port_max, args.index, args.count
        )
        settings = load_settings(media_port_min=low, media_port_max=high)
    except SettingsError as exc:
        print(f"media worker {args.index}: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"media-worker {args.index}: %(levelname)s %(name)s %(message)s",
    )
    # aioice logs every candidate pair's state at INFO: one line per check and learner.
    logging.getLogger("aioice").setLevel(logging.WARNING)
    uvloop.run(serve(settings, args.fd))  # the loop `estrade serve` runs the relay on today
    return 0


if __name__ == "__main__":
    sys.exit(main())
