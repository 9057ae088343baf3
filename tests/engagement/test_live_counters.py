"""Hands, reactions and time on low bandwidth: counted per learner from the live room, over
real sockets (uvicorn on 127.0.0.1), stored when the server stops, and in the day's figures."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from appliance.engagement import live as engagement_live
from appliance.engagement import services
from appliance.engagement.tables import EngagementCounter
from tests.helpers.classroom import LiveServer
from tests.helpers.world import World


async def join(server: LiveServer, world: World, role: str):
    return await server.connect(await server.cookie(world, role), world.cohort.id)


async def test_live_counters_reach_the_day_figures(
    app: Any, world: World, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engagement_live, "SAMPLE_S", 0.2)
    server = LiveServer(settings).start()
    try:
        learner = await join(server, world, "learner")
        trainer = await join(server, world, "trainer")
        await learner.request("hand_raise")  # before the class: counted (a raised hand is one)
        await trainer.request("session_start")
        await learner.expect("session_started")
        err = await learner.request("hand_raise", expect="error")  # refused: not counted
        assert err["code"] == "hand_already_raised"
        await learner.request("hand_lower")
        await learner.request("hand_raise")
        for kind in ("lost", "ok", "ok"):
            await learner.request("reaction", kind=kind)
        bad = await trainer.request("reaction", expect="forbidden", kind="ok")
        assert bad["message_type"] == "reaction"
        await learner.request("set_low_bandwidth", on=True)
        await asyncio.sleep(1.2)  # about six samples of 0.2 s on low bandwidth
        await learner.request("set_low_bandwidth", on=False)
        await asyncio.sleep(0.5)
        await learner.close()
        await trainer.close()
    finally:
        server.stop()  # its lifespan writes what is still pending
    rows = await EngagementCounter.select().where(EngagementCounter.cohort == world.cohort.id)
    assert [(r["user"], r["hands"], r["reactions"]) for r in rows] == [(world.learner.id, 2, 3)]
    assert 0.6 <= rows[0]["low_bandwidth_s"] <= 2  # whole seconds, rounded per sample

    today = await services.today_of(world.cohort.id)
    await services.aggregate_day(world.cohort.id, today)
    figures = (await services.learner_detail(world.cohort.id, world.learner.id, today, today)).days
    assert [(d.hands, d.reactions) for d in figures] == [(2, 3)]


async def test_a_stopping_server_lets_the_running_step_end(app: Any) -> None:
    """The background task is stopped between steps, not cancelled in a query: a query cancelled
    on a connection opened for it (PostgreSQL without a pool, as in tests) leaves that
    connection open, and asyncpg warns when it is collected (a failure in a later test)."""
    live = app.state.engagement
    running, ended = asyncio.Event(), []
    finalise = live.finalise

    async def slow_finalise() -> list[Any]:
        running.set()
        await asyncio.sleep(0.3)  # the server stops meanwhile
        ended.append(await finalise())
        return ended[-1]

    live.finalise = slow_finalise
    async with app.lifespan():
        await running.wait()
    assert ended == [[]]  # ran to its end (no cohort: nothing to finalise)
