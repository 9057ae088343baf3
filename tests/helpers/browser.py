"""Real-browser test helpers: ``estrade serve`` for a browser (:class:`BrowserServer`), the
admin API over HTTP to set up a world, sign-in, screenshots, axe-core. The fixtures that use them
(one server and one chromium per module, a page factory) are in tests/browser/conftest.py."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers.server import ServedProcess, run_estrade
from tests.helpers.world import PASSWORD

__all__ = [
    "ADMIN_EMAIL",
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "PASSWORD",
    "Api",
    "BrowserServer",
    "axe_violations",
    "screenshot_dir",
    "serve_estrade",
    "shoot",
    "sign_in",
]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-background-networking",
    "--disable-component-update",
    # WebRTC on 127.0.0.1 (the relay binds the loopback address the server serves on):
    # gather loopback candidates, and plain addresses rather than mDNS names aioice cannot use.
    "--allow-loopback-in-peer-connection",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]
ADMIN_EMAIL = "admin@example.org"
ROOT = Path(__file__).resolve().parents[2]
AXE = ROOT / "tests" / "browser" / "vendor" / "axe-core" / "axe.min.js"


def screenshot_dir() -> Path:
    """``$ESTRADE_ARTIFACTS/screenshots`` (the Makefile names it), else ``./artifacts/...``."""
    base = Path(os.environ.get("ESTRADE_ARTIFACTS") or ROOT / "artifacts")
    path = base / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


class Api:
    """The admin JSON API over real HTTP, with the CSRF header, for setting up a test's world."""

    def __init__(self, base_url: str, verify: Any = True) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=20, verify=verify)
        self.http.get("/api/auth/csrf").raise_for_status()
        self.http.headers["x-csrftoken"] = self.http.cookies["csrftoken"]

    def login(self, email: str, password: str = PASSWORD) -> Api:
        r = self.http.post("/api/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        self.http.headers["x-csrftoken"] = self.http.cookies["csrftoken"]
        return self

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        r = self.http.request(method, path, **kwargs)
        assert r.status_code < 400, f"{method} {path}: {r.status_code} {r.text}"
        return r.json() if r.headers.get("content-type", "").startswith("application/json") else r

    def user(self, email: str, name: str, role: str, password: str | None = PASSWORD) -> Any:
        body = {"email": email, "display_name": name, "role": role}
        if password:
            body["password"] = password
        return self.call("POST", "/api/admin/users", json=body)

    def cohort(self, name: str) -> Any:
        body = {"name": name, "first_day": "2026-11-02", "last_day": "2027-01-29"}
        return self.call("POST", "/api/admin/cohorts", json=body)

    def enrol(self, cohort_id: int, user_id: int) -> None:
        self.call("POST", f"/api/admin/cohorts/{cohort_id}/enrolments", json={"user_id": user_id})

    def link(self, cohort_id: int, user_id: int) -> str:
        path = f"/api/admin/cohorts/{cohort_id}/learners/{user_id}/join-link"
        return str(self.call("POST", path)["url"])

    def close(self) -> None:
        self.http.close()


class BrowserServer(ServedProcess):
    """``estrade serve`` with a fresh SQLite data folder and an admin (``ADMIN_EMAIL``), for
    browsers; :meth:`api` signs in over HTTP (closed with the server)."""

    def __init__(self, data_dir: Path, settings: Mapping[str, str] | None = None) -> None:
        super().__init__(data_dir, {"ESTRADE_ADMIN_PASSWORD": PASSWORD})
        # The relay's UDP sockets on loopback, where the browsers are: a range of 50 from a
        # start drawn from the (free) HTTP port, so parallel runs rarely collide.
        port_min = 40000 + (self.port % 200) * 50
        self.env["ESTRADE_MEDIA_PORT_MIN"] = str(port_min)
        self.env["ESTRADE_MEDIA_PORT_MAX"] = str(port_min + 49)
        self.env.update(settings or {})
        self.apis: list[Api] = []

    @property
    def url(self) -> str:
        return self.base

    def start(self) -> BrowserServer:
        r = run_estrade(
            ["create-admin", ADMIN_EMAIL, "--name", "Admin", "--password-from-env"],
            self.env,
            timeout=120,
        )
        assert r.returncode == 0, r.stdout + r.stderr
        return super().start()

    def stop(self, timeout: float = 15) -> int | None:
        for api in self.apis:
            api.close()
        self.apis.clear()
        return super().stop(timeout)

    def api(self, email: str = ADMIN_EMAIL) -> Api:
        api = Api(self.url).login(email)
        self.apis.append(api)
        return api


def serve_estrade(
    tmp_path_factory: pytest.TempPathFactory, settings: dict[str, str] | None = None
) -> Iterator[BrowserServer]:
    """A module's server (``settings``: extra ``ESTRADE_*`` variables) until the module ends;
    a module that needs other settings overrides the ``live_server`` fixture with it."""
    with BrowserServer(tmp_path_factory.mktemp("live") / "data", settings) as server:
        yield server


def sign_in(page: Any, email: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.locator("#email").fill(email)
    page.locator("#password").fill(password)
    page.locator("#login-form button[type=submit]").click()
    try:
        page.wait_for_url(lambda url: "/login" not in url)
    except Exception:
        pytest.fail(f"sign-in as {email} failed: {page.locator('#login-error').inner_text()!r}")
    # The page's module handles its forms only once booted: a test typing before that (the
    # body is only transparent, so Playwright sees it) would submit the form natively.
    page.wait_for_selector("html.ready", state="attached")


def axe_violations(page: Any, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
    """Run the vendored axe-core on the page; the serious and critical violations, described."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # Evaluated through the DevTools protocol, so the page's CSP does not block it.
        page.evaluate(AXE.read_text(encoding="utf-8") + "\n;0")
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    found = []
    for v in result["violations"]:
        if v["impact"] in impacts:
            targets = [n["target"] for n in v["nodes"]][:5]
            found.append(f"{v['id']} ({v['impact']}): {v['help']} at {targets}")
    return found


def shoot(page: Any, name: str) -> Path:
    path = screenshot_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
