"""Fast provisioning checks: lint, syntax, template parity and the daemons' own validators."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jinja2
import pytest
import yaml

from provisioning import role_docs
from provisioning.variables import REPO
from tests.deploy.helpers import (
    MULTIHOST,
    SITE_VARS,
    ansible_env,
    multihost_ansible_values,
    render_values_with_pyinfra,
    render_with_ansible,
    render_with_pyinfra,
    templates,
    tool,
)

# Each check runs Ansible, pyinfra or ansible-lint (about 100 s in all on a loaded 2-core
# machine): make test runs them, make test-fast leaves them out.
pytestmark = pytest.mark.slow


def _system(cmd: str) -> str:
    path = shutil.which(cmd) or next(
        (p for p in (f"/usr/sbin/{cmd}", f"/sbin/{cmd}") if os.path.exists(p)), None
    )
    if path is None:
        raise AssertionError(f"{cmd} is missing: run `make system-deps`")
    return path


@pytest.fixture(scope="module")
def minimal_vars(tmp_path_factory) -> Path:
    """Only what a site must set: everything else from the role defaults."""
    path = tmp_path_factory.mktemp("vars") / "minimal.yml"
    path.write_text("estrade_turn_secret: 0123456789abcdef0123456789abcdef-minimal\n")
    return path


@pytest.fixture(scope="module", params=["site", "minimal"])
def rendered(request, tmp_path_factory, minimal_vars) -> tuple[Path, Path, dict]:
    site_vars = SITE_VARS if request.param == "site" else minimal_vars
    base = tmp_path_factory.mktemp(f"rendered-{request.param}")
    render_with_ansible(site_vars, base / "ansible")
    variables = render_with_pyinfra(site_vars, base / "pyinfra")
    return base / "ansible", base / "pyinfra", variables


def test_ansible_lint_production_profile_passes():
    proc = subprocess.run(
        [tool("ansible-lint"), "--offline", "--profile", "production", "--nocolor"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=ansible_env(),
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


def test_playbook_syntax_is_valid():
    proc = subprocess.run(
        [tool("ansible-playbook"), "-i", "inventories/example", "site.yml", "--syntax-check"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=ansible_env(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


ROLES = sorted(p.name for p in (REPO / "roles").iterdir())


def _examples(role: str) -> list[str]:
    text = (REPO / "roles" / role / "README.md").read_text()
    example = text.split("## Example", 1)[1] if "## Example" in text else ""
    return [block.split("```", 1)[0] for block in example.split("```yaml\n")[1:]]


@pytest.mark.parametrize("role", ROLES)
def test_role_readme_lists_the_current_variables_and_an_example(role):
    readme = REPO / "roles" / role / "README.md"
    assert readme.exists(), f"roles/{role} has no README.md"
    assert readme.read_text() == role_docs.rendered(readme), (
        f"roles/{role}/README.md: variables table out of date, run `make role-docs`"
    )
    assert _examples(role), f"roles/{role}/README.md has no ```yaml example under ## Example"


def test_role_readme_examples_pass_the_syntax_check(tmp_path):
    plays = [play for role in ROLES for block in _examples(role) for play in yaml.safe_load(block)]
    assert {r if isinstance(r, str) else r["role"] for p in plays for r in p["roles"]} >= set(ROLES)
    playbook = tmp_path / "examples.yml"
    playbook.write_text(yaml.safe_dump(plays))
    proc = subprocess.run(
        [tool("ansible-playbook"), "-i", "inventories/example", str(playbook), "--syntax-check"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=ansible_env(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_role_metadata_claims_only_what_the_booted_tier_boots():
    """Debian 12 only: build-root.sh bootstraps bookworm, and nothing else is converged."""
    assert " bookworm " in (REPO / "tests/deploy/build-root.sh").read_text()
    for role in ROLES:
        meta = yaml.safe_load((REPO / "roles" / role / "meta/main.yml").read_text())
        platforms = meta["galaxy_info"]["platforms"]
        assert platforms == [{"name": "Debian", "versions": ["bookworm"]}], (role, platforms)


@pytest.mark.parametrize(("role", "name"), templates())
def test_every_template_compiles_with_plain_jinja2(role, name):
    # Ansible-only filters and lookups fail here: the shared subset stays shared.
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True)
    source = (REPO / "roles" / role / "templates" / name).read_text()
    env.from_string(source)


def test_ansible_and_pyinfra_render_identical_files(rendered):
    ansible_out, pyinfra_out, _ = rendered
    assert len(templates()) >= 12
    for role, name in templates():
        a = (ansible_out / role / name).read_bytes()
        p = (pyinfra_out / role / name).read_bytes()
        assert a == p, f"{role}/{name} differs between Ansible and pyinfra"
        assert b"{{" not in a, f"{role}/{name} kept an unresolved expression"


def test_every_role_variable_is_documented_in_argument_specs():
    for role_dir in sorted((REPO / "roles").iterdir()):
        defaults = yaml.safe_load((role_dir / "defaults/main.yml").read_text()) or {}
        specs = yaml.safe_load((role_dir / "meta/argument_specs.yml").read_text())
        options = specs["argument_specs"]["main"]["options"]
        assert set(defaults) == set(options), role_dir.name
        assert all(k.startswith(role_dir.name + "_") for k in defaults), role_dir.name


def test_rendered_config_is_valid_toml_the_appliance_accepts(rendered, tmp_path):
    from appliance.settings import load_settings

    _, pyinfra_out, variables = rendered
    config = pyinfra_out / "estrade" / "estrade.toml.j2"
    settings = load_settings(env={}, config_path=config)
    assert settings.port == variables["estrade_port"]
    assert settings.public_url == variables["estrade_public_url"]
    # Browsers get TURN over UDP, then TURN over TLS on port 443 under the TURN name.
    name = variables["estrade_server_name"]
    assert settings.turn_urls == [
        f"turn:{name}:3478?transport=udp",
        f"turns:turn.{name}:443?transport=tcp",
    ]


def test_rendered_firewall_passes_nft_check(rendered):
    _, pyinfra_out, _ = rendered
    ruleset = pyinfra_out / "nftables" / "nftables.conf.j2"
    proc = subprocess.run(
        [_system("nft"), "-c", "-f", str(ruleset)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    text = ruleset.read_text()
    assert "policy drop" in text and "udp dport 49160-49999 accept" in text


def test_rendered_units_pass_systemd_analyze_verify(rendered, tmp_path):
    _, pyinfra_out, variables = rendered
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    # verify needs ExecStart to exist: give it the paths the units name.
    text = (pyinfra_out / "estrade" / "estrade.service.j2").read_text()
    exe = Path(variables["estrade_prefix"]) / "current" / "bin" / "estrade"
    fake = tmp_path / "estrade"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    (unit_dir / "estrade.service").write_text(text.replace(str(exe), str(fake)))
    backup = (pyinfra_out / "estrade" / "estrade-backup.service.j2").read_text()
    (unit_dir / "estrade-backup.service").write_text(
        backup.replace("/usr/local/sbin/estrade-backup", str(fake))
    )
    shutil.copy(
        pyinfra_out / "estrade" / "estrade-backup.timer.j2", unit_dir / "estrade-backup.timer"
    )
    proc = subprocess.run(
        [
            _system("systemd-analyze"),
            "verify",
            "--man=no",
            *(
                str(unit_dir / u)
                for u in ("estrade.service", "estrade-backup.service", "estrade-backup.timer")
            ),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
    )
    problems = [
        line
        for line in proc.stderr.splitlines()
        if str(unit_dir) in line or "Unknown" in line or "Invalid" in line
    ]
    assert proc.returncode == 0 and not problems, proc.stderr


def test_rendered_proxy_passes_nginx_t(rendered, tmp_path):
    _, pyinfra_out, variables = rendered
    tls = _nginx_t(pyinfra_out, tmp_path)
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", str(tls / "ca.pem"), str(tls / "fullchain.pem")],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    # The certificate names the classroom and the TURN name (coturn serves it on 443 too).
    for name in (variables["estrade_server_name"], variables["nginx_turn_server_name"]):
        check = subprocess.run(
            ["openssl", "x509", "-in", str(tls / "fullchain.pem"), "-noout", "-checkhost", name],
            capture_output=True,
            text=True,
        )
        assert "does match" in check.stdout, check.stdout + check.stderr


def _nginx_t(pyinfra_out: Path, tmp_path: Path) -> Path:
    """``nginx -t`` on the rendered site and port 443 listener; returns the TLS folder."""
    # The rendered internal-CA command makes the certificate the proxy config names.
    tls = tmp_path / "tls"
    ca = pyinfra_out / "nginx" / "estrade-internal-ca.sh.j2"
    proc = subprocess.run(["sh", str(ca), str(tls)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    site = (pyinfra_out / "nginx" / "estrade-site.conf.j2").read_text()
    site = site.replace("/etc/estrade/tls", str(tls)).replace("/var/log/nginx", str(tmp_path))
    (tmp_path / "estrade.conf").write_text(site)
    # Port 443's listener (stream module, main context), as the role includes it.
    stream = (pyinfra_out / "nginx" / "estrade-stream.conf.j2").read_text()
    (tmp_path / "stream.conf").write_text(stream.replace("/var/log/nginx", str(tmp_path)))
    module = "/usr/lib/nginx/modules/ngx_stream_module.so"
    assert Path(module).exists(), "libnginx-mod-stream is missing: run `make system-deps`"
    (tmp_path / "nginx.conf").write_text(
        f"load_module {module};\n"
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n include /etc/nginx/mime.types;\n include {tmp_path}/estrade.conf;\n}}\n"
        f"include {tmp_path}/stream.conf;\n"
    )
    proc = subprocess.run(
        [_system("nginx"), "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    return tls


@pytest.mark.parametrize(
    "name", ["estrade/estrade-backup.sh.j2", "nginx/estrade-internal-ca.sh.j2"]
)
def test_rendered_shell_scripts_parse(rendered, name):
    _, pyinfra_out, _ = rendered
    proc = subprocess.run(["sh", "-n", str(pyinfra_out / name)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_rendered_prometheus_config_and_shipped_rules_pass_promtool(rendered):
    _, pyinfra_out, _ = rendered
    promtool = _system("promtool")
    config = pyinfra_out / "monitoring" / "prometheus.yml.j2"
    # --syntax-only: the token file it names exists only on the host.
    proc = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(config)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rules = sorted((REPO / "monitoring" / "rules").glob("*.yml"))
    assert rules, "the monitoring role ships monitoring/rules/*.yml"
    proc = subprocess.run(
        [promtool, "check", "rules", *map(str, rules)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_proxy_accepts_exactly_the_documents_the_appliance_accepts(rendered, tmp_path):
    from appliance.settings import load_settings

    _, pyinfra_out, variables = rendered
    settings = load_settings(env={}, config_path=pyinfra_out / "estrade" / "estrade.toml.j2")
    site = (pyinfra_out / "nginx" / "estrade-site.conf.j2").read_text()
    mib = settings.document_max_bytes // (1024 * 1024)
    assert settings.document_max_bytes == variables["estrade_document_max_mib"] * 1024 * 1024
    assert f"client_max_body_size {mib}m;" in site
    # nginx's own refusal reads like the appliance's (JSON with the limit).
    assert f'"detail":"the file is larger than the limit of {mib} MiB"' in site


def test_a_site_document_limit_moves_the_proxy_limit(tmp_path):
    site_vars = tmp_path / "vars.yml"
    site_vars.write_text(
        "estrade_turn_secret: 0123456789abcdef0123456789abcdef-x\nestrade_document_max_mib: 512\n"
    )
    out = tmp_path / "out"
    render_with_ansible(site_vars, out / "ansible")
    render_with_pyinfra(site_vars, out / "pyinfra")
    for tool_out in ("ansible", "pyinfra"):
        site = (out / tool_out / "nginx" / "estrade-site.conf.j2").read_text()
        toml = (out / tool_out / "estrade" / "estrade.toml.j2").read_text()
        assert "client_max_body_size 512m;" in site, tool_out
        assert f"document_max_bytes = {512 * 1024 * 1024}\n" in toml, tool_out


def test_rendered_proxy_logs_no_join_secret(rendered, tmp_path):
    """A real nginx with the rendered site (ports moved to free loopback ones): the access log
    records ``/join/[redacted]``, never a join link's secret (request line and Referer)."""
    import http.client
    import socket
    import time

    from tests.helpers.server import free_port

    _, pyinfra_out, variables = rendered
    tls = tmp_path / "tls"
    ca = pyinfra_out / "nginx" / "estrade-internal-ca.sh.j2"
    assert subprocess.run(["sh", str(ca), str(tls)], capture_output=True).returncode == 0
    http_port, https_port, upstream_port = free_port(), free_port(), free_port()
    site = (pyinfra_out / "nginx" / "estrade-site.conf.j2").read_text()
    site = site.replace("/etc/estrade/tls", str(tls)).replace("/var/log/nginx", str(tmp_path))
    lines = []
    for line in site.splitlines():
        stripped = line.strip()
        if stripped.startswith("listen [::]"):
            continue
        if stripped == "listen 80;":
            line = f"    listen 127.0.0.1:{http_port};"
        elif stripped.startswith(f"listen {variables['nginx_site_listen']} "):
            line = f"    listen 127.0.0.1:{https_port} ssl;"  # HTTPS, without the stream hop
        elif stripped.startswith("server ") and stripped.endswith(";") and ":" in stripped:
            line = f"    server 127.0.0.1:{upstream_port};"  # nothing listens: 502, still logged
        lines.append(line)
    (tmp_path / "estrade.conf").write_text("\n".join(lines) + "\n")
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n include /etc/nginx/mime.types;\n include {tmp_path}/estrade.conf;\n}}\n"
    )
    nginx = subprocess.Popen(
        [
            _system("nginx"),
            "-p",
            str(tmp_path),
            "-c",
            str(tmp_path / "nginx.conf"),
            "-g",
            "daemon off;",
        ],
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", http_port), timeout=1).close()
                break
            except OSError:
                assert nginx.poll() is None, nginx.stderr.read() if nginx.stderr else ""
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
        secret, other = "S3cr3tJoinSecretAbc_-123", "R3f3rerSecretXyz_-456"
        for path in (f"/join/{secret}", f"/join/{secret}?x=1"):
            # http.client does not follow the redirect: urllib would, to 127.0.0.1:443,
            # and then depend on whatever listens there on the test machine.
            conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
            try:
                conn.request(
                    "GET", path, headers={"Referer": f"https://classe.example.org/join/{other}"}
                )
                assert conn.getresponse().status == 301
            finally:
                conn.close()
    finally:
        nginx.terminate()
        nginx.communicate(timeout=10)  # reaps it and closes its stderr pipe
    log = (tmp_path / "estrade.access.log").read_text()
    assert log.count('"GET /join/[redacted] HTTP/1.1" 301') == 1, log
    assert '"GET /join/[redacted]?x=1 HTTP/1.1" 301' in log, log
    assert "https://classe.example.org/join/[redacted]" in log, log
    assert secret not in log and other not in log, log


def test_unit_open_files_follow_the_configured_capacity(rendered, tmp_path):
    """LimitNOFILE is computed from the capacity written in estrade.toml, as the app counts."""
    from appliance.settings import load_settings

    _, pyinfra_out, variables = rendered
    settings = load_settings(env={}, config_path=pyinfra_out / "estrade" / "estrade.toml.j2")
    assert settings.media_max_rooms == variables["estrade_media_max_rooms"]
    assert settings.media_max_learners_per_room == variables["estrade_media_max_learners_per_room"]
    unit = (pyinfra_out / "estrade" / "estrade.service.j2").read_text()
    limits = re.findall(r"^LimitNOFILE=(\d+)$", unit, re.M)
    assert limits == [str(settings.open_files_needed)]
    assert settings.open_files_needed > 2 * 200 * 2  # a socket and a media port per learner


# What a media worker needs from the kernel besides what the web process did: the web process
# starts it (fork/vfork/clone, execve of the same python, socketpair, pidfd and wait4), reads
# its cores (sched_getaffinity) and the worker its own CPU (getrusage).
WORKER_SYSCALLS = {
    "execve",
    "clone",
    "clone3",
    "vfork",
    "fork",
    "socketpair",
    "wait4",
    "pidfd_open",
    "sched_getaffinity",
    "getrusage",
    "kill",
    "close_range",
}


def _syscalls(group: str, cache: dict[str, set[str]]) -> set[str]:
    """A syscall group (``@system-service``) expanded to its system calls, with systemd's list."""
    if group not in cache:
        out = subprocess.run(
            [_system("systemd-analyze"), "syscall-filter", group],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        names: set[str] = set()
        for line in out.splitlines()[1:]:
            word = line.strip()
            if word and not word.startswith("#"):
                names |= _syscalls(word, cache) if word.startswith("@") else {word}
        cache[group] = names
    return cache[group]


def test_rendered_unit_keeps_its_hardening_with_the_media_workers(rendered, tmp_path):
    """Exposure no worse than before the workers (1.3; 1.1 since PrivateMounts=, with
    systemd-analyze security), the workers stopped by the web process (KillMode=mixed), and
    every system call they need allowed."""
    _, pyinfra_out, _ = rendered
    unit = tmp_path / "estrade.service"
    unit.write_text((pyinfra_out / "estrade" / "estrade.service.j2").read_text())
    analyze = _system("systemd-analyze")
    score = subprocess.run(
        [analyze, "security", "--offline=yes", "--threshold=13", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
    )
    assert score.returncode == 0, score.stdout + score.stderr
    assert "Overall exposure level for estrade.service: 1.1" in score.stdout, score.stdout
    text = unit.read_text()
    assert re.findall(r"^KillMode=(\S+)$", text, re.M) == ["mixed"]
    cache: dict[str, set[str]] = {}
    allowed: set[str] = set()
    for line in re.findall(r"^SystemCallFilter=(.+)$", text, re.M):
        deny = line.startswith("~")
        names: set[str] = set()
        for word in line.removeprefix("~").split():
            names |= _syscalls(word, cache) if word.startswith("@") else {word}
        allowed = allowed - names if deny else allowed | names
    assert allowed >= WORKER_SYSCALLS, sorted(WORKER_SYSCALLS - allowed)
    assert "sched_setaffinity" not in allowed  # unchanged: workers are not pinned to cores


def test_the_firewall_opens_every_media_worker_s_ports(rendered):
    """However many workers start (one per core by default), their port slices lie inside the
    one range the firewall opens."""
    from appliance.media.remote import worker_port_slice
    from appliance.settings import load_settings

    _, pyinfra_out, _ = rendered
    settings = load_settings(env={}, config_path=pyinfra_out / "estrade" / "estrade.toml.j2")
    low, high = settings.media_port_min, settings.media_port_max
    assert settings.media_workers is None  # auto: one per core of the host
    ruleset = (pyinfra_out / "nftables" / "nftables.conf.j2").read_text()
    assert f"udp dport {low}-{high} accept" in ruleset
    for count in sorted({1, 2, 3, 4, 7, 8, 16, 64, settings.media_worker_count}):
        slices = [worker_port_slice(low, high, k, count) for k in range(count)]
        assert all(low <= a <= b <= high for a, b in slices), (count, slices)
        assert all(b < a for (_, b), (a, _) in itertools.pairwise(slices)), count


# Several hosts (docs/deploy.md "Several hosts"): inventories/multihost, read by Ansible
# (multihost.yml) and by pyinfra (provisioning/multihost_inventory.py + multihost.py).
MULTIHOST_HOSTS = ("db1", "app1", "app2", "proxy")


@pytest.fixture(scope="module")
def multihost(tmp_path_factory) -> dict[str, tuple[Path, Path, dict]]:
    """Every template rendered for every host of the multihost inventory by both tools: Ansible
    with the values Ansible's own inventory merging gives the host, pyinfra with what the
    pyinfra inventory reads from the same files."""
    from provisioning.multihost_inventory import host_values

    pyinfra_hosts = {
        data["multihost_name"]: data for hosts in host_values().values() for _, data in hosts
    }
    assert set(pyinfra_hosts) == set(MULTIHOST_HOSTS)
    base = tmp_path_factory.mktemp("multihost")
    out = {}
    for name in MULTIHOST_HOSTS:
        values = base / f"{name}.json"
        values.write_text(json.dumps(multihost_ansible_values(name)))
        render_with_ansible(values, base / name / "ansible")
        data = {k: v for k, v in pyinfra_hosts[name].items() if k != "ssh_user"}
        variables = render_values_with_pyinfra(data, base / name / "pyinfra")
        out[name] = (base / name / "ansible", base / name / "pyinfra", variables)
    return out


def test_multihost_playbook_syntax_is_valid():
    proc = subprocess.run(
        [tool("ansible-playbook"), "-i", str(MULTIHOST), "multihost.yml", "--syntax-check"],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=ansible_env(),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_multihost_inventory_passes_every_role_s_argument_validation():
    """Each play's roles validate their inputs (and template every default they declare) with
    the inventory's values: the proxy runs nginx without the estrade role, app hosts run
    estrade without coturn. Only the validation tasks run (tag `always`), in check mode."""
    proc = subprocess.run(
        [
            tool("ansible-playbook"),
            "-i",
            str(MULTIHOST),
            "multihost.yml",
            "--connection=local",
            "--check",
            "--tags=only-the-validation",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**ansible_env(), "ANSIBLE_GATHERING": "explicit"},
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert proc.stdout.count("Validating arguments against arg spec") == 4 + 2 * 2 + 4


def test_multihost_ansible_and_pyinfra_render_identical_files(multihost):
    for name, (ansible_out, pyinfra_out, _) in multihost.items():
        for role, template in templates():
            a = (ansible_out / role / template).read_bytes()
            p = (pyinfra_out / role / template).read_bytes()
            assert a == p, f"{name}: {role}/{template} differs between Ansible and pyinfra"
            assert b"{{" not in a, f"{name}: {role}/{template} kept an unresolved expression"


def test_multihost_proxy_routes_cohorts_over_both_app_hosts(multihost, tmp_path):
    _, out, variables = multihost["proxy"]
    site = (out / "nginx" / "estrade-site.conf.j2").read_text()
    upstream = site.split("upstream estrade_appliance {", 1)[1].split("}", 1)[0]
    assert "hash $estrade_cohort_id consistent;" in upstream
    servers = re.findall(r"^\s*server (\S+) max_fails=1 fail_timeout=5s;$", upstream, re.M)
    assert servers == ["10.0.0.11:8080", "10.0.0.12:8080"]
    _nginx_t(out, tmp_path)
    # coturn and nginx answer on the proxy's public ports; the app hosts' media range is theirs.
    ruleset = (out / "nftables" / "nftables.conf.j2").read_text()
    assert "tcp dport { 80, 443, 3478, 5349 } accept" in ruleset
    assert f"udp dport {variables['estrade_media_udp_port_min']}-" not in ruleset


def test_multihost_prometheus_scrapes_every_app_host(multihost):
    _, out, _ = multihost["proxy"]
    config = out / "monitoring" / "prometheus.yml.j2"
    proc = subprocess.run(
        [_system("promtool"), "check", "config", "--syntax-only", str(config)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = {job["job_name"]: job for job in yaml.safe_load(config.read_text())["scrape_configs"]}
    assert jobs["estrade"]["static_configs"] == [{"targets": ["10.0.0.11:8080", "10.0.0.12:8080"]}]
    assert jobs["estrade"]["authorization"]["type"] == "Bearer"
    # Each app host lets the proxy's Prometheus scrape it (and believes only its headers).
    from appliance.settings import load_settings

    for name in ("app1", "app2"):
        toml = multihost[name][1] / "estrade" / "estrade.toml.j2"
        settings = load_settings(env={}, config_path=toml)
        assert "10.0.0.10/32" in settings.metrics_allow_cidrs, name
        assert "10.0.0.10" in str(settings.forwarded_allow_ips), name


def test_multihost_app_hosts_share_the_database_redis_and_secret(multihost):
    from appliance.settings import load_settings

    settings = {
        name: load_settings(env={}, config_path=multihost[name][1] / "estrade" / "estrade.toml.j2")
        for name in ("app1", "app2")
    }
    assert settings["app1"].host == "10.0.0.11" and settings["app2"].host == "10.0.0.12"
    for s in settings.values():
        assert s.uses_postgres and "@10.0.0.2:5432/estrade" in str(s.database_url)
        assert str(s.redis_url).startswith("redis://:") and "@10.0.0.2:6379/0" in str(s.redis_url)
    a, b = settings["app1"], settings["app2"]
    assert a.secret_key and a.secret_key == b.secret_key
    shared = ("database_url", "redis_url", "public_url", "session_store")
    assert [getattr(a, k) for k in shared] == [getattr(b, k) for k in shared]
    # Apart from the address each host listens on, the two configurations are the same file.
    texts = [
        (multihost[n][1] / "estrade" / "estrade.toml.j2").read_text().replace(addr, "ADDR")
        for n, addr in (("app1", "10.0.0.11"), ("app2", "10.0.0.12"))
    ]
    assert texts[0] == texts[1]


def _ruleset(multihost, name: str) -> str:
    ruleset = multihost[name][1] / "nftables" / "nftables.conf.j2"
    proc = subprocess.run(
        [_system("nft"), "-c", "-f", str(ruleset)], capture_output=True, text=True
    )
    assert proc.returncode == 0, f"{name}: {proc.stderr}"
    return ruleset.read_text()


def test_multihost_firewalls_open_each_role_s_ports_and_no_more(multihost):
    private = "ip saddr { 10.0.0.0/24 }"
    db = _ruleset(multihost, "db1")
    assert f"{private} tcp dport {{ 5432, 6379, 2049 }} accept" in db  # NFS v4: 2049 only
    assert f"{private} tcp dport 22 accept" in db
    # Nothing else: no public TCP/UDP port, no UDP range.
    accepts = [line.strip() for line in db.splitlines() if "dport" in line and "accept" in line]
    assert accepts == [
        f"{private} tcp dport 22 accept",
        f"{private} tcp dport {{ 5432, 6379, 2049 }} accept",
    ]
    for name in ("app1", "app2"):
        app = _ruleset(multihost, name)
        assert f"{private} tcp dport {{ 8080 }} accept" in app
        assert "udp dport 40000-40999 accept" in app
        assert not re.search(r"^\s*tcp dport \{", app, re.M), name  # no public TCP port
    _ruleset(multihost, "proxy")


def test_multihost_database_host_listens_privately_with_passwords(multihost, tmp_path):
    """PostgreSQL's conf.d file; Redis started for real from the rendered redis.conf (moved to
    loopback and a free port): it refuses commands without the password."""
    import time

    import redis

    from tests.helpers.server import free_port

    _, out, variables = multihost["db1"]
    pg = (out / "postgresql" / "postgresql-estrade.conf.j2").read_text()
    assert "listen_addresses = 'localhost,10.0.0.2'" in pg
    assert variables["postgresql_allowed_networks"] == ["10.0.0.0/24"]
    conf = (out / "redis" / "redis.conf.j2").read_text()
    assert "bind 127.0.0.1 10.0.0.2\n" in conf and "protected-mode yes\n" in conf
    port = free_port()
    moved = {
        "bind": "bind 127.0.0.1",
        "port": f"port {port}",
        "supervised": "supervised no",
        "pidfile": f"pidfile {tmp_path}/redis.pid",
        "logfile": f"logfile {tmp_path}/redis.log",
        "dir": f"dir {tmp_path}",
    }
    lines = [moved.get(line.split(" ", 1)[0], line) for line in conf.splitlines()]
    (tmp_path / "redis.conf").write_text("\n".join(lines) + "\n")
    server = subprocess.Popen(
        [_system("redis-server"), str(tmp_path / "redis.conf")], stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 10
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)
        while True:
            try:
                client.ping()
                raise AssertionError("Redis answered without the password")
            except redis.AuthenticationError:
                break
            except redis.ConnectionError:
                assert server.poll() is None, (tmp_path / "redis.log").read_text()
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.1)
        authed = redis.Redis(
            host="127.0.0.1", port=port, password=variables["redis_password"], socket_timeout=2
        )
        assert authed.ping() is True
        assert authed.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
    finally:
        server.terminate()
        server.communicate(timeout=10)


def _mount_unit_name(path: str) -> str:
    """What systemd calls the mount unit of ``path``."""
    proc = subprocess.run(
        [_system("systemd-escape"), "--path", "--suffix=mount", path],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout.strip()


def test_multihost_shares_documents_and_recordings_over_nfs(multihost, tmp_path):
    """The database host exports the data folder's documents/ and recordings/ to the private
    network; each app host mounts both from it (hard NFSv4 units systemd accepts, named after
    their paths) and its estrade.service requires them; the estrade account has the same ids
    on every host. (Rendered by both tools: the parity test compares them.)"""
    from pyinfra.api.util import get_template

    from provisioning.roles import shared_blobs_mount_units
    from provisioning.variables import JINJA_ENV_KWARGS

    _, db_out, db_vars = multihost["db1"]
    exports = (db_out / "shared_blobs" / "estrade.exports.j2").read_text()
    # Every client user, root's estrade-backup included, acts as the estrade account (950).
    options = "rw,sync,no_subtree_check,all_squash,anonuid=950,anongid=950"
    assert [line for line in exports.splitlines() if not line.startswith("#")] == [
        f"/var/lib/estrade/{folder} 10.0.0.0/24({options})"
        for folder in ("documents", "recordings")
    ]
    ids = {str(db_vars["shared_blobs_uid"]), str(db_vars["shared_blobs_gid"])}
    assert ids == {"950"}
    template = get_template(
        str(REPO / "roles/estrade/templates/estrade-shared-blobs.mount.j2"),
        jinja_env_kwargs=dict(JINJA_ENV_KWARGS),
    )
    for name in ("app1", "app2"):
        _, out, variables = multihost[name]
        assert variables["estrade_shared_blobs_from"] == "10.0.0.2", name
        # The names the roles give the units are systemd's for their paths.
        assert shared_blobs_mount_units(variables) == [
            _mount_unit_name(f"/var/lib/estrade/{folder}") for folder in ("documents", "recordings")
        ]
        assert {str(variables["estrade_uid"]), str(variables["estrade_gid"])} == ids, name
        service = (out / "estrade" / "estrade.service.j2").read_text()
        requires = "RequiresMountsFor=/var/lib/estrade/documents /var/lib/estrade/recordings\n"
        assert requires in service.split("[Service]", 1)[0], name
        # The documents unit as each tool rendered it; the recordings one as the roles do.
        units = {"documents": (out / "estrade" / "estrade-shared-blobs.mount.j2").read_text()}
        units["recordings"] = template.render(**variables, estrade_shared_blobs_folder="recordings")
        for folder, unit in units.items():
            where = f"/var/lib/estrade/{folder}"
            mount = dict(
                line.split("=", 1)
                for line in unit.split("[Mount]\n", 1)[1].split("\n\n")[0].splitlines()
            )
            assert mount["What"] == f"10.0.0.2:{where}" and mount["Where"] == where, unit
            assert mount["Type"] == "nfs4" and "hard" in mount["Options"].split(","), unit
            (tmp_path / _mount_unit_name(where)).write_text(unit)
        proc = subprocess.run(
            [
                _system("systemd-analyze"),
                "verify",
                "--man=no",
                *(str(tmp_path / _mount_unit_name(f"/var/lib/estrade/{f}")) for f in units),
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "SYSTEMD_LOG_LEVEL": "warning"},
        )
        problems = [line for line in proc.stderr.splitlines() if str(tmp_path) in line]
        assert proc.returncode == 0 and not problems, proc.stderr


def test_multihost_only_app1_runs_the_backup_timer(multihost):
    """The app hosts share one database and documents folder: app1's timer backs them up, app2
    stops and disables its own (both tools, from the same inventory). Ansible's side: the
    role's tasks' loop and condition evaluated by Ansible's templar with the values
    ansible-inventory gives each host."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    from provisioning.roles import estrade_started_units
    from provisioning.variables import role_defaults

    tasks = yaml.safe_load((REPO / "roles/estrade/tasks/main.yml").read_text())
    tasks = {t["name"]: t for t in tasks}
    start = tasks["Enable and start Estrade and its backup timer"]
    stop = tasks["Stop and disable the backup timer, another host backs up"]
    assert stop["ansible.builtin.systemd_service"] == {
        "name": "estrade-backup.timer",
        "enabled": False,
        "state": "stopped",
    }
    timers = {}
    for name in ("app1", "app2"):
        _, _, variables = multihost[name]
        values = {**role_defaults(("estrade",)), **multihost_ansible_values(name)}
        templar = Templar(loader=DataLoader(), variables=values)
        started = templar.template(trust_as_template(start["loop"]))
        stopped = templar.evaluate_conditional(trust_as_template(stop["when"]))
        assert started == estrade_started_units(variables), name
        assert stopped is ("estrade-backup.timer" not in started), name
        timers[name] = "estrade-backup.timer" in started
    assert timers == {"app1": True, "app2": False}
    # One host alone (site.yml, the single-host pyinfra deploy) keeps its timer.
    assert role_defaults(("estrade",))["estrade_backup_timer"] is True


def test_one_host_mounts_nothing_and_runs_no_nfs(rendered):
    """site.yml and the single-host pyinfra deploy: estrade_shared_blobs_from empty, so no
    mount requirement in the unit, no mount units, no NFS server role."""
    _, out, variables = rendered
    assert variables["estrade_shared_blobs_from"] == ""
    service = (out / "estrade" / "estrade.service.j2").read_text()
    assert "RequiresMountsFor" not in service and "NFS" not in service
    site = yaml.safe_load((REPO / "site.yml").read_text())
    assert "shared_blobs" not in json.dumps(site)
    deploy = (REPO / "provisioning" / "deploy.py").read_text()
    assert (
        "shared_blobs" not in deploy
        and "shared_blobs" in (REPO / "provisioning" / "multihost.py").read_text()
    )
