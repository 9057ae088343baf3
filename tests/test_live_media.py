"""Media signalling over the classroom socket: real uvicorn on 127.0.0.1, real aiortc peers.

The trainer and learners are aiortc peers (tests/media/peers.py) whose SDP travels over real
websockets; the relay runs inside the app (created in its lifespan).
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from appliance.accounts import schemas as s
from appliance.accounts import services
from appliance.media.forward import Source
from tests.helpers.classroom import LiveServer, Peer
from tests.helpers.world import World
from tests.media.peers import Learner, Trainer, wait_for


@pytest.fixture(autouse=True)
def short_pli_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Source, "pli_interval_s", 0.3)


async def learner_cookie(live: LiveServer, cohort_id: int, user_id: int) -> str:
    async with httpx.AsyncClient(base_url=live.base) as c:
        link = await services.issue_link(cohort_id, user_id, base_url=live.base, ttl_days=30)
        await c.get("/api/auth/csrf")
        r = await c.post(
            link.url.removeprefix(live.base),
            json={},
            headers={"x-csrftoken": c.cookies["csrftoken"]},
        )
        assert r.status_code == 200, r.text
        return "; ".join(f"{k}={v}" for k, v in c.cookies.items())


async def publish(sock: Peer, trainer: Trainer) -> None:
    await sock.send("media_publish", sdp=await trainer.offer())
    reply = await sock.expect("media_answer", timeout=10)
    await trainer.answer(reply["sdp"])


async def subscribe(sock: Peer, learner: Learner) -> dict[str, Any]:
    await sock.send("media_subscribe")
    offer = await sock.expect("media_offer", timeout=10)
    assert set(offer["slots"].values()) == {"audio", "camera", "screen"}
    answer = await learner.answer(offer["sdp"])
    await sock.request("media_answer", sdp=answer)
    return offer


async def expect_state(sock: Peer, user_id: int, state: str) -> None:
    while True:
        got = (await sock.expect("presence"))["participant"]
        if got["user_id"] == user_id and got["state"] == state:
            return


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the Prometheus text exposition."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = rf"^{re.escape(name)}(?:\{{([^}}]*)\}})? (\S+)$"
    for m in re.finditer(pattern, text, re.M):
        got = m.group(1) or ""
        if all(part in got.split(",") for part in want.split(",") if part):
            return float(m.group(2))
    raise AssertionError(f"no sample {name}{{{want}}}")


async def test_trainer_publishes_learners_receive(live: LiveServer, world: World) -> None:
    cid = world.cohort.id
    second = await services.create_user(
        s.UserIn(email="learner3@example.org", display_name="Zoé", role="learner")
    )
    await services.enrol(cid, second.id)

    tsock = await live.connect(await live.cookie(world, "trainer"), cid)
    l1sock = await live.connect(await live.cookie(world, "learner"), cid)
    l2sock = await live.connect(await learner_cookie(live, cid, second.id), cid)
    for sock in (tsock, l1sock, l2sock):
        config = await sock.expect("media_config")
        assert config["ice_servers"] == []  # no STUN/TURN configured: none, never a public one
        assert config["tracks"] == {"audio": False, "camera": False, "screen": False}

    media = live.app.state.media.server
    trainer, learners = Trainer(), [Learner(), Learner()]
    try:
        await tsock.request("session_start")
        await publish(tsock, trainer)
        for sock in (l1sock, l2sock):
            live_now = await sock.expect("media_tracks")
            while not live_now["tracks"]["camera"]:
                live_now = await sock.expect("media_tracks")
            assert live_now["tracks"] == {"audio": True, "camera": True, "screen": False}
            assert live_now["seq"] > 0

        for sock, learner in zip((l1sock, l2sock), learners, strict=True):
            await subscribe(sock, learner)
        await wait_for(lambda: all(lr.frames["video"] >= 10 for lr in learners), within=20)
        await wait_for(lambda: all(lr.frames["audio"] >= 10 for lr in learners), within=10)
        assert all(size == (320, 240) for lr in learners for size in lr.sizes)
        room = media.get_room(cid)
        assert set(room.learner_ids) == {world.learner.id, second.id}

        # A learner may not publish: the socket guard refuses before the relay sees the offer.
        refused = await l1sock.request("media_publish", expect="forbidden", sdp="v=0")
        assert refused["message_type"] == "media_publish"
        # ...nor answer with media of its own (its answer must stay recvonly).
        bad = await l1sock.request("media_answer", expect="error", sdp="v=0")
        assert bad["code"] == "no_offer"
        # A trainer does not subscribe.
        await tsock.request("media_subscribe", expect="forbidden")

        # Low bandwidth: the relay stops the camera, the learner is told, presence follows.
        before = len(l1sock.seen)
        await l1sock.request("media_quality", level="audio")
        # The step is sent while the message is handled, so before its ack.
        step = next(m for m in l1sock.seen[before:] if m["type"] == "media_quality")
        assert step == {"type": "media_quality", "level": "audio", "automatic": False,
                        "reason": "requested"}  # fmt: skip
        await expect_state(tsock, world.learner.id, "low_bandwidth")
        assert room.level(world.learner.id) == "audio"
        await l1sock.request("media_quality", level="full")
        await expect_state(tsock, world.learner.id, "in_class")

        # Metrics show the media series (no learner id anywhere).
        async with httpx.AsyncClient(base_url=live.base) as http:
            text = (await http.get("/metrics")).text
        c = str(cid)
        assert metric(text, "estrade_media_learners_subscribed", cohort_id=c) == 2
        assert metric(text, "estrade_media_tracks_published", cohort_id=c, kind="video") == 1
        assert metric(text, "estrade_media_forwarded_packets_total", cohort_id=c) >= 40
        assert metric(text, "estrade_media_forwarded_bytes_total", cohort_id=c) > 10_000
        assert metric(text, "estrade_webrtc_connections_total", path="direct") >= 3
        assert metric(text, "estrade_join_to_first_frame_seconds_count") >= 2
        assert metric(text, "estrade_rtcp_pli_total", direction="sent") >= 1
        assert str(second.id) not in re.findall(r'user_id="(\d+)"', text)

        # The second learner's socket closes: the relay drops its connection at once.
        await l2sock.close()
        await wait_for(lambda: second.id not in room.learner_ids, within=5)
        assert room.learner_ids == (world.learner.id,)
        frames = learners[0].frames["video"]
        await wait_for(lambda: learners[0].frames["video"] > frames + 5, within=10)

        # The trainer's socket closes: the relay unpublishes, learners see the tracks go.
        await tsock.close()
        gone = await l1sock.expect("media_tracks")
        assert gone["tracks"] == {"audio": False, "camera": False, "screen": False}
    finally:
        for peer in (trainer, *learners):
            await peer.close()
        await l1sock.close()
    # The last socket gone, the media room closes (the next class may use it).
    await wait_for(lambda: media.get_room(cid) is None, within=5)


async def test_learner_media_closed_and_resubscribe(live: LiveServer, world: World) -> None:
    """A learner whose media connection closes is told, and subscribes again."""
    cid = world.cohort.id
    tsock = await live.connect(await live.cookie(world, "trainer"), cid)
    lsock = await live.connect(await live.cookie(world, "learner"), cid)
    trainer, first, second = Trainer(), Learner(), Learner()
    try:
        await publish(tsock, trainer)
        await subscribe(lsock, first)
        await wait_for(lambda: first.frames["video"] >= 5, within=20)
        await first.close()  # the browser closed its peer connection (DTLS close)
        closed = await lsock.expect("media_closed", timeout=10)
        assert closed["reason"] == "connection_lost"
        await subscribe(lsock, second)
        await wait_for(lambda: second.frames["video"] >= 5, within=20)
        # A second trainer cannot take over while the first presents.
        admin = await live.connect(await live.cookie(world, "admin"), cid)
        other = Trainer(audio=False)
        try:
            await admin.send("media_publish", sdp=await other.offer(), ref="x")
            err = await admin.expect("error", ref="x")
            assert err["code"] == "already_publishing"
            nope = await admin.request("media_unpublish", expect="error")
            assert nope["code"] == "not_publishing"
            # A broken offer from the presenting trainer is refused; the class goes on.
            bad = await tsock.request("media_publish", expect="error", sdp="v=0\r\n")
            assert bad["code"] == "bad_sdp"
            frames = second.frames["video"]
            await wait_for(lambda: second.frames["video"] > frames + 5, within=10)
        finally:
            await other.close()
            await admin.close()
    finally:
        for peer in (trainer, first, second):
            await peer.close()
        await tsock.close()
        await lsock.close()
