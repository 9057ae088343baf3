"""Booted tier, several hosts (`make test-deploy`): inventories/multihost on four Debian 12
containers (systemd-nspawn) joined by one private zone network (`--network-zone`, the
inventory's own 10.0.0.0/24 addresses): the database host, two app hosts and the proxy.

The controller runs inside the proxy's network namespace and reaches every host over that
network by SSH, as production does. Ansible converges all four (multihost.yml), a second
run changes nothing, pyinfra (provisioning/multihost.py, reading the same YAML) changes
nothing; then HTTPS through the proxy and Prometheus scraping both app hosts. Then a class
through the proxy (tests/deploy/classroom.py, from the proxy's network namespace): an admin
made with `estrade create-admin` on an app host sets up a cohort through the admin API, its
trainer and learner sign in over HTTPS and chat over the cohort's socket; the service of the
app host holding the cohort is stopped, and the class is back on the other one (`reload`, a
full `welcome` with every acknowledged message, a new message delivered), the seconds printed.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
import tomllib
from contextlib import ExitStack
from pathlib import Path

import yaml

from provisioning.variables import REPO
from tests.deploy.helpers import MULTIHOST, ansible_env, tool
from tests.deploy.nspawn import ARTIFACTS, KEY, Host, booted_host

PROBE = Path(__file__).with_name("probe.py")
# One zone (a bridge, vz-<zone>) per run: two checkouts testing at once each get their own
# network with the same addresses. Interface names have at most 15 characters.
ZONE = f"estrade{os.getpid() % 10000}"
SSH_OPTIONS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
ADDRESSES = {"db1": "10.0.0.2", "app1": "10.0.0.11", "app2": "10.0.0.12", "proxy": "10.0.0.10"}
APPS = ("app1", "app2")
SERVER_NAME = "estrade.test"
ADMIN_EMAIL = "admin@example.org"
ADMIN_PASSWORD = "correct-horse-battery-staple"


def _inventory(tmp: Path) -> Path:
    """inventories/multihost as is, plus what the test site needs (its key, coturn's address)."""
    inv = tmp / "multihost"
    shutil.copytree(MULTIHOST, inv)
    (inv / "group_vars" / "all" / "zz-test.yml").write_text(
        # No NFS share of the documents (the shared mount's role is off when this is empty):
        # the containers share the host's kernel, whose NFS server and client cannot run in
        # a container here.
        "# estrade_shared_blobs_from empty: no NFS (a container cannot serve or mount it).\n"
        + yaml.safe_dump(
            {
                "ansible_ssh_private_key_file": str(KEY),
                "ansible_ssh_common_args": SSH_OPTIONS,
                "estrade_server_name": SERVER_NAME,
                "estrade_shared_blobs_from": "",
            }
        )
    )
    (inv / "group_vars" / "estrade_proxy" / "zz-test.yml").write_text(
        yaml.safe_dump(
            {
                "coturn_listening_ips": ["127.0.0.1", ADDRESSES["proxy"]],
                "coturn_relay_ips": [ADDRESSES["proxy"]],
            }
        )
    )
    return inv


def _pyinfra_inventory(tmp: Path, inv: Path) -> Path:
    path = tmp / "multihost_inventory.py"
    ssh = {
        "ssh_key": str(KEY),
        "ssh_strict_host_key_checking": "off",
        "ssh_known_hosts_file": "/dev/null",
    }
    path.write_text(
        "from pathlib import Path\n"
        "from provisioning.multihost_inventory import host_values\n"
        f"_groups = host_values(Path({str(inv)!r}))\n"
        f"_ssh = {ssh!r}\n"
        "for _group, _hosts in _groups.items():\n"
        "    globals()[_group] = [(a, {**d, **_ssh}) for a, d in _hosts]\n"
    )
    return path


def _ansible(controller: Host, inv: Path) -> dict[str, int]:
    started = time.monotonic()
    proc = controller.net(
        tool("ansible-playbook"), "-i", str(inv), "multihost.yml", env=ansible_env(), timeout=2400
    )
    out = proc.stdout + proc.stderr
    (ARTIFACTS / f"multihost-ansible-{int(started)}.log").write_text(out)
    assert proc.returncode == 0, out[-6000:]
    changed = {
        m.group(1): int(m.group(2))
        for m in re.finditer(
            r"^(\w+)\s*:\s*ok=\d+\s+changed=(\d+)\s+unreachable=0\s+failed=0", out, re.M
        )
    }
    assert set(changed) == set(ADDRESSES), out[-3000:]
    print(f"multihost ansible: {time.monotonic() - started:.0f} s, {changed}", file=sys.stderr)
    return changed


def _pyinfra(controller: Host, inventory: Path) -> tuple[int, str]:
    from tests.deploy.booted import _pyinfra_changes

    started = time.monotonic()
    proc = controller.net(
        tool("pyinfra"),
        "-y",
        "--no-wait",
        str(inventory),
        "provisioning/multihost.py",
        timeout=2400,
    )
    out = proc.stdout + proc.stderr
    (ARTIFACTS / f"multihost-pyinfra-{int(started)}.log").write_text(out)
    assert proc.returncode == 0, out[-6000:]
    changed = _pyinfra_changes(out)
    print(f"multihost pyinfra: {time.monotonic() - started:.0f} s, {changed}", file=sys.stderr)
    return changed, out


def _join_zone(host: Host, address: str) -> None:
    host.run("ip", "addr", "add", f"{address}/24", "dev", "host0")
    host.run("ip", "link", "set", "host0", "up")


def _logs(hosts: dict[str, Host]) -> str:
    """What to read when the class fails: each app host's service, the proxy's nginx errors."""
    parts = []
    for name in APPS:
        state = hosts[name].run("systemctl", "is-active", "estrade.service", check=False)
        journal = hosts[name].run(
            "journalctl", "--no-pager", "-b", "-n", "60", "-u", "estrade", check=False
        )
        parts.append(f"--- {name}: estrade.service {state.stdout.strip()}\n{journal.stdout}")
    errors = hosts["proxy"].root / "var/log/nginx/estrade.error.log"
    tail = errors.read_text(errors="replace")[-3000:] if errors.exists() else "(none)"
    parts.append(f"--- proxy: {errors.name}\n{tail}")
    return "\n".join(parts)


class ClassClient:
    """tests/deploy/classroom.py in the proxy's network namespace: its JSON lines by step."""

    def __init__(self, proxy: Host, stderr: Path, env: dict[str, str]) -> None:
        ca = proxy.root / "etc/estrade/tls/ca.pem"
        apps = [f"{ADDRESSES[name]}:8080" for name in APPS]
        self.stderr_path = stderr
        self.stderr = stderr.open("w")
        self.proc = subprocess.Popen(
            [
                *("nsenter", "-t", str(proxy.leader), "-n", "--", sys.executable),
                *("-m", "tests.deploy.classroom", SERVER_NAME, str(ca), *apps),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            cwd=REPO,
            env={**os.environ, **env},
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put("")

    def step(self, name: str, timeout: float) -> dict:
        """The line of step ``name``; fails with the client's own words if it does not come."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        record = json.loads(line) if line else {}
        if record.get("step") == name:
            return record
        if line is None:
            why = f"nothing within {timeout} s"
        elif not line:
            why = f"the client exited with {self.proc.wait(10)}"
        else:
            why = f"got {line.strip()}"
        stderr = self.stderr_path.read_text(errors="replace")[-4000:]
        raise AssertionError(f"class step {name!r} failed: {why}\n{stderr}")

    def tell(self, value: float) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{value}\n")
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.reader.join(10)
        for pipe in (self.proc.stdin, self.proc.stdout, self.stderr):
            if pipe is not None:
                pipe.close()


def _class_and_failover(hosts: dict[str, Host], timings: dict[str, float]) -> str:
    """A class through the proxy, then its app host's service stopped: the class goes on on
    the other. Returns the app host that was stopped."""
    config = "/etc/estrade/estrade.toml"
    toml = tomllib.loads((hosts["app1"].root / config.lstrip("/")).read_text())
    started = time.monotonic()
    hosts["app1"].run(
        "runuser",
        "-u",
        "estrade",
        "--",
        "env",
        f"ESTRADE_CONFIG={config}",
        f"ESTRADE_ADMIN_PASSWORD={ADMIN_PASSWORD}",
        "/opt/estrade/current/bin/estrade",
        "create-admin",
        ADMIN_EMAIL,
        "--name",
        "Admin",
        "--password-from-env",
        timeout=300,
    )
    timings["create_admin"] = time.monotonic() - started
    env = {
        "ESTRADE_ADMIN_EMAIL": ADMIN_EMAIL,
        "ESTRADE_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "ESTRADE_METRICS_TOKEN": toml["metrics_token"],
    }
    client = ClassClient(hosts["proxy"], ARTIFACTS / "multihost-class.stderr.log", env)
    try:
        try:
            for step in ("setup", "class", "owner"):
                record = client.step(step, timeout=300)
                timings[f"class_{step}"] = record["seconds"]
                print(f"multihost class: {json.dumps(record)}", file=sys.stderr)
            by_address = {f"{ADDRESSES[name]}:8080": name for name in APPS}
            owner = by_address[record["owner"]]
            stop_began = time.monotonic()
            client.tell(stop_began)
            hosts[owner].run("systemctl", "stop", "estrade.service", timeout=120)
            timings["stop_owner"] = time.monotonic() - stop_began
            failover = client.step("failover", timeout=300)
            assert client.proc.wait(60) == 0, client.stderr_path.read_text()[-4000:]
        except (AssertionError, subprocess.SubprocessError) as exc:
            raise AssertionError(f"{exc}\n{_logs(hosts)}") from None
    finally:
        client.close()
    print(
        f"multihost failover: {owner}'s estrade stopped in {timings['stop_owner']:.2f} s; "
        f"sockets closed {failover['closed_s']} s, back in class {failover['back_s']} s, "
        f"new message delivered {failover['chat_s']} s after the stop began; {failover}",
        file=sys.stderr,
    )
    survivor = by_address[failover["owner"]]
    assert survivor != owner, f"the room is still on the stopped host {owner}: {failover}"
    timings.update({f"failover_{k}": failover[k] for k in ("closed_s", "back_s", "chat_s")})
    return owner


def test_multihost_converges_with_both_tools_and_a_class_survives_an_app_host(tmp_path):
    started = time.monotonic()
    timings: dict[str, float] = {}

    def timed(name: str, since: float) -> float:
        timings[name] = time.monotonic() - since
        return time.monotonic()

    inv = _inventory(tmp_path)
    with ExitStack() as stack:
        hosts = {
            name: stack.enter_context(
                booted_host(f"mh-{name}", network=(f"--network-zone={ZONE}",))
            )
            for name in ADDRESSES
        }
        # nspawn creates the zone's bridge; it carries only the containers' own traffic.
        subprocess.run(["ip", "link", "set", f"vz-{ZONE}", "up"], check=True)
        for name, host in hosts.items():
            _join_zone(host, ADDRESSES[name])
        proxy = hosts["proxy"]
        for address in ADDRESSES.values():
            ssh = proxy.net(
                sys.executable,
                "-c",
                f"import socket; socket.create_connection(({address!r}, 22), timeout=10)",
                timeout=30,
            )
            assert ssh.returncode == 0, f"{address}: {ssh.stderr}"
        step = timed("boot", started)
        print(f"multihost: 4 hosts up in {timings['boot']:.0f} s", file=sys.stderr)

        first = _ansible(proxy, inv)
        assert all(first[name] > 0 for name in ADDRESSES), first
        step = timed("ansible", step)
        again = _ansible(proxy, inv)
        assert again == dict.fromkeys(ADDRESSES, 0), again
        step = timed("ansible_again", step)
        changed, out = _pyinfra(proxy, _pyinfra_inventory(tmp_path, inv))
        assert changed == 0, out[-4000:]
        step = timed("pyinfra", step)

        # Through the proxy: both app hosts serve; Prometheus scrapes both.
        ca = proxy.root / "etc/estrade/tls/ca.pem"
        python = "/usr/bin/python3"
        for path in ("/health", "/ready"):
            probe = proxy.net(python, str(PROBE), "https", SERVER_NAME, str(ca), path, timeout=90)
            assert probe.returncode == 0, probe.stdout + probe.stderr
        scraped = proxy.net(python, str(PROBE), "prometheus", "estrade", "node", timeout=120)
        assert scraped.returncode == 0, scraped.stdout + scraped.stderr
        # The database host accepts the app hosts (PostgreSQL, Redis, NFS: the inventory opens
        # 2049 even though this test turns the share off) from the private network only.
        db = hosts["db1"]
        ruleset = db.run("nft", "list", "ruleset").stdout
        assert "ip saddr 10.0.0.0/24 tcp dport { 2049, 5432, 6379 } accept" in ruleset, ruleset
        for app in APPS:
            state = hosts[app].run("systemctl", "is-active", "estrade.service", check=False)
            assert state.stdout.strip() == "active", f"{app}:\n{_logs(hosts)}"
        step = timed("checks", step)

        # A class through the proxy; its app host's service stops; the class goes on.
        stopped = _class_and_failover(hosts, timings)
        survivor = next(name for name in APPS if name != stopped)
        state = hosts[survivor].run("systemctl", "is-active", "estrade.service", check=False)
        assert state.stdout.strip() == "active", f"{survivor}:\n{_logs(hosts)}"
        for _ in range(5):
            probe = proxy.net(
                python, str(PROBE), "https", SERVER_NAME, str(ca), "/ready", timeout=90
            )
            assert probe.returncode == 0, probe.stdout + probe.stderr + _logs(hosts)
        step = timed("class_and_failover", step)
        stopping = time.monotonic()
    timings["stop_hosts"] = time.monotonic() - stopping
    timings["total"] = time.monotonic() - started
    print(
        "multihost booted tier (s): " + json.dumps({k: round(v, 2) for k, v in timings.items()}),
        file=sys.stderr,
    )
