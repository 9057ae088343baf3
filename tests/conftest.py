"""Shared fixtures: every database test runs on SQLite and on a throwaway PostgreSQL.

Only fixtures and hooks here; what tests import lives in tests/helpers/ (world.py: the world,
the client, the settings; server.py: real servers; classroom.py: socket clients)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from litestar import Litestar

from appliance import db
from appliance.app import create_app
from appliance.settings import Settings
from tests.helpers.classroom import LiveServer
from tests.helpers.world import Client, World, build_world, empty_tables, make_settings
from tests.pg import PgServer, start_postgres


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = start_postgres()
    yield server
    server.stop()


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `postgres` every test that runs on PostgreSQL, however it is parametrized (the
    fixtures' own params, or ``indirect=`` as in tests/fuzz): make test-fast deselects them."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "postgres" in (params.get("database_url"), params.get("db_env")):
            item.add_marker(pytest.mark.postgres)


_pg_databases = itertools.count(1)


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated database, one per backend for the whole run; tables are emptied per test."""
    if request.param == "sqlite":
        url = f"sqlite://{tmp_path_factory.mktemp('sqlite') / 'estrade.sqlite3'}"
    else:
        server: PgServer = request.getfixturevalue("pg_server")
        # A database per instance: tests/fuzz parametrizes this fixture indirectly, so pytest may
        # build the postgres instance twice in one run (the second CREATE DATABASE would fail).
        url = server.create_database(f"estrade_test_{next(_pg_databases)}")
    settings = make_settings(tmp_path_factory.mktemp("d"), database_url=url)

    async def migrate() -> None:
        engine = db.bind(settings)
        await db.start(engine, 0)
        await db.migrate()
        await db.close(engine)

    asyncio.run(migrate())
    return url


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url=database_url)


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Litestar]:
    application = create_app(settings)
    engine = db.piccolo_conf.DB
    await db.start(engine, 0)
    await empty_tables()
    await db.close(engine)
    yield application


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[Client]:
    async with Client(app=app, base_url="http://testserver.local") as c:
        await c.prime_csrf()
        yield c


@pytest.fixture
async def world(client: Client) -> World:
    return await build_world()


@pytest.fixture
async def live(app: Litestar, world: World, settings: Settings) -> AsyncIterator[LiveServer]:
    """A real uvicorn server on 127.0.0.1 (tests/helpers/classroom.py) for socket tests."""
    with LiveServer(settings) as server:
        yield server
