"""Learners come in only through a valid join link; sessions are stored only once signed in,
expire with their link and carry a CSRF token bound to them."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.middleware.csrf import generate_csrf_token

from appliance.accounts import schemas as s
from appliance.accounts import services
from appliance.accounts.tables import JoinLink
from appliance.auth.sessions import SESSION_COOKIE
from tests.helpers.classroom import LiveServer
from tests.helpers.world import Client, World, make_settings
from tests.test_live_access import _admin, _closed, _refused

LEARNER_PASSWORD = "learner-secret-1"


async def _link(world: World, ttl_days: int = 30) -> str:
    link = await services.issue_link(
        world.cohort.id, world.learner.id, base_url="", ttl_days=ttl_days
    )
    return link.url


# --- item 2: a learner's password is a second factor on the link page, never a way in --------


async def test_learner_password_does_not_open_the_api(client: Client, world: World) -> None:
    await services.update_user(world.learner.id, s.UserPatch(password=LEARNER_PASSWORD))
    r = await client.post(
        "/api/auth/login", json={"email": world.learner.email, "password": LEARNER_PASSWORD}
    )
    assert r.status_code == 403
    assert "join link" in r.json()["detail"]
    assert (await client.get("/api/me")).status_code == 401
    # With a link, the password works on the link's page.
    path = await _link(world)
    assert (await client.post(path, json={"password": LEARNER_PASSWORD})).status_code == 200
    client.headers["x-csrftoken"] = client.cookies["csrftoken"]  # rotated at sign-in
    assert (await client.get("/api/me")).json()["id"] == world.learner.id
    # Once every link is revoked, neither way gets back in.
    await services.revoke_links(world.cohort.id, world.learner.id)
    assert (await client.get("/api/me")).status_code == 401
    assert (await client.post(path, json={"password": LEARNER_PASSWORD})).status_code == 410
    r = await client.post(
        "/api/auth/login", json={"email": world.learner.email, "password": LEARNER_PASSWORD}
    )
    assert r.status_code == 403
    assert (await client.get(f"/api/cohorts/{world.cohort.id}/documents")).status_code == 401


async def test_a_learner_session_without_a_link_is_refused(
    app: Litestar, client: Client, world: World
) -> None:
    """A session made before this rule (password sign-in) no longer opens anything."""
    store = app.stores.get("sessions")
    await store.set("legacy", b'{"uid": %d, "csrf": "x"}' % world.learner.id, expires_in=600)
    client.cookies.set(SESSION_COOKIE, "legacy")
    assert (await client.get("/api/me")).status_code == 401
    assert (await client.get("/api/cohorts")).status_code == 401


@pytest.mark.parametrize("how", ["expired", "unenrolled", "deactivated", "revoked"])
async def test_every_end_of_access_ends_the_learner_session(
    client: Client, world: World, how: str
) -> None:
    await client.join(await _link(world))
    assert (await client.get("/api/me")).status_code == 200
    if how == "expired":
        await JoinLink.update({JoinLink.expires_at: services.utcnow()}).where(
            JoinLink.user == world.learner.id
        )
    elif how == "unenrolled":
        await services.unenrol(world.cohort.id, world.learner.id)
    elif how == "deactivated":
        await services.update_user(world.learner.id, s.UserPatch(active=False))
    else:
        await services.revoke_links(world.cohort.id, world.learner.id)
    assert (await client.get("/api/me")).status_code == 401
    assert (await client.get(f"/api/cohorts/{world.cohort.id}/documents")).status_code == 401


async def test_session_is_stored_no_longer_than_its_link_lives(
    app: Litestar, client: Client, world: World
) -> None:
    path = await _link(world)
    await JoinLink.update(
        {JoinLink.expires_at: services.utcnow() + dt.timedelta(seconds=90)}
    ).where(JoinLink.user == world.learner.id)
    await client.join(path)
    store = app.stores.get("sessions")
    left = await store.expires_in(client.cookies[SESSION_COOKIE])
    assert left is not None and left <= 90
    # A staff session keeps the configured lifetime.
    await client.login(world.trainer.email)
    left = await store.expires_in(client.cookies[SESSION_COOKIE])
    assert left is not None and left > 12 * 3600 - 60


async def test_learner_socket_is_closed_when_its_link_expires(
    live: LiveServer, world: World
) -> None:
    link = await services.issue_link(
        world.cohort.id, world.learner.id, base_url=live.base, ttl_days=1
    )
    await JoinLink.update({JoinLink.expires_at: services.utcnow() + dt.timedelta(seconds=3)}).where(
        JoinLink.user == world.learner.id
    )
    async with httpx.AsyncClient(base_url=live.base) as c:
        await c.get("/api/auth/csrf")
        r = await c.post(
            link.url.removeprefix(live.base),
            json={},
            headers={"x-csrftoken": c.cookies["csrftoken"]},
        )
        assert r.status_code == 200, r.text
        cookie = "; ".join(f"{k}={v}" for k, v in c.cookies.items())
    learner = await live.connect(cookie, world.cohort.id)
    trainer = await live.connect(await live.cookie(world, "trainer"), world.cohort.id)
    started = time.monotonic()
    assert await _closed(learner) == (4401, "your join link expired: ask for a new one")
    assert time.monotonic() - started < 5
    await trainer.request("ping", expect="pong")  # the others are not disturbed
    assert await _refused(live, cookie, world.cohort.id) == 403
    await trainer.close()


# --- item 10: nothing stored before sign-in; expired sessions swept -------------------------


async def test_join_link_gets_store_nothing_until_the_learner_joins(
    app: Any, world: World, tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(tmp_path, database_url=database_url, session_store="file")
    live = LiveServer(settings).start()
    sessions = Path(settings.data_dir) / "sessions"
    try:
        link = await services.issue_link(
            world.cohort.id, world.learner.id, base_url=live.base, ttl_days=3
        )
        path = link.url.removeprefix(live.base)
        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(base_url=live.base, limits=limits) as c:
            for start in range(0, 1000, 50):
                rs = await asyncio.gather(
                    *(
                        c.get(path, headers={"accept": a})
                        for a in ["text/html", "application/json"] * 25
                    )
                )
                c.cookies.clear()
                assert {r.status_code for r in rs} == {200, 303}, start
        assert not sessions.exists() or list(sessions.glob("*")) == []
        # Joining (the POST the join page makes) stores exactly one session.
        async with httpx.AsyncClient(base_url=live.base) as c:
            await c.get("/api/auth/csrf")
            r = await c.post(path, json={}, headers={"x-csrftoken": c.cookies["csrftoken"]})
            assert r.status_code == 200
        assert len(list(sessions.glob("*"))) == 1
    finally:
        live.stop()


async def test_expired_sessions_are_swept(
    app: Any, world: World, tmp_path: Path, database_url: str
) -> None:
    settings = make_settings(
        tmp_path, database_url=database_url, session_store="file", session_sweep_s=1
    )
    live = LiveServer(settings).start()
    sessions = Path(settings.data_dir) / "sessions"
    try:
        await live.cookie(world, "trainer")  # one live session
        store = live.app.stores.get("sessions")
        for i in range(5):
            await store.set(f"old{i}", b'{"uid": 1}', expires_in=1)
        assert len(list(sessions.glob("*"))) == 6
        for _ in range(50):  # the sweeper runs every second
            if len(list(sessions.glob("*"))) == 1:
                break
            await asyncio.sleep(0.2)
        assert len(list(sessions.glob("*"))) == 1  # the live session stays
    finally:
        live.stop()


# --- CSRF bound to the session, rotated at sign-in -----------------------------------------


async def test_csrf_token_is_rotated_at_sign_in_and_bound_to_the_session(
    app: Litestar, client: Client, world: World
) -> None:
    before = client.cookies["csrftoken"]
    await client.login(world.admin.email)
    after = client.cookies["csrftoken"]
    assert after != before
    assert (await client.patch("/api/me", json={"locale": "en"})).status_code == 200
    # A token this server signed but issued outside this session (planted, or read before
    # sign-in) passes Litestar's double-submit check, not the session binding.
    foreign = generate_csrf_token(secret=app.state.csrf_secret)
    client.cookies.set("csrftoken", foreign)
    client.headers["x-csrftoken"] = foreign
    r = await client.patch("/api/me", json={"locale": "fr"})
    assert r.status_code == 403
    assert "CSRF" in r.json()["detail"]
    client.cookies.set("csrftoken", before)
    client.headers["x-csrftoken"] = before
    assert (await client.patch("/api/me", json={"locale": "fr"})).status_code == 403
    # Reads are not affected; the bound token still works.
    assert (await client.get("/api/me")).status_code == 200
    client.cookies.set("csrftoken", after)
    client.headers["x-csrftoken"] = after
    assert (await client.patch("/api/me", json={"locale": "fr"})).status_code == 200


# --- a link opened while someone is signed in asks first ------------------------------------


async def test_link_opened_by_a_signed_in_trainer_asks_first(client: Client, world: World) -> None:
    await client.login(world.trainer.email)
    path = await _link(world)
    secret = path.rsplit("/", 1)[1]
    r = await client.get(path, headers={"accept": "text/html"})
    assert r.status_code == 303
    assert r.headers["location"] == f"/link-problem?reason=switch#{secret}"
    r = await client.get(path)
    assert r.json() == {"status": "confirm", "detail": "switch", "method": "POST"}
    assert (await client.get("/api/me")).json()["role"] == "trainer"  # not replaced
    # Another site cannot post: the CSRF header is missing.
    r = await client.post(path, json={}, headers={"x-csrftoken": ""})
    assert r.status_code == 403
    assert (await client.get("/api/me")).json()["role"] == "trainer"
    # The trainer confirms (the join page's button): now the learner's session.
    r = await client.post(path, json={})
    assert r.status_code == 200
    assert (await client.get("/api/me")).json()["id"] == world.learner.id
    client.headers["x-csrftoken"] = client.cookies["csrftoken"]
    # Opening the link again in that session goes straight to the classroom.
    r = await client.get(path)
    assert r.status_code == 303
    assert r.headers["location"] == f"/classroom/{world.cohort.id}"


async def test_anonymous_browser_is_sent_to_the_join_page(client: Client, world: World) -> None:
    path = await _link(world)
    secret = path.rsplit("/", 1)[1]
    r = await client.get(path, headers={"accept": "text/html"})
    assert r.status_code == 303
    assert r.headers["location"] == f"/link-problem?reason=join#{secret}"
    assert "estrade_session" not in client.cookies
    assert (await client.get("/api/me")).status_code == 401


async def test_revoking_one_cohorts_link_closes_that_cohort_to_any_session(
    live: LiveServer, world: World
) -> None:
    """A learner of two cohorts joined with cohort A's link: revoking cohort B's link closes B
    (HTTP and socket) even though the session came from A's link; A keeps working."""
    a, b = world.cohort.id, world.other_cohort.id
    await services.enrol(b, world.learner.id)
    await services.issue_link(b, world.learner.id, base_url=live.base, ttl_days=3)
    cookie = await live.cookie(world, "learner")  # through cohort A's link
    token = dict(p.split("=", 1) for p in cookie.split("; "))["csrftoken"]
    in_a = await live.connect(cookie, a)
    in_b = await live.connect(cookie, b)
    async with httpx.AsyncClient(base_url=live.base, headers={"Cookie": cookie}) as c:
        assert (await c.get(f"/api/cohorts/{b}/documents")).status_code == 200
        assert {x["id"] for x in (await c.get("/api/cohorts")).json()} == {a, b}
        await _admin(
            live,
            world,
            "POST",
            f"/api/admin/cohorts/{b}/learners/{world.learner.id}/join-link/revoke",
        )
        assert await _closed(in_b) == (
            4401,
            "your join link was revoked: open your new link to come back",
        )
        assert (await c.get(f"/api/cohorts/{b}/documents")).status_code == 404
        assert [x["id"] for x in (await c.get("/api/cohorts")).json()] == [a]
        assert (await c.get(f"/api/cohorts/{a}/documents")).status_code == 200
        r = await c.patch("/api/me", json={"locale": "en"}, headers={"x-csrftoken": token})
        assert r.status_code == 200
    await in_a.request("ping", expect="pong")
    await in_a.close()


async def test_a_session_without_a_bound_csrf_token_must_sign_in_again(
    app: Litestar, client: Client, world: World
) -> None:
    """Sessions made before tokens were bound: 401 (the UI goes to sign-in), not a stuck 403."""
    store = app.stores.get("sessions")
    await store.set("old-staff", b'{"uid": %d}' % world.admin.id, expires_in=600)
    client.cookies.set(SESSION_COOKIE, "old-staff")
    assert (await client.get("/api/me")).status_code == 401
    assert (await client.post("/api/auth/logout")).status_code == 401
    client.cookies.clear()  # the browser keeps one cookie per name; the test jar would keep two
    await client.login(world.admin.email)
    assert (await client.post("/api/auth/logout")).status_code == 200
