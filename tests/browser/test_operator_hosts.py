"""The operator page with several hosts (#15): two ``estrade serve`` processes on one throwaway
PostgreSQL, one data folder and a throwaway ``redis-server``; the page, served by host A, lists
both hosts from their heartbeats, the class held on host B among B's rooms, and host B's row
goes once B is killed. In English at 1440 px, in French on a 360 px phone."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect
from websockets.sync.client import connect

from tests.helpers.browser import BrowserServer, axe_violations, shoot, sign_in
from tests.helpers.redis import RedisServer, start_redis
from tests.helpers.server import ServedProcess
from tests.pg import PgServer


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def two_hosts(
    tmp_path_factory: pytest.TempPathFactory, pg_server: PgServer, redis_server: RedisServer
) -> Iterator[tuple[BrowserServer, BrowserServer]]:
    """Hosts A and B: the same PostgreSQL database, data folder and Redis."""
    data = tmp_path_factory.mktemp("hosts") / "data"
    settings = {
        "ESTRADE_DATABASE_URL": pg_server.create_database("estrade_operator_hosts"),
        "ESTRADE_REDIS_URL": redis_server.url,
        "ESTRADE_SESSION_STORE": "file",
    }
    a = BrowserServer(data, settings).start()  # creates the admin (and migrates)
    try:
        b = BrowserServer(data, settings)
        ServedProcess.start(b)  # the admin exists already: serve only
        try:
            yield a, b
        finally:
            b.stop()
    finally:
        a.stop()


@pytest.fixture(scope="module")
def live_server(two_hosts: tuple[BrowserServer, BrowserServer]) -> BrowserServer:
    """The pages are served by host A."""
    return two_hosts[0]


def test_the_operator_page_shows_every_host_and_a_dead_one_goes(
    new_page: Any, two_hosts: tuple[BrowserServer, BrowserServer]
) -> None:
    a, b = two_hosts
    api = a.api()
    tess = api.user("hosts-trainer@example.org", "Tess", "trainer")
    api.user("hosts-operator@example.org", "Oscar", "operator")
    cohort = api.cohort("Cuisine <b>&</b> pâtisserie")  # a name to escape
    api.enrol(cohort["id"], tess["id"])
    trainer = b.api("hosts-trainer@example.org")
    cookie = "; ".join(f"{k}={v}" for k, v in trainer.http.cookies.items())
    ws_url = f"ws://127.0.0.1:{b.port}/ws/cohorts/{cohort['id']}"
    with connect(ws_url, additional_headers={"Cookie": cookie}) as ws:  # a room on host B
        ws.recv(timeout=20)  # welcome
        page = new_page(width=1440)
        sign_in(page, "hosts-operator@example.org")
        page.goto("/operator")
        expect(page.locator("#operator-hosts")).to_be_visible()
        rows = page.locator("#hosts-body tr")
        expect(rows).to_have_count(2, timeout=20_000)
        row_a = page.locator(f'#hosts-body tr[data-host$=":{a.port}"]')
        row_b = page.locator(f'#hosts-body tr[data-host$=":{b.port}"]')
        # B's class appears once B has beaten since the trainer came (every 2 s; page: 5 s).
        expect(row_b.locator("td").nth(0)).to_have_text(cohort["name"], timeout=20_000)
        expect(row_a.locator("td").nth(0)).to_have_text("no class")
        expect(row_b.locator("td").nth(1)).to_have_text("0")
        expect(row_b.locator("td").nth(2)).to_have_text(re.compile(r"^\d+$"))
        expect(row_b.locator("td").nth(3)).to_have_text(re.compile(r"^\d+ s ago$"))
        assert page.locator("#hosts-body b").count() == 0  # the name is text, not markup
        # The rooms table lists every host's rooms: B's class although A serves the page.
        room = page.locator(f'#rooms-body tr[data-cohort="{cohort["id"]}"]')
        expect(room).to_have_attribute("data-host", re.compile(rf":{b.port}$"))
        expect(room.locator("td a")).to_have_text(cohort["name"])
        assert axe_violations(page) == []
        shoot(page, "operator-hosts-en-1440")

        fr = new_page(locale="fr-FR", width=360, height=780)
        sign_in(fr, "hosts-operator@example.org")
        fr.goto("/operator")
        fr_b = fr.locator(f'#hosts-body tr[data-host$=":{b.port}"]')
        expect(fr_b.locator("td").nth(0)).to_have_text(cohort["name"], timeout=20_000)
        expect(fr_b.locator("td").nth(0)).to_have_attribute("data-label", "Classes")
        expect(fr_b.locator("td").nth(3)).to_have_text(re.compile(r"^il y a \d+ s$"))
        expect(fr.locator(f'#hosts-body tr[data-host$=":{a.port}"] td').nth(0)).to_have_text(
            "aucune classe"
        )
        assert fr.evaluate("document.documentElement.scrollWidth") <= 360
        shoot(fr, "operator-hosts-fr-360")

        # Host B dies (no clean stop): its heartbeat expires (6 s), the page drops its row.
        assert b.process is not None
        b.process.kill()
        b.process.wait(10)
    expect(rows).to_have_count(1, timeout=20_000)
    expect(row_a).to_have_count(1)
    expect(room).to_have_count(0)
