"""Fuzz the classroom socket: frames from the protocol's msgspec types, sent by every role to a
real server over real sockets. Nothing may answer ``server_error`` or log a traceback, and the
sockets and the class keep working (a probe chat message still arrives afterwards).

Fixed seed (derandomize) and a bounded number of examples: the same frames on every run.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed

from appliance.accounts import services
from appliance.accounts.tables import Role
from appliance.cli import ws_transport_limit
from tests.helpers.classroom import LiveServer, Peer
from tests.helpers.world import World
from tests.socket_strategies import frames
from tests.test_live_media import learner_cookie

ROLES = ("learner", "trainer", "operator", "admin")
PER_TYPE = 25
"""Examples per message type and role (one to three frames each)."""
MIXED = 60
"""Examples per role of any frame (other roles' types, raw frames)."""
# Close codes the protocol uses for a client's own mistakes: the harness reconnects.
EXPECTED_CLOSES = {1008, 1009}


class Harness:
    """The server, one socket per role (reconnected after an expected close), the log."""

    def __init__(self, server: LiveServer, cookies: dict[str, str], cohort_id: int) -> None:
        self.server = server
        self.cookies = cookies
        self.cohort_id = cohort_id
        self.peers: dict[str, Peer] = {}
        self.replies: list[dict[str, Any]] = []
        self.closes: list[int] = []

    async def peer(self, role: str) -> Peer:
        if role not in self.peers:
            self.peers[role] = await self.server.connect(self.cookies[role], self.cohort_id)
        return self.peers[role]

    async def run(self, role: str, batch: list[str | bytes]) -> None:
        peer = await self.peer(role)
        limit = self.server.settings.ws_max_frame_bytes
        ref = f"sync-{time.monotonic_ns()}"
        try:
            for frame in batch:
                size = len(frame.encode() if isinstance(frame, str) else frame)
                try:
                    await peer.ws.send(frame)
                except ConnectionClosed:
                    if size <= ws_transport_limit(self.server.settings):
                        raise
                    # Refused by the WebSocket layer while it was still being written: the
                    # client may see the reset before the 1009 close frame.
                    self.closes.append(1009)
                    del self.peers[role]
                    return
                if size > limit:  # oversized: the server closes (1009), nothing else
                    await self._closed(peer, batch)
                    break
            await peer.send("ping", ref=ref)
            deadline = asyncio.get_running_loop().time() + 10
            while True:
                left = deadline - asyncio.get_running_loop().time()
                assert left > 0, f"{role}: no pong after {batch!r:.300}"
                msg = json.loads(await asyncio.wait_for(peer.ws.recv(), left))
                self.replies.append(msg)
                assert msg.get("code") != "server_error", (role, batch, msg)
                if msg["type"] in ("pong", "rate_limited") and msg.get("ref") == ref:
                    return
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
            assert code in EXPECTED_CLOSES, f"{role} closed with {code} after {batch!r:.300}"
            self.closes.append(code)
            del self.peers[role]

    async def _closed(self, peer: Peer, batch: list[str | bytes]) -> None:
        """Read until the server closes (raises ConnectionClosed)."""
        for _ in range(1000):
            msg = json.loads(await asyncio.wait_for(peer.ws.recv(), 10))
            self.replies.append(msg)
            assert msg.get("code") != "server_error", (batch, msg)
        raise AssertionError(f"not closed after an oversized frame: {batch!r:.300}")


@pytest.fixture
async def fuzz_server(app: Any, world: World, settings: Any) -> Any:
    # Generous rate and malformed-frame limits so frames reach the handlers without a
    # reconnect every few examples (those limits are tested in test_live_security.py).
    s = dataclasses.replace(
        settings, live_rate_limit=100_000, chat_rate_limit=100_000, ws_malformed_limit=100_000
    )
    server = LiveServer(s).start()
    yield server
    await server.close_peers()
    server.stop()


async def test_fuzz_every_message_and_role(
    fuzz_server: LiveServer, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    server = fuzz_server
    cid = world.cohort.id
    await services.enrol(cid, world.other_learner.id)  # a second learner, to mute, to see
    cookies = {role: await server.cookie(world, role) for role in ROLES}
    harness = Harness(server, cookies, cid)
    # Some rows for the ids to hit: a running session, messages, a question, a live poll.
    trainer = await harness.peer("trainer")
    await trainer.request("session_start")
    learner = await harness.peer("learner")
    await learner.request("chat_send", text="a question?", question=True)
    await trainer.request("chat_send", text="hello")
    await trainer.request("poll_create", question="Q?", choices=["a", "b", "c"])
    poll = (await trainer.expect("poll_created"))["poll"]
    await trainer.request("poll_launch", poll_id=poll["id"])

    routes = server.app.state.live.dispatcher.routes
    every = [r.cls for r in routes.values()]
    loop = asyncio.get_running_loop()

    def fuzz_as(role: str) -> None:
        # Each message type this role may send (so the frames reach its handler), then any
        # frame at all (forbidden types, raw frames).
        mine = [r.cls for r in routes.values() if Role(role) in r.roles]
        runs = [(frames([cls]), PER_TYPE) for cls in mine] + [(frames(every), MIXED)]
        for frame, examples in runs:

            @settings(
                max_examples=examples,
                derandomize=True,
                database=None,
                deadline=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(batch=st.lists(frame, min_size=1, max_size=3))
            def fuzz(batch: list[str | bytes]) -> None:
                run = harness.run(role, batch)
                asyncio.run_coroutine_threadsafe(run, loop).result(timeout=60)

            fuzz()

    started = time.monotonic()
    for role in ROLES:
        await asyncio.to_thread(fuzz_as, role)
        # Its socket answers still; then closed (an idle client that reads nothing would
        # stall on its own keepalive).
        peer = await harness.peer(role)
        await peer.request("ping", expect="pong")
        await harness.peers.pop(role).close()
    elapsed = time.monotonic() - started

    # The class still works: a probe from the trainer reaches the fuzzed learner (a new socket
    # of the same session) and a fresh one; a learner can still act.
    probe_trainer = await server.connect(cookies["trainer"], cid)
    fresh = await server.connect(await learner_cookie(server, cid, world.other_learner.id), cid)
    fuzzed = await server.connect(cookies["learner"], cid)
    await probe_trainer.request("chat_send", text="probe after fuzzing")
    for peer in (fresh, fuzzed):
        await peer.expect("chat_message")
    await fresh.request("hand_lower", expect="error")  # whatever the fuzz left, it answers
    await fresh.request("reaction", kind="ok")
    await probe_trainer.expect("reactions")
    for peer in (probe_trainer, fresh, fuzzed):
        await peer.close()

    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [r.getMessage() for r in bad][:5]
    types = {m["type"] for m in harness.replies}
    assert {"error", "forbidden", "pong"} <= types  # the frames did reach the dispatcher
    from collections import Counter

    print(Counter(m.get("code") or m["type"] for m in harness.replies).most_common())
    print(f"fuzzed {len(ROLES)} roles in {elapsed:.1f} s; "
          f"closes {harness.closes}")  # fmt: skip
