"""Real chromium through ``estrade serve`` with the relay in 2 media worker processes
(``ESTRADE_MEDIA_WORKERS=2``, docs/media-workers.md): the whole class as in one process (its two
learners on the two workers: ``ESTRADE_MEDIA_WORKER_LEARNERS=1``), and a media worker killed
mid-class, after which the pages reconnect by themselves."""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

# The whole-class test, collected again here: it runs against this module's server.
from tests.browser.test_classroom import test_a_whole_class  # noqa: F401
from tests.browser.test_media import LEARNER_JS, STATS_JS, TRAINER_JS, poll
from tests.helpers.browser import BrowserServer, axe_violations, serve_estrade, shoot, sign_in

pytestmark = pytest.mark.browser

# Between the old connection's end and the new one's start there is no peer connection.
STATS_OR_NONE = f"async () => window.learner.pc ? await ({STATS_JS})() : {{ framesDecoded: 0 }}"


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserServer]:
    # One learner per worker before the class spreads: the whole class's two learners are
    # served by both workers, the second from frames the first worker pipes (pipes).
    env = {"ESTRADE_MEDIA_WORKERS": "2", "ESTRADE_MEDIA_WORKER_LEARNERS": "1"}
    yield from serve_estrade(tmp_path_factory, env)


def worker_pids(server_pid: int) -> list[int]:
    """The media workers: the served process's children running ``appliance.media.worker``."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if ppid == server_pid and b"appliance.media.worker" in cmdline:
            pids.append(int(stat.parent.name))
    return sorted(pids)


def worker_pid(server_pid: int, index: int) -> int:
    """The pid of media worker ``index`` (its ``--index`` argument)."""
    for pid in worker_pids(server_pid):
        if f"--index={index}".encode() in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
            return pid
    raise AssertionError(f"no media worker {index} under {server_pid}")


def test_pages_reconnect_after_a_media_worker_dies(
    new_page: Any, live_server: BrowserServer
) -> None:
    before = worker_pids(live_server.pid)
    assert len(before) == 2, before
    api = live_server.api()
    trainer = api.user("workers-trainer@example.org", "Tess", "trainer")
    learner = api.user("workers-learner@example.org", "Léa", "learner", password=None)
    cohort = api.cohort("Workers")
    api.enrol(cohort["id"], trainer["id"])
    api.enrol(cohort["id"], learner["id"])
    link = api.link(cohort["id"], learner["id"])

    tpage = new_page()
    sign_in(tpage, "workers-trainer@example.org")
    tpage.evaluate(TRAINER_JS, cohort["id"])
    lpage = new_page()
    lpage.goto(link)
    lpage.wait_for_url(re.compile(f"/classroom/{cohort['id']}$"))
    lpage.goto("/health")  # off the classroom page (one socket per session)
    assert lpage.evaluate(LEARNER_JS, cohort["id"]) is True
    poll(lpage, STATS_JS, lambda s: s["framesDecoded"] > 10)

    # Kill both workers (one relays the class; which one is the server's business).
    for pid in before:
        os.kill(pid, signal.SIGKILL)
    poll(
        lpage,
        "() => window.tracksSeen",
        lambda seen: {"closed": "relay_restarted"} in seen,
        within=10,
    )
    # Nobody reloads: the trainer's page publishes again, the learner's subscribes again, and
    # the learner's new connection decodes video.
    poll(lpage, STATS_OR_NONE, lambda s: s["framesDecoded"] > 10, within=20)
    after = worker_pids(live_server.pid)
    assert len(after) == 2 and not set(after) & set(before), (before, after)
    assert tpage.evaluate("window.trainerErrors") == []
    lpage.evaluate("() => window.learner.stop()")
    tpage.evaluate("() => window.trainer.stop()")


def test_the_operator_page_shows_the_workers_and_a_restart(
    new_page: Any, live_server: BrowserServer
) -> None:
    api = live_server.api()
    before = {w["worker"]: w for w in api.call("GET", "/api/operator/overview")["workers"]}
    assert sorted(before) == [0, 1] and all(w["up"] for w in before.values()), before

    admin = new_page(width=1440)
    sign_in(admin, "admin@example.org")
    admin.goto("/operator")
    rows = admin.locator("#workers-body tr")
    expect(rows).to_have_count(2)
    for index in (0, 1):
        row = admin.locator(f'#workers-body tr[data-worker="{index}"]')
        expect(row.locator("th")).to_have_text(f"Worker {index}")
        expect(row).to_contain_text("running")
        expect(row.locator("td").nth(4)).to_have_text(str(before[index]["restarts"]))
    expect(admin.locator("#cap-lag dd")).to_have_text(re.compile(r"^\d+ ms$"))
    assert axe_violations(admin) == []

    # Worker 1 is killed: the page (polling every 5 s) shows it counted once more, running again.
    os.kill(worker_pid(live_server.pid, 1), signal.SIGKILL)
    row = admin.locator('#workers-body tr[data-worker="1"]')
    restarted = str(before[1]["restarts"] + 1)
    expect(row.locator("td").nth(4)).to_have_text(restarted, timeout=30_000)
    expect(row).to_contain_text("running", timeout=15_000)
    expect(admin.locator('#workers-body tr[data-worker="0"] td').nth(4)).to_have_text(
        str(before[0]["restarts"])
    )
    shoot(admin, "operator-workers-en-1440")

    # The same table in French, on a phone (cells stacked with their headings).
    fr = new_page(locale="fr-FR", width=360, height=780)
    sign_in(fr, "admin@example.org")
    fr.goto("/operator")
    row = fr.locator('#workers-body tr[data-worker="1"]')
    expect(row.locator("th")).to_have_text("Processus 1")
    expect(row).to_contain_text("en marche")
    # A soft hyphen lets the stacked label break as "Redémar-rages" on a phone.
    expect(row.locator("td").nth(4)).to_have_attribute("data-label", "Redémar\u00adrages")
    assert fr.evaluate("document.documentElement.scrollWidth") <= 360
    shoot(fr, "operator-workers-fr-360")
