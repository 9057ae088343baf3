"""Dead links and extra tabs, over real sockets: the heartbeat both ways and the per-session
socket limit (docs/protocol.md "Heartbeat and dead links", "One session, one socket")."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from appliance.settings import Settings
from tests.helpers.classroom import LiveServer, Peer
from tests.helpers.world import World
from tests.test_live import join


async def _close_code(peer: Peer, within: float = 10) -> tuple[int, str, float]:
    """Read (without answering anything) until the server closes; (code, reason, when)."""
    deadline = time.monotonic() + within
    with pytest.raises(ConnectionClosed) as info:
        while time.monotonic() < deadline:
            await asyncio.wait_for(peer.ws.recv(), deadline - time.monotonic())
    assert info.value.rcvd is not None, "closed without a close frame"
    return info.value.rcvd.code, info.value.rcvd.reason, time.monotonic()


@pytest.fixture
async def quick(app: Any, world: World, settings: Settings) -> Any:
    """A server that drops a socket silent for 1 s (heartbeat every 1/3 s). No reconnect grace:
    the disconnect is written as soon as the last socket is gone (the default waits 10 s for a
    reconnect before it writes the span's end, with the time the socket really closed)."""
    server = LiveServer(
        dataclasses.replace(settings, ws_idle_timeout_s=1.0, attendance_reconnect_grace_s=0)
    ).start()
    yield server
    server.stop()


async def test_a_silent_socket_is_dropped_and_its_learner_recorded_gone(
    quick: LiveServer, world: World
) -> None:
    from appliance.attendance.tables import AttendanceRecord

    # Cookies first: a peer only answers heartbeats while the test reads its socket.
    cookies = [await quick.cookie(world, role) for role in ("trainer", "learner")]
    trainer = await quick.connect(cookies[0], world.cohort.id)
    learner = await quick.connect(cookies[1], world.cohort.id)
    assert learner.welcome["heartbeat_s"] == pytest.approx(1 / 3)
    await trainer.request("session_start")

    async def dies_silently() -> tuple[Any, int, float]:
        """The learner's link dies silently: frames still arrive, nothing goes back."""
        went_silent = time.monotonic()
        beats = 0
        with pytest.raises(ConnectionClosed) as info:
            while True:
                msg = json.loads(await asyncio.wait_for(learner.ws.recv(), 10))
                beats += msg["type"] == "heartbeat"
        return info.value.rcvd, beats, time.monotonic() - went_silent

    # Meanwhile the trainer, who answers heartbeats, stays and sees the learner leave.
    (rcvd, beats, silent_for), gone = await asyncio.gather(
        dies_silently(), trainer.expect("presence", timeout=10, connected=False)
    )
    assert rcvd is not None and rcvd.code == 4408, rcvd
    assert "nothing received" in rcvd.reason
    assert beats >= 2  # the server kept asking
    assert silent_for < 6, silent_for  # idle timeout 1 s, generous for a busy machine
    assert gone["participant"]["user_id"] == world.learner.id
    assert trainer.heartbeats >= 2
    pong = await trainer.request("ping", expect="pong")
    assert pong["type"] == "pong"

    # Attendance: the disconnect is recorded (just after the presence event is published).
    kinds: list[str] = []
    for _ in range(50):
        kinds = [
            r["kind"]
            for r in await AttendanceRecord.select(AttendanceRecord.kind)
            .where(AttendanceRecord.user == world.learner.id)
            .order_by(AttendanceRecord.position)
        ]
        if kinds[-1:] == ["disconnect"]:
            break
        await trainer.quiet(0.1)
    assert kinds == ["connect", "disconnect"], kinds
    await trainer.close()


async def test_a_quiet_socket_that_answers_heartbeats_stays(
    quick: LiveServer, world: World
) -> None:
    learner = await join(quick, world, "learner")
    # Three idle timeouts of saying nothing but "heartbeat": still connected, nothing else sent.
    got = await learner.quiet(3.2)
    after_welcome = ("media_config", "recording_state")  # sent once, right after welcome
    assert [m["type"] for m in got if m["type"] not in after_welcome] == []
    assert learner.heartbeats >= 6
    pong = await learner.request("ping", expect="pong")
    assert pong["type"] == "pong"
    # A heartbeat carrying a ref gets no ack (it is not a request).
    await learner.send("heartbeat", ref="h1")
    assert [m for m in await learner.quiet(0.5) if m.get("ref") == "h1"] == []
    await learner.close()


async def test_one_session_keeps_at_most_its_limit_of_sockets(
    live: LiveServer, world: World
) -> None:
    """A learner session's new socket replaces the old one (4409); staff keep up to 4."""
    trainer = await join(live, world, "trainer")
    cookie = await live.cookie(world, "learner")
    tabs = []
    for _ in range(5):
        tabs.append(await live.connect(cookie, world.cohort.id))
    for old in tabs[:-1]:
        code, reason, _ = await _close_code(old)
        assert (code, reason) == (4409, "this class is open in another tab")
    # The server forgets a socket just after its close frame went out.
    room = live.app.state.live.rooms[world.cohort.id]
    for _ in range(100):
        mine = [c for c in room.conns.values() if c.user_id == world.learner.id]
        if len(mine) == 1:
            break
        await asyncio.sleep(0.05)
    assert len(mine) == 1, mine
    # The learner stayed "connected" for the others throughout: no presence flapping.
    seen = await trainer.quiet(0.5)
    assert not [
        m
        for m in trainer.seen + seen
        if m["type"] == "presence"
        and m["participant"]["user_id"] == world.learner.id
        and not m["connected"]
    ]
    # The last tab works.
    await tabs[-1].request("chat_send", text="from the last tab")

    # Staff: one session may hold 4 (console, learner view...); the 5th and 6th close the oldest.
    staff_cookie = await live.cookie(world, "trainer")
    staff = [await live.connect(staff_cookie, world.cohort.id) for _ in range(6)]
    for old in staff[:2]:
        code, _, _ = await _close_code(old)
        assert code == 4409
    for peer in staff[2:]:
        pong = await peer.request("ping", expect="pong")
        assert pong["type"] == "pong"
    # Another session of the same learner (another device) is not counted with the first.
    other = await live.connect(await live.cookie(world, "learner"), world.cohort.id)
    pong = await tabs[-1].request("ping", expect="pong")
    assert pong["type"] == "pong"
    for peer in (trainer, tabs[-1], *staff[2:], other):
        await peer.close()


async def test_a_socket_refused_because_its_link_died_meanwhile_says_why(
    app: Any, world: World
) -> None:
    """A link revoked (or expired) after the learner's session was checked but before the
    cohort was — an admin's click while the classroom loads — closes the connecting socket with
    4401 and the reason the page explains (it was 4404 "cohort not found": the page stayed put,
    tests/browser/test_pages.py::test_unknown_and_revoked_links_explain_themselves failed 1 run
    in 4)."""
    from appliance.accounts import services
    from appliance.accounts.tables import JoinLink
    from appliance.live.access import EXPIRED, REVOKED, dead_link_close

    cohort, learner = world.cohort.id, world.learner.id
    await services.issue_link(cohort, learner, base_url="", ttl_days=1)
    (link,) = await JoinLink.select(JoinLink.id).where(JoinLink.user == learner)
    assert await dead_link_close(link["id"]) is None
    assert await dead_link_close(None) is None  # staff: no link, the 4404 stands
    await services.expire_links(cohort, learner)
    assert await dead_link_close(link["id"]) == (4401, EXPIRED)
    await services.issue_link(cohort, learner, base_url="", ttl_days=1)
    (newer,) = await JoinLink.select(JoinLink.id).where(
        (JoinLink.user == learner) & JoinLink.revoked_at.is_null() & (JoinLink.id != link["id"])
    )
    await services.revoke_links(cohort, learner)
    assert await dead_link_close(newer["id"]) == (4401, REVOKED)
