"""Sockets follow access changes made while they are open (accounts events -> live rooms).

Each case: an admin changes access over HTTP on the real server while the sockets are open;
the affected socket is closed with the documented code and reason, the others keep working,
and the next connect is refused.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.helpers.classroom import LiveServer, Peer
from tests.helpers.world import World
from tests.test_live import join


async def _admin(live: LiveServer, world: World, method: str, path: str, **kw: Any) -> int:
    cookie = await live.cookie(world, "admin")
    token = dict(part.split("=", 1) for part in cookie.split("; "))["csrftoken"]
    async with httpx.AsyncClient(base_url=live.base) as c:
        r = await c.request(method, path, headers={"Cookie": cookie, "x-csrftoken": token}, **kw)
    assert r.status_code < 300, r.text
    return r.status_code


async def _closed(peer: Peer) -> tuple[int, str]:
    with pytest.raises(ConnectionClosed) as info:
        for _ in range(100):
            await asyncio.wait_for(peer.ws.recv(), 5)
    assert info.value.rcvd is not None
    return info.value.rcvd.code, info.value.rcvd.reason


async def _refused(live: LiveServer, cookie: str, cohort_id: int) -> int:
    """How a new connect is refused: the close code, or the HTTP status of a refused handshake
    (403: the session is no longer valid)."""
    try:
        ws = await websockets.connect(
            f"ws://127.0.0.1:{live.port}/ws/cohorts/{cohort_id}",
            additional_headers={"Cookie": cookie},
        )
    except InvalidStatus as exc:
        return exc.response.status_code
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(ws.recv(), 5)
    assert info.value.rcvd is not None
    return info.value.rcvd.code


async def _still_served(peer: Peer) -> None:
    await peer.request("ping", expect="pong")


async def _gone(trainer: Peer, user_id: int) -> None:
    while True:
        p = await trainer.expect("presence", connected=False)
        if p["participant"]["user_id"] == user_id:
            return


async def test_unenrolled_learner_is_closed(live: LiveServer, world: World) -> None:
    cookie = await live.cookie(world, "learner")
    learner = await live.connect(cookie, world.cohort.id)
    trainer = await join(live, world, "trainer")
    await _admin(
        live, world, "DELETE", f"/api/admin/cohorts/{world.cohort.id}/enrolments/{world.learner.id}"
    )
    assert await _closed(learner) == (4404, "you are no longer enrolled in this cohort")
    await _gone(trainer, world.learner.id)
    await _still_served(trainer)
    # their join link was revoked with the enrolment: the session is over
    assert await _refused(live, cookie, world.cohort.id) == 403
    await trainer.close()


async def test_deactivated_accounts_are_closed(live: LiveServer, world: World) -> None:
    cookie = await live.cookie(world, "learner")
    learner = await live.connect(cookie, world.cohort.id)
    trainer_cookie = await live.cookie(world, "trainer")
    trainer = await live.connect(trainer_cookie, world.cohort.id)
    admin = await join(live, world, "admin")

    await _admin(live, world, "POST", f"/api/admin/users/{world.learner.id}/archive")
    assert await _closed(learner) == (4401, "your account was deactivated")
    await _still_served(trainer)

    await _admin(
        live, world, "PATCH", f"/api/admin/users/{world.trainer.id}", json={"active": False}
    )
    assert await _closed(trainer) == (4401, "your account was deactivated")
    await _gone(admin, world.trainer.id)
    await _still_served(admin)

    assert await _refused(live, cookie, world.cohort.id) == 403
    assert await _refused(live, trainer_cookie, world.cohort.id) == 403
    await admin.close()


async def test_revoked_or_replaced_join_link_ends_the_socket(
    live: LiveServer, world: World
) -> None:
    base = f"/api/admin/cohorts/{world.cohort.id}/learners/{world.learner.id}"
    cookie = await live.cookie(world, "learner")
    learner = await live.connect(cookie, world.cohort.id)
    trainer = await join(live, world, "trainer")

    await _admin(live, world, "POST", f"{base}/join-link/revoke")
    code, reason = await _closed(learner)
    assert code == 4401 and "join link was revoked" in reason
    await _still_served(trainer)
    assert await _refused(live, cookie, world.cohort.id) == 403

    # a new link: the learner comes back; replacing it again ends that session too
    learner = await join(live, world, "learner")  # issues a fresh link
    await _still_served(learner)
    await _admin(live, world, "POST", f"{base}/join-link")
    assert (await _closed(learner))[0] == 4401
    await _still_served(trainer)
    await trainer.close()


async def test_archived_cohort_closes_its_learners_only(live: LiveServer, world: World) -> None:
    cookie = await live.cookie(world, "learner")
    learner = await live.connect(cookie, world.cohort.id)
    trainer = await join(live, world, "trainer")
    other = await live.connect(await live.cookie(world, "other_learner"), world.other_cohort.id)

    await _admin(live, world, "POST", f"/api/admin/cohorts/{world.cohort.id}/archive")
    assert await _closed(learner) == (4404, "this cohort was archived")
    await _gone(trainer, world.learner.id)
    await _still_served(trainer)  # staff still see an archived cohort
    await _still_served(other)  # another cohort is not touched
    assert await _refused(live, cookie, world.cohort.id) == 4404
    for peer in (trainer, other):
        await peer.close()


async def test_archiving_by_patch_too(live: LiveServer, world: World) -> None:
    learner = await join(live, world, "learner")
    await _admin(
        live, world, "PATCH", f"/api/admin/cohorts/{world.cohort.id}", json={"archived": True}
    )
    assert await _closed(learner) == (4404, "this cohort was archived")


def test_a_socket_checked_before_a_change_is_closed_when_it_joins(tmp_path: Any) -> None:
    """The window between the connect check and joining the room: catch_up closes it."""
    from litestar.channels import ChannelsPlugin
    from litestar.channels.backends.memory import MemoryChannelsBackend

    from appliance.accounts.tables import Role
    from appliance.live.room import CohortRoom, Conn, RoomRegistry
    from tests.helpers.world import make_settings

    settings = make_settings(tmp_path)
    channels = ChannelsPlugin(backend=MemoryChannelsBackend(), arbitrary_channels_allowed=True)
    registry = RoomRegistry(settings, channels)
    room = CohortRoom(cohort_id=7, settings=settings, channels=channels)
    checked_at = registry.access_changes
    assert registry.end_connections(lambda r, c: c.user_id == 1, 4401, "gone") == 0
    late, other = (
        Conn(id=str(uid), user_id=uid, display_name="x", capacity=Role.learner) for uid in (1, 2)
    )
    registry.catch_up(room, other, checked_at)
    assert other.closing is None
    registry.catch_up(room, late, checked_at)
    assert late.closing == (4401, "gone")
    # a socket checked after the change is not touched by it
    fresh = Conn(id="3", user_id=1, display_name="x", capacity=Role.learner)
    registry.catch_up(room, fresh, registry.access_changes)
    assert fresh.closing is None
