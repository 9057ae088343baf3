"""Join-link secrets never reach the appliance's logs (``estrade serve``'s real access log)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx

from appliance.accounts import services
from appliance.auth.redact import RedactJoinSecrets, redact
from appliance.settings import Settings
from tests.helpers.classroom import ProcessServer
from tests.helpers.world import World


async def test_access_log_has_no_join_secret(
    app: Any, world: World, settings: Settings, tmp_path: Path
) -> None:
    server = ProcessServer(settings, tmp_path / "server.log").start()
    try:
        link = await services.issue_link(
            world.cohort.id, world.learner.id, base_url=server.base, ttl_days=3
        )
        path = link.url.removeprefix(server.base)
        secret = path.rsplit("/", 1)[1]
        async with httpx.AsyncClient(base_url=server.base) as c:
            assert (await c.get(path)).status_code == 200
            assert (await c.get(path, headers={"accept": "text/html"})).status_code == 303
            await c.get("/api/auth/csrf")
            r = await c.post(path, json={}, headers={"x-csrftoken": c.cookies["csrftoken"]})
            assert r.status_code == 200
            assert (await c.get("/join/unknown-secret-xyz?a=b")).status_code == 404
    finally:
        server.stop()
    log = server.log()
    assert '"GET /join/[redacted] HTTP/1.1" 200' in log, log
    assert '"POST /join/[redacted] HTTP/1.1" 200' in log, log
    assert '"GET /join/[redacted]?a=b HTTP/1.1" 404' in log, log
    assert secret not in log and "unknown-secret-xyz" not in log, log


def test_redaction_of_messages_and_arguments() -> None:
    assert (
        redact("GET /join/abc_DEF-1?x=1 and /join/zz")
        == "GET /join/[redacted]?x=1 and /join/[redacted]"
    )
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s"',
        ("1.2.3.4", "GET", "/join/s3"),
        None,
    )
    RedactJoinSecrets().filter(record)
    assert record.getMessage() == '1.2.3.4 - "GET /join/[redacted]"'
