"""A learner on a thin link keeps the camera (fewer frames) and the voice; a clean one gets all.

The test makes a network namespace joined to the host by a veth pair and shapes what the relay
sends into it: 600 kbit/s (``tc`` ``tbf``, 300 ms of queue) and 2 % of UDP datagrams lost
(nftables ``numgen random`` in the namespace). A chromium learner runs inside the namespace
(``ip netns exec``); a second chromium learner and the chromium trainer run on the host. The
trainer sends its camera as L1T3 (~700 kbit/s) and its voice: more than the thin link carries,
so the relay's ladder must lower that learner's camera rate rather than stall it.

The issue asked for ``tc netem`` (rate, 80 ms, 2 % loss); this kernel has no ``sch_netem``
(``tc qdisc add ... netem`` -> "Specified qdisc kind is unknown"), so the rate is ``tbf`` and
the loss nftables', and no delay is added (the link's own queue adds some).

The relay's media sockets bind the host end of the veth (the host's browsers reach it as a
local address); the namespace's browser reaches the web server through two TCP forwarders
(``tcp_forward.py``) so its page keeps the server's origin, http://127.0.0.1:PORT.
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_media import LEARNER_JS, STATS_JS, TRAINER_JS, poll
from tests.helpers.browser import CHROMIUM, CHROMIUM_ARGS, BrowserServer, serve_estrade, sign_in

pytestmark = pytest.mark.browser

NET = 10 + os.getpid() % 200
NS = f"estrade-thin-{os.getpid()}"
HOST_IF, NS_IF = f"eth{os.getpid() % 100000}h", f"eth{os.getpid() % 100000}n"
HOST_IP, NS_IP = f"10.231.{NET}.1", f"10.231.{NET}.2"
FORWARD = Path(__file__).with_name("tcp_forward.py")


def sh(*args: str) -> None:
    r = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, f"{' '.join(args)}: {r.stderr}"


@pytest.fixture(scope="module")
def thin_link() -> Iterator[None]:
    for tool in ("ip", "tc", "nft"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: make system-deps (iproute2, nftables)")
    if os.geteuid() != 0:
        pytest.fail("the thin-link test makes a network namespace: run it as root")
    sh("ip", "netns", "add", NS)
    try:
        sh("ip", "link", "add", HOST_IF, "type", "veth", "peer", "name", NS_IF)
        sh("ip", "link", "set", NS_IF, "netns", NS)
        sh("ip", "addr", "add", f"{HOST_IP}/30", "dev", HOST_IF)
        sh("ip", "link", "set", HOST_IF, "up")
        sh("ip", "netns", "exec", NS, "ip", "addr", "add", f"{NS_IP}/30", "dev", NS_IF)
        sh("ip", "netns", "exec", NS, "ip", "link", "set", NS_IF, "up")
        sh("ip", "netns", "exec", NS, "ip", "link", "set", "lo", "up")
        # What goes to the learner: 600 kbit/s, a queue of at most 300 ms.
        sh("tc", "qdisc", "add", "dev", HOST_IF, "root", "tbf", "rate", "600kbit",
           "burst", "6kb", "latency", "300ms")  # fmt: skip
        # 2 % of the UDP datagrams arriving in the namespace lost.
        nft = ("ip", "netns", "exec", NS, "nft")
        sh(*nft, "add", "table", "inet", "thin")
        sh(*nft, "add", "chain", "inet", "thin", "input",
           "{ type filter hook input priority 0; }")  # fmt: skip
        lose = ("meta", "l4proto", "udp", "numgen", "random", "mod", "100", "<", "2", "drop")
        sh(*nft, "add", "rule", "inet", "thin", "input", *lose)
        yield
    finally:
        subprocess.run(["ip", "link", "del", HOST_IF], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", NS], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def live_server(
    thin_link: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrowserServer]:
    yield from serve_estrade(tmp_path_factory, {"ESTRADE_MEDIA_INTERFACE": HOST_IP})


@pytest.fixture(scope="module")
def forwarders(live_server: BrowserServer) -> Iterator[None]:
    port = live_server.url.rsplit(":", 1)[1]
    procs = []
    try:
        for prefix, listen, target in (
            ((), HOST_IP, "127.0.0.1"),  # the host end of the veth -> the server
            (("ip", "netns", "exec", NS), "127.0.0.1", HOST_IP),  # in the namespace -> the host
        ):
            proc = subprocess.Popen(
                [*prefix, sys.executable, str(FORWARD), listen, port, target, port],
                stdout=subprocess.PIPE,
                text=True,
            )
            procs.append(proc)
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)
            if proc.stdout is not None:
                proc.stdout.close()


@pytest.fixture(scope="module")
def thin_browser(
    thin_link: None, browser: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """Chromium inside the namespace (Playwright talks to it over a pipe, not the network)."""
    wrapper = tmp_path_factory.mktemp("netns") / "chromium-in-netns"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {NS} {CHROMIUM} "$@"\n')
    wrapper.chmod(0o755)
    b = browser.browser_type.launch(executable_path=str(wrapper), args=CHROMIUM_ARGS, headless=True)
    yield b
    b.close()


def learner_page(browser: Any, base: str, link: str, cohort_id: int) -> Any:
    context = browser.new_context(base_url=base)
    context.set_default_timeout(20_000)
    page = context.new_page()
    page.goto(link)
    page.wait_for_url(re.compile(f"/classroom/{cohort_id}$"))
    page.goto("/health")  # off the classroom page: its socket would take the learner's one
    assert page.evaluate(LEARNER_JS, cohort_id) is True
    return page


CLEAN_LEVEL = """() => {
  const q = window.qualities;
  return q.length ? q[q.length - 1].level : "full";
}"""

TRAINER_STATS = """async () => {
  let frames = 0;
  (await window.trainer.pc.getStats()).forEach((r) => {
    if (r.type === "outbound-rtp" && r.kind === "video") frames += r.framesSent || 0;
  });
  return frames;
}"""


def test_a_thin_link_keeps_camera_and_voice_and_a_clean_one_gets_every_frame(
    thin_browser: Any, browser: Any, new_page: Any, live_server: BrowserServer, forwarders: None
) -> None:
    api = live_server.api()
    trainer = api.user("thin-trainer@example.org", "Tess", "trainer")
    people = [
        api.user(f"thin-{n}@example.org", f"Learner {n}", "learner", password=None)
        for n in ("thin", "clean")
    ]
    cohort = api.cohort("Thin link")
    for u in (trainer, *people):
        api.enrol(cohort["id"], u["id"])
    thin_link_url, clean_link_url = (api.link(cohort["id"], u["id"]) for u in people)
    tpage = new_page()
    sign_in(tpage, "thin-trainer@example.org")
    tpage.evaluate(TRAINER_JS, cohort["id"])

    clean = learner_page(browser, live_server.url, clean_link_url, cohort["id"])
    thin = learner_page(thin_browser, live_server.url, thin_link_url, cohort["id"])
    # The ladder settles the thin learner (bad seconds: 3 per step down).
    time.sleep(25)
    # A window of 10 s in which the clean learner stayed at the top level. On a starved machine
    # (make test at load 15) its browser's reports can look congested (rtt, REMB) and the ladder
    # rightly steps it down for a while: that window is retaken after it is back up (10 good
    # seconds), at most three times; a clean learner that stays down fails the test.
    for _attempt in range(3):
        poll(clean, CLEAN_LEVEL, lambda level: level == "full", 60)
        moves = len(clean.evaluate("window.qualities"))
        before = {"thin": thin.evaluate(STATS_JS), "clean": clean.evaluate(STATS_JS)}
        sent0 = tpage.evaluate(TRAINER_STATS)
        audio = [thin.evaluate(STATS_JS)["audioPackets"]]
        for _ in range(10):
            time.sleep(1.0)
            audio.append(thin.evaluate(STATS_JS)["audioPackets"])
        after = {"thin": thin.evaluate(STATS_JS), "clean": clean.evaluate(STATS_JS)}
        sent = tpage.evaluate(TRAINER_STATS) - sent0
        clean_moves = clean.evaluate("window.qualities")[moves:]
        if not clean_moves:
            break
        print({"clean learner moved during the window": clean_moves})
    frames = {k: after[k]["framesDecoded"] - before[k]["framesDecoded"] for k in after}
    levels = [q["level"] for q in thin.evaluate("window.qualities")]
    print({"frames": frames, "trainer_sent": sent, "audio_per_s": audio, "levels": levels})
    assert not clean_moves, clean_moves
    # The clean learner: every frame the trainer sent in the window (give or take in flight).
    assert frames["clean"] >= sent - 3, (frames, sent)
    # The thin learner: the camera goes on at a lower rate, at a camera level of the ladder.
    # Its level at the window's end is not the test: after 10 good seconds the ladder rightly
    # tries the full rate again and steps back down (seen in CI: ['camera_half', 'full'] with
    # 112 of 202 frames decoded), so what must hold is that it stepped down to a camera level
    # and never lost the camera (screen- or audio-only levels).
    assert 0 < frames["thin"] < frames["clean"], frames
    assert any(level in ("camera_half", "camera_quarter") for level in levels), levels
    assert all(level in ("full", "camera_half", "camera_quarter") for level in levels), levels
    # Its voice never stops: Opus at 50 packets a second, every second (2 % loss allowed for).
    per_second = [b - a for a, b in itertools.pairwise(audio)]
    assert min(per_second) >= 35, per_second
    for page in (thin, clean):
        page.evaluate("() => window.learner.stop()")
        page.context.close()
    tpage.evaluate("() => window.trainer.stop()")
