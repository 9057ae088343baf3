"""Real-browser tests: a real estrade server in a subprocess, Debian's chromium via Playwright
(fixtures; the helpers tests import are in tests/helpers/browser.py).

One server and one browser per test module (fast enough on two cores); a fresh browser context
(cookies, storage) per test. Nothing is downloaded: chromium comes from Debian (`make
system-deps`), never from `playwright install`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.browser import CHROMIUM, CHROMIUM_ARGS, BrowserServer, serve_estrade


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrowserServer]:
    """``estrade serve`` on 127.0.0.1 with a fresh SQLite data folder and an admin."""
    yield from serve_estrade(tmp_path_factory)


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
def new_page(browser: Any, live_server: BrowserServer) -> Iterator[Any]:
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
            # Several hosts behind nginx (tests/helpers/hosts.py): HTTPS with the test CA.
            ignore_https_errors=getattr(live_server, "ignore_https_errors", False),
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
