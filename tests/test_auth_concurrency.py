"""Sign-in under concurrency, on a real uvicorn: the limits hold and argon2 stays off the loop.

Before the fix the limit was read before an ``await`` and recorded after it, so 30 concurrent
wrong sign-ins all got 401, and argon2 ran on the event loop (each attempt froze every socket).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.auth.passwords import hash_password, verify_password
from appliance.settings import Settings
from tests.helpers.classroom import LiveServer, Peer, ProcessServer
from tests.helpers.world import PASSWORD, World, make_settings
from tests.test_live import join

BURST = 30


async def _pinger(peer: Peer, stop: asyncio.Event, rtts: list[float]) -> None:
    """Ping the classroom socket in a loop, keeping each round trip in ms."""
    n = 0
    while not stop.is_set():
        n += 1
        start = time.perf_counter()
        await peer.ws.send(json.dumps({"type": "ping", "ref": f"p{n}"}))
        while True:
            msg = json.loads(await asyncio.wait_for(peer.ws.recv(), 5))
            if msg["type"] == "pong" and msg.get("ref") == f"p{n}":
                break
        rtts.append((time.perf_counter() - start) * 1000)
        await asyncio.sleep(0.01)


_BURST_SCRIPT = """
import asyncio, json, sys
import httpx

async def main(base, bodies):
    limits = httpx.Limits(max_connections=len(bodies))
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as c:
        await c.get("/api/auth/csrf")
        c.headers["x-csrftoken"] = c.cookies["csrftoken"]
        rs = await asyncio.gather(*(c.post("/api/auth/login", json=b) for b in bodies))
    return [[r.status_code, r.headers.get("retry-after")] for r in rs]

base, bodies = json.loads(sys.stdin.read())
print(json.dumps(asyncio.run(main(base, bodies))))
"""


async def _burst(base: str, bodies: list[dict[str, str]]) -> list[tuple[int, str | None]]:
    """POST every body to /api/auth/login at once, from another process (its own interpreter,
    so the burst's client work does not delay the test's pings); (status, Retry-After) each."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _BURST_SCRIPT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate(json.dumps([base, bodies]).encode())
    assert proc.returncode == 0
    return [(code, retry) for code, retry in json.loads(out)]


@pytest.fixture
def served(app: Any, world: World, settings: Settings, tmp_path: Path) -> Iterator[ProcessServer]:
    """``estrade serve`` in its own process: the test client does not share its interpreter."""
    server = ProcessServer(settings, tmp_path / "server.log", log_level="warning").start()
    yield server
    server.stop()


async def test_concurrent_wrong_sign_ins_hold_the_limit_and_sockets_stay_live(
    served: ProcessServer, world: World, settings: Settings
) -> None:
    live = served
    # The trainer's socket: learners' pings are rate-limited (10 per 10 s), staff's are not, and
    # this probe pings every 10 ms.
    trainer = await join(live, world, "trainer")
    stop = asyncio.Event()
    rtts: list[float] = []
    pinger = asyncio.create_task(_pinger(trainer, stop, rtts))
    await asyncio.sleep(0.2)  # a few round trips before the burst
    before = len(rtts)
    bodies = [{"email": world.trainer.email, "password": f"wrong-{i}"} for i in range(BURST)]
    assert live.process is not None
    threads_before = _threads_cpu_s(live.process.pid)
    responses = await _burst(live.base, bodies)
    off_loop_cpu = _off_loop_cpu_s(live.process.pid, threads_before)
    after = len(rtts)
    await asyncio.sleep(0.2)
    stop.set()
    await pinger

    codes = [code for code, _ in responses]
    limit = settings.login_attempts_per_account
    assert codes.count(401) <= limit, codes
    assert codes.count(401) + codes.count(429) == BURST, codes
    assert all(int(retry or 0) > 0 for code, retry in responses if code == 429)
    # The right password is refused too while the account is locked.
    ok = await _burst(live.base, [{"email": world.trainer.email, "password": PASSWORD}])
    assert ok[0][0] == 429
    # The socket was served throughout: pings during the burst, p99 under 100 ms. The slowest
    # single ping is reported, not asserted: on this shared 2-core machine under load 15-20 the
    # scheduler alone delayed one ping of 519 to 118 ms (p99 37 ms). What proves argon2 ran off
    # the loop whatever the load is CPU time: the server's other threads (the password workers)
    # spent at least half of what the 401s' verifications cost, measured here in the same run.
    assert after - before >= 3, rtts
    rtts.sort()
    p99 = rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))]
    verify_cpu = _one_verification_cpu_s()
    verified = codes.count(401)
    _report("sign_in_burst_ping", rtts, p99, off_loop_cpu_s=off_loop_cpu, verify_cpu_s=verify_cpu)
    assert p99 < 100, f"p99 ping {p99:.1f} ms during the sign-in burst"
    assert off_loop_cpu >= 0.5 * verified * verify_cpu, (
        f"the server's threads other than the event loop's spent {off_loop_cpu:.4f} s of CPU for "
        f"{verified} argon2 verifications of {verify_cpu:.4f} s each: were they on the loop?"
    )
    await trainer.close()


def _threads_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds run so far by each live thread of a process (schedstat: nanoseconds)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            out[int(task.name)] = int((task / "schedstat").read_text().split()[0]) / 1e9
    return out


def _off_loop_cpu_s(pid: int, before: dict[int, float]) -> float:
    """CPU run since ``before`` by the threads other than the main one (uvicorn's event loop)."""
    after = _threads_cpu_s(pid)
    return sum(t - before.get(tid, 0.0) for tid, t in after.items() if tid != pid)


def _one_verification_cpu_s() -> float:
    """CPU seconds of one argon2 verification in the calling thread, with the appliance's own
    parameters (best of 3; argon2's extra lanes run in threads of their own)."""
    stored = hash_password("a password")
    costs = []
    for _ in range(3):
        start = time.thread_time()
        verify_password(stored, "another password")
        costs.append(time.thread_time() - start)
    return min(costs)


def _report(name: str, rtts: list[float], p99: float, **extra: float) -> None:
    """Keep the figures for the closing note (ms)."""
    line = {
        "name": name,
        "pings": len(rtts),
        "median_ms": round(statistics.median(rtts), 2),
        "p99_ms": round(p99, 2),
        "max_ms": round(rtts[-1], 2),
        **{k: round(v, 3) for k, v in extra.items()},
    }
    out = Path(__file__).resolve().parents[1] / "artifacts"
    out.mkdir(exist_ok=True)
    with (out / "auth-figures.jsonl").open("a") as f:
        f.write(json.dumps(line) + "\n")


@pytest.fixture
def busy_settings(tmp_path: Path, database_url: str) -> Settings:
    # One password thread, one waiting: the third concurrent sign-in finds the queue full.
    return make_settings(
        tmp_path,
        database_url=database_url,
        password_workers=1,
        password_queue=1,
        login_attempts_per_address=1000,
    )


async def test_password_workers_queue_is_bounded(
    app: Any, world: World, busy_settings: Settings
) -> None:
    server = LiveServer(busy_settings).start()
    try:
        emails = [world.admin.email, world.operator.email, world.trainer.email]
        emails += [world.other_trainer.email, "nobody@example.org", "ghost@example.org"]
        bodies = [{"email": e, "password": "wrong-password"} for e in emails]
        responses = await _burst(server.base, bodies)
        codes = [code for code, _ in responses]
        assert codes.count(503) >= 1, codes
        assert set(codes) <= {401, 503}, codes
        assert all(retry == "1" for code, retry in responses if code == 503)
        # Refused for load, not counted as a guess: the account is not locked by it.
        again = await _burst(server.base, [{"email": world.admin.email, "password": PASSWORD}])
        assert again[0][0] == 200
    finally:
        server.stop()
