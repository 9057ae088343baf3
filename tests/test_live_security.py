"""Security and robustness of the classroom socket (issue 12), over real sockets on uvicorn."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from appliance.accounts import schemas as s
from appliance.accounts import services
from tests.helpers.classroom import LiveServer
from tests.helpers.world import World, add_user
from tests.media.peers import Trainer
from tests.test_live import join
from tests.test_live_media import learner_cookie, publish


@pytest.fixture(autouse=True)
async def _close_peers(live: LiveServer) -> AsyncIterator[None]:
    yield
    await live.close_peers()


async def _third_cohort(world: World) -> int:
    """A third cohort with its own trainer (``world.third_trainer``); returns its id."""
    today = dt.date(2026, 11, 2)
    cohort = await services.create_cohort(
        s.CohortIn(name="Cuisine", first_day=today, last_day=today + dt.timedelta(days=60))
    )
    world.third_trainer = await add_user("trainer3@example.org", "trainer")  # type: ignore[attr-defined]
    await services.enrol(cohort.id, world.third_trainer.id)  # type: ignore[attr-defined]
    return cohort.id


async def test_learners_of_idle_cohorts_cannot_use_up_media_rooms(
    live: LiveServer, world: World
) -> None:
    """Two idle cohorts' learners subscribe: no room opens, a third cohort's trainer presents."""
    assert live.settings.media_max_rooms == 2
    media = live.app.state.media.server
    idle = []
    for cid, uid in ((world.cohort.id, world.learner.id), (world.other_cohort.id,
                                                           world.other_learner.id)):  # fmt: skip
        sock = await live.connect(await learner_cookie(live, cid, uid), cid)
        for _ in range(3):  # again and again: still nothing opened
            err = await sock.request("media_subscribe", expect="error")
            assert err["code"] == "no_class_media", err
            assert "presenting" in err["detail"]
        idle.append(sock)
    assert media.get_room(world.cohort.id) is None
    assert media.get_room(world.other_cohort.id) is None

    third = await _third_cohort(world)
    tsock = await live.connect(await live.cookie(world, "third_trainer"), third)
    peer = Trainer()
    try:
        await publish(tsock, peer)  # not too_many_rooms
        assert media.get_room(third) is not None
        # The learners still have their class; nothing else changed for them.
        for sock in idle:
            await sock.request("ping", expect="pong")
    finally:
        await peer.close()
        for sock in (*idle, tsock):
            await sock.close()


async def test_learner_subscribes_once_the_trainer_presents(live: LiveServer, world: World) -> None:
    """Learners arrive first: refused with no_class_media, then media_tracks, then subscribe."""
    from tests.media.peers import Learner, wait_for
    from tests.test_live_media import subscribe

    cid = world.cohort.id
    lsock = await live.connect(await live.cookie(world, "learner"), cid)
    assert (await lsock.request("media_subscribe", expect="error"))["code"] == "no_class_media"
    tsock = await live.connect(await live.cookie(world, "trainer"), cid)
    trainer, learner = Trainer(), Learner()
    try:
        await publish(tsock, trainer)
        tracks = await lsock.expect("media_tracks", timeout=10)
        while not tracks["tracks"]["camera"]:
            tracks = await lsock.expect("media_tracks", timeout=10)
        await subscribe(lsock, learner)
        await wait_for(lambda: learner.frames["video"] >= 5, within=20)
    finally:
        for peer in (trainer, learner):
            await peer.close()
        await lsock.close()
        await tsock.close()


# ---- replies before a server-side close (item 12) ------------------------------------------
async def _until_closed(peer: Any) -> tuple[list[dict[str, Any]], int]:
    """Everything received until the server closes; returns (messages, close code)."""
    got: list[dict[str, Any]] = []
    with pytest.raises(ConnectionClosed) as info:
        for _ in range(1000):
            got.append(json.loads(await asyncio.wait_for(peer.ws.recv(), 10)))
    assert info.value.rcvd is not None, "closed without a close frame"
    return got, info.value.rcvd.code


async def test_acks_arrive_before_the_1009_close(live: LiveServer, world: World) -> None:
    from appliance.chat.tables import ChatMessage

    learner = await join(live, world, "learner")
    refs = [f"c{i}" for i in range(5)]
    for ref in refs:
        await learner.send("chat_send", text=f"text {ref}", ref=ref)
    await learner.send("chat_send", text="x" * (70 * 1024), ref="big")
    got, code = await _until_closed(learner)
    assert code == 1009
    assert [m["ref"] for m in got if m["type"] == "ack"] == refs
    assert await ChatMessage.count() == 5


async def test_error_replies_arrive_before_the_1008_close(live: LiveServer, world: World) -> None:
    learner = await join(live, world, "learner")
    trainer = await join(live, world, "trainer")
    for i in range(12):
        bad = json.dumps({"type": "nope", "ref": f"n{i}"})
        await learner.ws.send("{not json" if i % 2 else bad)
    got, code = await _until_closed(learner)
    assert code == 1008
    errors = [m for m in got if m["type"] == "error"]
    assert len(errors) == live.settings.ws_malformed_limit  # every one before the close
    assert {e["code"] for e in errors} == {"malformed", "invalid_message"}
    await trainer.request("ping", expect="pong")


# ---- ids beyond the database's range (item 7) ----------------------------------------------
BIG = 2**63


@pytest.mark.parametrize(
    ("role", "type_", "fields"),
    [
        ("learner", "poll_vote", {"poll_id": BIG, "choices": [0]}),
        ("learner", "poll_change_vote", {"poll_id": 2**31, "choices": [0]}),
        ("learner", "question_vote", {"message_id": BIG}),
        ("learner", "hand_lower", {"user_id": BIG}),
        ("trainer", "chat_delete", {"message_id": BIG}),
        ("trainer", "chat_mute", {"user_id": 2**31}),
        ("trainer", "chat_unmute", {"user_id": BIG}),
        ("trainer", "question_answer", {"message_id": BIG}),
        ("trainer", "poll_launch", {"poll_id": BIG}),
        ("trainer", "poll_close", {"poll_id": BIG}),
        ("trainer", "poll_show_results", {"poll_id": 2**64 - 1}),
        ("trainer", "hand_lower", {"user_id": BIG}),
    ],
)
async def test_ids_beyond_the_database_range(
    live: LiveServer, world: World, caplog: pytest.LogCaptureFixture, role: str, type_: str,
    fields: dict[str, Any],
) -> None:  # fmt: skip
    from appliance.attendance.tables import AttendanceRecord
    from appliance.chat.tables import ChatMessage

    peer = await join(live, world, role)
    before = await AttendanceRecord.count()
    for _ in range(3):  # a traceback per frame would show three times
        err = await peer.request(type_, expect="error", **fields)
        assert err["code"] == "invalid_message", err
        assert "2147483647" in err["detail"]
    await peer.request("ping", expect="pong")
    assert await AttendanceRecord.count() == before and await ChatMessage.count() == 0
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


async def test_a_failing_handler_logs_one_traceback(
    live: LiveServer, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected error answers server_error each time but logs its traceback once."""
    from appliance.live.dispatch import Route

    async def broken(ctx: Any, msg: Any) -> None:
        raise RuntimeError("boom")

    routes = live.app.state.live.dispatcher.routes
    route = routes["hand_raise"]
    routes["hand_raise"] = Route(route.cls, route.roles, broken)
    try:
        learner = await join(live, world, "learner")
        for _ in range(5):
            err = await learner.request("hand_raise", expect="error")
            assert err["code"] == "server_error"
    finally:
        routes["hand_raise"] = route
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1, [r.getMessage() for r in tracebacks]


# ---- every learner message type is rate-limited (item 6) -----------------------------------
LEARNER_SAMPLES: dict[str, dict[str, Any]] = {
    "ping": {},
    "chat_send": {"text": "hello"},
    "question_vote": {"message_id": 1},
    "poll_vote": {"poll_id": 1, "choices": [0]},
    "poll_change_vote": {"poll_id": 1, "choices": [0]},
    "hand_raise": {},
    "hand_lower": {},
    "reaction": {"kind": "ok"},
    "set_low_bandwidth": {"on": True},
    "attendance_sign": {},
    "media_subscribe": {},
    "media_answer": {"sdp": "v=0"},
    "media_quality": {"level": "audio"},
}


async def test_every_learner_message_type_is_rate_limited(live: LiveServer, world: World) -> None:
    from appliance.accounts.tables import Role

    routes = live.app.state.live.dispatcher.routes
    # heartbeat answers the server's beat (no reply, exempt: refusing it would drop the learner).
    sent_by_learners = {t for t, r in routes.items() if Role.learner in r.roles}
    assert set(LEARNER_SAMPLES) == sent_by_learners - {"heartbeat"}
    s = live.settings
    learner = await join(live, world, "learner")
    for type_, fields in LEARNER_SAMPLES.items():
        limit = s.chat_rate_limit if type_ == "chat_send" else s.live_rate_limit
        for i in range(limit):
            ref = f"{type_}-{i}"
            await learner.send(type_, ref=ref, **fields)
            reply = await learner.expect_ref(ref)
            assert reply["type"] != "rate_limited", (type_, i, reply)
        limited = await learner.request(type_, expect="rate_limited", **fields)
        assert limited["message_type"] == type_
        assert 1 <= limited["retry_after"] <= s.live_rate_window_s
    # A trainer is not limited.
    trainer = await join(live, world, "trainer")
    for _ in range(s.live_rate_limit + 2):
        await trainer.request("ping", expect="pong")


async def test_a_flooding_learner_reaches_the_class_a_bounded_number_of_times(
    live: LiveServer, world: World
) -> None:
    learner = await join(live, world, "learner")
    trainer = await join(live, world, "trainer")
    for i in range(300):  # 1 200 frames, sent without waiting
        await learner.send("hand_raise")
        await learner.send("hand_lower")
        await learner.send("set_low_bandwidth", on=bool(i % 2))
        await learner.send("reaction", kind=("lost", "ok")[i % 2])
    await asyncio.sleep(0.5)
    got = await trainer.quiet(0.5)
    hands = [m for m in got if m["type"] in ("hand_raised", "hand_lowered")]
    reactions = [m for m in got if m["type"] == "reactions"]
    presence = [m for m in got if m["type"] == "presence"]
    limit = live.settings.live_rate_limit
    assert 0 < len(hands) <= 2 * limit
    assert 0 < len(reactions) <= limit
    assert len(presence) <= limit + 1
    for m in reactions:  # one learner counts once
        assert sum(m["counts"].values()) <= 1, m


async def test_reactions_count_once_per_learner(live: LiveServer, world: World) -> None:
    cid = world.cohort.id
    await services.enrol(cid, world.other_learner.id)
    first = await join(live, world, "learner")
    second = await live.connect(await learner_cookie(live, cid, world.other_learner.id), cid)
    trainer = await join(live, world, "trainer")
    for _ in range(5):
        await first.request("reaction", kind="lost")
    await second.request("reaction", kind="lost")
    await first.request("reaction", kind="slower")
    counts: dict[str, int] = {}
    while counts != {"lost": 1, "slower": 1, "ok": 0}:
        counts = (await trainer.expect("reactions"))["counts"]
        assert sum(counts.values()) <= 2, counts
    assert trainer.seen[-1]["counts"] == counts
    assert (await join(live, world, "admin")).welcome["reactions"] == counts


# ---- attendance under connect / disconnect storms (item 6) ---------------------------------
async def _connection_records(user_id: int) -> list[dict[str, Any]]:
    from appliance.attendance.tables import AttendanceRecord, Kind

    return await (
        AttendanceRecord.select()
        .where(
            (AttendanceRecord.user == user_id)
            & AttendanceRecord.kind.is_in([Kind.connect, Kind.disconnect])
        )
        .order_by(AttendanceRecord.position)
    )


async def test_reconnect_storm_writes_one_span(app: Any, world: World, settings: Any) -> None:
    import dataclasses

    from appliance.attendance import services as attendance

    server = LiveServer(dataclasses.replace(settings, attendance_reconnect_grace_s=1)).start()
    try:
        cookie = await server.cookie(world, "learner")
        cid, uid = world.cohort.id, world.learner.id
        for _ in range(30):  # reloads / a client reconnecting in a loop
            peer = await server.connect(cookie, cid)
            await peer.close()
        tabs = [await server.connect(cookie, cid) for _ in range(3)]  # three tabs
        for tab in tabs:
            await tab.close()
        closed_at = dt.datetime.now(dt.UTC)
        records = await _connection_records(uid)
        assert [r["kind"] for r in records] == ["connect"]  # the disconnect waits for the grace
        await asyncio.sleep(1.6)
        records = await _connection_records(uid)
        assert [r["kind"] for r in records] == ["connect", "disconnect"]
        connect, disconnect = records
        assert connect["connection"] == disconnect["connection"]
        # The disconnect keeps the time the last socket closed, not the time it was written.
        assert abs((disconnect["at"] - closed_at).total_seconds()) < 0.5
        # Away longer than the grace: a new span.
        await asyncio.sleep(0.2)
        peer = await server.connect(cookie, cid)
        await peer.close()
        await asyncio.sleep(1.6)
        assert [r["kind"] for r in await _connection_records(uid)] == [
            "connect", "disconnect", "connect", "disconnect",
        ]  # fmt: skip
        assert (await attendance.verify_chain(cid)).ok
    finally:
        await server.close_peers()
        server.stop()


async def test_pending_disconnect_is_written_at_shutdown(
    app: Any, world: World, settings: Any
) -> None:
    import dataclasses

    server = LiveServer(dataclasses.replace(settings, attendance_reconnect_grace_s=60)).start()
    peer = await server.connect(await server.cookie(world, "learner"), world.cohort.id)
    await peer.close()
    await asyncio.sleep(0.3)
    await server.close_peers()
    server.stop()
    kinds = [r["kind"] for r in await _connection_records(world.learner.id)]
    assert kinds == ["connect", "disconnect"]


# ---- control characters in text (found by the fuzzer on PostgreSQL) ------------------------
@pytest.mark.parametrize(
    "fields",
    [
        {"question": "a\x00b?", "choices": ["x", "y"]},
        {"question": "Q?", "choices": ["\x00", "y"]},
        {"question": "Q?", "choices": ["x\x00", "x"]},
        {"question": "\x00", "choices": ["x", "y"]},
    ],
)
async def test_poll_text_with_nul(
    live: LiveServer, world: World, caplog: pytest.LogCaptureFixture, fields: dict[str, Any]
) -> None:
    trainer = await join(live, world, "trainer")
    ref = "p1"
    await trainer.send("poll_create", ref=ref, **fields)
    reply = await trainer.expect_ref(ref)
    assert reply["type"] in ("ack", "error"), reply
    if reply["type"] == "error":
        assert reply["code"] in ("empty_choice", "duplicate_choice", "empty_question"), reply
    else:
        poll = (await trainer.expect("poll_created"))["poll"]
        assert "\x00" not in poll["question"] and all("\x00" not in c for c in poll["choices"])
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    await trainer.close()
