"""Classroom-socket tests against a real server: :class:`LiveServer` (the app under uvicorn in
a thread) and :class:`ProcessServer` (``estrade serve`` in a child process), both with the same
helpers (a role's cookie, a socket as a :class:`Peer`); servers from tests/helpers/server.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import httpx
import websockets
from websockets.asyncio.client import ClientConnection

from appliance.accounts import services
from appliance.app import create_app
from appliance.cli import ws_transport_limit
from appliance.settings import Settings
from tests.helpers.server import ServedProcess, ThreadServer
from tests.helpers.world import PASSWORD

__all__ = ["LiveServer", "Peer", "ProcessServer"]


class ClassroomClient:
    """Sign in and open classroom sockets on a served app (``base`` and ``port``)."""

    port: int
    peers: list[Peer]

    @property
    def base(self) -> str:  # the server's own (same URL)
        return f"http://127.0.0.1:{self.port}"

    async def cookie(self, world: Any, role: str) -> str:
        """A ``Cookie`` header for ``role`` (learners through a fresh join link)."""
        # Sign-in verifies argon2 at a low CPU priority: on a machine shared with other jobs it
        # may take longer than httpx's default 5 s.
        async with httpx.AsyncClient(base_url=self.base, timeout=30) as c:
            r = await c.get("/api/auth/csrf")
            c.headers["x-csrftoken"] = c.cookies["csrftoken"]
            if role in ("learner", "other_learner"):
                user = getattr(world, role)
                cohort = world.cohort if role == "learner" else world.other_cohort
                link = await services.issue_link(
                    cohort.id, user.id, base_url=self.base, ttl_days=30
                )
                r = await c.post(link.url.removeprefix(self.base), json={})
                assert r.status_code == 200, r.text
            elif role != "anonymous":
                r = await c.post(
                    "/api/auth/login",
                    json={"email": getattr(world, role).email, "password": PASSWORD},
                )
                assert r.status_code == 200, r.text
            return "; ".join(f"{k}={v}" for k, v in c.cookies.items())

    async def connect(self, cookie: str, cohort_id: int, **params: Any) -> Peer:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        url = f"ws://127.0.0.1:{self.port}/ws/cohorts/{cohort_id}" + (f"?{query}" if query else "")
        ws = await websockets.connect(
            url,
            additional_headers={"Cookie": cookie, "User-Agent": "pytest-live/1.0"},
            max_size=None,
        )
        peer = Peer(ws)
        self.peers.append(peer)
        peer.welcome = await peer.expect("welcome")
        return peer

    async def close_peers(self) -> None:
        """Close every client socket this server's tests opened (no unclosed transports)."""
        for peer in self.peers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(peer.ws.close(), 5)
            peer.ws.transport.abort()
        self.peers.clear()


class LiveServer(ThreadServer, ClassroomClient):
    """The app built from ``settings`` under uvicorn in a thread (its ``app.state`` reachable)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The WebSocket frame limit as `estrade serve` sets it.
        super().__init__(create_app(settings), ws_max_size=ws_transport_limit(settings))
        self.peers = []


class ProcessServer(ServedProcess, ClassroomClient):
    """``estrade serve`` on the database and data folder of ``settings``; ``env``: more settings
    by lower-case name (``log_level="warning"``). Logs at ``info`` by default, for tests that
    read what it logs (:meth:`log`)."""

    def __init__(self, settings: Settings, log_path: Path, **env: str) -> None:
        self.settings = settings
        super().__init__(
            settings.data_dir,
            {
                "ESTRADE_DATABASE_URL": settings.database_url,
                "ESTRADE_PUBLIC_URL": settings.public_url,
                "ESTRADE_SESSION_STORE": settings.session_store,
                "ESTRADE_LOG_LEVEL": "info",
                **{f"ESTRADE_{k.upper()}": v for k, v in env.items()},
            },
            log_path=log_path,
        )
        self.peers = []


class Peer:
    """A websocket client that keeps what it received and waits for a message type.

    Like the browser client it answers the server's ``heartbeat`` (unless ``answer_heartbeats``
    is off: a silently dead link); heartbeats are counted, not kept in ``seen``.
    """

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seen: list[dict[str, Any]] = []
        self.welcome: dict[str, Any] = {}
        self.answer_heartbeats = True
        self.heartbeats = 0

    async def _recv(self, timeout: float) -> dict[str, Any] | None:  # noqa: ASYNC109
        """The next message; a heartbeat is answered and returned as None."""
        msg: dict[str, Any] = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        if msg.get("type") == "heartbeat":
            self.heartbeats += 1
            if self.answer_heartbeats:
                await self.ws.send('{"type": "heartbeat"}')
            return None
        return msg

    async def send(self, type_: str, **fields: Any) -> None:
        await self.ws.send(json.dumps({"type": type_, **fields}))

    async def expect(self, type_: str, timeout: float = 5, **match: Any) -> dict[str, Any]:  # noqa: ASYNC109
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"no {type_} {match} within {timeout}s; got {self.seen[-5:]}")
            msg = await self._recv(left)
            if msg is None:
                if type_ == "heartbeat":
                    return {"type": "heartbeat"}
                continue
            self.seen.append(msg)
            if msg["type"] == type_ and all(msg.get(k) == v for k, v in match.items()):
                return msg

    async def expect_ref(self, ref: str, timeout: float = 5) -> dict[str, Any]:  # noqa: ASYNC109
        """The next message carrying ``ref`` (whatever its type)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                raise AssertionError(f"no reply to {ref} within {timeout}s; got {self.seen[-5:]}")
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), left))
            self.seen.append(msg)
            if msg.get("ref") == ref:
                return msg

    async def request(self, type_: str, expect: str = "ack", **fields: Any) -> dict[str, Any]:
        """Send with a fresh ``ref`` and wait for the reply carrying it (ack or an error)."""
        ref = f"r{len(self.seen)}-{time.monotonic_ns()}"
        await self.send(type_, ref=ref, **fields)
        return await self.expect(expect, ref=ref)

    async def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Everything received within ``seconds``."""
        got = []
        deadline = asyncio.get_running_loop().time() + seconds
        try:
            while (left := deadline - asyncio.get_running_loop().time()) > 0:
                msg = await self._recv(left)
                if msg is not None:
                    got.append(msg)
                    self.seen.append(msg)
        except TimeoutError:
            pass
        return got

    @property
    def last_seq(self) -> int:
        seqs = [m["seq"] for m in self.seen if m.get("seq") and m["type"] != "welcome"]
        return max([self.welcome.get("seq", 0), *seqs])

    async def close(self) -> None:
        await self.ws.close()
