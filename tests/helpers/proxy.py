"""nginx alone (no coturn) from the roles' site and stream templates, in front of several app
hosts (``nginx_app_hosts``), with the sign-in and socket helpers of tests/helpers/classroom.py
spoken through it (HTTPS and WSS on 127.0.0.1, the test CA)."""

from __future__ import annotations

import ssl
from typing import Any

import httpx
import websockets

from tests.helpers.classroom import Peer
from tests.helpers.world import PASSWORD
from tests.turn_stack import TurnStack

__all__ = ["Proxy"]


class Proxy(TurnStack):
    """nginx alone (no coturn) from the roles' templates, in front of several app hosts."""

    def start_hosts(self, hosts: list[str]) -> Proxy:
        self.variables["nginx_app_hosts"] = hosts
        try:
            self._start_nginx(hosts[0])
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.https_port}"

    def tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca))
        context.check_hostname = False  # 127.0.0.1; the stream's default name is the site
        return context

    async def cookie(self, email: str | None = None, link: str | None = None) -> str:
        async with httpx.AsyncClient(base_url=self.url, verify=self.tls(), timeout=30) as c:
            await c.get("/api/auth/csrf")
            c.headers["x-csrftoken"] = c.cookies["csrftoken"]
            if link is not None:
                r = await c.post(link, json={})
            else:
                r = await c.post("/api/auth/login", json={"email": email, "password": PASSWORD})
            assert r.status_code == 200, r.text
            return "; ".join(f"{k}={v}" for k, v in c.cookies.items())

    async def connect(self, cookie: str, cohort_id: int, **params: Any) -> Peer:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        url = f"wss://127.0.0.1:{self.https_port}/ws/cohorts/{cohort_id}"
        ws = await websockets.connect(
            url + (f"?{query}" if query else ""),
            ssl=self.tls(),
            additional_headers={"Cookie": cookie},
            max_size=None,
        )
        peer = Peer(ws)
        peer.welcome = await peer.expect("welcome", timeout=15)
        return peer
