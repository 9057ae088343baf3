"""Booted tier (`make test-deploy`): real Debian 12 hosts under systemd-nspawn.

Each test restores a pristine bookworm root (tests/deploy/build-root.sh), boots it with its
own network namespace, and converges it over SSH the way production is reached: the
controller runs inside the container's network namespace and connects to 127.0.0.1:22.
A sandbox that cannot boot nspawn fails here: it never skips.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from provisioning.variables import REPO
from tests.deploy.helpers import SITE_VARS, ansible_env, tool
from tests.deploy.nspawn import ARTIFACTS, KEY, BootError, Host, booted_host

PROBE = Path(__file__).with_name("probe.py")
SITE = yaml.safe_load(SITE_VARS.read_text())
SSH_OPTIONS = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
SERVICES = ("estrade", "nginx", "coturn", "nftables", "prometheus", "prometheus-node-exporter")


# --- the two tools -------------------------------------------------------------------


def _ansible_inventory(tmp: Path, extra: dict | None = None) -> Path:
    inv = tmp / "ansible-inventory"
    (inv / "group_vars" / "estrade").mkdir(parents=True, exist_ok=True)
    (inv / "hosts.yml").write_text(
        yaml.safe_dump(
            {
                "estrade": {
                    "hosts": {
                        "classroom": {
                            "ansible_host": "127.0.0.1",
                            "ansible_user": "root",
                            "ansible_ssh_private_key_file": str(KEY),
                            "ansible_ssh_common_args": SSH_OPTIONS,
                        }
                    }
                }
            }
        )
    )
    (inv / "group_vars" / "estrade" / "main.yml").write_text(
        yaml.safe_dump({**SITE, **(extra or {})})
    )
    return inv


def _pyinfra_inventory(tmp: Path, extra: dict | None = None) -> Path:
    data = {
        **SITE,
        **(extra or {}),
        "ssh_user": "root",
        "ssh_key": str(KEY),
        "ssh_strict_host_key_checking": "off",
        "ssh_known_hosts_file": "/dev/null",
    }
    inv = tmp / "pyinfra_inventory.py"
    inv.write_text(f"estrade = [('127.0.0.1', {data!r})]\n")
    return inv


def ansible(host: Host, inventory: Path, *args: str, fail: bool = False) -> tuple[int, str]:
    """Run site.yml; returns (changed count, output). ``fail``: the run must fail."""
    started = time.monotonic()
    proc = host.net(
        tool("ansible-playbook"), "-i", str(inventory), "site.yml", *args, env=ansible_env()
    )
    out = proc.stdout + proc.stderr
    (ARTIFACTS / f"{host.name}-ansible-{int(started)}.log").write_text(out)
    if fail:
        assert proc.returncode != 0, out[-6000:]
        return 0, out
    assert proc.returncode == 0, out[-6000:]
    recap = re.search(r"classroom\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=0\s+failed=0", out)
    assert recap, out[-3000:]
    print(
        f"ansible {' '.join(args)}: {time.monotonic() - started:.0f} s, changed={recap.group(2)}",
        file=sys.stderr,
    )
    return int(recap.group(2)), out


def pyinfra(host: Host, inventory: Path) -> tuple[int, str]:
    """Run the pyinfra deploy; returns (operations that changed something, output)."""
    started = time.monotonic()
    proc = host.net(tool("pyinfra"), "-y", "--no-wait", str(inventory), "provisioning/deploy.py")
    out = proc.stdout + proc.stderr
    (ARTIFACTS / f"{host.name}-pyinfra-{int(started)}.log").write_text(out)
    assert proc.returncode == 0, out[-6000:]
    changed = _pyinfra_changes(out)
    print(f"pyinfra: {time.monotonic() - started:.0f} s, changed={changed}", file=sys.stderr)
    return changed, out


def _pyinfra_changes(out: str) -> int:
    """Operations that changed something, from pyinfra's results table.

    The table reads "Operation  Hosts  Success  Error  No Change", "-" for zero; an
    operation with nothing to do counts under "No Change".
    """
    match = re.search(r"Grand total\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if not match:
        raise AssertionError(f"cannot read pyinfra's results:\n{out[-3000:]}")
    success, error = match.group(2), match.group(3)
    assert error == "-", out[-3000:]
    return 0 if success == "-" else int(success)


def _pyinfra_changed_operations(out: str) -> str:
    table = out[out.rindex("--> Results:") :]
    return "\n".join(line for line in table.splitlines() if re.search(r"\s1\s+1\s+-\s+-\s*$", line))


# --- what a converged host must offer ---------------------------------------------


def check_host(host: Host) -> None:
    for service in SERVICES:
        state = host.run("systemctl", "is-active", f"{service}.service", check=False)
        assert state.stdout.strip() == "active", (
            service,
            host.run("journalctl", "--no-pager", "-n", "40", "-u", service, check=False).stdout,
        )
    ca = host.root / "etc/estrade/tls/ca.pem"
    python = "/usr/bin/python3"
    for path in ("/health", "/ready"):
        proc = host.net(
            python, str(PROBE), "https", SITE["estrade_server_name"], str(ca), path, timeout=90
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    stun = host.net(python, str(PROBE), "stun", timeout=30)
    assert stun.returncode == 0, stun.stdout + stun.stderr
    turn = host.net(
        python,
        str(PROBE),
        "turn",
        SITE["estrade_turn_secret"],
        SITE["estrade_server_name"],
        timeout=30,
    )
    assert turn.returncode == 0, turn.stdout + turn.stderr
    assert "relayed 127.0.0.1:" in turn.stdout
    # coturn read the certificate (its user reaches /etc/estrade/tls): TLS listeners up.
    coturn_log = host.run("journalctl", "--no-pager", "-b", "-u", "coturn", check=False).stdout
    last_start = coturn_log.rsplit("TLS supported", 1)[-1]
    assert "cannot find certificate file" not in last_start, coturn_log[-3000:]
    # TURN over TLS through port 443: nginx routes the TURN name (SNI) to coturn's TLS
    # listener; the certificate (internal CA) names it.
    turn_name = f"turn.{SITE['estrade_server_name']}"
    turn_tls = host.net(
        python,
        str(PROBE),
        "turn-tls",
        SITE["estrade_turn_secret"],
        SITE["estrade_server_name"],
        turn_name,
        str(ca),
        "443",
        timeout=60,
    )
    assert turn_tls.returncode == 0, turn_tls.stdout + turn_tls.stderr
    assert "relayed 127.0.0.1:" in turn_tls.stdout and "on port 443" in turn_tls.stdout
    # nginx logs each connection on port 443 when it ends, with the TLS name and its route.
    stream_log = host.root / "var/log/nginx/estrade-stream.access.log"
    deadline = time.monotonic() + 15
    while f'"{turn_name}" 127.0.0.1:8444 ' not in stream_log.read_text():
        assert time.monotonic() < deadline, stream_log.read_text()[-2000:]
        time.sleep(0.5)
    scraped = host.net(
        python, str(PROBE), "prometheus", "prometheus", "node", "estrade", timeout=120
    )
    assert scraped.returncode == 0, scraped.stdout + scraped.stderr
    check_media_workers(host)
    ruleset = host.run("nft", "list", "ruleset").stdout
    assert "policy drop" in ruleset and "udp dport 49160-49999 accept" in ruleset
    # The appliance is reachable only through the proxy: it binds loopback.
    unit = host.run("systemctl", "show", "estrade.service", "-p", "User,ExecMainPID").stdout
    assert "User=estrade" in unit


# Inside the host: the processes running the appliance (the web process and media workers),
# as {pid: [parent pid, command line, cgroups]}, and the cores the main process may run on.
UNIT_PROCESSES = """
import json, os, sys
main = int(sys.argv[1])
procs = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    if int(pid) == os.getpid():
        continue
    try:
        stat = open(f"/proc/{pid}/stat").read()
        cmd = open(f"/proc/{pid}/cmdline", "rb").read().replace(b"\\0", b" ").decode()
        cgroups = open(f"/proc/{pid}/cgroup").read()
    except OSError:
        continue
    if "/opt/estrade/" in cmd:
        procs[pid] = [int(stat.rsplit(")", 1)[1].split()[1]), cmd, cgroups]
print(json.dumps({"cores": len(os.sched_getaffinity(main)), "procs": procs}))
"""


def check_media_workers(host: Host) -> None:
    """The media workers run under the hardened unit (its syscall filter, its cgroup): one per
    core, children of `estrade serve`, nothing else left in the unit (no orphan of an earlier
    start), and each pushes its figures (its relay is up: /metrics shows it)."""
    main = int(host.run("systemctl", "show", "estrade.service", "-p", "MainPID", "--value").stdout)
    seen = json.loads(host.run("python3", "-c", UNIT_PROCESSES, str(main)).stdout)
    workers = {int(pid): v for pid, v in seen["procs"].items() if int(pid) != main}
    assert workers and all(
        ppid == main and "-m appliance.media.worker" in cmd and "estrade.service" in cgroups
        for ppid, cmd, cgroups in workers.values()
    ), seen
    assert len(workers) == seen["cores"], seen
    # The service sees the host's CPU counters (the capacity estimate's "other" load): a
    # ProcSubset=pid in the unit would hide them, and the estimate would ignore other load.
    stat = host.run("nsenter", "-t", str(main), "-m", "head", "-1", "/proc/stat", check=False)
    assert stat.returncode == 0 and stat.stdout.startswith("cpu "), stat.stdout + stat.stderr
    token = SITE["estrade_metrics_token"]
    up = host.net("/usr/bin/python3", str(PROBE), "workers", token, str(seen["cores"]), timeout=90)
    assert up.returncode == 0, up.stdout + up.stderr


def check_backup_and_restore(host: Host) -> None:
    estrade = [
        "runuser",
        "-u",
        "estrade",
        "--",
        "env",
        "ESTRADE_CONFIG=/etc/estrade/estrade.toml",
        "ESTRADE_ADMIN_PASSWORD=correct-horse-battery",
        "/opt/estrade/current/bin/estrade",
    ]
    host.run(*estrade, "create-admin", "kept@example.org", "--password-from-env")
    host.run("/usr/local/sbin/estrade-backup", "create")
    archive = host.run("/usr/local/sbin/estrade-backup", "list").stdout.split()[0]
    host.run(*estrade, "create-admin", "after-backup@example.org", "--password-from-env")
    host.run("/usr/local/sbin/estrade-backup", "restore", archive)
    emails = host.run(
        "python3",
        "-c",
        "import sqlite3; print(sorted(r[0] for r in sqlite3.connect("
        "'/var/lib/estrade/estrade.sqlite3').execute('select email from estrade_user')))",
    ).stdout
    assert "kept@example.org" in emails and "after-backup@example.org" not in emails, emails
    assert (
        host.run("systemctl", "is-active", "estrade.service", check=False).stdout.strip()
        == "active"
    )


BROKEN_MIGRATION = """
from piccolo.apps.migrations.auto.migration_manager import MigrationManager

ID = "2099-01-01T00:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "a migration that fails (provisioning test)"


async def forwards():
    manager = MigrationManager(migration_id=ID, app_name="accounts", description=DESCRIPTION)

    async def fail() -> None:
        raise RuntimeError("this migration fails on purpose")

    manager.add_raw(fail)
    return manager
"""


def newer_wheelhouse(tmp: Path, suffix: str, broken: bool = False) -> tuple[Path, str]:
    """dist/wheelhouse plus a wheel of this repository with a higher version.

    ``broken`` adds a migration that raises, to prove a failed upgrade keeps the old
    version serving.
    """
    src = tmp / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".venv", "dist", "data", "artifacts", ".git", "node_modules", "*.egg-info", "build"
        ),
    )
    if broken:
        migrations = src / "appliance" / "accounts" / "piccolo_migrations"
        (migrations / "accounts_2099_01_01t00_00_00_000000.py").write_text(BROKEN_MIGRATION)
    pyproject = src / "pyproject.toml"
    old = re.search(r'^version = "([^"]+)"', pyproject.read_text(), re.M).group(1)
    new = old + suffix
    text = pyproject.read_text().replace(f'version = "{old}"', f'version = "{new}"', 1)
    pyproject.write_text(text)
    wheelhouse = tmp / "wheelhouse"
    shutil.copytree(REPO / "dist" / "wheelhouse", wheelhouse)
    subprocess.run(
        [
            str(Path(sys.executable).parent / "pip"),
            "wheel",
            "-q",
            "--no-deps",
            str(src),
            "-w",
            str(wheelhouse),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return wheelhouse, new


# --- the tests --------------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``--boots N`` (tests/deploy/conftest.py) boots N hosts in a row; 1 by default."""
    if "boot_round" in metafunc.fixturenames:
        rounds = metafunc.config.getoption("--boots", default=1)
        metafunc.parametrize("boot_round", range(1, rounds + 1), ids=lambda i: f"boot{i}")


def test_a_fresh_host_boots_and_stops_cleanly(boot_round):
    """First and quickest: a sandbox or root that cannot boot fails here, with its reason."""
    with booted_host(f"boot{boot_round}") as host:
        assert host.run("cat", "/proc/1/comm").stdout.strip() == "systemd"
        assert host.run("systemctl", "is-active", "ssh.service").stdout.strip() == "active"
        # --private-network: nothing but loopback, so services cannot bind the host's addresses.
        links = host.run("ip", "-o", "link").stdout
        assert [line.split(":")[1].strip() for line in links.splitlines()] == ["lo"], links
        nspawn, times = host.nspawn, host.times
    assert nspawn.returncode == 0, f"systemd-nspawn exited with {nspawn.returncode}"
    record = {
        "boot": boot_round,
        **{k: round(v, 3) for k, v in vars(times).items() if k != "attempts"},
    }
    record["retries"] = len(times.attempts)
    with (ARTIFACTS / "boots.jsonl").open("a") as out:
        out.write(json.dumps(record) + "\n")
    print(
        f"boot {boot_round}: restore {times.restore:.2f} s, init {times.leader:.2f} s, "
        f"ready {times.ready:.2f} s, running {times.running:.2f} s, stop {times.stop:.2f} s, "
        f"retries {len(times.attempts)} {times.attempts}",
        file=sys.stderr,
    )


def test_a_root_that_cannot_boot_fails_with_nspawn_s_reason(tmp_path):
    """The failure names the cause (here nspawn's refusal), not an empty state."""
    (tmp_path / "root" / "etc").mkdir(parents=True)  # no os-release: not an OS tree
    tarball = tmp_path / "not-an-os.tar"
    subprocess.run(["tar", "-C", str(tmp_path / "root"), "-cf", str(tarball), "."], check=True)
    started = time.monotonic()
    with pytest.raises(BootError) as failure, booted_host("not-an-os", tarball):
        pass
    message = str(failure.value)
    assert "systemd-nspawn exited with 1" in message, message
    assert "os-release" in message, message  # nspawn's own words, from the console log
    assert time.monotonic() - started < 60


def test_ansible_converges_a_fresh_host_then_pyinfra_agrees(tmp_path):
    with booted_host("ansible") as host:
        inventory = _ansible_inventory(tmp_path)
        changed, _ = ansible(host, inventory)
        assert changed > 0
        changed, out = ansible(host, inventory)
        assert changed == 0, "second Ansible run changed something:\n" + "\n".join(
            line for line in out.splitlines() if line.startswith("changed:")
        )
        check_host(host)
        check_backup_and_restore(host)

        # Upgrade in place: a newer wheel, migrated before the switch, data kept.
        wheelhouse, version = newer_wheelhouse(tmp_path / "upgrade", ".post1")
        upgraded = _ansible_inventory(tmp_path, {"estrade_wheelhouse": str(wheelhouse)})
        changed, _ = ansible(host, upgraded)
        assert changed > 0
        link = os.readlink(host.root / "opt/estrade/current")
        assert link.endswith(f"/venvs/{version}"), link
        check_host(host)
        emails = host.run(
            "python3",
            "-c",
            "import sqlite3; print([r[0] for r in sqlite3.connect("
            "'/var/lib/estrade/estrade.sqlite3').execute('select email from estrade_user')])",
        ).stdout
        assert "kept@example.org" in emails

        # A release whose migration fails: the run stops, the old version keeps serving.
        broken, bad = newer_wheelhouse(tmp_path / "broken", ".post2", broken=True)
        _, out = ansible(
            host, _ansible_inventory(tmp_path, {"estrade_wheelhouse": str(broken)}), fail=True
        )
        assert "this migration fails on purpose" in out
        assert (host.root / f"opt/estrade/venvs/{bad}/bin/estrade").exists()
        assert os.readlink(host.root / "opt/estrade/current").endswith(f"/venvs/{version}")
        check_host(host)

        # The other tool, same variables: nothing to change on a host Ansible built.
        changed, out = pyinfra(
            host, _pyinfra_inventory(tmp_path, {"estrade_wheelhouse": str(wheelhouse)})
        )
        assert changed == 0, "pyinfra after Ansible changed:\n" + _pyinfra_changed_operations(out)


def test_pyinfra_converges_a_fresh_host(tmp_path):
    with booted_host("pyinfra") as host:
        inventory = _pyinfra_inventory(tmp_path)
        changed, _ = pyinfra(host, inventory)
        assert changed > 0
        changed, out = pyinfra(host, inventory)
        assert changed == 0, "second pyinfra run changed:\n" + _pyinfra_changed_operations(out)
        check_host(host)
        check_backup_and_restore(host)


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
