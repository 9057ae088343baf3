import pytest
from litestar.testing import AsyncTestClient

from appliance.app import create_app
from tests.helpers.world import Client


async def test_health_answers_ok(client: Client) -> None:
    r = await client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok"}


async def test_ready_when_migrated(client: Client) -> None:
    r = await client.get("/ready")
    assert r.status_code == 200, r.text


async def test_ready_is_503_on_a_database_without_migrations(tmp_path) -> None:
    from tests.helpers.world import make_settings

    app = create_app(make_settings(tmp_path, database_url=f"sqlite://{tmp_path}/empty.sqlite3"))
    async with AsyncTestClient(app=app) as c:
        r = await c.get("/ready")
        assert r.status_code == 503
        assert r.json()["reason"] == "migrations pending"
        assert (await c.get("/health")).status_code == 200


async def test_ready_is_503_when_the_database_does_not_answer(tmp_path) -> None:
    from tests.helpers.world import make_settings

    app = create_app(
        make_settings(tmp_path, database_url=f"sqlite://{tmp_path}/missing-dir/x/db.sqlite3")
    )
    async with AsyncTestClient(app=app) as c:
        r = await c.get("/ready")
        assert r.status_code == 503
        assert r.json()["reason"] == "database does not answer"


async def test_openapi_lists_the_admin_api(client: Client) -> None:
    r = await client.get("/schema/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    assert "/api/admin/cohorts" in paths
    assert "/api/admin/users" in paths
    assert "/api/admin/cohorts/{cohort_id}/learners/import" in paths


async def test_unknown_route_is_json_404(client: Client) -> None:
    r = await client.get("/api/nope")
    assert r.status_code in (401, 404)
    assert "detail" in r.json()


async def test_the_app_shares_one_typed_state(client: Client) -> None:
    """Every object on app.state is declared on AppState (so app_state() gives it a type) and
    the request's app_state() is that very object."""
    from litestar import Litestar
    from litestar.testing import RequestFactory

    from appliance.state import AppState, app_state

    state = client.app.state
    assert isinstance(state, AppState)
    assert set(state.keys()) == set(AppState.__annotations__)
    request = RequestFactory(app=client.app).get("/")
    assert app_state(request) is state
    assert app_state(request).metrics is state.metrics
    with pytest.raises(TypeError, match="AppState"):
        app_state(RequestFactory(app=Litestar()).get("/"))
