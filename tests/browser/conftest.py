"""Real-browser tests: a real estrade server in a subprocess, Debian's chromium via Playwright.

One server and one browser per test module (fast enough on two cores); a fresh browser context
(cookies, storage) per test. Nothing is downloaded: chromium comes from Debian (`make
system-deps`), never from `playwright install`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.servers import free_port

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
PASSWORD = "correct horse battery"
ROOT = Path(__file__).resolve().parents[2]
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"


def screenshot_dir() -> Path:
    """``$ESTRADE_ARTIFACTS/screenshots`` (the Makefile names it), else ``./artifacts/...``."""
    base = Path(os.environ.get("ESTRADE_ARTIFACTS") or ROOT / "artifacts")
    path = base / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


class Api:
    """The admin JSON API over real HTTP, with the CSRF header, for setting up a test's world."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=20)
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


@dataclass
class LiveServer:
    url: str
    data_dir: Path
    process: subprocess.Popen[str]
    apis: list[Api] = field(default_factory=list)

    def api(self, email: str = ADMIN_EMAIL) -> Api:
        api = Api(self.url).login(email)
        self.apis.append(api)
        return api


def _run(args: list[str], env: dict[str, str]) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "appliance", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """``estrade serve`` on 127.0.0.1 with a fresh SQLite data folder and an admin."""
    yield from serve_estrade(tmp_path_factory)


def serve_estrade(
    tmp_path_factory: pytest.TempPathFactory, settings: dict[str, str] | None = None
) -> Iterator[LiveServer]:
    """Run ``estrade serve`` (``settings``: extra ``ESTRADE_*`` variables) until closed; a module
    that needs other settings overrides ``live_server`` with it."""
    data_dir = tmp_path_factory.mktemp("live") / "data"
    port = free_port()
    # A media port range of 50 from a per-run start, so parallel runs rarely collide.
    port_min = 40000 + (port % 200) * 50
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESTRADE_")}
    env.update(
        {
            "ESTRADE_DATA_DIR": str(data_dir),
            "ESTRADE_HOST": "127.0.0.1",
            "ESTRADE_PORT": str(port),
            "ESTRADE_LOG_LEVEL": "warning",
            "ESTRADE_ADMIN_PASSWORD": PASSWORD,
            # The relay's UDP sockets on loopback, where the browsers are.
            "ESTRADE_MEDIA_INTERFACE": "127.0.0.1",
            "ESTRADE_MEDIA_PORT_MIN": str(port_min),
            "ESTRADE_MEDIA_PORT_MAX": str(port_min + 49),
            **(settings or {}),
        }
    )
    _run(["create-admin", ADMIN_EMAIL, "--name", "Admin", "--password-from-env"], env)
    log = (data_dir.parent / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance", "serve"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(
                "estrade serve did not start:\n" + (data_dir.parent / "server.log").read_text()
            )
        time.sleep(0.2)
    server = LiveServer(url=url, data_dir=data_dir, process=process)
    yield server
    for api in server.apis:
        api.close()
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless. Missing chromium fails the test run (no silent skip)."""
    if not Path(CHROMIUM).exists() or shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: run `make system-deps` (Debian package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail('playwright is missing: pip install -e ".[browser]" (make test does it)')
    from playwright.sync_api import expect

    # The machine is shared: give a busy moment room before an expectation fails.
    expect.set_options(timeout=10_000)
    pw = sync_playwright().start()
    b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    yield b
    b.close()
    pw.stop()


class PageErrors(list[str]):
    """Uncaught script errors of a page: a test fails if any happened."""


@pytest.fixture
def new_page(browser: Any, live_server: LiveServer) -> Iterator[Any]:
    """A factory of pages, each in its own context (own cookies and storage).

    Any uncaught JavaScript error on any page fails the test at teardown.
    """
    contexts: list[Any] = []
    errors = PageErrors()

    def make(locale: str = "en-US", width: int = 1440, height: int = 900, **kwargs: Any) -> Any:
        context = browser.new_context(
            base_url=live_server.url,
            locale=locale,
            viewport={"width": width, "height": height},
            accept_downloads=True,
            **kwargs,
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(f"{page.url}: {exc}"))
        return page

    yield make
    for context in contexts:
        context.close()
    assert not errors, errors


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
