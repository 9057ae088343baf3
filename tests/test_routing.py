"""Routing by cohort (#15): the nginx site template's map extracts the cohort id from every
cohort-scoped URL of the app (read from the app's own routes, so a new route cannot be
forgotten) and from no other; with several app hosts the upstream hashes on it.

The map is evaluated by a real nginx (Debian's nginx-light, make system-deps-fast): the map
block of the rendered template, and a location answering with the id it extracted."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from appliance.app import create_app
from appliance.settings import load_settings
from tests.helpers.server import free_port
from tests.turn_stack import NGINX, _render, _wait_tcp, need, site_variables

EXAMPLES = {"cohort_id": "4242", "day": "2026-12-01", "file_path": "js/app.js"}
"""A value for each path parameter (any other: 7)."""


def _site(app_hosts: list[str]) -> str:
    variables = site_variables(
        {"estrade_server_name": "estrade.test", "nginx_app_hosts": app_hosts}
    )
    return _render("nginx", "estrade-site.conf.j2", variables)


def _example(path: str) -> str:
    return re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: EXAMPLES.get(m.group(1), "7"), path)


def _app_paths(tmp_path: Path) -> list[str]:
    settings = load_settings(env={}, data_dir=str(tmp_path / "data"), session_store="memory")
    return sorted({route.path for route in create_app(settings).routes})


@pytest.fixture
def map_server(tmp_path: Path) -> str:
    """nginx with the template's map, answering each request with ``$estrade_cohort_id``."""
    need(NGINX, "nginx-light")
    site = _site(["127.0.0.1:1", "127.0.0.1:2"])
    block = re.search(r"^map \$uri \$estrade_cohort_id \{\n.*?^\}\n", site, re.M | re.S)
    assert block is not None, "no cohort map in the site template"
    port = free_port()
    temp = tmp_path / "nginx-temp"
    temp.mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path / 'nginx.pid'};\nerror_log {tmp_path / 'error.log'};\ndaemon off;\n"
        "events {}\nhttp {\n"
        + "".join(f"  {k}_temp_path {temp / k};\n" for k in ("client_body", "proxy", "fastcgi"))
        + "".join(f"  {k}_temp_path {temp / k};\n" for k in ("uwsgi", "scgi"))
        + f"  access_log off;\n{block.group(0)}"
        + f"  server {{\n    listen 127.0.0.1:{port};\n"
        + '    location / { default_type text/plain; return 200 "$estrade_cohort_id"; }\n'
        + "  }\n}\n"
    )
    log = tmp_path / "nginx.out"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [NGINX, "-p", str(tmp_path), "-c", str(conf)], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        _wait_tcp(port, process, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_every_cohort_scoped_route_is_routed_by_its_cohort(map_server: str, tmp_path: Path) -> None:
    paths = _app_paths(tmp_path)
    scoped = [p for p in paths if "{cohort_id" in p]
    assert len(scoped) > 30  # the socket, the cohort APIs, admin routes and pages
    assert "/ws/cohorts/{cohort_id:int}" in scoped
    wrong = {}
    with httpx.Client(base_url=map_server) as client:
        for path in paths:
            url = _example(path)
            got = client.get(url).text
            expected = EXAMPLES["cohort_id"] if path in scoped else ""
            if got != expected:
                wrong[path] = (url, got)
            if path in scoped:  # with a query string too
                assert client.get(url + "?x=1").text == expected
    assert not wrong, f"routed by the wrong cohort id (route: (example, got)): {wrong}"


def test_lookalikes_are_not_routed_by_cohort(map_server: str) -> None:
    with httpx.Client(base_url=map_server) as client:
        for url in ("/api/cohorts", "/cohorts", "/static/cohorts/12", "/api/cohorts/x1"):
            assert client.get(url).text == "", url
        assert client.get("/classroom/12/").text == "12"
        assert client.get("/api/cohorts/12.csv").text == ""


def test_several_hosts_hash_by_cohort_one_host_is_as_before() -> None:
    many = _site(["10.0.0.2:8000", "10.0.0.3:8000"])
    upstream = re.search(r"^upstream estrade_appliance \{\n(.*?)^\}", many, re.M | re.S)
    assert upstream is not None
    lines = [line.strip() for line in upstream.group(1).splitlines()]
    assert lines[0] == "hash $estrade_cohort_id consistent;"
    assert "server 10.0.0.2:8000 max_fails=1 fail_timeout=5s;" in lines
    assert "server 10.0.0.3:8000 max_fails=1 fail_timeout=5s;" in lines
    one = _site([])
    upstream = re.search(r"^upstream estrade_appliance \{\n(.*?)^\}", one, re.M | re.S)
    assert upstream is not None
    assert [line.strip() for line in upstream.group(1).splitlines()] == [
        f"server {site_variables({})['nginx_upstream']};",
        "keepalive 16;",
    ]


def test_the_estrade_role_writes_the_several_hosts_settings(tmp_path: Path) -> None:
    from appliance.settings import SettingsError

    def variables(**site: str) -> dict[str, Any]:  # a TURN secret as every inventory sets one
        return site_variables({"estrade_turn_secret": "t" * 32, **site})

    url = "redis://:s3cret@10.0.0.5:6379/0"
    pg = "postgresql://estrade@10.0.0.5:5432/estrade"
    config = tmp_path / "estrade.toml"
    config.write_text(
        _render(
            "estrade",
            "estrade.toml.j2",
            variables(estrade_redis_url=url, estrade_database_url=pg),
        )
    )
    settings = load_settings(env={}, config_path=config)
    assert (settings.redis_url, settings.database_url) == (url, pg)
    config.write_text(_render("estrade", "estrade.toml.j2", variables(estrade_redis_url=url)))
    with pytest.raises(SettingsError, match="need PostgreSQL"):
        load_settings(env={}, config_path=config)
    config.write_text(_render("estrade", "estrade.toml.j2", variables()))
    assert load_settings(env={}, config_path=config).redis_url == ""
