"""Several hosts, Redis down (#15): with ``ESTRADE_REDIS_URL`` set and the real ``redis-server``
stopped, a client gets a clear 503 with a problem body (signed-in requests, sign-in; the class
socket is refused at its handshake), never a 500; ``/ready`` says Redis does not answer; one
log line per refusal. Redis started again on its port, the same process serves again without
a restart (sessions were in the stopped Redis, without persistence here: sign in again).

Operators see it on ``/metrics`` (docs/operations.md "Several hosts"): ``estrade_redis_up`` goes
0 within a heartbeat or two, ``estrade_redis_errors_total{operation}`` counts the failed calls,
and ``estrade_redis_up`` is 1 again once Redis answers; a hung Redis (``SIGSTOP``: it accepts
connections but never answers) counts as down too, after the heartbeat's timeout, and a
signed-in request gets the 503 after its call's timeout instead of hanging. With one host
neither series exists."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from appliance.app import create_app
from appliance.hosts import REDIS_CALL_TIMEOUT_S
from appliance.metrics.hosts import BEAT_TIMEOUT_S
from appliance.settings import Settings
from tests.helpers.classroom import ProcessServer
from tests.helpers.redis import RedisServer, start_redis
from tests.helpers.world import PASSWORD, World

ON_POSTGRES = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@pytest.fixture
def host(settings: Settings, tmp_path: Path) -> Iterator[tuple[ProcessServer, list[RedisServer]]]:
    redis = [start_redis()]
    try:
        env = {"redis_url": redis[0].url, "session_store": "file"}
        server = ProcessServer(settings, tmp_path / "a.log", **env).start()
        try:
            yield server, redis
        finally:
            server.stop()
    finally:
        redis[-1].stop()


async def _probe(server: ProcessServer, path: str) -> httpx.Response:
    """A probe's request: no cookie (a session in Redis would be looked up)."""
    async with httpx.AsyncClient(base_url=server.base, timeout=30) as probe:
        return await probe.get(path)


async def _redis_metrics(server: ProcessServer) -> tuple[float, dict[str, float]]:
    """``estrade_redis_up`` and ``estrade_redis_errors_total`` by operation, from ``/metrics``."""
    text = (await _probe(server, "/metrics")).text
    up, errors = None, {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "estrade_redis_up":
                up = sample.value
            elif sample.name == "estrade_redis_errors_total":
                errors[sample.labels["operation"]] = sample.value
    assert up is not None, text
    return up, errors


async def _until_up(server: ProcessServer, want: float, within_s: float) -> dict[str, float]:
    deadline = time.monotonic() + within_s
    while (got := await _redis_metrics(server))[0] != want:
        assert time.monotonic() < deadline, f"estrade_redis_up not {want} in {within_s} s: {got}"
        await asyncio.sleep(0.25)
    return got[1]


def test_one_host_exports_no_redis_series(settings: Settings) -> None:
    registry = create_app(settings).state.metrics.registry
    names = {family.name for family in registry.collect()}
    assert "estrade_redis_up" not in names and "estrade_redis_errors" not in names, names


def _problem(r: httpx.Response) -> None:
    assert r.status_code == 503, (r.status_code, r.text)
    assert r.json()["status_code"] == 503 and "Redis" in r.json()["detail"], r.text
    assert r.headers["retry-after"] == "5"


@ON_POSTGRES
async def test_redis_down_is_a_clear_503_and_recovers_without_a_restart(
    host: tuple[ProcessServer, list[RedisServer]], world: World
) -> None:
    a, redis = host
    cookie = await a.cookie(world, "trainer")
    async with httpx.AsyncClient(base_url=a.base, timeout=30) as c:
        r = await c.get("/api/cohorts", headers={"Cookie": cookie})
        assert r.status_code == 200, r.text
        assert (await c.get("/ready")).status_code == 200
        errors = await _until_up(a, 1, 10)
        assert set(errors) == {"session", "rate_limit", "publish", "subscribe", "heartbeat"}
        assert set(errors.values()) == {0}, errors  # every operation exported from 0

        port = redis[0].port
        redis[0].stop()  # the real redis-server, gone
        _problem(await c.get("/api/cohorts", headers={"Cookie": cookie}))
        r = await c.get("/api/auth/csrf")  # a fresh visitor starting to sign in
        if r.status_code == 200:
            c.headers["x-csrftoken"] = c.cookies["csrftoken"]
            r = await c.post(
                "/api/auth/login", json={"email": world.trainer.email, "password": PASSWORD}
            )
        _problem(r)
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(
                f"ws://127.0.0.1:{a.port}/ws/cohorts/{world.cohort.id}",
                additional_headers={"Cookie": cookie},
            )
        # Refused before the handshake completes (Litestar closes a socket whose handler
        # fails before accepting; the ASGI server answers 403): the page's reconnection retries.
        assert refused.value.response.status_code == 403
        ready = await _probe(a, "/ready")
        assert (await _probe(a, "/health")).status_code == 200  # alive: no restart wanted
        assert ready.status_code == 503 and ready.json()["reason"] == "redis does not answer"
        assert "redis unreachable on GET /api/cohorts" in a.log()
        assert "server error on" not in a.log()  # no 500 anywhere
        # The heartbeat (every 2 s) says so in one line each time, not a traceback.
        deadline = time.monotonic() + 10
        while "could not publish this host's heartbeat: " not in a.log():
            assert time.monotonic() < deadline, a.log()[-2000:]
            await asyncio.sleep(0.5)
        errors = await _until_up(a, 0, 10)
        assert errors["heartbeat"] >= 1, errors
        # The cohorts request and the socket's handshake (the session each time), the sign-in.
        assert errors["session"] + errors["rate_limit"] >= 3, errors
        assert errors["subscribe"] >= 1, errors  # the access channel, trying again every 1 s

        redis.append(start_redis(port=port))  # back, empty (no persistence in this test)
        deadline = time.monotonic() + 20
        while (await _probe(a, "/ready")).status_code != 200:
            assert time.monotonic() < deadline, "not ready 20 s after Redis came back"
            await asyncio.sleep(0.5)
        back = await _until_up(a, 1, 10)
        assert back["heartbeat"] >= errors["heartbeat"], back
    again = await a.cookie(world, "trainer")  # sign-in works again, same process
    async with httpx.AsyncClient(base_url=a.base, timeout=30) as c:
        r = await c.get("/api/cohorts", headers={"Cookie": again})
        assert r.status_code == 200, r.text
    peer = await a.connect(again, world.cohort.id)
    assert peer.welcome["type"] == "welcome"
    await a.close_peers()

    # Hung: the process is there and its port accepts connections, nothing answers. A signed-in
    # request waits for the call's timeout, then gets the same 503; the gauge goes 0 after the
    # heartbeat's own timeout.
    os.kill(redis[-1].process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        async with httpx.AsyncClient(base_url=a.base, timeout=30) as c:
            _problem(await c.get("/api/cohorts", headers={"Cookie": again}))
        waited = time.monotonic() - started
        assert REDIS_CALL_TIMEOUT_S - 1 <= waited < REDIS_CALL_TIMEOUT_S + 10, waited
        hung = await _until_up(a, 0, BEAT_TIMEOUT_S + 10)
        assert time.monotonic() - started >= BEAT_TIMEOUT_S - 3  # the timeout, not a refusal
        assert hung["heartbeat"] > back["heartbeat"], (hung, back)
        assert hung["session"] > back["session"], (hung, back)
    finally:
        os.kill(redis[-1].process.pid, signal.SIGCONT)
    await _until_up(a, 1, BEAT_TIMEOUT_S + 10)
    async with httpx.AsyncClient(base_url=a.base, timeout=30) as c:
        r = await c.get("/api/cohorts", headers={"Cookie": again})
        assert r.status_code == 200, r.text
