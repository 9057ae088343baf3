"""Several hosts (#15): two ``estrade serve`` processes on one PostgreSQL, one data folder (the
shared mount) and a throwaway ``redis-server``: a session opened on one host works on the
other, the sign-in limits hold across both, and an access change made through one host closes
the socket the other holds at once (appliance/hosts.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.hosts import RedisLoginWindows
from appliance.settings import Settings
from tests.helpers.classroom import ProcessServer
from tests.helpers.redis import RedisServer, start_redis
from tests.helpers.world import PASSWORD, World
from tests.test_live_access import _admin, _closed

ON_POSTGRES = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture
async def hosts(
    settings: Settings, world: World, redis_server: RedisServer, tmp_path: Path
) -> AsyncIterator[tuple[ProcessServer, ProcessServer]]:
    """Hosts A and B, sharing the database, the data folder and Redis."""
    redis_server.command("FLUSHALL")
    env = {"redis_url": redis_server.url, "session_store": "file"}
    a = ProcessServer(settings, tmp_path / "a.log", **env).start()
    try:
        b = ProcessServer(settings, tmp_path / "b.log", **env).start()
        try:
            yield a, b
            await b.close_peers()
        finally:
            b.stop()
    finally:
        await a.close_peers()
        a.stop()


@ON_POSTGRES
async def test_a_learner_deactivated_through_one_host_is_closed_on_the_other(
    hosts: tuple[ProcessServer, ProcessServer], world: World
) -> None:
    a, b = hosts
    cookie = await a.cookie(world, "learner")  # signed in through A...
    learner = await b.connect(cookie, world.cohort.id)  # ...in class on B: one session store
    other = await b.connect(await b.cookie(world, "other_learner"), world.other_cohort.id)
    sent = time.monotonic()
    await _admin(a, world, "PATCH", f"/api/admin/users/{world.learner.id}", json={"active": False})
    assert await _closed(learner) == (4401, "your account was deactivated")
    closed_after = time.monotonic() - sent
    assert closed_after < 5, f"closed {closed_after:.2f} s after the change on the other host"
    await other.request("ping", expect="pong")  # the other learner, on B, keeps the class


@ON_POSTGRES
async def test_sign_in_limits_hold_across_hosts(
    hosts: tuple[ProcessServer, ProcessServer], world: World
) -> None:
    a, b = hosts
    email = world.trainer.email
    statuses = []
    for i in range(7):
        host = (a, b)[i % 2]
        async with httpx.AsyncClient(base_url=host.base, timeout=30) as c:
            await c.get("/api/auth/csrf")
            r = await c.post(
                "/api/auth/login",
                json={"email": email, "password": "not " + PASSWORD},
                headers={"x-csrftoken": c.cookies["csrftoken"]},
            )
            statuses.append(r.status_code)
    # 5 per account (the default) over both hosts, whichever host counts the attempt.
    assert statuses == [401] * 5 + [429] * 2


async def test_shared_windows_count_concurrent_attempts_once(redis_server: RedisServer) -> None:
    from redis.asyncio import Redis

    redis_server.command("FLUSHALL")
    windows = [RedisLoginWindows(Redis.from_url(redis_server.url), 20, 5, 60) for _ in range(2)]
    try:
        waits = await asyncio.gather(
            *(windows[i % 2].reserve("192.0.2.1", "x@example.org") for i in range(30))
        )
        assert sum(1 for w in waits if w == 0) == 5
        assert all(0 < w <= 61 for w in waits if w)
        await windows[0].succeeded("192.0.2.1", "x@example.org")  # resets the account
        assert await windows[1].retry_after("192.0.2.1", "x@example.org") == 0
        await windows[1].release("192.0.2.1", "y@example.org")  # nothing reserved: harmless
    finally:
        for w in windows:
            await w.close()


@ON_POSTGRES
async def test_an_upload_through_one_host_downloads_through_the_other(
    hosts: tuple[ProcessServer, ProcessServer], world: World
) -> None:
    a, b = hosts
    content = "Séance 1 : plan du cours\n".encode() * 200
    path = f"/api/cohorts/{world.cohort.id}/documents"
    cookies = {}
    for host in hosts:
        cookie = await host.cookie(world, "trainer")
        token = dict(part.split("=", 1) for part in cookie.split("; "))["csrftoken"]
        cookies[host.port] = {"Cookie": cookie, "x-csrftoken": token}
    async with httpx.AsyncClient(timeout=30) as c:
        r = await c.post(
            a.base + path,
            params={"filename": "plan.txt"},
            content=content,
            headers={**cookies[a.port], "content-type": "application/octet-stream"},
        )
        assert r.status_code == 201, r.text
        download = b.base + r.json()["download_url"]
        got = await c.get(download, headers=cookies[b.port])
        assert got.status_code == 200
        assert got.content == content


@ON_POSTGRES
async def test_the_quota_holds_between_hosts_sharing_the_blob_folder(
    app: object, world: World, settings: Settings
) -> None:
    """Two hosts' stores (each with its own process lock) over one folder and one PostgreSQL:
    two uploads that fit alone but not together, let through the early check at once; the
    database's lock lets exactly one in."""
    from appliance.accounts.tables import User
    from appliance.auth.guards import cohort_access
    from appliance.auth.roles import RUNS_CLASS
    from appliance.documents import services
    from appliance.documents.storage import BlobStore
    from appliance.documents.tables import Document
    from appliance.errors import DomainError

    settings = dataclasses.replace(settings, document_quota_bytes=1000)
    user = await User.objects().where(User.id == world.trainer.id).first()
    assert user is not None
    access = await cohort_access(user, world.cohort.id, RUNS_CLASS)
    both_received = asyncio.Event()
    started = 0

    async def chunks(fill: bytes) -> AsyncIterator[bytes]:
        nonlocal started
        started += 1
        if started == 2:
            both_received.set()
        await both_received.wait()
        yield fill * 600

    async def one(fill: bytes) -> int:
        store = BlobStore(settings.data_dir)  # one per host: its own asyncio lock
        try:
            await services.upload(
                store,
                settings,
                access,
                chunks(fill),
                content_length=None,
                filename=f"{fill.decode()}.txt",
                title=None,
            )
        except DomainError as exc:
            return exc.status_code
        return 201

    statuses = await asyncio.gather(one(b"a"), one(b"b"))
    assert sorted(statuses) == [201, 413]
    assert await Document.count().where(Document.cohort == world.cohort.id) == 1


@ON_POSTGRES
async def test_the_operator_sees_every_host_and_a_dead_one_disappears(
    hosts: tuple[ProcessServer, ProcessServer], world: World
) -> None:
    a, b = hosts
    trainer = await b.connect(await b.cookie(world, "trainer"), world.cohort.id)
    operator = await a.cookie(world, "operator")

    async def view() -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=a.base, timeout=30) as c:
            r = await c.get("/api/operator/overview", headers={"Cookie": operator})
            assert r.status_code == 200, r.text
            return {h["host"].rsplit(":", 1)[1]: h for h in r.json()["hosts"]}

    def complete(seen: dict[str, Any]) -> bool:  # both hosts, B's beat since the trainer came
        return set(seen) == {str(a.port), str(b.port)} and bool(seen[str(b.port)]["rooms"])

    deadline = time.monotonic() + 10
    while not complete(seen := await view()):
        assert time.monotonic() < deadline, f"the view after 10 s: {seen}"
        await asyncio.sleep(0.5)
    assert [r["cohort_id"] for r in seen[str(b.port)]["rooms"]] == [world.cohort.id]
    assert seen[str(a.port)]["rooms"] == []
    assert seen[str(b.port)]["capacity"]["cpu_cores"] > 0
    await trainer.close()

    assert b.process is not None
    b.process.kill()  # no clean stop: its heartbeat just expires
    b.process.wait(10)
    killed = time.monotonic()
    while str(b.port) in (seen := await view()):
        assert time.monotonic() - killed < 10, "a dead host still in the view after 10 s"
        await asyncio.sleep(0.5)
    assert set(seen) == {str(a.port)}


@ON_POSTGRES
async def test_a_cohort_opened_on_another_host_moves_there_whole(
    hosts: tuple[ProcessServer, ProcessServer], world: World
) -> None:
    """A host back from a failure: nginx sends the cohort to it again, while B still holds the
    sockets that moved meanwhile. B tells them to reconnect (1012), so the class is not split."""
    a, b = hosts
    learner = await b.connect(await b.cookie(world, "learner"), world.cohort.id)
    other = await b.connect(await b.cookie(world, "other_learner"), world.other_cohort.id)
    trainer = await a.connect(await a.cookie(world, "trainer"), world.cohort.id)  # opens it on A
    assert await _closed(learner) == (1012, "the class moved to another server: reconnecting")
    back = await a.connect(await a.cookie(world, "learner"), world.cohort.id)
    await trainer.expect("presence", connected=True)
    await back.request("ping", expect="pong")
    await other.request("ping", expect="pong")  # another cohort on B is left alone
    # A second socket of the same cohort on A claims nothing: the learner stays.
    await trainer.close()
    await a.connect(await a.cookie(world, "trainer"), world.cohort.id)
    await back.request("ping", expect="pong")
