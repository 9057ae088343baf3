"""TURN over TLS on the HTTPS port (issue 18 §1): a real coturn and a real nginx (stream
module, ``ssl_preread``) configured by the roles' templates (tests/turn_stack.py), the
appliance served by a real uvicorn on 127.0.0.1, real aiortc peers.

The learner has only the ``turns:`` URL and relay-only ICE: everything it receives came
through nginx's shared port, coturn's TLS listener and coturn's relay.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from appliance.settings import Settings
from tests.deploy import probe
from tests.helpers.classroom import LiveServer
from tests.helpers.world import World, make_settings
from tests.media.peers import Learner, Trainer, wait_for
from tests.test_live_media import metric, publish, subscribe
from tests.turn_stack import SECRET, SITE_NAME, TURN_NAME, TurnStack

# One backend is enough here: the subject is the network path, not the database.
pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[TurnStack]:
    stack = TurnStack(tmp_path / "turn")
    yield stack
    stack.stop()


@pytest.fixture
def settings(tmp_path: Path, database_url: str, stack: TurnStack) -> Settings:
    # The roles' estrade_turn_urls: TURN over UDP first, then TURN over TLS on the HTTPS port.
    return make_settings(
        tmp_path, database_url=database_url, turn_url=stack.turn_urls, turn_secret=SECRET
    )


@pytest.fixture
def served(stack: TurnStack, live: LiveServer) -> Iterator[TurnStack]:
    stack.start(upstream=f"127.0.0.1:{live.port}")
    yield stack


def _https_get(stack: TurnStack, name: str | None, source: str = "127.0.0.1") -> str:
    """GET /health on the shared port, asking for ``name`` (None: no SNI) from ``source``."""
    with stack.tls_client(name, source) as sock:
        host = name or SITE_NAME
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.decode(errors="replace")


def test_port_443_sends_the_turn_name_to_coturn_and_the_rest_to_the_site(
    served: TurnStack,
) -> None:
    # The site's name, and no name at all (an address typed in the browser): the HTTPS site,
    # which answers through the appliance.
    for name in (SITE_NAME, None):
        reply = _https_get(served, name)
        assert reply.startswith("HTTP/1.1 200"), reply[:300]
        assert "strict-transport-security" in reply.lower()
    # The site sees each client's own address (PROXY protocol from the stream listener):
    # a client on 127.0.0.2 is logged as 127.0.0.2, not as nginx's own 127.0.0.1.
    assert _https_get(served, SITE_NAME, source="127.0.0.2").startswith("HTTP/1.1 200")
    access = Path(served.variables["nginx_access_log"]).read_text().splitlines()
    assert access[-1].startswith("127.0.0.2 "), access[-3:]
    assert "GET /health" in access[-1]

    # The TURN name: coturn's TLS listener answers an authenticated allocation.
    proc = subprocess.run(
        [
            sys.executable,
            probe.__file__,
            "turn-tls",
            SECRET,
            served.variables["coturn_realm"],
            TURN_NAME,
            str(served.ca),
            str(served.https_port),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr + served.logs()
    assert re.search(r"relayed 127\.0\.0\.1:\d+ over TLSv1\.[23]", proc.stdout), proc.stdout

    # nginx logged where each connection went, by TLS name (when each one ended).
    hop = served.variables["nginx_turn_hop_listen"]
    site = served.variables["nginx_site_listen"]
    wanted = [f'"{TURN_NAME}" {hop} ', f'"{SITE_NAME}" {site} ', f'"" {site} ']
    deadline = time.monotonic() + 15
    while not all(any(w in line for line in served.stream_log()) for w in wanted):
        assert time.monotonic() < deadline, served.stream_log()
        time.sleep(0.1)


async def test_a_learner_with_only_turns_on_443_receives_video_and_audio(
    served: TurnStack, live: LiveServer, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The learner's TLS client (aioice, through asyncio's default context) trusts the test CA.
    monkeypatch.setenv("SSL_CERT_FILE", str(served.ca))
    cid = world.cohort.id
    tsock = await live.connect(await live.cookie(world, "trainer"), cid)
    lsock = await live.connect(await live.cookie(world, "learner"), cid)
    await tsock.expect("media_config")
    config = await lsock.expect("media_config")

    # The appliance hands TURN over UDP first, then TURN over TLS on the HTTPS port, with the
    # same time-limited credentials.
    udp, tls = config["ice_servers"]
    assert udp["urls"].startswith("turn:") and udp["urls"].endswith("?transport=udp")
    assert tls["urls"] == f"turns:{TURN_NAME}:{served.https_port}?transport=tcp"
    assert tls["username"] == udp["username"] and tls["credential"] == udp["credential"]
    assert tls["username"].endswith(f":{world.learner.id}")

    only_tls = RTCConfiguration(
        iceServers=[RTCIceServer(tls["urls"], tls["username"], tls["credential"])],
        iceTransportPolicy=RTCIceTransportPolicy.RELAY,
    )
    trainer, learner = Trainer(), Learner(configuration=only_tls)
    try:
        await tsock.request("session_start")
        await publish(tsock, trainer)
        live_now = await lsock.expect("media_tracks")
        while not live_now["tracks"]["camera"]:
            live_now = await lsock.expect("media_tracks")
        await subscribe(lsock, learner)
        # Relay-only: the learner offered the relay no other candidate than coturn's.
        candidates = re.findall(r"^a=candidate:.*$", learner.pc.localDescription.sdp, re.M)
        assert candidates and all(" typ relay" in c for c in candidates), candidates
        await wait_for(lambda: learner.frames["video"] >= 10, within=30)
        await wait_for(lambda: learner.frames["audio"] >= 10, within=10)
        assert all(size == (320, 240) for size in learner.sizes)

        # The metrics count this learner as relayed, not direct (the per-connection gauge
        # counts connections with a receiver report: the first comes within seconds).
        c = str(cid)
        async with httpx.AsyncClient(base_url=live.base) as http:
            for _ in range(100):
                text = (await http.get("/metrics")).text
                if metric(text, "estrade_media_connections", cohort_id=c, path="relayed"):
                    break
                await asyncio.sleep(0.2)
        assert metric(text, "estrade_media_connections", cohort_id=c, path="relayed") == 1
        assert metric(text, "estrade_media_connections", cohort_id=c, path="direct") == 0
        assert metric(text, "estrade_webrtc_connections_total", path="relayed") >= 1
        # ... and so does the operator page's API.
        cookie = await live.cookie(world, "operator")
        async with httpx.AsyncClient(base_url=live.base, headers={"cookie": cookie}) as http:
            overview = (await http.get("/api/operator/overview")).json()
        (room,) = [r for r in overview["rooms"] if r["cohort_id"] == cid]
        assert room["relayed_connections"] == 1
        # aiortc's relay candidates all have type preference 0, as TLS ones have in Chrome.
        assert room["paths"] == {"direct": 0, "turn_udp": 0, "turn_tls": 1}
    finally:
        await learner.pc.close()
        await trainer.close()

    # Everything the learner received crossed nginx's shared port under the TURN name.
    def turn_bytes() -> int:
        hop = served.variables["nginx_turn_hop_listen"]
        lines = [line for line in served.stream_log() if f'"{TURN_NAME}" {hop} ' in line]
        return max((int(line.split()[6]) for line in lines), default=0)

    await wait_for(lambda: turn_bytes() > 50_000, within=10)
