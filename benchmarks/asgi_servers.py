"""Uvicorn (uvloop + httptools) against Granian serving the same Estrade app, driven by wrk.

Prints one JSON line: requests/s and latency percentiles for each server on /health (no
database) and /api/auth/csrf (middleware stack: sessions, CSRF), and granian/uvicorn ratios.
Run: `make bench` or `.venv/bin/python benchmarks/asgi_servers.py [seconds]`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

DURATION = int(sys.argv[1]) if len(sys.argv) > 1 else 5
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def wrk(url: str) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", "-c32", f"-d{DURATION}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def pct(p: str) -> float:
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        assert m, out
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    return {"rps": rps, "p50_ms": pct("50"), "p99_ms": pct("99")}


def serve(kind: str, port: int, data_dir: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ESTRADE_DATA_DIR": data_dir, "ESTRADE_LOG_LEVEL": "warning"}
    target = "appliance.app:create_app_from_env"
    if kind == "uvicorn":
        cmd = [
            str(BIN / "uvicorn"),
            "--factory",
            target,
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
    else:
        cmd = [
            str(BIN / "granian"),
            "--interface",
            "asgi",
            "--factory",
            target,
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    if not shutil.which("wrk"):
        sys.exit("wrk is missing: apt-get install wrk (make bench installs it as root)")
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as data_dir:
        for kind in ("uvicorn", "granian"):
            port = free_port()
            proc = serve(kind, port, data_dir)
            try:
                base = f"http://127.0.0.1:{port}"
                wait_up(f"{base}/ready")
                results[kind] = {
                    "health": wrk(f"{base}/health"),
                    "csrf": wrk(f"{base}/api/auth/csrf"),
                }
            finally:
                proc.terminate()
                proc.wait(10)
    line = {
        "benchmark": "asgi_servers",
        "duration_s": DURATION,
        **{
            f"{k}_{route}_{m}": v
            for k, r in results.items()
            for route, ms in r.items()
            for m, v in ms.items()
        },
        "granian_over_uvicorn_rps_health": round(
            results["granian"]["health"]["rps"] / results["uvicorn"]["health"]["rps"], 3
        ),
        "granian_over_uvicorn_rps_csrf": round(
            results["granian"]["csrf"]["rps"] / results["uvicorn"]["csrf"]["rps"], 3
        ),
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
