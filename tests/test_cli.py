"""The estrade command, run as a real process."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import httpx
import pytest

from tests.helpers.server import ServedProcess, free_port
from tests.helpers.server import run_estrade as run
from tests.pg import PgServer


@pytest.fixture(params=["sqlite", "postgres"])
def db_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    env = {"ESTRADE_DATA_DIR": str(tmp_path / "data")}
    if request.param == "postgres":
        server: PgServer = request.getfixturevalue("pg_server")
        name = f"cli_{tmp_path.name[-12:].replace('-', '_').lower()}"
        env["ESTRADE_DATABASE_URL"] = server.create_database(name)
    return env


def test_check_fails_before_migrate_then_passes(db_env: dict[str, str]) -> None:
    r = run(["check"], db_env)
    assert r.returncode == 1
    assert "FAIL database" in r.stdout
    r = run(["migrate"], db_env)
    assert r.returncode == 0, r.stderr
    assert "migration(s) applied" in r.stdout
    r = run(["migrate"], db_env)
    assert "up to date" in r.stdout
    r = run(["check"], db_env)
    assert r.returncode == 0, r.stdout
    assert "ok   database answers, migrations are current" in r.stdout


def test_check_reports_bad_config(tmp_path: Path) -> None:
    r = run(["check"], {"ESTRADE_PORT": "http", "ESTRADE_DATA_DIR": str(tmp_path)})
    assert r.returncode == 1
    assert "'port': 'http'" in r.stdout


def test_check_reports_unwritable_data_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    r = run(["check"], {"ESTRADE_DATA_DIR": str(blocker / "data")})
    assert r.returncode == 1
    assert "FAIL data folder" in r.stdout


def test_create_admin_then_sign_in(db_env: dict[str, str]) -> None:
    env = {**db_env, "ESTRADE_ADMIN_PASSWORD": "a long admin password"}
    r = run(["create-admin", "Boss@Example.org", "--password-from-env"], env)
    assert r.returncode == 0, r.stderr
    assert "created" in r.stdout
    r = run(["create-admin", "boss@example.org", "--password-from-env"], env)
    assert "updated" in r.stdout
    r = run(
        ["create-admin", "x@example.org", "--password-from-env"],
        {**db_env, "ESTRADE_ADMIN_PASSWORD": "short"},
    )
    assert r.returncode == 2
    assert "10 characters" in r.stderr


def test_bad_setting_stops_serve_before_binding(tmp_path: Path) -> None:
    port = free_port()
    r = run(
        ["serve"],
        {
            "ESTRADE_DATA_DIR": str(tmp_path),
            "ESTRADE_PORT": str(port),
            "ESTRADE_LOG_LEVEL": "chatty",
        },
    )
    assert r.returncode == 2
    assert "'log_level': 'chatty'" in r.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # nothing bound it


def test_serve_migrates_seeds_demo_and_stops_cleanly(tmp_path: Path) -> None:
    """What `make run` does: a fresh data folder is migrated, the demo printed, /ready is 200."""
    # The default log level, as `make run`: a deprecation warning logged at start would show.
    env = {"ESTRADE_DEMO": "1", "ESTRADE_LOG_LEVEL": "info"}
    server = ServedProcess(tmp_path / "data", env, ready="/health")
    with server:
        assert httpx.get(f"{server.base}/ready").status_code == 200
        assert httpx.get(f"{server.base}/health").json() == {"status": "ok"}
    out, port = server.log(), server.port
    assert server.process is not None and server.process.returncode == 0, out  # Ctrl-C
    assert out.count(f"http://127.0.0.1:{port}/join/") == 3
    assert "password" in out
    assert (tmp_path / "data" / "estrade.sqlite3").exists()
    # The trainer is sent to the console (not the learners' classroom); no deprecation warning
    # (uvicorn's legacy websockets implementation) at start.
    assert re.search(rf"http://127.0.0.1:{port}/cohorts/\d+/console", out), out
    assert "/classroom/" not in out
    assert "deprecat" not in out.lower(), out


def _demo_output(out: str) -> dict[str, str]:
    """The learners' links and the admin's password printed by the demo."""
    found = dict(re.findall(r"^    (.+?): (http://\S+/join/\S+)", out, flags=re.M))
    admin = re.search(r"^           password (\S+)   \(shown only this once", out, flags=re.M)
    if admin:
        found["admin password"] = admin.group(1)
    return found


def test_demo_links_stay_and_the_admin_can_sign_in(tmp_path: Path) -> None:
    """`make run` twice: the same learners' links, the admin's password printed only once; a
    link revoked meanwhile is replaced, and the output says so."""
    env = {"ESTRADE_DATA_DIR": str(tmp_path / "data")}
    first = run(["demo"], env)
    assert first.returncode == 0, first.stderr
    links = _demo_output(first.stdout)
    assert len(links) == 4, first.stdout
    password = links.pop("admin password")
    assert len(password) >= 12
    assert (tmp_path / "data" / "demo-learner-links.json").stat().st_mode & 0o777 == 0o600
    again = run(["demo"], env)
    assert _demo_output(again.stdout) == links  # same links, no admin password again
    assert "admin@demo.estrade.invalid" in again.stdout and password not in again.stdout
    assert "create-admin admin@demo.estrade.invalid" in again.stdout

    # The admin signs in with the printed password and revokes one learner's link.
    with ServedProcess(tmp_path / "data") as server, httpx.Client(base_url=server.base) as http:
        http.get("/api/auth/csrf")
        http.headers["x-csrftoken"] = http.cookies["csrftoken"]
        r = http.post(
            "/api/auth/login",
            json={"email": "admin@demo.estrade.invalid", "password": password},
        )
        assert r.status_code == 200 and r.json()["role"] == "admin", r.text
        http.headers["x-csrftoken"] = http.cookies["csrftoken"]  # a new token per session
        cohort = http.get("/api/admin/cohorts").json()[0]
        alice = next(
            m
            for m in http.get(f"/api/admin/cohorts/{cohort['id']}").json()["learners"]
            if m["display_name"] == "Alice Martin"
        )
        path = f"/api/admin/cohorts/{cohort['id']}/learners/{alice['id']}/join-link/revoke"
        assert http.post(path).status_code == 200
    third = run(["demo"], env)
    now = _demo_output(third.stdout)
    assert now["Alice Martin"] != links["Alice Martin"]
    assert {k: v for k, v in now.items() if k != "Alice Martin"} == {
        k: v for k, v in links.items() if k != "Alice Martin"
    }
    assert "old ones no longer work" in third.stdout and f"{now['Alice Martin']} *" in third.stdout
