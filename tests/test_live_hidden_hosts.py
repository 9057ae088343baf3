"""Peers that hide their addresses behind mDNS ``.local`` names, as browsers do by default.

A browser that was granted no camera (every learner) writes its host candidates as
``<uuid>.local``; only its own link can resolve those names. The relay must never fail ICE on
them: it skips them and learns each peer's real address from the peer's own checks
(peer-reflexive candidates). Real uvicorn on 127.0.0.1, real aiortc peers whose SDP is
rewritten the way a browser writes it.

The names here cannot resolve anywhere; ``mdns_queries`` (tests/media/peers.py) keeps aioice
from asking the network and records what it would have asked: the relay is to ask nothing.
"""

from __future__ import annotations

import httpx

from appliance.accounts import schemas as s
from appliance.accounts import services
from tests.helpers.classroom import LiveServer
from tests.helpers.world import World
from tests.media.peers import Learner, Trainer, hide_hosts, wait_for
from tests.media.peers import mdns_queries as mdns_queries  # the fixture
from tests.test_live_media import learner_cookie, metric
from tests.test_live_media import short_pli_window as short_pli_window  # autouse fixture


async def test_peers_with_only_mdns_host_candidates_connect(
    live: LiveServer, world: World, mdns_queries: list[str]
) -> None:
    cid = world.cohort.id
    second = await services.create_user(
        s.UserIn(email="learner3@example.org", display_name="Zoé", role="learner")
    )
    await services.enrol(cid, second.id)
    tsock = await live.connect(await live.cookie(world, "trainer"), cid)
    socks = [
        await live.connect(await live.cookie(world, "learner"), cid),
        await live.connect(await learner_cookie(live, cid, second.id), cid),
    ]
    for sock in (tsock, *socks):
        await sock.expect("media_config")
    media = live.app.state.media.server
    trainer, learners = Trainer(), [Learner(), Learner()]
    try:
        await tsock.request("session_start")
        # The trainer's browser hides its host candidates too (the relay answers it).
        await tsock.send("media_publish", sdp=hide_hosts(await trainer.offer()))
        await trainer.answer((await tsock.expect("media_answer", timeout=10))["sdp"])
        for sock in socks:
            while not (await sock.expect("media_tracks"))["tracks"]["camera"]:
                pass
        for sock, learner in zip(socks, learners, strict=True):
            await sock.send("media_subscribe")
            offer = await sock.expect("media_offer", timeout=10)
            answer = await learner.answer(offer["sdp"])
            # Firefox also ends its candidates, which must not end the relay's checks.
            await sock.request("media_answer", sdp=hide_hosts(answer) + "a=end-of-candidates\r\n")

        await wait_for(lambda: all(lr.frames["video"] >= 10 for lr in learners), within=20)
        await wait_for(lambda: all(lr.frames["audio"] >= 10 for lr in learners), within=10)
        assert all(size == (320, 240) for lr in learners for size in lr.sizes)
        # Each connection went through the address the peer's checks revealed.
        room = media.get_room(cid)
        for learner_id in (world.learner.id, second.id):
            pc = room._learners[learner_id].pc
            ice = pc.getTransceivers()[0].sender.transport.transport._connection
            (pair,) = ice._nominated.values()
            assert pair.remote_candidate.type == "prflx"
            assert pair.remote_candidate.host == "127.0.0.1"
        assert media.counters["ice_failures"] == 0
        assert media.counters["connect_timeouts"] == 0
        async with httpx.AsyncClient(base_url=live.base) as http:
            text = (await http.get("/metrics")).text
        assert metric(text, "estrade_webrtc_connections_total", path="direct") >= 3
        # The relay never asked the network for a learner's name.
        assert mdns_queries == []
    finally:
        for peer in (trainer, *learners):
            await peer.close()
        for sock in socks:
            await sock.close()
        await tsock.close()
