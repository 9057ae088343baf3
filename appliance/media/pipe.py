"""Pipes: one class over several media workers (docs/media-workers.md "Pipes").

The worker that receives the trainer (the room's *owner*) hands every frame its taps assemble
to the sibling workers that serve part of the class's learners, as mediasoup's pipe transports
do. A pipe is a UNIX stream connection from the owner to a sibling's listening socket (a path
in a directory only the service user can enter, chosen by the web process), framed like the
web process's channel (4-byte length + one msgpack msgspec message, :mod:`.channel`). One
connection per pair of workers carries every class they share.

- owner -> sibling: :class:`PipeHello` (this connection feeds cohort C), then :class:`PipeFrame`
  for each frame of each slot, numbered per slot. The owner's last keyframe and the frames
  since are sent first, so a learner joining on the sibling starts on a keyframe without a
  keyframe request.
- sibling -> owner: :class:`PipeKeyframe` when one of its learners needs a keyframe. The owner's
  :class:`~.forward.Source` coalesces them with its own learners' requests: one PLI per window
  reaches the trainer whichever worker asked. NACKs never cross: the trainer's leg is repaired
  by the owner, each learner's leg by the worker that sends to it.

A sibling's room is an ordinary :class:`~.room.MediaRoom` whose sources are
:class:`PipedSource` s: its learners, ladder, layers and lean send path are unchanged. Frames
that cannot be queued (a sibling that stopped reading: more than :data:`PIPE_BUFFER_MAX` bytes
waiting) are dropped; the sibling sees the gap in the numbering, waits for a keyframe and asks
for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable
from typing import Literal

import av
import msgspec
from aiortc.clock import current_ntp_time

from .channel import HEADER, MAX_FRAME, Channel, ChannelClosed, ChannelError
from .forward import Frame, Source
from .observer import MediaObserver
from .room import SLOTS, MediaRoom

__all__ = [
    "PIPE_BUFFER_MAX",
    "PipeFrame",
    "PipeHello",
    "PipeHub",
    "PipeKeyframe",
    "PipedSource",
]

logger = logging.getLogger(__name__)

#: bytes queued towards one sibling before frames are dropped (~10 s of a 1.5 Mbit/s class)
PIPE_BUFFER_MAX = 2 * 1024 * 1024

#: frames gathered before one write to a sibling, when batching (``media_pipe_batch_ms`` > 0):
#: with a camera at 30 frames/s and Opus every 20 ms, a write every ~37 ms instead of ~12
PIPE_BATCH_FRAMES = 3

Slot = Literal["audio", "camera", "screen"]


class _PipeMessage(msgspec.Struct, tag_field="t", forbid_unknown_fields=True, kw_only=True):
    cohort: int


class PipeHello(_PipeMessage, tag="hello"):
    """This connection now feeds ``cohort`` (keyframe requests go back on it)."""


class PipeFrame(_PipeMessage, tag="frame"):
    """One frame (VP8) or packet (Opus) of a slot, as the owner's tap assembled it."""

    slot: Slot
    seq: int
    """Per slot, +1 a frame; 0 for the held frames sent when the pipe opens."""
    keyframe: bool
    pts: int
    payloads: list[bytes]
    marker: bool
    size: int
    tid: int | None = None
    sync: bool = False
    picture_id: bool = False
    max_tid: int = 0
    data: bytes | None = None
    """The depayloaded frame, only for the ``aiortc`` send path."""


class PipeKeyframe(_PipeMessage, tag="keyframe"):
    """A learner of the sibling needs a keyframe of ``slot``."""

    slot: Slot


ToSibling = PipeHello | PipeFrame
ToOwner = PipeKeyframe

_encoder = msgspec.msgpack.Encoder()


class PipedSource(Source):
    """A slot of a sibling's room: frames come from the pipe, keyframe requests go back on it."""

    def __init__(
        self, slot: str, kind: str, observer: MediaObserver | None = None, send_path: str = "lean"
    ) -> None:
        super().__init__(slot, kind, observer, send_path)
        self.upstream: Callable[[str], None] | None = None
        self._seq: int | None = None
        self._broken = kind == "video"  # until the first keyframe
        self._asked_at = -1e9

    def connect(self, upstream: Callable[[str], None] | None) -> None:
        """Where keyframe requests go (None: the pipe closed); a pending one is sent now."""
        self.upstream = upstream
        self._asked_at = -1e9
        if upstream is not None and self._pending_since is not None:
            self._ask()

    def request_keyframe(self) -> None:
        """Ask the owner (at most once per ``pli_interval_s``: the owner coalesces across
        workers and keeps the request pending until the keyframe comes; this spares the pipe)."""
        if self.kind != "video":
            return
        self.stats.keyframe_requests += 1
        if self._pending_since is None:
            self._pending_since = time.monotonic()
        self._ask()

    def _ask(self) -> None:
        now = time.monotonic()
        if self.upstream is None or now - self._asked_at < self.pli_interval_s:
            return
        self._asked_at = now
        self.stats.plis_out += 1
        self.upstream(self.slot)

    def receive(self, message: PipeFrame) -> None:
        """A frame from the owner: delivered to this worker's learners, unless it follows a gap
        (then the video waits for a keyframe, as the owner's tap does after a loss)."""
        if message.seq:
            if self._seq is not None and message.seq != self._seq + 1:
                self._broken = self.kind == "video"
                self.stats.frames_dropped_incomplete += 1
            self._seq = message.seq
        if self._broken:
            if not message.keyframe:
                if self.tracks:
                    self.request_keyframe()
                return
            self._broken = False
        self.max_tid = message.max_tid
        ntp = current_ntp_time()
        packet = None
        if self.av_packets and message.data is not None:
            packet = av.Packet(message.data)
            packet.pts = message.pts
            packet.time_base = self.time_base
        frame = Frame(
            packet,
            message.keyframe,
            message.size,
            message.pts,
            tuple(message.payloads),
            message.marker,
            ntp,
            ((ntp >> 14) & 0xFFFFFF).to_bytes(3, "big"),
            message.tid,
            message.sync,
            message.picture_id,
        )
        self.deliver(frame)


def _frame_message(cohort: int, source: Source, frame: Frame, seq: int) -> PipeFrame:
    return PipeFrame(
        cohort=cohort,
        slot=source.slot,  # type: ignore[arg-type]  # one of SLOTS
        seq=seq,
        keyframe=bool(frame.keyframe),
        pts=frame.pts,
        payloads=list(frame.payloads),
        marker=bool(frame.marker),
        size=frame.size,
        tid=frame.tid,
        sync=bool(frame.sync),
        picture_id=bool(frame.picture_id),
        max_tid=source.max_tid,
        data=bytes(frame.packet) if frame.packet is not None else None,
    )


class _Link:
    """The owner's connection to one sibling worker (one per sibling process).

    With batching (``batch_s`` > 0) frames are gathered and written together once
    ``batch_frames`` of them wait, or when the oldest has waited ``batch_s`` (a timer that a
    flowing class never reaches: frames come every 20-33 ms): the sibling then wakes once per
    write instead of once per frame (waking a second process is the pipe's main cost,
    docs/media-workers.md "Pipes"), and the owner writes during a wake-up it has anyway. The
    frames' order and framing are unchanged. ``batch_s`` 0 writes each frame at once (the same
    path: a batch of one).
    """

    def __init__(
        self,
        index: int,
        generation: int,
        channel: Channel[ToOwner],
        batch_s: float = 0.0,
        batch_frames: int = PIPE_BATCH_FRAMES,
    ) -> None:
        self.index = index
        self.generation = generation
        self.channel = channel
        self.batch_s = batch_s
        self.batch_frames = batch_frames
        self.dropped = 0
        self.reader: asyncio.Task[None] | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._flush: asyncio.TimerHandle | None = None

    def write(self, payload: bytes) -> None:
        """Gather one encoded frame, or drop it (counted): over :data:`MAX_FRAME`, or the
        sibling has stopped reading (:data:`PIPE_BUFFER_MAX` bytes already waiting)."""
        if len(payload) > MAX_FRAME or self.channel.buffered() + self._pending_bytes > (
            PIPE_BUFFER_MAX
        ):
            self.dropped += 1
            return
        self._pending.append(HEADER.pack(len(payload)))
        self._pending.append(payload)
        self._pending_bytes += HEADER.size + len(payload)
        if not self.batch_s or len(self._pending) >= 2 * self.batch_frames:  # header + payload
            self.flush()
        elif self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(self.batch_s, self.flush)

    def flush(self) -> None:
        """Write what was gathered (in one write: one wake-up of the sibling)."""
        data = self._take()
        if data:
            with contextlib.suppress(ChannelError):  # closing: the reader drops this link
                self.channel.write_raw(data)

    def cancel(self) -> None:
        """The link closes: what was gathered is not sent."""
        self._take()

    def _take(self) -> bytes:
        """What was gathered, framed; the link is left empty and its timer stopped."""
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        return data


class _Feed:
    """One owned room's frames to its siblings: one outlet on each source, encoded once."""

    def __init__(self, room: MediaRoom) -> None:
        self.room = room
        self.links: dict[int, _Link] = {}
        self.seq: dict[str, int] = {}
        for source in room.sources.values():
            source.outlets.append(self.outlet)

    def outlet(self, source: Source, frame: Frame) -> None:
        seq = self.seq[source.slot] = self.seq.get(source.slot, 0) + 1
        if not self.links:
            return
        payload = _encoder.encode(_frame_message(self.room.cohort_id, source, frame, seq))
        for link in self.links.values():
            link.write(payload)

    def add(self, link: _Link) -> None:
        """Start feeding ``link``: hello, the held frames, then every frame (same tick)."""
        cohort = self.room.cohort_id
        link.flush()  # what was gathered for another room goes first, in order
        link.channel.write(PipeHello(cohort=cohort))
        for source in self.room.sources.values():
            for held in source.gop:
                link.write(_encoder.encode(_frame_message(cohort, source, held, 0)))
        self.links[link.index] = link

    def close(self) -> None:
        for source in self.room.sources.values():
            with contextlib.suppress(ValueError):
                source.outlets.remove(self.outlet)
        self.links.clear()


class _SiblingEnd(asyncio.Protocol):
    """The sibling's end of one pipe: each message is parsed and handed on as its bytes arrive.

    A protocol rather than a :class:`Channel`'s stream reader: no task to wake and no second
    turn of the event loop per frame (the pipe's main cost on the sibling was the loop's
    machinery, not the msgpack decoding), and every frame one read brought is handled in that
    one call. Framing and refusals are the channel's: 4-byte length, one msgpack message of
    :data:`ToSibling`; a frame over :data:`MAX_FRAME` or that does not decode closes the pipe.
    """

    _decoder: msgspec.msgpack.Decoder[ToSibling] = msgspec.msgpack.Decoder(ToSibling)

    def __init__(self, hub: PipeHub) -> None:
        self._hub = hub
        self._transport: asyncio.Transport | None = None
        #: the start of a frame whose end has not come yet
        self._rest = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's: not a subclass
        self._hub._ends.add(self)

    def data_received(self, data: bytes | bytearray) -> None:
        if self._rest:
            self._rest += data
            data = self._rest
        end = len(data)
        at = 0
        with memoryview(data) as view:
            while end - at >= HEADER.size:
                (length,) = HEADER.unpack_from(data, at)
                if length > MAX_FRAME:
                    return self._refuse(f"frame of {length} bytes exceeds {MAX_FRAME}")
                stop = at + HEADER.size + length
                if stop > end:
                    break
                try:
                    message = self._decoder.decode(view[at + HEADER.size : stop])
                except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
                    return self._refuse(f"bad frame: {exc}")
                at = stop
                self._hub._received(self, message)
        if data is self._rest:
            del self._rest[:at]  # the start of a frame that is still coming stays where it is
        else:
            self._rest = bytearray(data[at:]) if at < end else bytearray()

    def _refuse(self, why: str) -> None:
        logger.error("media pipe: bad frame from the owner (%s); closing the pipe", why)
        self._rest = bytearray()
        self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._hub._lost(self)

    def write(self, message: PipeKeyframe) -> None:
        """Send a keyframe request back (nothing if the pipe is closing)."""
        if self._transport is not None and not self._transport.is_closing():
            payload = _encoder.encode(message)
            self._transport.write(HEADER.pack(len(payload)) + payload)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class PipeHub:
    """A worker's pipes: its listening socket (as a sibling) and its links (as an owner)."""

    def __init__(
        self, server_rooms: Callable[[int], MediaRoom | None], batch_s: float = 0.0
    ) -> None:
        self._get_room = server_rooms
        #: the longest a frame piped to a sibling waits to be written with others (0: none
        #: waits; :class:`_Link`)
        self.batch_s = batch_s
        self._listener: asyncio.Server | None = None
        self._path = ""
        self._links: dict[int, _Link] = {}
        self._feeds: dict[int, _Feed] = {}
        #: cohorts this worker serves as a sibling -> the connection feeding each
        self.piped: dict[int, _SiblingEnd | None] = {}
        self._ends: set[_SiblingEnd] = set()

    # ---- sibling side ------------------------------------------------------------------------
    async def listen(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by this worker's previous process
        self._path = path
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_unix_server(self._accepted, path=path)

    def open_piped(self, room: MediaRoom, live: Iterable[str]) -> None:
        """Make ``room`` (new, or already piped) a sibling's room; set its live slots."""
        if room.cohort_id not in self.piped:
            if room.learner_ids or any(s.tracks for s in room.sources.values()):
                raise ValueError("a room with learners cannot become a piped one")
            s = room.server.settings
            room.sources = {
                slot: PipedSource(slot, kind, room.observer, s.media_send_path)
                for slot, kind in SLOTS
            }
            self.piped[room.cohort_id] = None
        wanted = set(live)
        for slot, source in room.sources.items():
            source.live = slot in wanted

    def forget(self, cohort: int) -> None:
        """The room closed here (as owner or sibling)."""
        self.piped.pop(cohort, None)
        feed = self._feeds.pop(cohort, None)
        if feed is not None:
            feed.close()

    def _accepted(self) -> _SiblingEnd:
        return _SiblingEnd(self)

    def _received(self, end: _SiblingEnd, message: ToSibling) -> None:
        if isinstance(message, PipeFrame):
            room = self._piped_room(message.cohort)
            if room is not None:
                source = room.sources[message.slot]
                assert isinstance(source, PipedSource)
                source.receive(message)
        else:
            self._hello(message.cohort, end)

    def _lost(self, end: _SiblingEnd) -> None:
        self._ends.discard(end)
        for cohort, fed_by in list(self.piped.items()):
            if fed_by is end:
                self.piped[cohort] = None
                room = self._piped_room(cohort)
                for source in room.sources.values() if room is not None else ():
                    if isinstance(source, PipedSource):
                        source.connect(None)

    def _piped_room(self, cohort: int) -> MediaRoom | None:
        return self._get_room(cohort) if cohort in self.piped else None

    def _hello(self, cohort: int, end: _SiblingEnd) -> None:
        room = self._piped_room(cohort)
        if room is None:
            return  # closed meanwhile: its frames are ignored too
        self.piped[cohort] = end

        def ask(slot: str) -> None:
            end.write(PipeKeyframe(cohort=cohort, slot=slot))  # type: ignore[arg-type]

        for source in room.sources.values():
            if isinstance(source, PipedSource):
                source.connect(ask)

    # ---- owner side --------------------------------------------------------------------------
    async def feed(self, room: MediaRoom, index: int, path: str, generation: int) -> None:
        """Pipe ``room``'s frames to worker ``index`` (its socket ``path``; ``generation``
        tells a restarted sibling's process from the dead one's)."""
        link = self._links.get(index)
        if link is not None and link.generation != generation:
            await self._drop_link(link)
            link = None
        if link is None:
            reader, writer = await asyncio.open_unix_connection(path, limit=MAX_FRAME + 64)
            link = self._links[index] = _Link(
                index, generation, Channel(reader, writer, ToOwner), self.batch_s
            )
            link.reader = asyncio.ensure_future(self._read_link(link))
        feed = self._feeds.get(room.cohort_id)
        if feed is None or feed.room is not room:
            if feed is not None:
                feed.close()
            feed = self._feeds[room.cohort_id] = _Feed(room)
        if index not in feed.links:
            feed.add(link)

    async def _read_link(self, link: _Link) -> None:
        try:
            while True:
                message = await link.channel.receive()
                feed = self._feeds.get(message.cohort)
                if feed is not None and link.index in feed.links:
                    feed.room.sources[message.slot].request_keyframe()
        except ChannelClosed:
            pass
        except ChannelError:
            logger.exception("media pipe: bad frame from worker %s; closing the pipe", link.index)
        finally:
            if self._links.get(link.index) is link:
                del self._links[link.index]
            for feed in self._feeds.values():
                if feed.links.get(link.index) is link:
                    del feed.links[link.index]
            link.cancel()
            await link.channel.close()

    async def _drop_link(self, link: _Link) -> None:
        link.cancel()
        await link.channel.close()
        if link.reader is not None:
            await asyncio.gather(link.reader, return_exceptions=True)

    def dropped(self) -> int:
        """Frames dropped because a sibling did not read (now-open links)."""
        return sum(link.dropped for link in self._links.values())

    async def close(self) -> None:
        for feed in self._feeds.values():
            feed.close()
        self._feeds.clear()
        for link in list(self._links.values()):
            await self._drop_link(link)
        if self._listener is not None:
            self._listener.close()
        for end in list(self._ends):
            end.close()
        await asyncio.sleep(0)  # their connection_lost
        if self._listener is not None:
            await self._listener.wait_closed()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
