"""Several hosts behind the real proxy (#15): two ``estrade serve`` processes, the nginx site
and stream templates as the roles render them (``nginx_app_hosts`` = both), a throwaway
PostgreSQL and a throwaway ``redis-server``. Two cohorts land on different processes, each
class works through nginx (chat, poll, document push, media to an aiortc learner), and when the
process that owns a live cohort is killed, its people are back in class on the other one within
10 s: the socket resumes with ``reload`` and a full ``welcome`` whose chat holds every
acknowledged message, and media flows again once the trainer publishes and the learner
subscribes again there (as the test's peers are told to; the pages' own republishing is not
exercised here)."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from appliance.accounts import schemas as s
from appliance.accounts import services
from appliance.settings import Settings
from tests.helpers.classroom import Peer, ProcessServer
from tests.helpers.hosts import owner as owner_of
from tests.helpers.proxy import Proxy
from tests.helpers.redis import RedisServer, start_redis
from tests.helpers.world import World
from tests.media.peers import Learner, Trainer, wait_for

ON_POSTGRES = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture
async def stack(
    settings: Settings, world: World, redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[tuple[Proxy, list[ProcessServer]]]:
    env = {"redis_url": redis_server.url, "session_store": "file"}
    hosts: list[ProcessServer] = []
    proxy = Proxy(tmp_path / "proxy")
    try:
        for name in ("a", "b"):
            hosts.append(ProcessServer(settings, tmp_path / f"{name}.log", **env).start())
        proxy.start_hosts([f"127.0.0.1:{h.port}" for h in hosts])
        yield proxy, hosts
    finally:
        proxy.stop()
        for host in hosts:
            host.stop()


async def _class(proxy: Proxy, world: World, cohort_id: int, trainer: Any, learner: Any) -> dict:
    """A cohort with a trainer and a learner in class through the proxy."""
    await services.enrol(cohort_id, trainer.id)
    await services.enrol(cohort_id, learner.id)
    link = await services.issue_link(cohort_id, learner.id, base_url=proxy.url, ttl_days=30)
    trainer_cookie = await proxy.cookie(email=trainer.email)
    t = await proxy.connect(trainer_cookie, cohort_id)
    learner_cookie = await proxy.cookie(link=link.url.removeprefix(proxy.url))
    lr = await proxy.connect(learner_cookie, cohort_id)
    return {
        "cohort": cohort_id,
        "trainer": t,
        "learner": lr,
        "cookies": (trainer_cookie, learner_cookie),
    }


@pytest.fixture
async def media_peers() -> AsyncIterator[list[Any]]:
    """aiortc peers the test makes, closed whatever happens."""
    peers: list[Any] = []
    yield peers
    for peer in peers:
        await peer.close()


async def _media(c: dict[str, Any], peers: list[Any]) -> None:
    """The trainer publishes camera and mic, the learner subscribes once they are live."""
    c["trainer_media"], c["learner_media"] = Trainer(), Learner()
    peers += [c["trainer_media"], c["learner_media"]]
    await c["trainer"].send("media_publish", sdp=await c["trainer_media"].offer())
    await c["trainer_media"].answer((await c["trainer"].expect("media_answer", timeout=10))["sdp"])
    while not (await c["learner"].expect("media_tracks", timeout=10))["tracks"]["camera"]:
        pass
    await c["learner"].send("media_subscribe")
    offer = await c["learner"].expect("media_offer", timeout=10)
    answer = await c["learner_media"].answer(offer["sdp"])
    await c["learner"].request("media_answer", sdp=answer)


@ON_POSTGRES
async def test_two_cohorts_on_two_hosts_and_failover(
    stack: tuple[Proxy, list[ProcessServer]], world: World, media_peers: list[Any]
) -> None:
    proxy, hosts = stack
    # Cohorts until two land on different hosts (the ring hashes the hosts' ports: 16 cohorts
    # all on one of two hosts would be 1 run in 30 000).
    admin = await proxy.cookie(email=world.admin.email)
    placed: dict[int, int] = {}
    today = dt.date(2026, 11, 2)
    for i in range(16):
        cohort = await services.create_cohort(
            s.CohortIn(name=f"Groupe {i}", first_day=today, last_day=today + dt.timedelta(days=9))
        )
        probe = await proxy.connect(admin, cohort.id)
        placed[cohort.id] = owner_of(hosts, cohort.id)
        await probe.close()
        if len(set(placed.values())) == 2:
            break
    by_host = {host: cid for cid, host in placed.items()}
    assert set(by_host) == {0, 1}, f"every cohort on one host: {placed}"

    classes = [
        await _class(proxy, world, by_host[0], world.trainer, world.learner),
        await _class(proxy, world, by_host[1], world.other_trainer, world.other_learner),
    ]
    for c in classes:
        t, lr = c["trainer"], c["learner"]
        await t.request("session_start")
        await lr.expect("session_started")
        await lr.request("chat_send", text=f"bonjour {c['cohort']}")
        got = await t.expect("chat_message")
        assert got["message"]["text"] == f"bonjour {c['cohort']}"
        await t.request("poll_create", question="Café ?", choices=["oui", "non"], anonymous=False)
        poll = (await t.expect("poll_created"))["poll"]
        await t.request("poll_launch", poll_id=poll["id"])
        await lr.expect("poll_launched")
        await lr.request("poll_vote", poll_id=poll["id"], choices=[0])
    # The two classes' metrics live on their own hosts.
    assert [owner_of(hosts, c["cohort"]) for c in classes] == [0, 1]
    # Media: each host relays its own class (aiortc trainer and learner, UDP on 127.0.0.1).
    for c in classes:
        await _media(c, media_peers)
        await wait_for(lambda c=c: c["learner_media"].frames["video"] >= 10, within=20)

    # A document pushed through the proxy reaches that class only.
    async with httpx.AsyncClient(base_url=proxy.url, verify=proxy.tls(), timeout=30) as c:
        cookie = classes[0]["cookies"][0]
        token = dict(p.split("=", 1) for p in cookie.split("; "))["csrftoken"]
        headers = {"Cookie": cookie, "x-csrftoken": token}
        path = f"/api/cohorts/{classes[0]['cohort']}/documents"
        r = await c.post(
            path,
            params={"filename": "plan.txt"},
            content=b"plan\n" * 100,
            headers={**headers, "content-type": "application/octet-stream"},
        )
        assert r.status_code == 201, r.text
        r = await c.post(f"{path}/{r.json()['id']}/push", headers=headers)
        assert r.status_code == 200, r.text
    pushed = await classes[0]["learner"].expect("document_pushed")
    assert pushed["document"]["original_name"] == "plan.txt"
    assert not [m for m in await classes[1]["learner"].quiet(0.3) if m["type"] == "document_pushed"]

    # Acknowledged messages, then the owner of the first class dies.
    doomed = classes[0]
    acked = []
    for n in range(4):  # with "bonjour": the learners' 5 per 10 s
        text = f"avant la panne {n}"
        reply = await doomed["learner"].request("chat_send", text=text)
        assert reply["type"] == "ack"
        acked.append(text)
    epoch, last_seq = doomed["learner"].welcome["epoch"], doomed["learner"].last_seq
    owner = hosts[0]
    assert owner.process is not None
    killed = time.monotonic()
    owner.process.kill()
    owner.process.wait(10)

    async def back(cookie: str) -> Peer:
        while True:
            assert time.monotonic() - killed < 10, "not back in class within 10 s"
            try:
                return await proxy.connect(cookie, doomed["cohort"], epoch=epoch, last_seq=last_seq)
            except (OSError, websockets.exceptions.WebSocketException, AssertionError):
                await asyncio.sleep(0.2)

    learner = await back(doomed["cookies"][1])
    trainer = await back(doomed["cookies"][0])
    back_after = time.monotonic() - killed
    assert back_after < 10
    print(f"failover: learner and trainer back in class {back_after:.2f} s after the kill")
    assert [m["type"] for m in learner.seen[:2]] == ["reload", "welcome"]
    assert learner.welcome["resumed"] is False
    texts = [m["text"] for m in learner.welcome["chat"]]
    assert all(t in texts for t in acked), (acked, texts)
    assert owner_of(hosts, doomed["cohort"]) == 1
    # Media on the new host: the trainer publishes again, the learner subscribes again.
    await doomed["trainer_media"].close()
    await doomed["learner_media"].close()
    moved = {"cohort": doomed["cohort"], "trainer": trainer, "learner": learner}
    await _media(moved, media_peers)
    classes.append(moved)
    await wait_for(lambda: moved["learner_media"].frames["video"] >= 10, within=20)
    # The class goes on there; the other class was never interrupted.
    await learner.request("chat_send", text="après la panne")
    assert (await trainer.expect("chat_message"))["message"]["text"] == "après la panne"
    await classes[1]["learner"].request("ping", expect="pong")
    frames = classes[1]["learner_media"].frames["video"]
    await wait_for(lambda: classes[1]["learner_media"].frames["video"] > frames + 5, within=10)
    for peer in (learner, trainer, classes[1]["trainer"], classes[1]["learner"]):
        await peer.close()
    for peer in (doomed["learner"], doomed["trainer"]):
        peer.ws.transport.abort()
