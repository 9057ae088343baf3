"""Debian's firefox-esr, headless, driven through WebDriver BiDi by tools/browser/firefox.mjs.

Playwright's Firefox is a patched build (Juggler) that cannot drive a stock Firefox, so the
learner's Firefox is driven by puppeteer-core (npm, pinned in tools/browser/package-lock.json,
installed by the Makefile without any browser download) from a small Node script that takes
one JSON command a line. Nothing is skipped: a missing firefox-esr, node or puppeteer-core
fails the test and says what to install.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
from pathlib import Path
from typing import IO, Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "browser"
FIREFOX = "/usr/bin/firefox-esr"

#: Preferences of the learner's Firefox profile, each for a reason of the test machine.
FIREFOX_PREFS: dict[str, Any] = {
    # The test server's relay binds 127.0.0.1 only (tests never send elsewhere), and Firefox
    # gathers no ICE candidate on a loopback interface unless told to (a real learner never
    # needs one: it would only reach its own machine). Without this pref Firefox has no
    # candidate that can reach the relay and ICE fails.
    "media.peerconnection.ice.loopback": True,
    # A page that was granted no camera or microphone (every learner) gathers on the
    # default-route interface only, and hides it behind an mDNS ``.local`` name. Here that
    # interface is the machine's network card, which cannot reach the loopback-only relay:
    # the learner's ICE fails with every pair failed (checked with MOZ_LOG=mtransport:5).
    # Allowing camera and microphone by default (the learner page never asks for them) lifts
    # the default-route restriction, so Firefox gathers on loopback; Firefox then also shows
    # its plain addresses. That also keeps the test off the machine's network: a browser that
    # hides its addresses announces its mDNS names by multicast (chromium did: 2 packets to
    # 224.0.0.251:5353 per learner, counted with an nftables rule; this Firefox sends none).
    # The mDNS path real learners take is proven with aiortc peers whose candidates are all
    # ``.local`` (tests/test_live_hidden_hosts.py).
    "permissions.default.camera": 1,
    "permissions.default.microphone": 1,
    # The page's language, whatever the machine's locale: the test reads English labels.
    "intl.accept_languages": "en-US",
    "intl.locale.requested": "en-US",
}


def missing() -> str | None:
    """What is missing to run the Firefox learner, as the command that installs it."""
    if not Path(FIREFOX).exists():
        return f"{FIREFOX} is missing: run `make system-deps` (Debian package firefox-esr)"
    if shutil.which("node") is None:
        return "node is missing: run `make system-deps` (Debian packages nodejs and npm)"
    if not (TOOLS / "node_modules" / "puppeteer-core" / "package.json").exists():
        return "puppeteer-core is missing: run `make browser-tools` (npm ci in tools/browser)"
    return None


class FirefoxError(AssertionError):
    """A command the Firefox learner could not carry out (the driver's message attached)."""


class Firefox:
    """One headless firefox-esr with one page; every method waits for the driver's reply."""

    def __init__(self, log: Path, prefs: dict[str, Any] | None = None) -> None:
        problem = missing()
        if problem:
            pytest.fail(problem)
        self._log: IO[str] = log.open("w")
        self._process = subprocess.Popen(
            [
                str(shutil.which("node")),
                str(TOOLS / "firefox.mjs"),
                FIREFOX,
                json.dumps({**FIREFOX_PREFS, **(prefs or {})}),
            ],
            cwd=TOOLS,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            # Its own process group: a stuck driver is killed with the Firefox it started.
            start_new_session=True,
        )
        self._replies: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.log_path = log
        try:
            self.version = self._reply(60)  # Firefox launched: the driver says its version
        except BaseException:
            self.close()
            raise

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            self._replies.put(line)
        self._replies.put(None)

    def _reply(self, timeout: float) -> Any:
        try:
            line = self._replies.get(timeout=timeout)
        except queue.Empty:
            raise FirefoxError(f"firefox driver silent for {timeout} s") from None
        if line is None:
            raise FirefoxError("firefox driver exited:\n" + self.log_path.read_text()[-3000:])
        reply = json.loads(line)
        if not reply["ok"]:
            raise FirefoxError(reply["error"])
        return reply["value"]

    def do(self, command: str, within: float = 30, **args: Any) -> Any:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps({"do": command, **args}) + "\n")
        self._process.stdin.flush()
        return self._reply(within)

    def goto(self, url: str) -> None:
        self.do("goto", url=url)

    def click(self, selector: str) -> None:
        self.do("click", selector=selector)

    def check(self, selector: str, nth: int = 0) -> None:
        """Click the ``nth`` element ``selector`` matches (from 0), unless already checked."""
        self.do("check", selector=selector, nth=nth)

    def fill(self, selector: str, text: str) -> None:
        self.do("fill", selector=selector, text=text)

    def eval(self, js: str) -> Any:
        """The JSON value of ``js``, a function expression evaluated (and awaited) in the page."""
        return self.do("eval", js=js)

    def wait(self, js: str, timeout_s: float = 15) -> None:
        """Until the function expression ``js`` returns a truthy value in the page."""
        self.do("wait", within=timeout_s + 10, js=js, timeout=int(timeout_s * 1000))

    def screenshot(self, path: Path) -> None:
        self.do("screenshot", path=str(path))

    def errors(self) -> list[str]:
        return list(self.do("errors"))

    def close(self) -> None:
        try:
            if self._process.poll() is None:
                self.do("close")
        finally:
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
            for pipe in (self._process.stdin, self._process.stdout):
                if pipe is not None:
                    pipe.close()
            self._reader.join(timeout=5)
            self._log.close()
