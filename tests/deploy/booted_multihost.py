"""Booted tier, several hosts (`make test-deploy`): inventories/multihost on four Debian 12
containers (systemd-nspawn) joined by one private zone network (`--network-zone`, the
inventory's own 10.0.0.0/24 addresses): the database host, two app hosts and the proxy.

The controller runs inside the proxy's network namespace and reaches every host over that
network by SSH, as production does. Ansible converges all four (multihost.yml), a second
run changes nothing, pyinfra (provisioning/multihost.py, reading the same YAML) changes
nothing; then HTTPS through the proxy, Prometheus scraping both app hosts, and one app
host's service stopped: the proxy keeps answering from the other.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import yaml

from tests.deploy.helpers import MULTIHOST, ansible_env, tool
from tests.deploy.nspawn import ARTIFACTS, KEY, Host, booted_host

PROBE = Path(__file__).with_name("probe.py")
ZONE = "estrade"
SSH_OPTIONS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
ADDRESSES = {"db1": "10.0.0.2", "app1": "10.0.0.11", "app2": "10.0.0.12", "proxy": "10.0.0.10"}
SERVER_NAME = "estrade.test"


def _inventory(tmp: Path) -> Path:
    """inventories/multihost as is, plus what the test site needs (its key, coturn's address)."""
    inv = tmp / "multihost"
    shutil.copytree(MULTIHOST, inv)
    (inv / "group_vars" / "all" / "zz-test.yml").write_text(
        yaml.safe_dump(
            {
                "ansible_ssh_private_key_file": str(KEY),
                "ansible_ssh_common_args": SSH_OPTIONS,
                "estrade_server_name": SERVER_NAME,
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


def test_multihost_converges_with_both_tools_and_survives_an_app_host(tmp_path):
    started = time.monotonic()
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
        print(f"multihost: 4 hosts up in {time.monotonic() - started:.0f} s", file=sys.stderr)

        first = _ansible(proxy, inv)
        assert all(first[name] > 0 for name in ADDRESSES), first
        again = _ansible(proxy, inv)
        assert again == dict.fromkeys(ADDRESSES, 0), again
        changed, out = _pyinfra(proxy, _pyinfra_inventory(tmp_path, inv))
        assert changed == 0, out[-4000:]

        # Through the proxy: both app hosts serve; Prometheus scrapes both.
        ca = proxy.root / "etc/estrade/tls/ca.pem"
        python = "/usr/bin/python3"
        for path in ("/health", "/ready"):
            probe = proxy.net(python, str(PROBE), "https", SERVER_NAME, str(ca), path, timeout=90)
            assert probe.returncode == 0, probe.stdout + probe.stderr
        scraped = proxy.net(python, str(PROBE), "prometheus", "estrade", "node", timeout=120)
        assert scraped.returncode == 0, scraped.stdout + scraped.stderr
        # The database host accepts the app hosts and keeps Redis behind its password.
        db = hosts["db1"]
        ruleset = db.run("nft", "list", "ruleset").stdout
        assert "tcp dport { 5432, 6379 }" in ruleset, ruleset
        for app in ("app1", "app2"):
            state = hosts[app].run("systemctl", "is-active", "estrade.service", check=False)
            assert state.stdout.strip() == "active", app

        # One app host's service stops: the proxy answers from the other.
        hosts["app1"].run("systemctl", "stop", "estrade.service")
        for _ in range(5):
            probe = proxy.net(
                python, str(PROBE), "https", SERVER_NAME, str(ca), "/ready", timeout=90
            )
            assert probe.returncode == 0, probe.stdout + probe.stderr
    print(f"multihost booted tier: {time.monotonic() - started:.0f} s", file=sys.stderr)
