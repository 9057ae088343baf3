"""A pristine Debian 12 host under systemd-nspawn, booted and stopped for the booted tier.

How the boot is awaited, and why. The container's init runs `systemd` as soon as its comm
reads "systemd", but it opens its bus socket (/run/systemd/private) only some time later: a
few hundred ms, more on a loaded 2-core machine. Until then `systemctl is-system-running
--wait` cannot wait: it prints nothing, says "Failed to connect to bus: No such file or
directory" on stderr and exits at once. The old wait (`pgrep -P <nspawn> -x systemd`, then
three instant tries with stderr dropped) failed 8 boots out of 10 on a loaded machine with
"the container did not boot ('')".

Here systemd-nspawn itself reports through the NOTIFY_SOCKET we give it: the leader's PID
(`X_NSPAWN_LEADER_PID=`, once the init process exists) and, with `--notify-ready=yes`,
`READY=1` only after the container's systemd has sent its own READY=1 (startup finished).
Then `is-system-running --wait` is retried until a deadline, every answer and its stderr
kept for the failure message; the console log and journal stay in artifacts/deploy/.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from provisioning.variables import REPO

CACHE = Path(os.environ.get("ESTRADE_TEST_CACHE", "/var/cache/estrade-test"))
TARBALL = CACHE / "bookworm-root.tar"
KEY = CACHE / "id_ed25519"
ARTIFACTS = Path(os.environ.get("ESTRADE_ARTIFACTS", REPO / "artifacts")) / "deploy"
# Booting takes 0.3-3 s here; the bound only decides when a stuck boot is reported.
BOOT_TIMEOUT = 120.0
BOOTED = ("running", "degraded")
CONTAINER_PATH = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}


@dataclass
class BootTimes:
    """Seconds spent in each step of one boot (printed by the tier, kept in boots.jsonl)."""

    restore: float = 0.0  # untar the pristine root
    leader: float = 0.0  # nspawn started -> the container's init exists
    ready: float = 0.0  # nspawn started -> the container's systemd sent READY=1
    running: float = 0.0  # nspawn started -> is-system-running says running/degraded
    stop: float = 0.0  # SIGTERM -> nspawn exited
    attempts: list[str] = field(default_factory=list)  # is-system-running answers before


@dataclass
class Host:
    name: str
    root: Path
    nspawn: subprocess.Popen[bytes]
    leader: int
    times: BootTimes

    def run(
        self, *cmd: str, check: bool = True, env: dict[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """A command inside the container (all its namespaces)."""
        proc = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", "--", *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env or CONTAINER_PATH,
        )
        if check:
            assert proc.returncode == 0, f"{cmd}: {proc.stdout}{proc.stderr}"
        return proc

    def net(
        self,
        *cmd: str,
        timeout: float = 900,
        cwd: Path = REPO,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """A controller command in the container's network namespace only."""
        return subprocess.run(
            ["nsenter", "-t", str(self.leader), "-n", "--", *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            env=env or dict(os.environ),
        )


class BootError(AssertionError):
    pass


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"({path}: {exc})"


def _ns_pid(pid: int) -> list[str]:
    """The PIDs of ``pid`` in each nested PID namespace, outermost first ("NSpid:")."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return line.split()[1:]
    return []


def _await_notify(
    notify: socket.socket, nspawn: subprocess.Popen[bytes], started: float, times: BootTimes
) -> int:
    """Read nspawn's notifications until READY=1; returns the leader's PID."""
    leader = 0
    messages: list[str] = []
    deadline = started + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        if nspawn.poll() is not None:
            raise BootError(
                f"systemd-nspawn exited with {nspawn.returncode} (notified: {messages})"
            )
        try:
            message = notify.recv(4096).decode(errors="replace")
        except TimeoutError:
            continue
        messages.append(message)
        for line in message.splitlines():
            key, _, value = line.partition("=")
            if key == "X_NSPAWN_LEADER_PID" and not leader:
                leader = int(value)
                times.leader = time.monotonic() - started
            elif key == "READY" and value == "1":
                if not leader:
                    raise BootError(f"READY=1 before the leader's PID: {messages}")
                times.ready = time.monotonic() - started
                return leader
    raise BootError(f"no READY=1 from the container within {BOOT_TIMEOUT:.0f} s: {messages}")


def _await_running(host: Host, started: float) -> None:
    """``is-system-running --wait`` until running/degraded, each other answer kept."""
    deadline = started + BOOT_TIMEOUT
    while True:
        left = deadline - time.monotonic()
        try:
            proc = host.run(
                "systemctl", "is-system-running", "--wait", check=False, timeout=max(left, 1)
            )
            state, answer = proc.stdout.strip(), f"{proc.stdout.strip()!r} rc={proc.returncode}"
            answer += f" {proc.stderr.strip()}" if proc.stderr.strip() else ""
        except subprocess.TimeoutExpired:
            state, answer = "", f"no answer within {max(left, 1):.0f} s"
        if state in BOOTED:
            host.times.running = time.monotonic() - started
            return
        host.times.attempts.append(answer)
        if time.monotonic() >= deadline or host.nspawn.poll() is not None:
            raise BootError(f"the container did not reach running: {host.times.attempts}")
        time.sleep(0.2)


def _check_prerequisites(tarball: Path) -> None:
    for path, what in ((tarball, "tests/deploy/build-root.sh"), (KEY, "build-root.sh")):
        assert path.exists(), f"{path} missing: run {what} (make test-deploy does)"
    for command, package in (("systemd-nspawn", "systemd-container"), ("nsenter", "util-linux")):
        assert shutil.which(command), f"{command} missing: apt-get install {package}"


@contextmanager
def booted_host(
    name: str, tarball: Path = TARBALL, network: tuple[str, ...] = ("--private-network",)
) -> Iterator[Host]:
    """A freshly restored root (``tarball``), booted; stopped and removed on exit.

    A sandbox or a root that cannot boot fails here with nspawn's own words: it never skips.
    """
    _check_prerequisites(tarball)
    times = BootTimes()
    work = Path(f"/var/tmp/estrade-{name}-{os.getpid()}")
    root = work / "root"
    if work.exists():
        subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=True)
    root.mkdir(parents=True)
    started = time.monotonic()
    subprocess.run(["tar", "-C", str(root), "-xf", str(tarball)], check=True)
    # The container has no network: its apt cache was filled when the root was built.
    stamp = root / "var/lib/apt/periodic/update-success-stamp"
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.touch()
    times.restore = time.monotonic() - started
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = ARTIFACTS / f"{name}-console.log"
    notify_path = work / "notify"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(0.5)
    with log.open("w") as console, notify:
        started = time.monotonic()
        nspawn = subprocess.Popen(
            [
                "systemd-nspawn",
                "-q",
                "-D",
                str(root),
                "--register=no",
                "--keep-unit",
                *network,
                f"--machine=estrade-{name}",
                "--notify-ready=yes",
                "--boot",
            ],
            stdin=subprocess.DEVNULL,
            stdout=console,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "NOTIFY_SOCKET": str(notify_path)},
        )
        host = None
        try:
            try:
                leader = _await_notify(notify, nspawn, started, times)
                # Belt and braces: the PID nspawn named is PID 1 of a PID namespace of its own.
                assert _ns_pid(leader)[-1:] == ["1"] and len(_ns_pid(leader)) > 1, (
                    f"leader {leader} is not a container's init: NSpid {_ns_pid(leader)}"
                )
                host = Host(name, root, nspawn, leader, times)
                _await_running(host, started)
            except BootError as exc:
                raise BootError(f"{exc}\nconsole ({log}):\n{_tail(log)}") from None
            yield host
        finally:
            if host is not None:
                with suppress(subprocess.TimeoutExpired):
                    journal = host.run(
                        "journalctl", "--no-pager", "-b", "-o", "short-monotonic", check=False
                    )
                    (ARTIFACTS / f"{name}-journal.log").write_text(journal.stdout)
            times.stop = _stop(nspawn)
            # --one-file-system: never into a mount nspawn may have left behind.
            subprocess.run(["rm", "-rf", "--one-file-system", str(work)], check=False)
    mounted = [
        line for line in Path("/proc/self/mounts").read_text().splitlines() if str(work) in line
    ]
    assert not mounted, f"still mounted under {work}: {mounted}"


def _stop(nspawn: subprocess.Popen[bytes]) -> float:
    """SIGTERM: nspawn asks the container's systemd to power off; SIGKILL after 30 s."""
    started = time.monotonic()
    with suppress(ProcessLookupError):
        os.killpg(nspawn.pid, signal.SIGTERM)
    try:
        nspawn.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(nspawn.pid, signal.SIGKILL)
        nspawn.wait(timeout=10)
    return time.monotonic() - started
