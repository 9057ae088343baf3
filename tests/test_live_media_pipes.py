"""One class over two media workers (pipes, docs/media-workers.md "Pipes"): the app under
uvicorn with ``media_workers=2`` and a small per-worker share, aiortc peers signalling over real
classroom sockets.

The trainer is received by one worker (the owner); past ``media_worker_learners`` learners, the
next ones are served by the other worker from frames the owner pipes to it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import signal
import time
from typing import Any

import pytest

from appliance.accounts import schemas as s
from appliance.accounts import services
from appliance.media.remote import RemoteMediaServer, RemoteRoom
from appliance.settings import Settings
from tests.helpers.classroom import LiveServer, Peer
from tests.helpers.world import World
from tests.media.peers import Learner, Trainer, wait_for
from tests.test_live_media import learner_cookie, publish, subscribe

#: the workers' keyframe-request window (Source.pli_interval_s; not patched in other processes)
PLI_WINDOW_S = 0.5


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, media_workers=2, media_worker_learners=2)


async def learner_sockets(live: LiveServer, world: World, count: int) -> list[tuple[int, Peer]]:
    """``count`` learners of the cohort (the world's one first), each with a classroom socket."""
    cid = world.cohort.id
    ids = [world.learner.id]
    for n in range(count - 1):
        user = await services.create_user(
            s.UserIn(email=f"pipe{n}@example.org", display_name=f"Pipe {n}", role="learner")
        )
        await services.enrol(cid, user.id)
        ids.append(user.id)
    socks = []
    for uid in ids:
        sock = await live.connect(await learner_cookie(live, cid, uid), cid)
        await sock.expect("media_config")
        socks.append((uid, sock))
    return socks


def record_plis(trainer: Trainer) -> list[float]:
    """When each PLI reached the trainer's camera sender."""
    times: list[float] = []
    sender = trainer.transceivers["camera"].sender
    handle = sender._handle_rtcp_packet

    async def observe(packet: Any) -> None:
        if getattr(packet, "fmt", None) == 1 and type(packet).__name__ == "RtcpPsfbPacket":
            times.append(time.monotonic())
        await handle(packet)

    sender._handle_rtcp_packet = observe
    return times


async def start_class(
    live: LiveServer, world: World, learners: int
) -> tuple[Peer, Trainer, list[tuple[int, Peer]]]:
    tsock = await live.connect(await live.cookie(world, "trainer"), world.cohort.id)
    await tsock.expect("media_config")
    socks = await learner_sockets(live, world, learners)
    await tsock.request("session_start")
    trainer = Trainer()
    await publish(tsock, trainer)
    for _, sock in socks:
        await sock.expect("media_tracks", tracks={"audio": True, "camera": True, "screen": False})
    return tsock, trainer, socks


def delivered(peers: list[Learner]) -> float:
    """Frames each learner assembled against the frames between its first and its last (RTP
    timestamps advance 3000 per frame at 30 fps), as benchmarks/relay.py reads it."""
    got = sum(len(p.assembled) for p in peers)
    expected = sum((p.assembled[-1][0] - p.assembled[0][0]) // 3000 + 1 for p in peers)
    return got / expected


def spread(room: RemoteRoom) -> dict[int, int]:
    """Learners per worker index."""
    counts: dict[int, int] = {}
    for worker in room.placed.values():
        counts[worker.index] = counts.get(worker.index, 0) + 1
    return counts


async def test_a_class_spread_over_two_workers(live: LiveServer, world: World) -> None:
    media = live.app.state.media.server
    assert isinstance(media, RemoteMediaServer)
    tsock, trainer, socks = await start_class(live, world, 5)
    plis = record_plis(trainer)
    peers: dict[int, Learner] = {}
    try:
        room = media.get_room(world.cohort.id)
        assert room is not None
        owner = room.worker.index
        # Two learners on the owner (its share), the third on the other worker.
        for uid, sock in socks[:3]:
            peers[uid] = Learner()
            await subscribe(sock, peers[uid])
        assert spread(room) == {owner: 2, 1 - owner: 1}
        # A learner subscribing again (a reconnect) keeps its place: it does not count itself.
        first, first_sock = socks[0]
        await peers[first].close()
        peers[first] = Learner()
        await subscribe(first_sock, peers[first])
        assert spread(room) == {owner: 2, 1 - owner: 1}
        assert room.worker_of(first) is room.worker
        await wait_for(lambda: all(p.frames["video"] >= 30 for p in peers.values()), within=20)
        await wait_for(lambda: all(p.frames["audio"] >= 30 for p in peers.values()), within=10)

        # A late joiner goes to the least-loaded worker of the room (the sibling) and starts on
        # a keyframe the sibling held (no keyframe request).
        uid, sock = socks[3]
        before = len(plis)
        late = peers[uid] = Learner()
        await subscribe(sock, late)
        assert spread(room) == {owner: 2, 1 - owner: 2}
        assert room.worker_of(uid).index == 1 - owner
        # Two each, but the owner also receives the trainer (TRAINER_LEARNERS learners' worth
        # of work): the next one goes to the sibling too.
        uid5, sock5 = socks[4]
        peers[uid5] = Learner()
        await subscribe(sock5, peers[uid5])
        assert spread(room) == {owner: 2, 1 - owner: 3}
        await wait_for(lambda: late.frames["video"] >= 30 and late.frames["audio"] >= 30, 20)
        for peer in peers.values():
            assert peer.assembled_keyframes[0], "every learner starts on a keyframe"
            assert peer.sizes and set(peer.sizes) == {(320, 240)}
        assert late.plis_sent == 0

        # Keyframe requests from learners on both workers: one PLI per window reaches the
        # trainer (the owner coalesces its siblings' requests with its own).
        before = len(plis)
        for _ in range(6):
            for peer in peers.values():
                receiver = next(t.receiver for t in peer.pc.getTransceivers() if t.kind == "video")
                await receiver._send_rtcp_pli(peer.video_ssrc)
            await asyncio.sleep(0.25)
        await asyncio.sleep(2 * PLI_WINDOW_S)
        reached = plis[before:]
        assert 1 <= len(reached) <= 6 / (PLI_WINDOW_S / 0.25) + 2
        gaps = [b - a for a, b in itertools.pairwise(reached)]
        assert all(gap >= PLI_WINDOW_S * 0.9 for gap in gaps), gaps
        stats = await media.fetch_stats()
        by_room = stats.by_room[world.cohort.id]
        assert by_room.learners == 5 and by_room.plis_in >= 6 * 5

        # Every frame the trainer sent reaches every learner on either worker.
        await asyncio.sleep(2.0)
        await trainer.close()
        await asyncio.sleep(1.5)
        ratio = delivered(list(peers.values()))
        assert ratio >= 0.999, ratio
    finally:
        await trainer.close()
        for peer in peers.values():
            await peer.close()
        for _, sock in socks:
            await sock.close()
        await tsock.close()
    await wait_for(lambda: media.get_room(world.cohort.id) is None, within=5)


async def test_a_killed_sibling_worker_moves_its_learners_and_the_others_go_on(
    live: LiveServer, world: World
) -> None:
    media = live.app.state.media.server
    assert isinstance(media, RemoteMediaServer)
    tsock, trainer, socks = await start_class(live, world, 5)
    *socks, (_, last_sock) = socks
    peers: list[Learner] = []
    try:
        room = media.get_room(world.cohort.id)
        assert room is not None
        owner = room.worker
        by_uid: dict[int, Learner] = {}
        for uid, sock in socks:
            by_uid[uid] = Learner()
            await subscribe(sock, by_uid[uid])
        peers += by_uid.values()
        await wait_for(lambda: all(p.frames["video"] >= 20 for p in peers), within=20)
        sibling = media.workers[1 - owner.index]
        assert sibling.process is not None
        moved = [(u, sk) for u, sk in socks if room.worker_of(u) is sibling]
        stayed = [by_uid[u] for u, _ in socks if room.worker_of(u) is owner]
        assert len(moved) == 2 and len(stayed) == 2
        chat_sock = next(sk for u, sk in socks if room.worker_of(u) is owner)
        pid = sibling.process.pid

        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        # The learners on the owner never stop: their frames keep coming every half second.
        counts = [p.frames["video"] for p in stayed]

        async def resubscribe(sock: Peer) -> Learner:
            await sock.expect("media_closed", reason="relay_restarted")
            await asyncio.sleep(1.0)  # the page's first retry (media.js _later: 1 s)
            again = Learner()
            peers.append(again)
            await subscribe(sock, again)  # what the page does on relay_restarted
            return again

        back = asyncio.gather(*(resubscribe(sock) for _, sock in moved))
        for chats in range(10):
            await asyncio.sleep(0.5)
            now = [p.frames["video"] for p in stayed]
            assert all(b > a for a, b in zip(counts, now, strict=True)), (counts, now)
            counts = now
            # Chat never stops.
            await tsock.request("chat_send", text=f"still here {chats}")
            await chat_sock.expect("chat_message")
        again = await back
        # The moved learners receive frames again within 5 s of the kill, without reloading.
        await wait_for(lambda: all(p.first_frame_at for p in again), within=1)
        for peer in again:
            assert peer.first_frame_at is not None
            assert peer.first_frame_at - killed_at < 5.0
            assert peer.assembled_keyframes[0]
        await wait_for(lambda: all(p.frames["video"] >= 10 for p in again), within=10)
        # The trainer was never asked to publish again, and the tracks never went off.
        for sock in (tsock, *(sk for _, sk in socks)):
            await sock.quiet(0.2)
        assert not [m for m in tsock.seen if m["type"] == "media_closed"]
        for _, sock in socks:
            assert not [m for m in sock.seen if m["type"] == "media_tracks"][1:]
        # The sibling is restarted. Its new process serves learners again through a new pipe:
        # the moved ones if it was up when they came back (0.5 s restart vs the page's 1 s
        # retry), else the next learner (it is then the least loaded).
        await wait_for(lambda: media.restarts == {sibling.index: 1}, within=10)
        reborn = media.workers[sibling.index]
        assert reborn is not sibling
        newcomer = Learner()
        peers.append(newcomer)
        await subscribe(last_sock, newcomer)
        assert all(not w.lost.is_set() for w in room.placed.values())
        assert reborn in room.placed.values()
        await wait_for(lambda: newcomer.frames["video"] >= 10, within=10)
        assert newcomer.assembled_keyframes[0]
    finally:
        await trainer.close()
        for peer in peers:
            await peer.close()
        for sock in (*(sk for _, sk in socks), last_sock):
            await sock.close()
        await tsock.close()


async def test_a_killed_owner_worker_has_the_trainer_republish_and_everyone_resumes(
    live: LiveServer, world: World
) -> None:
    media = live.app.state.media.server
    assert isinstance(media, RemoteMediaServer)
    tsock, trainer, socks = await start_class(live, world, 3)
    peers: list[Learner] = [trainer]  # type: ignore[list-item]
    try:
        room = media.get_room(world.cohort.id)
        assert room is not None and room.worker.process is not None
        for _, sock in socks:
            peers.append(Learner())
            await subscribe(sock, peers[-1])
        assert sorted(spread(room).values()) == [1, 2]
        await wait_for(lambda: all(p.frames["video"] >= 10 for p in peers[1:]), within=20)
        owner = room.worker

        os.kill(owner.process.pid, signal.SIGKILL)
        # Everyone is told, on either worker; the sibling's closing of its part stays silent.
        await tsock.expect("media_closed", reason="relay_restarted")
        for _, sock in socks:
            await sock.expect("media_closed", reason="relay_restarted")
        # What the pages do: the trainer publishes again (on the live worker), the learners
        # subscribe again once the tracks are back.
        again = Trainer()
        peers.append(again)  # type: ignore[arg-type]
        await publish(tsock, again)
        fresh: list[Learner] = []
        on = {"audio": True, "camera": True, "screen": False}
        for _, sock in socks:
            await sock.expect("media_tracks", tracks=on)
            fresh.append(Learner())
            await subscribe(sock, fresh[-1])
        peers += fresh
        await wait_for(lambda: all(p.frames["video"] >= 10 for p in fresh), within=20)
        assert all(p.assembled_keyframes[0] for p in fresh)
        for _, sock in socks:
            await sock.quiet(0.3)
            closes = [m["reason"] for m in sock.seen if m["type"] == "media_closed"]
            assert closes == ["relay_restarted"], closes
        await tsock.request("chat_send", text="back")
        await socks[0][1].expect("chat_message")
    finally:
        for peer in peers:
            await peer.close()
        for _, sock in socks:
            await sock.close()
        await tsock.close()


async def test_a_learner_on_a_sibling_steps_through_the_camera_layers(
    live: LiveServer, world: World
) -> None:
    """VP8 L1T3 through a pipe: the sibling knows the trainer's layers and forwards each level's
    own, picture ids consecutive, with no keyframe asked of the trainer."""
    media = live.app.state.media.server
    assert isinstance(media, RemoteMediaServer)
    tsock = await live.connect(await live.cookie(world, "trainer"), world.cohort.id)
    await tsock.expect("media_config")
    socks = await learner_sockets(live, world, 3)
    await tsock.request("session_start")
    trainer = Trainer(layered=True, frames=600)
    peers: list[Learner] = []
    try:
        await publish(tsock, trainer)
        for _, sock in socks:
            await sock.expect(
                "media_tracks", tracks={"audio": True, "camera": True, "screen": False}
            )
            peers.append(Learner(decode=False))
            await subscribe(sock, peers[-1])
        room = media.get_room(world.cohort.id)
        assert room is not None
        uid, sock = socks[2]
        assert room.worker_of(uid) is not room.worker  # the third learner is piped
        learner = peers[2]
        await wait_for(lambda: learner.frames["video"] >= 20, within=20)
        plis = trainer.plis_received
        for level, top in (("camera_half", 1), ("camera_quarter", 0), ("full", 2)):
            await sock.request("media_quality", level=level)
            await sock.expect("media_quality", level=level)
            await asyncio.sleep(0.5)  # a step up waits for a layer-sync frame
            start = len(learner.layers)
            await wait_for(lambda start=start: len(learner.layers) >= start + 15, within=20)
            layers = set(learner.layers[start:])
            assert max(t for t in layers if t is not None) == top, (level, layers)
        gaps = [(a, b) for a, b in itertools.pairwise(learner.picture_ids) if b != (a + 1) & 0x7FFF]
        assert not gaps
        assert trainer.plis_received == plis
    finally:
        await trainer.close()
        for peer in peers:
            await peer.close()
        for _, sock in socks:
            await sock.close()
        await tsock.close()
