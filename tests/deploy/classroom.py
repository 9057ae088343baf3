"""A class through the proxy of the booted multi-host tier (tests/deploy/booted_multihost.py).

Run by that test inside the proxy's network namespace, where a learner's browser would reach the
site: ``python -m tests.deploy.classroom NAME CA APP_HOST...`` (the admin's e-mail and password
in ``ESTRADE_ADMIN_EMAIL`` and ``ESTRADE_ADMIN_PASSWORD``, the metrics token in
``ESTRADE_METRICS_TOKEN``). HTTPS and WSS go to 127.0.0.1:443 as to the site ``NAME`` (SNI,
``Host``, ``Origin``; the certificate checked against ``CA``), with the sign-in and socket
helpers of the other tiers (:class:`~tests.helpers.classroom.Peer`).

One JSON line on stdout per step, each with its seconds:
- ``setup``: through the admin API, a trainer, a learner and a cohort, both enrolled, a join link;
- ``class``: the trainer signs in, the learner joins by the link, both open the cohort's socket,
  the session starts, the learner's chat messages are acknowledged and reach the trainer;
- ``owner``: the app host whose ``/metrics`` shows the cohort's room (exactly one). The test
  then writes on stdin the ``time.monotonic()`` at which it starts stopping that host's service
  (the clock is the machine's, the same in every process) and stops it;
- ``failover``: both sockets closed, reconnect through the proxy with ``epoch`` and ``last_seq``
  until another host answers with ``reload`` and a full ``welcome`` holding every acknowledged
  message, and a new message is delivered there; seconds counted from the stop.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import ssl
import sys
import time
from typing import Any

import httpx
import websockets

from tests.helpers.classroom import Peer

PASSWORD = "correct horse battery staple"
SOCKET_TIMEOUT = 30  # a sign-in's argon2 or a handshake on a loaded 2-core machine
CLOSED_WITHIN = 60  # the unit's TimeoutStopSec is 20 s: the socket closes well before
BACK_WITHIN = 60


def _step(step: str, started: float, **fields: Any) -> None:
    fields = {"step": step, "seconds": round(time.monotonic() - started, 2), **fields}
    print(json.dumps(fields), flush=True)


class Site:
    """The site ``name`` as a browser reaches it, at 127.0.0.1:443 of this namespace."""

    def __init__(self, name: str, ca: str) -> None:
        self.name = name
        self.tls = ssl.create_default_context(cafile=ca)

    def http(self) -> httpx.AsyncClient:
        async def as_the_site(request: httpx.Request) -> None:
            request.headers["Host"] = self.name
            request.extensions["sni_hostname"] = self.name

        return httpx.AsyncClient(
            base_url="https://127.0.0.1",
            verify=self.tls,
            timeout=SOCKET_TIMEOUT,
            event_hooks={"request": [as_the_site]},
            trust_env=False,
        )

    async def session(
        self, *, email: str = "", password: str = "", link: str = ""
    ) -> tuple[httpx.AsyncClient, str]:
        """A client signed in (by password, or by a learner's join link) and its cookie."""
        client = self.http()
        r = await client.get("/api/auth/csrf")
        assert r.status_code == 200, f"GET /api/auth/csrf: {r.status_code} {r.text}"
        client.headers["x-csrftoken"] = client.cookies["csrftoken"]
        if link:
            r = await client.post(link.removeprefix(f"https://{self.name}"), json={})
        else:
            body = {"email": email, "password": password}
            r = await client.post("/api/auth/login", json=body)
        assert r.status_code == 200, f"sign-in {email or link}: {r.status_code} {r.text}"
        client.headers["x-csrftoken"] = client.cookies["csrftoken"]
        return client, "; ".join(f"{k}={v}" for k, v in client.cookies.items())

    async def connect(self, cookie: str, cohort_id: int, **params: Any) -> Peer:
        query = "&".join(f"{k}={v}" for k, v in params.items())
        ws = await websockets.connect(
            f"wss://{self.name}/ws/cohorts/{cohort_id}" + (f"?{query}" if query else ""),
            host="127.0.0.1",
            port=443,
            ssl=self.tls,
            server_hostname=self.name,
            origin=websockets.typing.Origin(f"https://{self.name}"),
            additional_headers={"Cookie": cookie},
            open_timeout=SOCKET_TIMEOUT,
            max_size=None,
            proxy=None,
        )
        peer = Peer(ws)
        peer.welcome = await peer.expect("welcome", timeout=SOCKET_TIMEOUT)
        return peer


async def _call(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
    r = await client.request(method, path, **kwargs)
    assert r.status_code < 400, f"{method} {path}: {r.status_code} {r.text}"
    return r.json()


async def _setup(site: Site) -> dict[str, Any]:
    admin, _ = await site.session(
        email=os.environ["ESTRADE_ADMIN_EMAIL"], password=os.environ["ESTRADE_ADMIN_PASSWORD"]
    )
    try:
        trainer = await _call(
            admin,
            "POST",
            "/api/admin/users",
            json={
                "email": "trainer@example.org",
                "display_name": "Camille Formatrice",
                "role": "trainer",
                "password": PASSWORD,
            },
        )
        learner = await _call(
            admin,
            "POST",
            "/api/admin/users",
            json={"email": "learner@example.org", "display_name": "Alice", "role": "learner"},
        )
        body = {"name": "Plusieurs hôtes", "first_day": "2026-11-02", "last_day": "2027-01-29"}
        cohort = await _call(admin, "POST", "/api/admin/cohorts", json=body)
        for user in (trainer, learner):
            path = f"/api/admin/cohorts/{cohort['id']}/enrolments"
            await _call(admin, "POST", path, json={"user_id": user["id"]})
        path = f"/api/admin/cohorts/{cohort['id']}/learners/{learner['id']}/join-link"
        link = (await _call(admin, "POST", path))["url"]
    finally:
        await admin.aclose()
    return {"cohort": cohort["id"], "trainer": trainer["email"], "link": link}


async def _owners(apps: list[str], cohort_id: int) -> dict[str, str]:
    """Each app host's answer: ``room`` (its /metrics shows the cohort's room), ``-`` or why
    it did not answer."""
    token = os.environ["ESTRADE_METRICS_TOKEN"]
    found = {}
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        for app in apps:
            try:
                r = await client.get(
                    f"http://{app}/metrics", headers={"Authorization": f"Bearer {token}"}
                )
            except httpx.HTTPError as exc:
                found[app] = f"no answer ({exc!r})"
                continue
            room = re.search(rf'^estrade_room_started\{{cohort_id="{cohort_id}"\}}', r.text, re.M)
            found[app] = "room" if room else f"- ({r.status_code})"
    return found


async def _closed(peer: Peer, who: str) -> str:
    """Wait (answering heartbeats) until the server side closes ``peer``; its close code."""
    try:
        await peer.quiet(CLOSED_WITHIN)
    except websockets.exceptions.ConnectionClosed as exc:
        return f"{who} {exc.rcvd.code if exc.rcvd else 'no close frame'}"
    raise AssertionError(f"{who}'s socket still open {CLOSED_WITHIN} s after the stop began")


async def main(name: str, ca: str, apps: list[str]) -> None:
    site = Site(name, ca)
    started = time.monotonic()
    world = await _setup(site)
    cohort = world["cohort"]
    _step("setup", started, cohort=cohort)

    started = time.monotonic()
    trainer_http, trainer_cookie = await site.session(email=world["trainer"], password=PASSWORD)
    learner_http, learner_cookie = await site.session(link=world["link"])
    await trainer_http.aclose()
    await learner_http.aclose()
    trainer = await site.connect(trainer_cookie, cohort)
    learner = await site.connect(learner_cookie, cohort)
    await trainer.request("session_start")
    await learner.expect("session_started", timeout=SOCKET_TIMEOUT)
    acked = []
    for n in range(3):  # the learners' limit is 5 per 10 s
        text = f"bonjour {n}"
        reply = await learner.request("chat_send", text=text)
        assert reply["type"] == "ack", reply
        got = await trainer.expect("chat_message", timeout=SOCKET_TIMEOUT)
        assert got["message"]["text"] == text, got
        acked.append(text)
    _step("class", started, acked=len(acked))

    started = time.monotonic()
    owners = await _owners(apps, cohort)
    holding = [app for app, seen in owners.items() if seen == "room"]
    assert len(holding) == 1, f"cohort {cohort} room on {owners}"
    _step("owner", started, owner=holding[0], hosts=owners)

    epoch, last_seq = learner.welcome["epoch"], learner.last_seq
    closes = await asyncio.gather(_closed(learner, "learner"), _closed(trainer, "trainer"))
    closed = time.monotonic()
    stop_began = float(sys.stdin.readline())

    async def back(cookie: str) -> Peer:
        while True:
            try:
                return await site.connect(cookie, cohort, epoch=epoch, last_seq=last_seq)
            except (OSError, websockets.exceptions.WebSocketException, AssertionError) as exc:
                waited = time.monotonic() - closed
                assert waited < BACK_WITHIN, f"not back in class {waited:.0f} s after: {exc!r}"
                await asyncio.sleep(0.2)

    learner = await back(learner_cookie)
    trainer = await back(trainer_cookie)
    back_in_class = time.monotonic()
    assert [m["type"] for m in learner.seen[:2]] == ["reload", "welcome"], learner.seen[:2]
    assert learner.welcome["resumed"] is False, learner.welcome
    texts = [m["text"] for m in learner.welcome["chat"]]
    assert all(t in texts for t in acked), f"acknowledged {acked}, history after: {texts}"
    reply = await learner.request("chat_send", text="après la panne")
    assert reply["type"] == "ack", reply
    got = await trainer.expect("chat_message", timeout=SOCKET_TIMEOUT)
    assert got["message"]["text"] == "après la panne", got
    delivered = time.monotonic()
    owners = await _owners(apps, cohort)
    holding = [app for app, seen in owners.items() if seen == "room"]
    assert len(holding) == 1, f"cohort {cohort} room after the failover on {owners}"
    for peer in (learner, trainer):
        await peer.close()
    print(
        json.dumps(
            {
                "step": "failover",
                "closed_s": round(closed - stop_began, 2),
                "back_s": round(back_in_class - stop_began, 2),
                "chat_s": round(delivered - stop_began, 2),
                "closes": closes,
                "owner": holding[0],
                "hosts": owners,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
