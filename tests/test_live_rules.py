"""Bad input, permissions, resume and a restart in the middle of a class, over real sockets."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.helpers.classroom import LiveServer
from tests.helpers.world import World
from tests.test_live import _http, join


async def _closed_with(peer: Any) -> int:
    with pytest.raises(ConnectionClosed) as info:
        for _ in range(100):
            await asyncio.wait_for(peer.ws.recv(), 5)
    assert info.value.rcvd is not None
    return info.value.rcvd.code


async def test_malformed_json_then_close_1008(live: LiveServer, world: World) -> None:
    learner = await join(live, world, "learner")
    trainer = await join(live, world, "trainer")
    for i in range(9):
        await learner.ws.send("{not json" if i % 2 else '{"type": "nope"}')
        err = await learner.expect("error")
        assert err["code"] in ("malformed", "invalid_message")
    await learner.request("chat_send", text="still connected")  # not a disconnect
    await learner.ws.send("][")
    assert await _closed_with(learner) == 1008
    await trainer.request("ping", expect="pong")  # others unaffected
    await trainer.close()


async def test_frame_over_limit_closes_1009(live: LiveServer, world: World) -> None:
    learner = await join(live, world, "learner")
    await learner.send("chat_send", text="x" * (64 * 1024))
    assert await _closed_with(learner) == 1009


async def test_chat_too_long_names_the_limit(live: LiveServer, world: World) -> None:
    learner = await join(live, world, "learner")
    err = await learner.request("chat_send", expect="error", text="é" * 2001)
    assert err["code"] == "message_too_long" and err["limit"] == 2000
    assert "2000" in err["detail"]
    await learner.request("chat_send", text="é" * 2000)


async def test_flooding_is_rate_limited(live: LiveServer, world: World) -> None:
    learner = await join(live, world, "learner")
    trainer = await join(live, world, "trainer")
    for i in range(5):
        await learner.request("chat_send", text=f"m{i}")
    limited = await learner.request("chat_send", expect="rate_limited", text="m5")
    assert 1 <= limited["retry_after"] <= 10
    await learner.request("reaction", kind="lost")  # other traffic unaffected
    await learner.request("hand_raise")
    for _ in range(6):  # the trainer is not limited
        await trainer.request("chat_send", text="trainer")
    texts = [m["message"]["text"] for m in trainer.seen if m["type"] == "chat_message"]
    assert texts[:5] == ["m0", "m1", "m2", "m3", "m4"] and "m5" not in texts


@pytest.mark.parametrize(
    ("type_", "fields"),
    [
        ("poll_launch", {"poll_id": 1}),
        ("chat_delete", {"message_id": 1}),
        ("signing_open", {"half": "morning"}),
        ("session_start", {}),
        ("chat_mute", {"user_id": 1}),
    ],
)
async def test_learner_sending_trainer_messages_is_forbidden(
    live: LiveServer, world: World, type_: str, fields: dict[str, Any]
) -> None:
    learner = await join(live, world, "learner")
    got = await learner.request(type_, expect="forbidden", **fields)
    assert got["message_type"] == type_
    await learner.request("chat_send", text="still here")


async def test_roles(live: LiveServer, world: World) -> None:
    # anonymous: the handshake is refused
    with pytest.raises(InvalidStatus):
        await websockets.connect(f"ws://127.0.0.1:{live.port}/ws/cohorts/{world.cohort.id}")
    # a trainer or learner of another cohort: closed with 4404, the cohort does not leak
    for role in ("other_trainer", "other_learner"):
        cookie = await live.cookie(world, role)
        ws = await websockets.connect(
            f"ws://127.0.0.1:{live.port}/ws/cohorts/{world.cohort.id}",
            additional_headers={"Cookie": cookie},
        )
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 5)
        assert info.value.rcvd is not None and info.value.rcvd.code == 4404
    # operator: watches (staff events), may not act
    operator = await join(live, world, "operator")
    assert operator.welcome["staff"] is True
    for t, f in (
        ("chat_send", {"text": "hi"}),
        ("session_start", {}),
        ("poll_vote", {"poll_id": 1, "choices": [0]}),
    ):
        assert (await operator.request(t, expect="forbidden", **f))["message_type"] == t
    # admin may run the class
    admin = await join(live, world, "admin")
    await admin.request("session_start")
    await operator.expect("session_started")
    # trainer may not vote or sign
    trainer = await join(live, world, "trainer")
    await trainer.request("attendance_sign", expect="forbidden")
    await trainer.request("question_vote", expect="forbidden", message_id=1)
    # HTTP exports: learner 403, other trainer 404, anonymous 401
    path = f"/api/cohorts/{world.cohort.id}/polls.csv"
    assert (await _http(live, world, "learner", path)).status_code == 403
    assert (await _http(live, world, "other_trainer", path)).status_code == 404
    assert (await _http(live, world, "anonymous", path)).status_code == 401
    assert (await _http(live, world, "operator", path)).status_code == 200


async def test_resume_gets_exactly_what_was_missed(live: LiveServer, world: World) -> None:
    trainer = await join(live, world, "trainer")
    learner = await join(live, world, "learner")
    await trainer.request("chat_send", text="before")
    await learner.expect("chat_message")
    epoch, last = learner.welcome["epoch"], learner.last_seq
    await learner.close()
    await trainer.expect("presence", connected=False)
    for i in range(3):
        await trainer.request("chat_send", text=f"missed {i}")
    await trainer.request("reaction", expect="forbidden", kind="ok")
    back = await join(live, world, "learner", epoch=epoch, last_seq=last)
    assert back.welcome["resumed"] is True
    got = await back.quiet(0.5)
    texts = [m["message"]["text"] for m in got if m["type"] == "chat_message"]
    assert texts == ["missed 0", "missed 1", "missed 2"]
    seqs = [m["seq"] for m in got if "seq" in m]
    assert seqs == sorted(set(seqs)) and min(seqs) > last  # no duplicates, nothing old
    # a stale epoch (server restarted) or a gap beyond the ring: reload, then a full welcome
    stale = await live.connect(
        await live.cookie(world, "learner"), world.cohort.id, epoch="0000", last_seq=1
    )
    assert stale.welcome["resumed"] is False
    assert [m["type"] for m in stale.seen[:2]] == ["reload", "welcome"]


async def test_resume_beyond_the_ring(app: Any, world: World, settings: Any) -> None:
    import dataclasses

    s = dataclasses.replace(settings, live_resume_events=3)
    server = LiveServer(s).start()
    try:
        trainer = await join(server, world, "trainer")
        learner = await join(server, world, "learner")
        epoch, last = learner.welcome["epoch"], learner.last_seq
        await learner.close()
        for i in range(5):
            await trainer.request("chat_send", text=f"m{i}")
        back = await join(server, world, "learner", epoch=epoch, last_seq=last)
        assert back.seen[0]["type"] == "reload"
        assert back.welcome["resumed"] is False
        assert [m["text"] for m in back.welcome["chat"]][-5:] == [f"m{i}" for i in range(5)]
    finally:
        server.stop()


async def test_restart_in_the_middle_of_a_class(app: Any, world: World, settings: Any) -> None:
    server = LiveServer(settings).start()
    trainer = await join(server, world, "trainer")
    learner = await join(server, world, "learner")
    await trainer.request("session_start")
    await learner.request("chat_send", text="avant la panne", question=True)
    await trainer.request("poll_create", question="Q?", choices=["a", "b"])
    poll = (await trainer.expect("poll_created"))["poll"]
    await trainer.request("poll_launch", poll_id=poll["id"])
    await learner.request("poll_vote", poll_id=poll["id"], choices=[1])
    await trainer.request("signing_open", half="afternoon", minutes=30)
    await learner.request("attendance_sign")
    server.stop()

    again = LiveServer(settings).start()
    try:
        trainer = await join(again, world, "trainer")
        learner = await join(again, world, "learner")
        w = trainer.welcome
        assert w["session"] is not None
        assert [m["text"] for m in w["chat"]] == ["avant la panne"]
        assert [q["text"] for q in w["questions"]] == ["avant la panne"]
        assert w["live_poll"]["id"] == poll["id"] and w["results"]["counts"] == [0, 1]
        assert w["signing"]["half"] == "afternoon"
        assert learner.welcome["my_ballot"] == [1] and learner.welcome["signed"] is True
        await learner.request("poll_change_vote", poll_id=poll["id"], choices=[0])
        await trainer.request("poll_close", poll_id=poll["id"])
        r = await _http(
            again, world, "trainer", f"/api/cohorts/{world.cohort.id}/attendance/verify"
        )
        assert r.json()["ok"] is True
    finally:
        again.stop()


async def test_attendance_chain_is_tamper_evident(live: LiveServer, world: World) -> None:
    from appliance.attendance import services
    from appliance.attendance.tables import AttendanceRecord

    trainer = await join(live, world, "trainer")
    learner = await join(live, world, "learner")
    await trainer.request("signing_open", half="morning")
    await learner.request("attendance_sign")
    await learner.close()
    await asyncio.sleep(0.3)
    assert (await services.verify_chain(world.cohort.id)).ok
    sign = await AttendanceRecord.objects().where(AttendanceRecord.kind == "sign").first()
    import datetime as dt

    await AttendanceRecord.update(
        {AttendanceRecord.signed_at: sign.signed_at - dt.timedelta(hours=1)}
    ).where(AttendanceRecord.id == sign.id)
    check = await services.verify_chain(world.cohort.id)
    assert check.ok is False and check.first_bad_id == sign.id
