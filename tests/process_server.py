"""``estrade serve`` in its own process (the real command, its own GIL and its own logging),
for tests that measure the server's responsiveness or read what it logs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from appliance.settings import Settings
from tests.live_server import LiveServer, Peer
from tests.servers import free_port


class ProcessServer(LiveServer):
    """Same helpers as :class:`LiveServer` (cookies, sockets), served by a child process."""

    def __init__(self, settings: Settings, log_path: Path, **env: str) -> None:
        self.settings = settings
        self.port = free_port()
        self.log_path = log_path
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ESTRADE_")}
        self.env.update(
            {
                "ESTRADE_DATA_DIR": str(settings.data_dir),
                "ESTRADE_DATABASE_URL": settings.database_url,
                "ESTRADE_HOST": "127.0.0.1",
                "ESTRADE_PORT": str(self.port),
                "ESTRADE_PUBLIC_URL": settings.public_url,
                "ESTRADE_SESSION_STORE": settings.session_store,
                "ESTRADE_MEDIA_INTERFACE": "127.0.0.1",
                "ESTRADE_LOG_LEVEL": "info",
            }
        )
        self.env.update({f"ESTRADE_{k.upper()}": v for k, v in env.items()})
        self.process: subprocess.Popen[bytes] | None = None
        self.peers: list[Peer] = []

    def start(self) -> ProcessServer:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "appliance", "serve"],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{self.base}/ready", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("estrade serve did not start:\n" + self.log_path.read_text())
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
