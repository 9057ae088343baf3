"""A real coturn and a real nginx (stream module) on 127.0.0.1, configured by the roles' own
templates: TURN over TLS and the HTTPS site share one port, routed by the TLS name (SNI).

The templates are rendered with the same variables pyinfra uses (provisioning/variables.py),
with test values for the ports, paths and names; both daemons run as children of the test.
The TURN name is ``localhost`` (the one name that resolves to 127.0.0.1 here without touching
/etc/hosts, for Python and for chromium alike); the site's name is ``estrade.test``.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from jinja2 import Environment, FileSystemLoader, StrictUndefined

# The provisioning package lives at the repository root, outside the installed wheel.
if str(Path(__file__).resolve().parents[1]) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from provisioning.variables import JINJA_ENV_KWARGS, ROLES_DIR, role_defaults, site_variables
from tests.helpers.server import free_port

NGINX = "/usr/sbin/nginx"
STREAM_MODULE = "/usr/lib/nginx/modules/ngx_stream_module.so"
TURNSERVER = "/usr/bin/turnserver"
SITE_NAME = "estrade.test"
TURN_NAME = "localhost"
SECRET = "0123456789abcdef0123456789abcdef-turn-tls-test"


def need(path: str, package: str) -> None:
    if not Path(path).exists():
        raise AssertionError(f"{path} is missing: run `make system-deps` (Debian: {package})")


def make_certificates(out: Path, names: list[str]) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for ``names``: (ca.pem, fullchain.pem, key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Estrade test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    out.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    ca_path, chain_path, key_path = out / "ca.pem", out / "fullchain.pem", out / "privkey.pem"
    ca_path.write_bytes(ca.public_bytes(pem))
    chain_path.write_bytes(cert.public_bytes(pem) + ca.public_bytes(pem))
    key_path.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return ca_path, chain_path, key_path


def _render(role: str, name: str, variables: dict[str, Any]) -> str:
    env = Environment(
        loader=FileSystemLoader(str(ROLES_DIR / role / "templates")),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        **JINJA_ENV_KWARGS,
    )
    return env.get_template(name).render(**variables)


def _wait_tcp(port: int, process: subprocess.Popen[bytes], log: Path, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"nothing listens on 127.0.0.1:{port}:\n{log.read_text()[-4000:]}")
        time.sleep(0.05)


class TurnStack:
    """coturn + nginx as the roles configure them; ports are chosen now, daemons on start()."""

    def __init__(self, base: Path) -> None:
        need(NGINX, "nginx")
        need(STREAM_MODULE, "libnginx-mod-stream")
        need(TURNSERVER, "coturn")
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.ca, self.chain, self.key = make_certificates(base / "tls", [SITE_NAME, TURN_NAME])
        self.https_port = free_port()
        self.turn_port = free_port()
        self.turn_tls_port = free_port()
        relay_min = 20000 + (self.turn_port % 400) * 100
        # The roles' URLs, except that TURN over UDP names 127.0.0.1 (estrade.test resolves
        # nowhere: no DNS query may leave the machine); the turns: one stays as the role has it.
        udp, tls = role_defaults()["estrade_turn_urls"]
        assert "{{ estrade_server_name }}" in udp and tls.startswith("turns:")
        self.overrides: dict[str, Any] = {
            "estrade_turn_urls": [udp.replace("{{ estrade_server_name }}", "127.0.0.1"), tls],
            "estrade_server_name": SITE_NAME,
            "estrade_turn_secret": SECRET,
            "nginx_turn_server_name": TURN_NAME,
            "nginx_https_port": self.https_port,
            "nginx_http_port": free_port(),
            "nginx_site_listen": f"127.0.0.1:{free_port()}",
            "nginx_turn_hop_listen": f"127.0.0.1:{free_port()}",
            "nginx_listen_ipv6": False,
            "nginx_tls_certificate": str(self.chain),
            "nginx_tls_private_key": str(self.key),
            "nginx_access_log": str(base / "access.log"),
            "nginx_error_log": str(base / "error.log"),
            "nginx_stream_access_log": str(base / "stream.log"),
            "nginx_acme_webroot": str(base / "acme"),
            "coturn_listening_port": self.turn_port,
            "coturn_tls_listening_port": self.turn_tls_port,
            "coturn_listening_ips": ["127.0.0.1"],
            "coturn_relay_ips": ["127.0.0.1"],
            "coturn_min_port": relay_min,
            "coturn_max_port": relay_min + 99,
        }
        self.variables = site_variables(self.overrides)
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def turn_urls(self) -> str:
        """What the roles write into estrade.toml (``estrade_turn_urls``, comma-separated)."""
        return ",".join(self.variables["estrade_turn_urls"])

    @property
    def turn_udp_url(self) -> str:
        (url,) = [u for u in self.variables["estrade_turn_urls"] if u.startswith("turn:")]
        return url

    @property
    def turns_url(self) -> str:
        """The TURN over TLS URL alone: the name routed to coturn on the HTTPS port."""
        (url,) = [u for u in self.variables["estrade_turn_urls"] if u.startswith("turns:")]
        return url

    def start(self, upstream: str) -> TurnStack:
        """Start coturn, then nginx proxying the HTTPS site to ``upstream`` (host:port)."""
        try:
            self._start_coturn()
            self._start_nginx(upstream)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_coturn(self) -> None:
        conf = _render("coturn", "turnserver.conf.j2", self.variables)
        assert "\nsyslog\n" in conf
        # Test-only lines: log to a file rather than syslog, a pid file of ours, and loopback
        # peers allowed (the relay and the learners all live on 127.0.0.1 here).
        conf = conf.replace("\nsyslog\n", "\n")
        conf += f"log-file={self.base / 'coturn.log'}\npidfile={self.base / 'coturn.pid'}\n"
        conf += f"allow-loopback-peers\nuserdb={self.base / 'turndb'}\n"
        path = self.base / "turnserver.conf"
        path.write_text(conf)
        log = self.base / "coturn.out"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [TURNSERVER, "-c", str(path)], stdout=out, stderr=subprocess.STDOUT
            )
        self.processes.append(process)
        _wait_tcp(self.turn_tls_port, process, log)

    def _start_nginx(self, upstream: str) -> None:
        variables = {**self.variables, "nginx_upstream": upstream}
        site = self.base / "estrade-site.conf"
        site.write_text(_render("nginx", "estrade-site.conf.j2", variables))
        stream = self.base / "estrade-stream.conf"
        stream.write_text(_render("nginx", "estrade-stream.conf.j2", variables))
        temp = self.base / "nginx-temp"
        temp.mkdir(exist_ok=True)
        temp_paths = "".join(
            f"    {kind}_temp_path {temp / kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        # What Debian's nginx.conf gives the two files: the stream module loaded, the site
        # inside http {}, the stream file included in the main context (as the roles do).
        main = self.base / "nginx.conf"
        main.write_text(
            f"load_module {STREAM_MODULE};\n"
            f"pid {self.base / 'nginx.pid'};\n"
            f"error_log {self.base / 'nginx-main.log'} info;\n"
            "daemon off;\n"
            "events {}\n"
            "http {\n"
            f"{temp_paths}"
            f"    include {site};\n"
            "}\n"
            f"include {stream};\n"
        )
        log = self.base / "nginx.out"
        check = subprocess.run(
            [NGINX, "-t", "-q", "-p", str(self.base), "-c", str(main)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert check.returncode == 0, check.stderr
        with log.open("wb") as out:
            process = subprocess.Popen(
                [NGINX, "-p", str(self.base), "-c", str(main)], stdout=out, stderr=subprocess.STDOUT
            )
        self.processes.append(process)
        _wait_tcp(self.https_port, process, log)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        self.processes.clear()

    def tls_client(self, server_name: str | None, source: str = "127.0.0.1") -> ssl.SSLSocket:
        """A TLS connection to the shared port, asking for ``server_name`` (None: no SNI)."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if server_name is None:
            context.check_hostname = False
        sock = socket.create_connection(
            ("127.0.0.1", self.https_port), timeout=10, source_address=(source, 0)
        )
        return context.wrap_socket(sock, server_hostname=server_name)

    def stream_log(self) -> list[str]:
        """nginx's per-connection log of the shared port (written when a connection ends)."""
        path = Path(self.variables["nginx_stream_access_log"])
        return path.read_text().splitlines() if path.exists() else []

    def logs(self) -> str:
        parts = []
        for name in ("coturn.log", "coturn.out", "error.log", "nginx-main.log", "stream.log"):
            matches = sorted(self.base.glob(name.replace(".log", "*.log")))
            for path in matches or [self.base / name]:
                if path.exists():
                    parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-3000:]}")
        return "\n".join(parts)
