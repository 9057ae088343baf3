"""The classroom pages' media (appliance/web/static/js/media.js) played by aiortc peers
(tests/media/peers.py) over a classroom socket (tests/helpers/classroom.py ``Peer``), for tests
and benchmarks that need media to come back after a failover as the pages bring it back.

- :class:`TrainerPage` (media.js ``TrainerMedia``): publishes on a new peer connection, the
  previous one closed (``_connect``); ``media_unavailable`` (the relay's workers starting) is
  tried again 1 s, 2 s... later, 5 times (``_republish``). After a failover the caller publishes
  again once the new socket's ``media_config`` is there, as the page does.
- :class:`LearnerPage` (``LearnerMedia``): subscribes once a trainer's track is live
  (``start``), and after a failover on the new socket's ``media_config`` whatever it says
  (``_resubscribe``); refused ``no_class_media`` (the trainer has not published there yet), it
  waits for a ``media_tracks`` with a live track and subscribes again.

The socket is read by these helpers while they wait (one reader per socket: do not read it from
another task meanwhile). Every message they read is kept in ``Peer.seen`` with the monotonic
time it was read at (``_received_at``), so a caller can tell when a chat message arrived while
a helper was negotiating.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from tests.helpers.classroom import Peer
from tests.media.peers import Learner, Trainer

__all__ = ["LearnerPage", "Refused", "TrainerPage", "ask", "next_message"]

RECEIVED_AT = "_received_at"


class Refused(Exception):
    """The server refused a request (its ``error`` reply)."""

    def __init__(self, reply: dict[str, Any]) -> None:
        super().__init__(f"{reply.get('code')}: {reply.get('detail')}")
        self.code = reply.get("code")
        self.reply = reply


async def _read(peer: Peer, deadline: float) -> dict[str, Any]:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"nothing expected within the time; got {peer.seen[-5:]}")
        msg = await peer._recv(left)
        if msg is not None:
            msg[RECEIVED_AT] = time.monotonic()
            peer.seen.append(msg)
            return msg


async def next_message(
    peer: Peer,
    match: Callable[[dict[str, Any]], bool],
    timeout: float = 30,  # noqa: ASYNC109
    since: int = 0,
) -> dict[str, Any]:
    """The first message of ``peer.seen[since:]`` that ``match`` accepts, reading the socket
    until one comes."""
    for msg in peer.seen[since:]:
        if match(msg):
            return msg
    deadline = time.monotonic() + timeout
    while True:
        msg = await _read(peer, deadline)
        if match(msg):
            return msg


async def ask(
    peer: Peer,
    type_: str,
    want: str = "ack",
    timeout: float = 30,  # noqa: ASYNC109
    **fields: Any,
) -> dict[str, Any]:
    """Send with a fresh ``ref``; the reply of type ``want`` the server sent before its ack
    (or the ack); raises :class:`Refused` on an ``error`` reply."""
    ref = f"{type_}-{time.monotonic_ns()}"
    start = len(peer.seen)
    await peer.send(type_, ref=ref, **fields)
    reply = await next_message(peer, lambda m: m.get("ref") == ref, timeout, since=start)
    if reply["type"] != "ack":
        raise Refused(reply)
    if want == "ack":
        return reply
    return next(m for m in reversed(peer.seen[start:]) if m["type"] == want)


def live_tracks(peer: Peer) -> dict[str, bool]:
    """The trainer's live tracks as the page knows them: the last ``media_config`` or
    ``media_tracks`` the socket received."""
    for msg in reversed(peer.seen):
        if msg["type"] in ("media_config", "media_tracks"):
            return dict(msg["tracks"])
    return {}


class TrainerPage:
    """The trainer page's camera and microphone (aiortc :class:`Trainer`, its keyword
    arguments given here), published again on a new peer connection after each failover."""

    def __init__(self, **trainer_kw: Any) -> None:
        self.kw = trainer_kw
        self.media: Trainer | None = None
        #: video frames the previous connections' tracks produced
        self.frames_before = 0
        self.audio_sent = 0

    @property
    def frames_sent(self) -> int:
        """Video frames this page's camera tracks produced, every connection included."""
        now = self.media.video.frames_sent if self.media and self.media.video else 0
        return self.frames_before + now

    async def publish(self, peer: Peer, attempts: int = 6) -> None:
        for attempt in range(attempts):
            await self.close()
            self.media = Trainer(**self.kw)
            self._count_audio(self.media)
            try:
                reply = await ask(
                    peer, "media_publish", want="media_answer", sdp=await self.media.offer()
                )
            except Refused as exc:
                if exc.code != "media_unavailable" or attempt == attempts - 1:
                    raise
                await asyncio.sleep(attempt + 1)
                continue
            await self.media.answer(reply["sdp"])
            return

    def _count_audio(self, media: Trainer) -> None:
        transceiver = media.transceivers.get("audio")
        if transceiver is None:
            return
        track = transceiver.sender.track
        recv = track.recv

        async def counting() -> Any:
            frame = await recv()
            self.audio_sent += 1
            return frame

        track.recv = counting

    async def close(self) -> None:
        if self.media is not None:
            if self.media.video is not None:
                self.frames_before += self.media.video.frames_sent
            media, self.media = self.media, None
            await media.close()


class LearnerPage:
    """A learner page receiving media (aiortc :class:`Learner`, counting frames without
    decoding them by default), subscribed again on a new peer connection after each failover."""

    def __init__(self, decode: bool = False) -> None:
        self.decode = decode
        self.media: Learner | None = None
        self.subscribed_at: float | None = None

    @property
    def frames(self) -> int:
        """Video frames received on the current connection."""
        return self.media.frames["video"] if self.media else 0

    @property
    def audio(self) -> int:
        """Audio packets received on the current connection (counted, not decoded)."""
        return self.media.frames["audio"] if self.media else 0

    async def start(self, peer: Peer, timeout: float = 30) -> None:  # noqa: ASYNC109
        """``LearnerMedia.start``: subscribe now if a track is live, else when one is."""
        if not any(live_tracks(peer).values()):
            await next_message(
                peer, lambda m: m["type"] == "media_tracks" and any(m["tracks"].values()), timeout
            )
        await self.subscribe(peer, timeout)

    async def resume(self, peer: Peer, timeout: float = 30) -> None:  # noqa: ASYNC109
        """After the socket came back (maybe on another host): subscribe again on its
        ``media_config``, as the page does."""
        await next_message(peer, lambda m: m["type"] == "media_config", timeout)
        await self.subscribe(peer, timeout)

    async def subscribe(self, peer: Peer, timeout: float = 30) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while True:
            await self.close()
            since = len(peer.seen)
            try:
                offer = await ask(
                    peer, "media_subscribe", want="media_offer", timeout=deadline - time.monotonic()
                )
                break
            except Refused as exc:
                if exc.code != "no_class_media":
                    raise
            # The trainer has not published here yet: their media_tracks will say when.
            await next_message(
                peer,
                lambda m: m["type"] == "media_tracks" and any(m["tracks"].values()),
                deadline - time.monotonic(),
                since=since,
            )
        self.media = Learner(decode=self.decode)
        answer = await self.media.answer(offer["sdp"])
        await ask(peer, "media_answer", sdp=answer, timeout=deadline - time.monotonic())
        self.subscribed_at = time.monotonic()

    async def first_frame(self, timeout: float = 30) -> float:  # noqa: ASYNC109
        """When the current connection assembled its first video frame (monotonic)."""
        deadline = time.monotonic() + timeout
        while self.media is None or self.media.first_frame_at is None:
            if time.monotonic() > deadline:
                raise TimeoutError("no video frame in time")
            await asyncio.sleep(0.02)
        return self.media.first_frame_at

    async def close(self) -> None:
        if self.media is not None:
            media, self.media = self.media, None
            await media.close()
