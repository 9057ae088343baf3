"""Hostile input gets a precise 4xx and writes nothing: against a real server (uvicorn on
127.0.0.1), SQLite and PostgreSQL.

Each case is one input an independent probe turned into a 500: OPTIONS on guarded routes,
ids past the database's integer range, bodies that are not UTF-8 or nested 2 000 deep,
extreme dates, CSV that the csv module refuses, a Range header of 4 300+ digits, and NUL
characters (which PostgreSQL refuses in text).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from appliance.db import _all_tables
from appliance.documents.tables import Document
from tests.documents import samples
from tests.helpers.world import World

HUGE = 99999999999999999999  # past int64
PAST_INT32 = 2**31
DEEP = b"[" * 2000 + b"]" * 2000
NOT_UTF8 = b'{"email": "\xff\xfe\xfa@example.org", "password": "\xc3\x28"}'
DIGITS = "9" * 4400


@dataclass(frozen=True)
class Case:
    role: str
    method: str
    path: Callable[[World], str]
    expect: int
    body: Callable[[World], dict[str, Any]] = field(default=lambda w: {})
    """httpx keyword arguments: json=, content=, headers=, params=."""
    needs_document: bool = False


def _c(w: World) -> int:
    return w.cohort.id


def _correction(**over: Any) -> Callable[[World], dict[str, Any]]:
    def body(w: World) -> dict[str, Any]:
        data = {
            "user_id": w.learner.id,
            "day": "2026-11-03",
            "half": "morning",
            "present": True,
            "reason": "badge oublié",
        }
        data.update(over)
        if data["user_id"] == "learner":
            data["user_id"] = w.learner.id
        return {"json": data}

    return body


def _json(data: Any) -> Callable[[World], dict[str, Any]]:
    return lambda w: {"json": data}


def _raw(content: bytes, content_type: str = "application/json") -> Callable[[World], Any]:
    return lambda w: {"content": content, "headers": {"content-type": content_type}}


USER = {"email": "nul@example.org", "display_name": "Nul", "role": "learner"}
COHORT = {"name": "Soudure", "first_day": "2026-12-01", "last_day": "2027-03-01"}
CSV = "text/csv"

CASES: dict[str, Case] = {
    # OPTIONS: the auth middleware skips it, the role guard then read request.user.
    "options admin users": Case("anonymous", "OPTIONS", lambda w: "/api/admin/users", 204),
    "options admin cohort": Case(
        "learner", "OPTIONS", lambda w: f"/api/admin/cohorts/{_c(w)}", 204
    ),
    "options operator": Case("anonymous", "OPTIONS", lambda w: "/api/operator/overview", 204),
    # Ids past the database's integer range, in paths and bodies.
    "huge cohort id": Case("admin", "GET", lambda w: f"/api/cohorts/{HUGE}/documents", 400),
    "int32+1 cohort id": Case(
        "admin", "GET", lambda w: f"/api/cohorts/{PAST_INT32}/documents", 400
    ),
    "huge document id": Case(
        "trainer", "GET", lambda w: f"/api/cohorts/{_c(w)}/documents/{HUGE}/download", 400
    ),
    "huge user id": Case("admin", "PATCH", lambda w: f"/api/admin/users/{HUGE}", 400, _json({})),
    "huge enrolled id": Case(
        "admin",
        "POST",
        lambda w: f"/api/admin/cohorts/{_c(w)}/enrolments",
        400,
        _json({"user_id": 2**63}),
    ),
    "huge corrected id": Case(
        "trainer",
        "POST",
        lambda w: f"/api/cohorts/{_c(w)}/attendance/corrections",
        400,
        _correction(user_id=HUGE),
    ),
    # Bodies that are not UTF-8, or JSON nested 2 000 deep.
    "login not utf-8": Case("anonymous", "POST", lambda w: "/api/auth/login", 400, _raw(NOT_UTF8)),
    "login deep json": Case("anonymous", "POST", lambda w: "/api/auth/login", 400, _raw(DEEP)),
    "user not utf-8": Case("admin", "POST", lambda w: "/api/admin/users", 400, _raw(NOT_UTF8)),
    "user deep json": Case("admin", "POST", lambda w: "/api/admin/users", 400, _raw(DEEP)),
    # Extreme dates.
    "csv from year 1": Case(
        "trainer",
        "GET",
        lambda w: f"/api/cohorts/{_c(w)}/attendance.csv?date_from=0001-01-01&date_to=0001-01-02",
        400,
    ),
    "csv to year 9999": Case(
        "trainer",
        "GET",
        lambda w: f"/api/cohorts/{_c(w)}/attendance.csv?date_from=9999-12-30&date_to=9999-12-31",
        400,
    ),
    "sheet year 1": Case(
        "trainer", "GET", lambda w: f"/cohorts/{_c(w)}/attendance/0001-01-01/sheet", 400
    ),
    "sheet year 9999": Case(
        "trainer", "GET", lambda w: f"/cohorts/{_c(w)}/attendance/9999-12-31/sheet", 400
    ),
    "session year 1 with offset": Case(
        "admin",
        "POST",
        lambda w: f"/api/admin/cohorts/{_c(w)}/sessions",
        400,
        _json(
            {
                "scheduled_start": "0001-01-01T00:00:00+05:00",
                "scheduled_end": "0001-01-01T02:00:00+05:00",
            }
        ),
    ),
    "session year 9999 with offset": Case(
        "admin",
        "POST",
        lambda w: f"/api/admin/cohorts/{_c(w)}/sessions",
        400,
        _json(
            {
                "scheduled_start": "9999-12-31T20:00:00-05:00",
                "scheduled_end": "9999-12-31T23:00:00-05:00",
            }
        ),
    ),
    "correction year 9999": Case(
        "trainer",
        "POST",
        lambda w: f"/api/cohorts/{_c(w)}/attendance/corrections",
        400,
        _correction(day="9999-12-31", signed_at="9999-12-31T23:00:00-05:00"),
    ),
    "correction year 1": Case(
        "trainer",
        "POST",
        lambda w: f"/api/cohorts/{_c(w)}/attendance/corrections",
        400,
        _correction(day="0001-01-01", signed_at="0001-01-01T00:10:00+01:00"),
    ),
    # CSV import the csv module refuses.
    "csv field over 131 072": Case(
        "admin",
        "POST",
        lambda w: f"/api/admin/cohorts/{_c(w)}/learners/import",
        422,
        _raw(("A" * 140_000 + ",a@example.org\n").encode(), CSV),
    ),
    # A Range header whose numbers have more digits than int() converts.
    "range of 4 400 digits": Case(
        "trainer",
        "GET",
        lambda w: f"/api/cohorts/{_c(w)}/documents/1/download",
        416,
        lambda w: {"headers": {"range": f"bytes={DIGITS}-"}},
        needs_document=True,
    ),
    # NUL: PostgreSQL refuses it in text; both databases must answer the same.
    "nul display name": Case(
        "admin", "POST", lambda w: "/api/admin/users", 400, _json({**USER, "display_name": "a\0b"})
    ),
    "nul email": Case(
        "admin", "POST", lambda w: "/api/admin/users", 400, _json({**USER, "email": "a\0@b.org"})
    ),
    "nul cohort name": Case(
        "admin", "POST", lambda w: "/api/admin/cohorts", 400, _json({**COHORT, "name": "So\0"})
    ),
    "nul document title": Case(
        "trainer",
        "POST",
        lambda w: f"/api/cohorts/{_c(w)}/documents",
        400,
        lambda w: {"params": {"filename": "a.txt", "title": "T\0"}, "content": b"text\n"},
    ),
    "nul document title patch": Case(
        "trainer",
        "PATCH",
        lambda w: f"/api/cohorts/{_c(w)}/documents/1",
        400,
        _json({"title": "T\0"}),
        needs_document=True,
    ),
    "nul csv row": Case(
        "admin",
        "POST",
        lambda w: f"/api/admin/cohorts/{_c(w)}/learners/import",
        422,
        _raw(b"Jean\0 Dupont,jean@example.org\n", CSV),
    ),
    "nul correction reason": Case(
        "trainer",
        "POST",
        lambda w: f"/api/cohorts/{_c(w)}/attendance/corrections",
        400,
        _correction(reason="oubli\0"),
    ),
    "nul login email": Case(
        "anonymous",
        "POST",
        lambda w: "/api/auth/login",
        400,
        _json({"email": "a\0@b.org", "password": "x" * 12}),
    ),
}


async def _counts() -> dict[str, int]:
    return {t._meta.tablename: await t.count() for t in _all_tables()}


async def _session(live: Any, world: World, role: str) -> httpx.AsyncClient:
    cookie = await live.cookie(world, role)
    token = dict(p.split("=", 1) for p in cookie.split("; "))["csrftoken"]
    return httpx.AsyncClient(
        base_url=live.base, headers={"cookie": cookie, "x-csrftoken": token}, timeout=30
    )


@pytest.mark.parametrize("name", list(CASES))
async def test_hostile_input_gets_a_precise_4xx_and_writes_nothing(
    live: Any, world: World, name: str
) -> None:
    case = CASES[name]
    async with await _session(live, world, case.role) as client:
        if case.needs_document:
            trainer = await _session(live, world, "trainer")
            async with trainer:
                r = await trainer.post(
                    f"/api/cohorts/{world.cohort.id}/documents",
                    params={"filename": "cours.pdf"},
                    content=samples.pdf(),
                )
                assert r.status_code == 201, r.text
                assert r.json()["id"] == 1
        before = await _counts()
        r = await client.request(case.method, case.path(world), **case.body(world))
        assert r.status_code == case.expect, (r.status_code, r.text[:500])
        if r.status_code != 204 and r.headers.get("content-type", "").startswith(
            "application/json"
        ):
            body = json.loads(r.text)
            # A message that says what is wrong (the CSV import answers with its report).
            assert body.get("detail") or body.get("errors"), r.text
        assert await _counts() == before
        # The server keeps serving.
        assert (await client.get("/health")).status_code == 200
        if case.needs_document:
            assert await Document.count() == 1


async def test_options_answers_every_route_without_an_error(live: Any, world: World) -> None:
    """Every HTTP route of the app, as an anonymous client: 204 with ``Allow``, never a 5xx."""
    from litestar.routes import HTTPRoute

    paths = sorted(
        {
            re.sub(r"\{(\w+):(\w+)\}", lambda m: "1" if m.group(2) == "int" else "x", route.path)
            for route in live.app.routes
            if isinstance(route, HTTPRoute) and "OPTIONS" in route.methods
        }
    )
    assert len(paths) > 30
    async with httpx.AsyncClient(base_url=live.base, timeout=30) as client:
        for path in paths:
            r = await client.options(path)
            assert r.status_code == 204, (path, r.status_code, r.text[:200])
            assert set(r.headers["allow"].split(", ")) > {"OPTIONS"}, path
