"""Every admin route, for each role (allowed and refused), on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from appliance.accounts import services
from appliance.accounts.schemas import UserPatch
from appliance.accounts.tables import Enrolment, User
from tests.helpers.world import ROLES, Client, World, sign_in_as

Call = Callable[[Client, World], Awaitable[Any]]


def _cohort_body(**kw: Any) -> dict[str, Any]:
    body = {"name": "Soudure", "first_day": "2026-12-01", "last_day": "2027-03-01"}
    body.update(kw)
    return body


ADMIN_ROUTES: dict[str, tuple[Call, int]] = {
    "create user": (
        lambda c, w: c.post(
            "/api/admin/users",
            json={"email": "new@example.org", "display_name": "New", "role": "learner"},
        ),
        201,
    ),
    "list users": (lambda c, w: c.get("/api/admin/users"), 200),
    "get user": (lambda c, w: c.get(f"/api/admin/users/{w.learner.id}"), 200),
    "update user": (
        lambda c, w: c.patch(f"/api/admin/users/{w.learner.id}", json={"locale": "en"}),
        200,
    ),
    "archive user": (lambda c, w: c.post(f"/api/admin/users/{w.other_learner.id}/archive"), 200),
    "create cohort": (lambda c, w: c.post("/api/admin/cohorts", json=_cohort_body()), 201),
    "list cohorts": (lambda c, w: c.get("/api/admin/cohorts"), 200),
    "get cohort": (lambda c, w: c.get(f"/api/admin/cohorts/{w.cohort.id}"), 200),
    "update cohort": (
        lambda c, w: c.patch(f"/api/admin/cohorts/{w.cohort.id}", json={"name": "Dev web 2"}),
        200,
    ),
    "archive cohort": (lambda c, w: c.post(f"/api/admin/cohorts/{w.other_cohort.id}/archive"), 200),
    "enrol": (
        lambda c, w: c.post(
            f"/api/admin/cohorts/{w.cohort.id}/enrolments", json={"user_id": w.other_learner.id}
        ),
        201,
    ),
    "unenrol": (
        lambda c, w: c.delete(
            f"/api/admin/cohorts/{w.other_cohort.id}/enrolments/{w.other_learner.id}"
        ),
        204,
    ),
    "import learners": (
        lambda c, w: c.post(
            f"/api/admin/cohorts/{w.cohort.id}/learners/import",
            content=b"name,email\nZo\xc3\xa9 Roux,zoe@example.org\n",
            headers={"content-type": "text/csv"},
        ),
        200,
    ),
    "issue link": (
        lambda c, w: c.post(f"/api/admin/cohorts/{w.cohort.id}/learners/{w.learner.id}/join-link"),
        201,
    ),
    "revoke link": (
        lambda c, w: c.post(
            f"/api/admin/cohorts/{w.cohort.id}/learners/{w.learner.id}/join-link/revoke"
        ),
        200,
    ),
    "expire link": (
        lambda c, w: c.post(
            f"/api/admin/cohorts/{w.cohort.id}/learners/{w.learner.id}/join-link/expire"
        ),
        200,
    ),
    "link statuses": (lambda c, w: c.get(f"/api/admin/cohorts/{w.cohort.id}/join-links"), 200),
    "export links": (
        lambda c, w: c.post(f"/api/admin/cohorts/{w.cohort.id}/join-links/export"),
        200,
    ),
    "schedule session": (
        lambda c, w: c.post(
            f"/api/admin/cohorts/{w.cohort.id}/sessions",
            json={
                "scheduled_start": "2026-12-01T09:00:00+01:00",
                "scheduled_end": "2026-12-01T17:00:00+01:00",
            },
        ),
        201,
    ),
    "list sessions": (lambda c, w: c.get(f"/api/admin/cohorts/{w.cohort.id}/sessions"), 200),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("route", sorted(ADMIN_ROUTES))
async def test_admin_route_permissions(client: Client, world: World, role: str, route: str) -> None:
    call, ok_status = ADMIN_ROUTES[route]
    await sign_in_as(client, world, role)
    r = await call(client, world)
    expected = {"anonymous": 401, "admin": ok_status}.get(role, 403)
    assert r.status_code == expected, r.text
    if expected >= 400:
        assert "detail" in r.json()


async def test_my_cohorts_by_role(client: Client, world: World) -> None:
    await sign_in_as(client, world, "trainer")
    assert [c["id"] for c in (await client.get("/api/cohorts")).json()] == [world.cohort.id]
    await client.login(world.operator.email)
    assert len((await client.get("/api/cohorts")).json()) == 2


class TestBadInput:
    @pytest.fixture(autouse=True)
    async def _admin(self, client: Client, world: World) -> None:
        await client.login(world.admin.email)

    async def test_malformed_json(self, client: Client) -> None:
        r = await client.post(
            "/api/admin/cohorts", content=b"{nope", headers={"content-type": "application/json"}
        )
        assert r.status_code == 400
        assert r.json()["detail"]

    async def test_unknown_field_is_named(self, client: Client) -> None:
        r = await client.post("/api/admin/cohorts", json=_cohort_body(colour="red"))
        assert r.status_code == 400
        assert "colour" in r.text

    async def test_wrong_type_is_named(self, client: Client) -> None:
        r = await client.post("/api/admin/cohorts", json=_cohort_body(first_day=12))
        assert r.status_code == 400
        assert "first_day" in r.text

    async def test_last_day_before_first(self, client: Client) -> None:
        before = await client.get("/api/admin/cohorts")
        r = await client.post(
            "/api/admin/cohorts", json=_cohort_body(first_day="2027-01-10", last_day="2027-01-01")
        )
        assert r.status_code == 400
        assert r.json()["extra"][0]["key"] == "last_day"
        assert (await client.get("/api/admin/cohorts")).json() == before.json()

    async def test_patch_making_last_day_before_first(self, client: Client, world: World) -> None:
        r = await client.patch(
            f"/api/admin/cohorts/{world.cohort.id}", json={"last_day": "2000-01-01"}
        )
        assert r.status_code == 400
        assert "last_day" in r.text
        r = await client.get(f"/api/admin/cohorts/{world.cohort.id}")
        assert r.json()["last_day"] == world.cohort.last_day.isoformat()

    async def test_unknown_time_zone(self, client: Client) -> None:
        r = await client.post("/api/admin/cohorts", json=_cohort_body(time_zone="Mars/Olympus"))
        assert r.status_code == 400
        assert "time_zone" in r.text

    async def test_duplicate_email(self, client: Client, world: World) -> None:
        body = {"email": "TRAINER@example.org", "display_name": "X", "role": "trainer"}
        r = await client.post("/api/admin/users", json=body)
        assert r.status_code == 409
        assert r.json()["extra"][0]["key"] == "email"
        assert await User.count().where(User.email == "trainer@example.org") == 1

    async def test_invalid_email_and_role(self, client: Client) -> None:
        r = await client.post(
            "/api/admin/users", json={"email": "nope", "display_name": "X", "role": "learner"}
        )
        assert r.status_code == 400
        assert "email" in r.text
        r = await client.post(
            "/api/admin/users", json={"email": "a@b.org", "display_name": "X", "role": "king"}
        )
        assert r.status_code == 400
        assert "role" in r.text

    async def test_short_password(self, client: Client) -> None:
        r = await client.post(
            "/api/admin/users",
            json={"email": "a@b.org", "display_name": "X", "role": "trainer", "password": "short"},
        )
        assert r.status_code == 400
        assert "password" in r.text

    @pytest.mark.parametrize(
        "path",
        [
            "/api/admin/users/9999",
            "/api/admin/cohorts/9999",
            "/api/admin/cohorts/9999/join-links",
            "/api/admin/cohorts/9999/sessions",
        ],
    )
    async def test_unknown_ids(self, client: Client, path: str) -> None:
        r = await client.get(path)
        assert r.status_code == 404
        assert r.json()["detail"]

    async def test_enrol_unknown_user_and_twice(self, client: Client, world: World) -> None:
        r = await client.post(
            f"/api/admin/cohorts/{world.cohort.id}/enrolments", json={"user_id": 9999}
        )
        assert r.status_code == 404
        assert "user_id" in r.text
        r = await client.post(
            f"/api/admin/cohorts/{world.cohort.id}/enrolments", json={"user_id": world.learner.id}
        )
        assert r.status_code == 409
        r = await client.post(
            f"/api/admin/cohorts/{world.cohort.id}/enrolments", json={"user_id": world.admin.id}
        )
        assert r.status_code == 422

    async def test_oversized_body_is_413(self, client: Client) -> None:
        big = b"name,email\n" + b"x" * (1024 * 1024 + 10)
        r = await client.post(
            "/api/admin/cohorts/1/learners/import",
            content=big,
            headers={"content-type": "text/csv"},
        )
        assert r.status_code == 413

    async def test_link_for_a_non_learner(self, client: Client, world: World) -> None:
        r = await client.post(
            f"/api/admin/cohorts/{world.cohort.id}/learners/{world.trainer.id}/join-link"
        )
        assert r.status_code == 404


class TestImport:
    @pytest.fixture(autouse=True)
    async def _admin(self, client: Client, world: World) -> None:
        await client.login(world.admin.email)

    async def _post(self, client: Client, world: World, text: str) -> Any:
        return await client.post(
            f"/api/admin/cohorts/{world.cohort.id}/learners/import",
            content=text.encode(),
            headers={"content-type": "text/csv"},
        )

    async def test_import_creates_and_enrols(self, client: Client, world: World) -> None:
        r = await self._post(
            client,
            world,
            "name,email\nZoé Roux,zoe@example.org\nLearner,LEARNER2@example.org\n"
            "Learner,learner@example.org\n",
        )
        assert r.status_code == 200, r.text
        report = r.json()
        assert report["imported"] is True
        assert [row["status"] for row in report["rows"]] == [
            "created",
            "existing",
            "already_enrolled",
        ]
        assert await Enrolment.count().where(Enrolment.cohort == world.cohort.id) == 4

    async def test_one_bad_row_imports_nothing(self, client: Client, world: World) -> None:
        before = await User.count()
        r = await self._post(
            client,
            world,
            "Ana,ana@example.org\n,nobody@example.org\nBob,not-an-email\n"
            "Ana again,ANA@example.org\n"
            "Trainer,trainer@example.org\nToo,many@example.org,columns\n",
        )
        assert r.status_code == 422
        report = r.json()
        assert report["imported"] is False
        errors = {row["row"]: row["error"] for row in report["rows"] if row["status"] == "error"}
        assert set(errors) == {2, 3, 4, 5, 6}
        assert "name" in errors[2]
        assert "email" in errors[3]
        assert "twice" in errors[4]
        assert "trainer" in errors[5]
        assert "columns" in errors[6]
        assert await User.count() == before
        assert await Enrolment.count().where(Enrolment.cohort == world.cohort.id) == 2

    @pytest.mark.parametrize("newline", ["\r", "\r\n", "\n"], ids=["cr", "crlf", "lf"])
    async def test_every_line_end_is_read(self, client: Client, world: World, newline: str) -> None:
        # CR alone: "CSV (Macintosh)" from old spreadsheets (the csv module refused it: a 500).
        lines = ["nom,email", "Zoé Roux,zoe@example.org", '"Martin, Léa",lea@example.org']
        r = await self._post(client, world, newline.join(lines) + newline)
        assert r.status_code == 200, r.text
        rows = r.json()["rows"]
        assert [(row["row"], row["display_name"]) for row in rows] == [
            (2, "Zoé Roux"),
            (3, "Martin, Léa"),
        ]

    async def test_a_field_over_the_csv_limit_is_a_422(self, client: Client, world: World) -> None:
        before = await User.count()
        r = await self._post(client, world, "Ana,ana@example.org\n" + "A" * 140_000 + ",a@b.org\n")
        assert r.status_code == 422, r.text
        assert r.json()["detail"] == "body: line 2: field larger than field limit (131072)"
        assert await User.count() == before

    async def test_empty_and_non_utf8(self, client: Client, world: World) -> None:
        assert (await self._post(client, world, "name,email\n")).status_code == 422
        r = await client.post(
            f"/api/admin/cohorts/{world.cohort.id}/learners/import",
            content=b"\xff\xfe\x00garbage",
            headers={"content-type": "text/csv"},
        )
        assert r.status_code == 422
        assert "UTF-8" in r.text


async def test_export_links_csv(client: Client, world: World) -> None:
    await client.login(world.admin.email)
    await services.update_user(world.learner.id, UserPatch(display_name="=HYPERLINK(1)"))
    r = await client.post(f"/api/admin/cohorts/{world.cohort.id}/join-links/export")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert [row["email"] for row in rows] == ["learner@example.org"]
    assert rows[0]["name"].startswith("'=")  # no formula injection in spreadsheets
    url = rows[0]["join_url"]
    assert url.startswith("http://testserver.local/join/")
    statuses = (await client.get(f"/api/admin/cohorts/{world.cohort.id}/join-links")).json()
    assert statuses[0]["status"] == "active"
    # The exported link works.
    await client.post("/api/auth/logout")
    await client.join(url.removeprefix("http://testserver.local"))
    assert (await client.get("/api/me")).json()["id"] == world.learner.id


async def test_link_for_some_hours_then_expired_now(client: Client, world: World) -> None:
    await client.login(world.admin.email)
    base = f"/api/admin/cohorts/{world.cohort.id}/learners/{world.learner.id}/join-link"
    for bad in (0, -1, 24 * 366 + 1, "soon"):
        r = await client.post(base, json={"hours": bad})
        assert r.status_code == 400 and "hours" in r.text, (bad, r.text)
    r = await client.post(base, json={"hours": 3})
    assert r.status_code == 201, r.text
    left = dt.datetime.fromisoformat(r.json()["expires_at"]) - dt.datetime.now(dt.UTC)
    assert dt.timedelta(hours=2, minutes=59) < left <= dt.timedelta(hours=3)
    url = r.json()["url"].removeprefix("http://testserver.local")
    # Without a body the configured lifetime in days still applies.
    default = (await client.post(base)).json()
    left = dt.datetime.fromisoformat(default["expires_at"]) - dt.datetime.now(dt.UTC)
    assert left > dt.timedelta(days=179)
    assert (await client.post(f"{base}/expire")).json() == {"expired": 1}
    assert (await client.post(f"{base}/expire")).json() == {"expired": 0}
    statuses = (await client.get(f"/api/admin/cohorts/{world.cohort.id}/join-links")).json()
    assert statuses[0]["status"] == "expired"
    await client.post("/api/auth/logout")
    # The replaced 3-hour link says revoked; the expired one says expired.
    assert "revoked" in (await client.get(url)).text
    other = default["url"].removeprefix("http://testserver.local")
    r = await client.get(other)
    assert r.status_code == 410 and "expired" in r.text, r.text


async def test_cohort_detail_lists_members(client: Client, world: World) -> None:
    await client.login(world.admin.email)
    r = await client.get(f"/api/admin/cohorts/{world.cohort.id}")
    body = r.json()
    assert [m["id"] for m in body["trainers"]] == [world.trainer.id]
    assert [m["id"] for m in body["learners"]] == [world.learner.id]


async def test_archived_cohort_hidden_from_learners(client: Client, world: World) -> None:
    await sign_in_as(client, world, "learner")
    assert len((await client.get("/api/cohorts")).json()) == 1
    await services.archive_cohort(world.cohort.id)
    assert (await client.get("/api/cohorts")).json() == []
