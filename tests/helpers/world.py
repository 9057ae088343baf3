"""The test world (users, cohorts, enrolments) and a test client that signs in like the web UI.

Helpers imported by tests; the fixtures that use them live in tests/conftest.py.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient

from appliance import db
from appliance.accounts import schemas as s
from appliance.accounts import services
from appliance.settings import Settings, load_settings

__all__ = [
    "PASSWORD",
    "ROLES",
    "Client",
    "World",
    "add_user",
    "build_world",
    "empty_tables",
    "make_settings",
    "new_client",
    "sign_in_as",
]

PASSWORD = "correct horse battery"
ROLES = ("anonymous", "learner", "trainer", "operator", "admin")


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "data_dir": str(tmp_path / "data"),
        "session_store": "memory",
        # The test client runs the app's lifespan on another event loop than the test:
        # a pool would be shared across loops, so tests connect per query.
        "database_pool_size": 0,
        "public_url": "http://testserver.local",
        # Media sockets on loopback only: tests send nothing beyond 127.0.0.1.
        "media_interface": "127.0.0.1",
        # Tests that hold a socket without reading it (waiting for media, say) must not be
        # dropped as dead links on a busy machine; tests/test_live_links.py sets its own.
        "ws_idle_timeout_s": 60.0,
        # The app runs inside the test's process here: the relay too (no worker processes to
        # start per test). The default (one worker per core) runs wherever a test starts
        # `estrade serve` (tests/helpers/server.py, the browser tests) and in
        # tests/test_live_media_workers.py.
        "media_workers": 0,
    }
    base.update(overrides)
    return load_settings(env={}, **base)


async def empty_tables() -> None:
    """Empty every table but the migrations' (ids restart at 1)."""
    from appliance.db import _all_tables

    engine = db.piccolo_conf.DB
    tables = [t for t in _all_tables() if t._meta.tablename != "migration"]
    if engine.engine_type == "postgres":
        names = ", ".join(f'"{t._meta.tablename}"' for t in tables)
        await engine.run_ddl(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    else:
        for t in reversed(tables):
            await engine.run_ddl(f'DELETE FROM "{t._meta.tablename}"')


class Client(AsyncTestClient):  # type: ignore[type-arg]
    """A test client that carries the CSRF token like the web UI does (and shows redirects)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.follow_redirects = False

    async def prime_csrf(self) -> None:
        r = await self.get("/api/auth/csrf")
        assert r.status_code == 200
        self.headers["x-csrftoken"] = self.cookies["csrftoken"]

    async def login(self, email: str, password: str = PASSWORD) -> None:
        await self.prime_csrf()
        r = await self.post("/api/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        # A new CSRF token comes with the new session (the one before sign-in stops working).
        self.headers["x-csrftoken"] = self.cookies["csrftoken"]

    async def join(self, url: str) -> None:
        """Sign in with a learner's join link as the join page does (``POST /join/{secret}``)."""
        if "x-csrftoken" not in self.headers:
            await self.prime_csrf()
        r = await self.post(url, json={})
        assert r.status_code == 200, r.text
        self.headers["x-csrftoken"] = self.cookies["csrftoken"]


def new_client(app: Litestar) -> Client:
    return Client(app=app, base_url="http://testserver.local")


class World:
    """A small world: one admin, one operator, two cohorts with a trainer and learners each."""

    admin: s.UserOut
    operator: s.UserOut
    trainer: s.UserOut
    other_trainer: s.UserOut
    learner: s.UserOut
    other_learner: s.UserOut
    cohort: s.CohortOut
    other_cohort: s.CohortOut


_HASH: list[str] = []


async def add_user(email: str, role: str, password: str | None = PASSWORD) -> s.UserOut:
    """Insert a user; the argon2 hash of PASSWORD is computed once per run (slow on purpose)."""
    from appliance.accounts.tables import User
    from appliance.auth.passwords import hash_password

    if not _HASH:
        _HASH.append(hash_password(PASSWORD))
    u = User(
        email=email,
        display_name=email.split("@")[0].title(),
        role=role,
        password_hash=_HASH[0] if password else None,
    )
    await u.save()
    return services.user_out(u)


async def build_world() -> World:
    w = World()
    w.admin = await add_user("admin@example.org", "admin")
    w.operator = await add_user("operator@example.org", "operator")
    w.trainer = await add_user("trainer@example.org", "trainer")
    w.other_trainer = await add_user("trainer2@example.org", "trainer")
    w.learner = await add_user("learner@example.org", "learner", password=None)
    w.other_learner = await add_user("learner2@example.org", "learner", password=None)
    today = dt.date(2026, 11, 2)
    w.cohort = services.cohort_out(
        await services.create_cohort(
            s.CohortIn(name="Dev web", first_day=today, last_day=today + dt.timedelta(days=60))
        )
    )
    w.other_cohort = services.cohort_out(
        await services.create_cohort(
            s.CohortIn(name="Réseaux", first_day=today, last_day=today + dt.timedelta(days=60))
        )
    )
    await services.enrol(w.cohort.id, w.trainer.id)
    await services.enrol(w.cohort.id, w.learner.id)
    await services.enrol(w.other_cohort.id, w.other_trainer.id)
    await services.enrol(w.other_cohort.id, w.other_learner.id)
    return w


async def sign_in_as(client: Client, world: World, role: str) -> None:
    """Sign ``client`` in as ``role`` (learners through their join link)."""
    if role == "anonymous":
        return
    if role == "learner":
        link = await services.issue_link(
            world.cohort.id, world.learner.id, base_url="http://testserver.local", ttl_days=30
        )
        await client.join(link.url.removeprefix("http://testserver.local"))
        return
    await client.login(getattr(world, role).email)
