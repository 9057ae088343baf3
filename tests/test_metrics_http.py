"""/metrics access, HTTP request metrics and the operator API, through the real app."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar, WebSocket, get, websocket
from litestar.datastructures import State
from litestar.params import FromPath
from litestar.testing import AsyncTestClient
from prometheus_client import CollectorRegistry

from appliance.app import create_app
from appliance.metrics import Metrics, MetricsAccess, prometheus_config
from appliance.settings import load_settings
from tests.helpers.server import serve
from tests.helpers.world import ROLES, Client, World, make_settings, sign_in_as
from tests.metrics_fakes import a_class

TOKEN = "s3cret-token-for-prometheus"


def _get(url: str, **headers: str) -> httpx.Response:
    return httpx.get(url, headers=headers, timeout=5)


def test_metrics_served_to_loopback_by_default(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path))
    with serve(app) as base:
        r = _get(f"{base}/metrics")
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("text/plain")
        assert "estrade_capacity_learners" in r.text
        assert "process_cpu_seconds_total" in r.text  # the default process collector
        assert "python_info" in r.text  # and the platform collector


def test_metrics_refused_to_an_address_outside_the_list(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, metrics_allow_cidrs="10.0.0.0/8, 192.168.1.0/24"))
    with serve(app) as base:
        r = _get(f"{base}/metrics")
        assert r.status_code == 403
        assert r.json()["detail"] == "metrics are not served to this address"
        assert "estrade_" not in r.text
        # Even with a valid-looking token: the address list still applies.
        assert _get(f"{base}/metrics", authorization=f"Bearer {TOKEN}").status_code == 403


def test_metrics_token_is_required_when_set(tmp_path: Path) -> None:
    app = create_app(
        make_settings(tmp_path, metrics_allow_cidrs="0.0.0.0/0,::/0", metrics_token=TOKEN)
    )
    with serve(app) as base:
        r = _get(f"{base}/metrics")
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        assert (
            _get(f"{base}/metrics", authorization="Bearer wrong-token-xxxxxxxx").status_code == 401
        )
        assert _get(f"{base}/metrics", authorization=f"Basic {TOKEN}").status_code == 401
        r = _get(f"{base}/metrics", authorization=f"Bearer {TOKEN}")
        assert r.status_code == 200
        assert "estrade_rooms_open" in r.text


async def test_metrics_refused_to_a_non_ip_client(tmp_path: Path) -> None:
    # Litestar's test client connects as "testclient": not an address, so never allowed.
    app = create_app(make_settings(tmp_path, metrics_allow_cidrs="0.0.0.0/0,::/0"))
    async with AsyncTestClient(app=app) as c:
        assert (await c.get("/metrics")).status_code == 403


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", False),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.1.2.3", True),
        ("10.1.2.3.4", False),
        ("fe80::1%eth0", False),
        ("2001:db8::5", True),
        ("", False),
        (None, False),
    ],
)
def test_address_list(host: str | None, allowed: bool) -> None:
    access = MetricsAccess(
        tuple(
            ipaddress.ip_network(n)
            for n in ("127.0.0.1/32", "::1/128", "10.0.0.0/8", "2001:db8::/32")
        )
    )
    assert access.address_allowed(host) is allowed


async def test_http_requests_are_counted_by_route_template_and_status(client: Client) -> None:
    registry: CollectorRegistry = client.app.state.metrics.registry
    assert (await client.get("/health")).status_code == 200
    assert (await client.get("/api/admin/cohorts/41")).status_code == 401
    assert (await client.get("/api/admin/cohorts/42")).status_code == 401

    def count(path: str, status: str) -> float | None:
        labels = {"method": "GET", "path": path, "status_code": status, "app_name": "estrade"}
        return registry.get_sample_value("estrade_http_requests_total", labels)

    assert count("/health", "200") == 1
    assert count("/api/admin/cohorts/{cohort_id}", "401") == 2  # refused by auth, still counted
    assert count("/api/admin/cohorts/41", "401") is None  # never the raw path
    labels = {"method": "GET", "path": "/health", "status_code": "200", "app_name": "estrade"}
    assert registry.get_sample_value("estrade_http_request_duration_seconds_count", labels) == 1


async def test_websocket_routes_are_not_timed() -> None:
    @get("/plain")
    async def plain() -> str:
        return "ok"

    @websocket("/ws/classroom/{cohort_id:int}")
    async def classroom(socket: WebSocket[Any, Any, Any], cohort_id: FromPath[int]) -> None:
        metrics: Metrics = socket.app.state.metrics
        with metrics.websocket_open():
            await socket.accept()
            await socket.send_text(await socket.receive_text())
            await socket.close()

    metrics = Metrics.for_app(load_settings(env={}), CollectorRegistry())
    app = Litestar(
        [plain, classroom],
        middleware=[prometheus_config(metrics).middleware],
        state=State({"metrics": metrics}),
    )
    async with AsyncTestClient(app=app) as c:
        assert (await c.get("/plain")).status_code == 200
        with await c.websocket_connect("/ws/classroom/3") as ws:
            assert metrics.registry.get_sample_value("estrade_websocket_connections") == 1
            ws.send_text("hi")
            assert ws.receive_text() == "hi"
    text = "\n".join(
        f"{s.name} {s.labels}" for fam in metrics.registry.collect() for s in fam.samples
    )
    assert "/plain" in text
    assert "/ws/" not in text
    assert metrics.registry.get_sample_value("estrade_websocket_connections") == 0


@pytest.mark.parametrize("role", ROLES)
async def test_operator_overview_by_role(client: Client, world: World, role: str) -> None:
    client.app.state.metrics.attach(
        *(), **dict(zip(("live", "media", "documents"), a_class(world.cohort.id), strict=True))
    )
    await sign_in_as(client, world, role)
    r = await client.get("/api/operator/overview")
    expected = {"anonymous": 401, "learner": 403, "trainer": 403, "operator": 200, "admin": 200}
    assert r.status_code == expected[role], r.text
    if r.status_code != 200:
        assert "rooms" not in r.text
        return
    body = r.json()
    room = next(x for x in body["rooms"] if x["cohort_id"] == world.cohort.id)
    assert room["started"] is True
    assert room["learners"] == 12
    assert room["send_bitrate_bps"] == 13_200_000
    assert room["loss_max"] == 0.2
    assert {"role": "learner", "state": "low_bandwidth", "count": 2} in room["participants"]
    assert body["capacity"]["learners"] >= 0
    assert body["capacity"]["cpu_cores"] >= 1
    assert body["documents"] == {"count": 4, "bytes": 3_000_000}
    assert body["sources"] == {"live": True, "media": True, "documents": True}


async def test_operator_overview_with_no_room_open(client: Client, world: World) -> None:
    """The app's own sources are attached; with nobody connected there is no room."""
    await sign_in_as(client, world, "operator")
    r = await client.get("/api/operator/overview")
    assert r.status_code == 200
    body = r.json()
    assert body["rooms"] == []
    assert body["sources"]["live"] is True


async def test_lifespan_runs_the_loop_monitor(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path))
    metrics: Metrics = app.state.metrics
    assert not metrics.loop_monitor.running
    async with AsyncTestClient(app=app):
        assert metrics.loop_monitor.running
    assert not metrics.loop_monitor.running
