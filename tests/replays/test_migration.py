"""The replays migration runs forwards on a database at main's last migration (SQLite and
PostgreSQL), keeps what was there, and leaves nothing pending; each run in a child process
with a fresh database (the test session's engine is left alone)."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pg import PgServer

SCRIPT = r"""
import asyncio, datetime as dt, json, sys
from piccolo.apps.migrations.commands.forwards import run_forwards
from appliance import db
from appliance.settings import load_settings

async def main():
    settings = load_settings(env={}, data_dir=sys.argv[1], database_url=sys.argv[2])
    engine = db.bind(settings)
    await db.start(engine, 0)
    try:
        for app in ("accounts", "chat", "polls", "attendance", "documents", "engagement"):
            await run_forwards(app_name=app)  # the database as main left it
        from appliance.accounts.tables import Cohort
        days = {"first_day": dt.date(2026, 1, 5), "last_day": dt.date(2026, 3, 1)}
        await Cohort(name="Avant", **days).save()
        before = await db.pending_migrations()
        ran = await db.migrate()
        from appliance.replays.tables import Recording, RecordingPolicy
        cohort = await Cohort.objects().first()
        await RecordingPolicy(cohort=cohort.id).save()
        policy = await RecordingPolicy.objects().first()
        out = {"before": before, "ran": ran, "after": await db.pending_migrations(),
               "cohort": cohort.name, "enabled": policy.enabled, "retention": policy.retention_days,
               "recordings": await Recording.count()}
        print(json.dumps(out))
    finally:
        await db.close(engine)

asyncio.run(main())
"""
_names = itertools.count()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_replays_migration_runs_forwards(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite://{tmp_path / 'fresh.sqlite3'}"
    else:
        server: PgServer = request.getfixturevalue("pg_server")
        url = server.create_database(f"estrade_replays_mig_{next(_names)}")
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "data"), url],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert [m.split(":")[0] for m in got["before"]] == ["replays"]
    assert got["after"] == [] and got["cohort"] == "Avant"
    assert got["enabled"] is False and got["retention"] == 30 and got["recordings"] == 0
