"""Limits of the real served process (`estrade serve`): WebSocket frame size, open files."""

from __future__ import annotations

import asyncio
import resource
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from appliance.accounts import services
from tests.helpers.server import ServedProcess
from tests.helpers.world import World


@pytest.fixture
def served(tmp_path: Path, database_url: str, world: World) -> Iterator[ServedProcess]:
    """`python -m appliance serve` on 127.0.0.1 with the test database."""

    def low_soft_limit() -> None:  # as a shell's default: the server raises it itself
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

    server = ServedProcess(
        tmp_path / "served",
        {"ESTRADE_DATABASE_URL": database_url},
        ready="/health",
        preexec_fn=low_soft_limit,
    )
    server.env["ESTRADE_PUBLIC_URL"] = server.base
    with server:
        yield server
    assert "Traceback" not in server.log(), server.log()


async def _learner_cookie(base: str, world: World) -> str:
    async with httpx.AsyncClient(base_url=base, timeout=30) as c:
        link = await services.issue_link(
            world.cohort.id, world.learner.id, base_url=base, ttl_days=30
        )
        await c.get("/api/auth/csrf")  # joining is a POST with the CSRF header (docs/security.md)
        r = await c.post(
            link.url.removeprefix(base), json={}, headers={"x-csrftoken": c.cookies["csrftoken"]}
        )
        assert r.status_code == 200, r.text
        return "; ".join(f"{k}={v}" for k, v in c.cookies.items())


async def test_a_16_mib_frame_is_refused_before_it_is_held(
    served: ServedProcess, world: World
) -> None:
    base = served.base
    cookie = await _learner_cookie(base, world)
    url = base.replace("http://", "ws://") + f"/ws/cohorts/{world.cohort.id}"
    async with websockets.connect(
        url, additional_headers={"Cookie": cookie}, max_size=None, compression=None
    ) as ws:
        assert '"welcome"' in await asyncio.wait_for(ws.recv(), 10)
        await ws.send('{"type":"ping","ref":"before"}')
        while '"pong"' not in await asyncio.wait_for(ws.recv(), 10):
            pass
        peak = served.memory_kib()["VmHWM"]
        frame = '{"type":"chat_send","text":"' + "x" * (16 * 1024 * 1024 - 2048) + '"}'
        # The server closes while the frame is still being written: the send fails with the
        # server's close frame.
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.send(frame), 60)
            for _ in range(10):
                await asyncio.wait_for(ws.recv(), 10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    grown_kib = served.memory_kib()["VmHWM"] - peak
    assert grown_kib < 8 * 1024, f"the server's peak memory grew by {grown_kib} KiB"
    # The server goes on: another socket works.
    async with websockets.connect(url, additional_headers={"Cookie": cookie}) as ws:
        assert '"welcome"' in await asyncio.wait_for(ws.recv(), 10)


def test_open_files_limit_follows_the_capacity(served: ServedProcess) -> None:
    from appliance.settings import load_settings

    pid = served.pid
    need = load_settings(env={}).open_files_needed
    soft, hard = next(
        (int(line.split()[3]), line.split()[4])
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines()
        if line.startswith("Max open files")
    )
    assert need > 1024
    assert soft >= (need if hard == "unlimited" else min(need, int(hard)))
