"""A throwaway PostgreSQL server started from the installed binaries (initdb + pg_ctl).

PostgreSQL refuses to run as root, so as root the server runs as the ``postgres`` system
user (created by Debian's postgresql package) in a temporary folder it owns.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.server import free_port

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


@dataclass
class PgServer:
    root: Path
    port: int
    user: str

    @property
    def admin_url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = list(args)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60)

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self._run(
            str(PG_BIN / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            self.user,
            "-d",
            database,
            "-v",
            "ON_ERROR_STOP=1",
            "-Atc",
            sql,
        ).stdout

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run(
                str(PG_BIN / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "stop"
            )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(*, durable: bool = False) -> PgServer:
    """Start a server; ``durable`` keeps fsync and full page writes on (benchmarks), the tests
    turn them off (a test never outlives its server's machine)."""
    if not (PG_BIN / "pg_ctl").exists():
        raise RuntimeError(
            f"PostgreSQL server binaries not found in {PG_BIN}: install postgresql-15 "
            "(make test does it as root)"
        )
    root = Path(tempfile.mkdtemp(prefix="estrade-pg-"))
    user = "estrade_test"
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
    server = PgServer(root=root, port=free_port(), user=user)
    server._run(
        str(PG_BIN / "initdb"),
        "-D",
        str(root / "data"),
        "-U",
        user,
        "--auth=trust",
        "--encoding=UTF8",
        "--locale=C.UTF-8",
    )
    server._run(
        str(PG_BIN / "pg_ctl"),
        "-D",
        str(root / "data"),
        "-l",
        str(root / "log"),
        "-w",
        "-o",
        f"-h 127.0.0.1 -p {server.port} -k {root}"
        + ("" if durable else " -F -c fsync=off -c full_page_writes=off"),
        "start",
    )
    return server
