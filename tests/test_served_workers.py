"""`estrade serve` as installed: with no ``ESTRADE_MEDIA_WORKERS`` it starts one media worker per
core as its own children, shows them in /metrics, and stops them when it stops — the systemd
unit's ``KillMode=mixed`` signals the web process alone (roles/estrade, docs/deploy.md)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx

from tests.helpers.server import ServedProcess


def media_workers_of(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` and that run ``appliance.media.worker``."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid and b"appliance.media.worker" in cmdline:
            found.append(int(stat.parent.name))
    return sorted(found)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_the_default_starts_a_worker_per_core_and_a_stop_signal_stops_them(
    tmp_path: Path,
) -> None:
    cores = len(os.sched_getaffinity(0))
    server = ServedProcess(tmp_path / "data", {"ESTRADE_LOG_LEVEL": "info"})
    with server:
        workers = media_workers_of(server.pid)
        assert len(workers) == cores, (workers, cores)
        deadline = time.monotonic() + 15
        while True:  # the workers' first stats push (every second) gives their CPU and lag
            text = httpx.get(server.base + "/metrics", timeout=5).text
            ups = [line for line in text.splitlines() if line.startswith("estrade_media_worker_up")]
            lags = [
                line
                for line in text.splitlines()
                if line.startswith("estrade_media_worker_loop_lag_seconds")
            ]
            if len(ups) == cores and all(line.endswith(" 1.0") for line in ups) and lags:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.3)
        assert "estrade_event_loop_lag_seconds " in text  # the web process's own
        assert len(lags) == cores
        # As systemd stops the unit (KillMode=mixed): SIGTERM to the web process only.
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        # uvicorn shuts down, then re-raises the signal: systemd counts that as a clean stop.
        assert server.process.wait(timeout=20) in (0, -signal.SIGTERM)
        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in workers):
            assert time.monotonic() < deadline, [p for p in workers if alive(p)]
            time.sleep(0.1)
    log = server.log()
    assert "Application shutdown complete" in log, log
    assert "restarting it" not in log, log  # a stop is not a crash
    assert "Traceback" not in log, log
