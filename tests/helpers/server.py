"""Real servers for tests, on 127.0.0.1 only, and the one way to start them.

- :class:`ServedProcess`: ``estrade serve`` (``python -m appliance serve``), the real command in
  its own process (own GIL, own logging, own resource limits);
- :class:`ThreadServer` / :func:`serve`: an app object under uvicorn in a thread of the test
  process (the test can reach into ``app.state``).

Both take a free port, wait for readiness with a deadline (the process: ``/ready`` or
``/health``; the thread: uvicorn's ``started``), keep what the server wrote for the failure
message, and stop closing everything (the suite turns warnings into errors: a log file or
socket left open fails another test later).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Self

import httpx
import uvicorn

__all__ = [
    "ESTRADE",
    "ServedProcess",
    "ServerDidNotStart",
    "ThreadServer",
    "clean_env",
    "free_port",
    "run_estrade",
    "serve",
]

ESTRADE = [sys.executable, "-m", "appliance"]


class ServerDidNotStart(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any ``ESTRADE_*`` variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESTRADE_")}
    env.update(extra or {})
    return env


def run_estrade(
    args: list[str], env: Mapping[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``estrade <args>`` to its end with ``env`` (``ESTRADE_*``) on a clean environment."""
    return subprocess.run(
        [*ESTRADE, *args], env=clean_env(env), capture_output=True, text=True, timeout=timeout
    )


class ServedProcess:
    """``estrade serve`` on 127.0.0.1 with its data in ``data_dir``.

    ``env`` (``ESTRADE_*`` names) adds to or overrides the defaults: host and media interface
    127.0.0.1, a free port, log level ``warning``. Its stdout and stderr go to ``log_path``
    (default: next to ``data_dir``), read back by :meth:`log` and put in the failure message
    when it does not start. Use it as a context manager, or :meth:`start` then :meth:`stop`.
    """

    def __init__(
        self,
        data_dir: Path,
        env: Mapping[str, str] | None = None,
        *,
        log_path: Path | None = None,
        ready: str = "/ready",
        deadline_s: float = 60,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.log_path = log_path or data_dir.with_name(data_dir.name + "-server.log")
        self.ready = ready
        self.deadline_s = deadline_s
        self.preexec_fn = preexec_fn
        self.env = {
            "ESTRADE_DATA_DIR": str(data_dir),
            "ESTRADE_HOST": "127.0.0.1",
            "ESTRADE_PORT": str(self.port),
            "ESTRADE_MEDIA_INTERFACE": "127.0.0.1",
            "ESTRADE_LOG_LEVEL": "warning",
            **(env or {}),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def start(self) -> Self:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [*ESTRADE, "serve"],
            env=clean_env(self.env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=self.preexec_fn,
        )
        deadline = time.monotonic() + self.deadline_s
        while True:
            try:
                if httpx.get(self.base + self.ready, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            exited = self.process.poll() is not None
            if exited or time.monotonic() > deadline:
                self.stop()
                why = f"exited with {self.process.returncode}" if exited else "no answer"
                raise ServerDidNotStart(
                    f"estrade serve on {self.base}: {why} on {self.ready} within "
                    f"{self.deadline_s:.0f} s; it wrote:\n{self.log()}"
                )
            time.sleep(0.1)

    def stop(self, timeout: float = 20) -> int | None:
        """Stop as Ctrl-C does (killed after ``timeout``); its exit code. Idempotent."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        return None if self.process is None else self.process.returncode

    def log(self) -> str:
        """What the server wrote so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def memory_kib(self) -> dict[str, int]:
        """VmRSS and VmHWM (peak resident set) of the server process, in KiB."""
        out: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in {"VmRSS", "VmHWM"}:
                out[key] = int(value.split()[0])
        return out

    def reset_peak(self) -> None:
        """Reset VmHWM to the current RSS (Linux: ``5`` in ``/proc/PID/clear_refs``)."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


class ThreadServer:
    """``app`` under uvicorn in a thread on 127.0.0.1 (``config``: more ``uvicorn.Config``)."""

    def __init__(self, app: Any, **config: Any) -> None:
        self.app = app
        self.port = free_port()
        self.server = uvicorn.Server(
            uvicorn.Config(
                app,
                **{
                    "host": "127.0.0.1",
                    "port": self.port,
                    "log_level": "warning",
                    "lifespan": "on",
                    **config,
                },
            )
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, deadline_s: float = 20) -> Self:
        self.thread.start()
        deadline = time.monotonic() + deadline_s
        while not self.server.started:  # bound, and the app's lifespan started
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ServerDidNotStart(f"uvicorn on {self.base} did not start in {deadline_s} s")
            time.sleep(0.02)
        return self

    def stop(self, timeout: float = 30) -> None:
        """Stop serving and run the app's shutdown; fails if the thread does not end."""
        self.server.should_exit = True
        if self.thread.ident is None:
            return
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise RuntimeError(f"uvicorn on {self.base} did not stop within {timeout} s")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


@contextmanager
def serve(app: Any, **config: Any) -> Iterator[str]:
    """Serve ``app`` in a thread (:class:`ThreadServer`); yields its base URL."""
    with ThreadServer(app, **config) as server:
        yield server.base
