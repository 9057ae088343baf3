"""Limits of the real served process (`estrade serve`): WebSocket frame size, open files."""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from appliance.accounts import services
from tests.conftest import World
from tests.servers import free_port


@pytest.fixture
def served(tmp_path: Path, database_url: str, world: World) -> Iterator[tuple[str, int]]:
    """`python -m appliance serve` on 127.0.0.1 with the test database; (base URL, pid)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESTRADE_")}
    env.update(
        {
            "ESTRADE_DATA_DIR": str(tmp_path / "served"),
            "ESTRADE_DATABASE_URL": database_url,
            "ESTRADE_PORT": str(port),
            "ESTRADE_PUBLIC_URL": base,
            "ESTRADE_MEDIA_INTERFACE": "127.0.0.1",
            "ESTRADE_LOG_LEVEL": "warning",
        }
    )

    def low_soft_limit() -> None:  # as a shell's default: the server raises it itself
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))

    proc = subprocess.Popen(
        [sys.executable, "-m", "appliance", "serve"],
        env=env,
        preexec_fn=low_soft_limit,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                pytest.fail("the server did not answer /health")
            time.sleep(0.2)
        yield base, proc.pid
    finally:
        proc.send_signal(2)
        out, _ = proc.communicate(timeout=30)
    assert "Traceback" not in out, out


def _status(pid: int, field: str) -> int:
    """A kB figure of /proc/<pid>/status (VmHWM: the peak resident memory)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


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
    served: tuple[str, int], world: World
) -> None:
    base, pid = served
    cookie = await _learner_cookie(base, world)
    url = base.replace("http://", "ws://") + f"/ws/cohorts/{world.cohort.id}"
    async with websockets.connect(
        url, additional_headers={"Cookie": cookie}, max_size=None, compression=None
    ) as ws:
        assert '"welcome"' in await asyncio.wait_for(ws.recv(), 10)
        await ws.send('{"type":"ping","ref":"before"}')
        while '"pong"' not in await asyncio.wait_for(ws.recv(), 10):
            pass
        peak = _status(pid, "VmHWM")
        frame = '{"type":"chat_send","text":"' + "x" * (16 * 1024 * 1024 - 2048) + '"}'
        # The server closes while the frame is still being written: the send fails with the
        # server's close frame.
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.send(frame), 60)
            for _ in range(10):
                await asyncio.wait_for(ws.recv(), 10)
        assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    grown_kib = _status(pid, "VmHWM") - peak
    assert grown_kib < 8 * 1024, f"the server's peak memory grew by {grown_kib} KiB"
    # The server goes on: another socket works.
    async with websockets.connect(url, additional_headers={"Cookie": cookie}) as ws:
        assert '"welcome"' in await asyncio.wait_for(ws.recv(), 10)


def test_open_files_limit_follows_the_capacity(served: tuple[str, int]) -> None:
    from appliance.settings import load_settings

    _, pid = served
    need = load_settings(env={}).open_files_needed
    soft, hard = next(
        (int(line.split()[3]), line.split()[4])
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines()
        if line.startswith("Max open files")
    )
    assert need > 1024
    assert soft >= (need if hard == "unlimited" else min(need, int(hard)))
