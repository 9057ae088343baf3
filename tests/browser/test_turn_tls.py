"""A chromium learner behind a network that lets only TLS on port 443 out (issue 18 §1).

The learner's browser uses only the ``turns:`` URL the appliance hands out and
``iceTransportPolicy: "relay"``; a real coturn and a real nginx (stream module) configured by
the roles' templates share the HTTPS port (tests/turn_stack.py); the trainer is a chromium
page as in test_media.py. The learner must decode the trainer's video and receive audio.

Certificates: chromium checks the TURN server's certificate (without help it fails with
ICE candidate error 701, "Failed to establish connection"). The test trusts exactly the
throwaway server key with ``--ignore-certificate-errors-spki-list`` (the SHA-256 of its
SubjectPublicKeyInfo), not every certificate.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.browser.test_media import LEARNER_JS, STATS_JS, TRAINER_JS, poll
from tests.helpers.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    BrowserServer,
    serve_estrade,
    sign_in,
)
from tests.test_live_media import metric
from tests.turn_stack import SECRET, TURN_NAME, TurnStack

pytestmark = pytest.mark.browser

# What a learner's network allows, played inside the browser: only the TURN server of one
# scheme (turns: or turn:), and relay candidates only (no host or server-reflexive path).
ONLY_SCHEME = """
((scheme) => {
  const Native = window.RTCPeerConnection;
  function RelayOnly(config = {}) {
    const iceServers = (config.iceServers || []).filter((s) =>
      [].concat(s.urls).every((u) => u.startsWith(scheme + ":")));
    window.handedIceServers = config.iceServers;
    return new Native({ ...config, iceServers, iceTransportPolicy: "relay" });
  }
  RelayOnly.prototype = Native.prototype;
  window.RTCPeerConnection = RelayOnly;
})(%r);
"""

PATH_JS = """async () => {
  const report = await window.learner.pc.getStats();
  const config = window.learner.pc.getConfiguration();
  let pair = null;
  report.forEach((r) => { if (r.type === "transport" && r.selectedCandidatePairId)
    pair = report.get(r.selectedCandidatePairId); });
  const local = pair && report.get(pair.localCandidateId);
  return { policy: config.iceTransportPolicy,
           urls: config.iceServers.flatMap((s) => [].concat(s.urls)),
           handed: window.handedIceServers.map((s) => s.urls),
           candidateType: local && local.candidateType,
           relayProtocol: local && local.relayProtocol, url: local && local.url };
}"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TurnStack]:
    stack = TurnStack(tmp_path_factory.mktemp("turn"))
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, stack: TurnStack
) -> Iterator[BrowserServer]:
    settings = {"ESTRADE_TURN_URL": stack.turn_urls, "ESTRADE_TURN_SECRET": SECRET}
    for server in serve_estrade(tmp_path_factory, settings):
        stack.start(upstream=urlsplit(server.url).netloc)
        yield server


@pytest.fixture(scope="module")
def browser(stack: TurnStack) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    cert = x509.load_pem_x509_certificate(stack.chain.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    pin = base64.b64encode(hashlib.sha256(spki).digest()).decode()
    pw = sync_playwright().start()
    b = pw.chromium.launch(
        executable_path=CHROMIUM,
        args=[*CHROMIUM_ARGS, f"--ignore-certificate-errors-spki-list={pin}"],
        headless=True,
    )
    yield b
    b.close()
    pw.stop()


def _learner(new_page: Any, link: str, cohort_id: int, scheme: str) -> Any:
    page = new_page()
    page.context.add_init_script(ONLY_SCHEME % scheme)
    page.goto(link)
    page.wait_for_url(re.compile(f"/classroom/{cohort_id}$"))
    page.goto("/health")
    assert page.evaluate(LEARNER_JS, cohort_id) is True
    return page


def test_a_learner_with_only_turns_on_443_and_relay_policy_decodes_the_class(
    new_page: Any, live_server: BrowserServer, stack: TurnStack
) -> None:
    api = live_server.api()
    trainer = api.user("tls-trainer@example.org", "Tess", "trainer")
    learner = api.user("tls-learner@example.org", "Léa", "learner", password=None)
    other = api.user("udp-learner@example.org", "Ugo", "learner", password=None)
    cohort = api.cohort("Pare-feu")
    for user in (trainer, learner, other):
        api.enrol(cohort["id"], user["id"])

    tpage = new_page()
    sign_in(tpage, "tls-trainer@example.org")
    tpage.evaluate(TRAINER_JS, cohort["id"])

    lpage = _learner(new_page, api.link(cohort["id"], learner["id"]), cohort["id"], "turns")
    first = poll(lpage, STATS_JS, lambda s: s["framesDecoded"] > 0, within=40)
    lpage.wait_for_timeout(2000)
    later = lpage.evaluate(STATS_JS)
    assert later["framesDecoded"] > first["framesDecoded"] + 10, (first, later)
    assert later["audioPackets"] > 50, later
    assert sorted(set(later["codecs"])) == ["audio/opus", "video/VP8"], later

    # The appliance handed TURN over UDP, then TURN over TLS on the HTTPS port; the learner
    # kept only the latter, relay-only, and its selected pair is a TLS allocation there.
    path = lpage.evaluate(PATH_JS)
    assert path["handed"][0].startswith("turn:") and path["handed"][0].endswith("=udp"), path
    assert path["handed"][1] == stack.turns_url, path
    assert path["policy"] == "relay" and path["urls"] == [stack.turns_url], path
    assert path["candidateType"] == "relay" and path["relayProtocol"] == "tls", path
    assert path["url"] == stack.turns_url, path

    # A second learner whose network lets UDP out to TURN only: TURN over UDP.
    upage = _learner(new_page, api.link(cohort["id"], other["id"]), cohort["id"], "turn")
    poll(upage, STATS_JS, lambda s: s["framesDecoded"] > 10, within=40)
    udp = upage.evaluate(PATH_JS)
    assert udp["candidateType"] == "relay" and udp["relayProtocol"] == "udp", udp
    assert udp["url"] == stack.turn_udp_url, udp

    # The appliance counts both connections as relayed; the operator page tells which path.
    deadline = time.monotonic() + 20
    while True:
        text = httpx.get(f"{live_server.url}/metrics", timeout=10).text
        relayed = metric(text, "estrade_media_connections", cohort_id=str(cohort["id"]),
                         path="relayed")  # fmt: skip
        if relayed == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert relayed == 2, text
    assert metric(text, "estrade_media_connections", cohort_id=str(cohort["id"]),
                  path="direct") == 0  # fmt: skip
    overview = api.call("GET", "/api/operator/overview")
    (room,) = [r for r in overview["rooms"] if r["cohort_id"] == cohort["id"]]
    assert room["paths"] == {"direct": 0, "turn_udp": 1, "turn_tls": 1}, room
    admin = new_page()
    sign_in(admin, "admin@example.org")
    admin.goto("/operator")
    row = admin.locator(f"#rooms-body tr[data-cohort='{cohort['id']}'] .paths")
    row.wait_for()
    assert row.inner_text() == "Paths: 0 direct, 1 TURN UDP, 1 TURN TLS 443"

    lpage.evaluate("() => window.learner.stop()")
    upage.evaluate("() => window.learner.stop()")
    tpage.evaluate("() => window.trainer.stop()")
    # The learner's media crossed nginx's shared port under the TURN name (logged at the end).
    hop = stack.variables["nginx_turn_hop_listen"]
    deadline = time.monotonic() + 15
    while True:
        sent = [
            int(line.split()[6]) for line in stack.stream_log() if f'"{TURN_NAME}" {hop} ' in line
        ]
        if max(sent, default=0) > 100_000 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert max(sent, default=0) > 100_000, stack.stream_log()
    print(
        json.dumps(
            {
                "turn_tls_frames_decoded": later["framesDecoded"],
                "turn_tls_audio_packets": later["audioPackets"],
                "turn_tls_ice_rtt_s": later["rtt"],
                "turn_tls_video_lost": later["videoLost"],
                "turn_tls_bytes_via_443": max(sent),
            }
        )
    )
