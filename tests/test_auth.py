import pytest

from appliance.accounts import services
from appliance.auth.ratelimit import SlidingWindow
from tests.helpers.world import PASSWORD, Client, World


async def test_staff_sign_in_sets_a_secure_session_cookie(client: Client, world: World) -> None:
    r = await client.post(
        "/api/auth/login", json={"email": "Trainer@Example.org", "password": PASSWORD}
    )
    assert r.status_code == 200
    assert r.json()["role"] == "trainer"
    cookie = r.headers["set-cookie"]
    assert "estrade_session=" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    me = await client.get("/api/me")
    assert me.json()["email"] == "trainer@example.org"


async def test_session_id_changes_at_sign_in(client: Client, world: World) -> None:
    await client.login(world.trainer.email)
    first = client.cookies["estrade_session"]
    await client.login(world.admin.email)
    assert client.cookies["estrade_session"] != first


async def test_cookie_is_secure_behind_https(tmp_path, database_url: str) -> None:
    from appliance.app import create_app
    from tests.helpers.world import make_settings

    app = create_app(
        make_settings(tmp_path, database_url=database_url, public_url="https://classe.example.org")
    )
    async with Client(app=app, base_url="https://classe.example.org") as c:
        r = await c.get("/api/auth/csrf")
        assert "Secure" in r.headers["set-cookie"]


async def test_wrong_password_is_401_and_anonymous_is_401(client: Client, world: World) -> None:
    r = await client.post("/api/auth/login", json={"email": world.admin.email, "password": "nope"})
    assert r.status_code == 401
    assert (await client.get("/api/me")).status_code == 401


async def test_post_without_csrf_token_is_refused(client: Client, world: World) -> None:
    del client.headers["x-csrftoken"]
    r = await client.post(
        "/api/auth/login", json={"email": world.admin.email, "password": PASSWORD}
    )
    assert r.status_code == 403
    assert "CSRF" in r.json()["detail"]


async def test_sign_in_is_rate_limited_per_account(client: Client, world: World) -> None:
    for _ in range(5):
        r = await client.post(
            "/api/auth/login", json={"email": world.trainer.email, "password": "bad"}
        )
        assert r.status_code == 401
    r = await client.post(
        "/api/auth/login", json={"email": world.trainer.email, "password": PASSWORD}
    )
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) > 0
    # Another account from the same address is not locked out by this one.
    r = await client.post(
        "/api/auth/login", json={"email": world.admin.email, "password": PASSWORD}
    )
    assert r.status_code == 200


def test_sliding_window_per_address() -> None:
    now = [0.0]
    w = SlidingWindow(limit=3, window_s=10, clock=lambda: now[0])
    for _ in range(3):
        assert w.retry_after("1.2.3.4") == 0
        w.hit("1.2.3.4")
    assert w.retry_after("1.2.3.4") > 0
    assert w.retry_after("5.6.7.8") == 0
    now[0] = 10.5
    assert w.retry_after("1.2.3.4") == 0


async def test_logout_ends_the_session(client: Client, world: World) -> None:
    await client.login(world.admin.email)
    assert (await client.post("/api/auth/logout")).status_code == 200
    assert (await client.get("/api/me")).status_code == 401


async def test_archived_account_loses_its_session(client: Client, world: World) -> None:
    await client.login(world.trainer.email)
    from appliance.accounts import schemas as s

    await services.update_user(world.trainer.id, s.UserPatch(active=False))
    assert (await client.get("/api/me")).status_code == 401


class TestJoinLinks:
    async def _link(self, world: World) -> str:
        link = await services.issue_link(
            world.cohort.id, world.learner.id, base_url="", ttl_days=30
        )
        return link.url

    async def test_join_link_opens_a_session_and_lands_in_the_classroom(
        self, client: Client, world: World
    ) -> None:
        path = await self._link(world)
        r = await client.post(path, json={})
        assert r.status_code == 200
        assert r.json() == {"status": "joined", "next": f"/classroom/{world.cohort.id}"}
        me = (await client.get("/api/me")).json()
        assert me["id"] == world.learner.id
        cohorts = (await client.get("/api/cohorts")).json()
        assert [c["id"] for c in cohorts] == [world.cohort.id]

    async def test_only_the_hash_is_stored(self, client: Client, world: World) -> None:
        from appliance.accounts.tables import JoinLink

        path = await self._link(world)
        secret = path.rsplit("/", 1)[1]
        rows = await JoinLink.select(JoinLink.secret_hash)
        assert all(secret not in r["secret_hash"] for r in rows)
        assert rows[0]["secret_hash"] == services.hash_secret(secret)

    async def test_revoked_link_is_refused_and_ends_its_sessions(
        self, client: Client, world: World
    ) -> None:
        path = await self._link(world)
        await client.join(path)
        await services.revoke_links(world.cohort.id, world.learner.id)
        assert (await client.get("/api/me")).status_code == 401
        r = await client.get(path)
        assert r.status_code == 410
        assert r.json()["detail"] == "revoked"

    async def test_reissue_revokes_the_previous_link(self, client: Client, world: World) -> None:
        old = await self._link(world)
        new = await self._link(world)
        assert (await client.get(old)).status_code == 410
        assert (await client.post(old, json={})).status_code == 410
        assert (await client.get(new)).status_code == 200
        assert (await client.post(new, json={})).status_code == 200

    async def test_expired_and_unknown_links(self, client: Client, world: World) -> None:
        link = await services.issue_link(world.cohort.id, world.learner.id, base_url="", ttl_days=1)
        from appliance.accounts.tables import JoinLink

        await JoinLink.update({JoinLink.expires_at: services.utcnow()}).where(
            JoinLink.user == world.learner.id
        )
        r = await client.get(link.url)
        assert r.status_code == 410
        assert r.json()["detail"] == "expired"
        r = await client.get("/join/not-a-real-secret")
        assert r.status_code == 404

    async def test_browser_gets_a_page_for_a_bad_link(self, client: Client, world: World) -> None:
        r = await client.get("/join/nope", headers={"accept": "text/html"})
        assert r.status_code == 303
        assert r.headers["location"] == "/link-problem?reason=unknown"

    async def test_link_with_password(self, client: Client, world: World) -> None:
        from appliance.accounts import schemas as s

        await services.update_user(world.learner.id, s.UserPatch(password="learner-secret-1"))
        path = await self._link(world)
        r = await client.get(path)
        assert r.status_code == 401
        assert r.json()["detail"] == "password_required"
        r = await client.post(path, json={})
        assert r.status_code == 401
        assert r.json()["detail"] == "password_required"
        r = await client.post(path, json={"password": "wrong-password"})
        assert r.status_code == 401
        r = await client.post(path, json={"password": "learner-secret-1"})
        assert r.status_code == 200
        assert (await client.get("/api/me")).json()["id"] == world.learner.id


@pytest.mark.parametrize("body", ["{", '{"email": 1, "password": "x"}', '{"email": "a"}'])
async def test_malformed_login_is_400(client: Client, world: World, body: str) -> None:
    r = await client.post(
        "/api/auth/login", content=body, headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
