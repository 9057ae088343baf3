"""A throwaway ``redis-server`` (Debian's, installed by ``make system-deps-fast``) on 127.0.0.1,
started like the test PostgreSQL (tests/pg.py): a free port, no persistence, its own folder."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.server import free_port

__all__ = ["RedisServer", "start_redis"]


@dataclass
class RedisServer:
    root: Path
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self, *args: str) -> bytes:
        """One command over a plain socket (inline protocol); the raw reply."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall((" ".join(args) + "\r\n").encode())
            return s.recv(65536)

    def stop(self) -> None:
        try:
            self.process.terminate()
            self.process.wait(timeout=10)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_redis(deadline_s: float = 20, port: int | None = None) -> RedisServer:
    """``port``: a given one (a Redis restarted where the hosts expect it), else a free one."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "redis-server not found: install Debian's redis-server (make system-deps-fast "
            "does it as root)"
        )
    root = Path(tempfile.mkdtemp(prefix="estrade-redis-"))
    port = port or free_port()
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", str(root)]
    args += ["--save", "", "--appendonly", "no", "--logfile", str(root / "log")]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    server = RedisServer(root, port, process)
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            if server.command("PING").startswith(b"+PONG"):
                return server
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            log = (root / "log").read_text(errors="replace") if (root / "log").exists() else ""
            server.stop()
            raise RuntimeError(f"redis-server did not start on port {port}:\n{log}")
        time.sleep(0.05)
