"""Several hosts benchmark (#15): ``--hosts`` ``estrade serve`` processes (standing for hosts)
behind the roles' nginx (``nginx_app_hosts``), one throwaway PostgreSQL, one throwaway
``redis-server``, everything on 127.0.0.1.

``--cohorts`` cohorts of ``--learners`` learners and a trainer each, every socket through nginx.
Phases:

- ``baseline``: a ping's round trip through nginx on the same sockets, without chat
  (``baseline_p99_ms``): the floor this machine gives right now.
- ``chat``: learners send chat messages at ``--rate`` per cohort for ``--seconds``; every
  participant of the cohort receives each one. ``deliveries_per_s`` and ``delivery_p99_ms``
  (send to receipt, one client process, one clock), ``ratio_p99`` = chat p99 / baseline p99.
- ``cross_host_event_ms``: a learner deactivated through a host that does *not* hold their
  cohort, until their socket (held by the other host) is closed 4401 (median of 3).
- ``failover_s``: every learner of the killed host's cohorts sends one chat message and waits
  for its ack; the host holding the most cohorts is killed (SIGKILL); seconds until every
  learner of those cohorts is back in class through nginx (``reload`` + ``welcome``) and has
  received a chat message sent after the move. ``lost_acknowledged``: acknowledged messages
  missing from the new ``welcome``'s chat.

Media is not part of this version: ``frames_delivered_ratio`` is null.

    .venv/bin/python benchmarks/scale.py [--hosts 2] [--cohorts 4] [--learners 20]
        [--rate 4] [--seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else float("nan")


async def _setup(settings: Any, args: argparse.Namespace) -> dict[str, Any]:
    from appliance import db
    from appliance.accounts import schemas as s
    from appliance.accounts import services
    from tests.helpers.world import add_user

    engine = db.bind(settings)
    await db.start(engine, 0)
    await db.migrate()
    world: dict[str, Any] = {"admin": await add_user("admin@example.org", "admin"), "cohorts": []}
    today = dt.date(2026, 11, 2)
    for c in range(args.cohorts):
        cohort = await services.create_cohort(
            s.CohortIn(name=f"Groupe {c}", first_day=today, last_day=today + dt.timedelta(9))
        )
        trainer = await add_user(f"trainer{c}@example.org", "trainer")
        await services.enrol(cohort.id, trainer.id)
        learners = []
        for n in range(args.learners):
            learner = await add_user(f"l{c}-{n}@example.org", "learner", password=None)
            await services.enrol(cohort.id, learner.id)
            learners.append(learner)
        world["cohorts"].append({"id": cohort.id, "trainer": trainer, "learners": learners})
    return world


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from appliance.accounts import services
    from tests.helpers.classroom import Peer, ProcessServer
    from tests.helpers.proxy import Proxy
    from tests.helpers.redis import start_redis
    from tests.helpers.world import make_settings
    from tests.pg import start_postgres

    tmp = Path(tempfile.mkdtemp(prefix="estrade-scale-"))
    pg = start_postgres()
    redis = start_redis()
    hosts: list[ProcessServer] = []
    proxy = Proxy(tmp / "proxy")
    out: dict[str, Any] = {"benchmark": "scale", "hosts": args.hosts, "cohorts": args.cohorts}
    out["learners"] = args.cohorts * args.learners
    peers: list[Peer] = []
    try:
        settings = make_settings(
            tmp, database_url=pg.create_database("estrade_scale"), session_store="file"
        )
        world = await _setup(settings, args)
        env = {"redis_url": redis.url, "session_store": "file", "log_level": "warning"}
        # Sockets are read only during the phases (heartbeats unanswered meanwhile).
        env["ws_idle_timeout_s"] = "600"
        env["chat_rate_limit"] = str(max(5, int(args.rate * 20 / args.learners) + 5))
        for h in range(args.hosts):
            hosts.append(ProcessServer(settings, tmp / f"host{h}.log", **env).start())
        proxy.start_hosts([f"127.0.0.1:{h.port}" for h in hosts])

        classes = []
        for cohort in world["cohorts"]:
            trainer = await proxy.connect(
                await proxy.cookie(email=cohort["trainer"].email), cohort["id"]
            )
            learners, cookies = [], []
            for learner in cohort["learners"]:
                link = await services.issue_link(
                    cohort["id"], learner.id, base_url=proxy.url, ttl_days=30
                )
                cookie = await proxy.cookie(link=link.url.removeprefix(proxy.url))
                cookies.append(cookie)
                learners.append(await proxy.connect(cookie, cohort["id"]))
            peers.extend([trainer, *learners])
            await trainer.request("session_start")
            classes.append(
                {"id": cohort["id"], "trainer": trainer, "learners": learners, "cookies": cookies}
            )
        owner = {c["id"]: _owner(hosts, c["id"]) for c in classes}
        out["cohorts_per_host"] = [list(owner.values()).count(h) for h in range(args.hosts)]

        base = await _phase(classes, args, chat=False)
        chat = await _phase(classes, args, chat=True)
        out["deliveries_per_s"] = round(chat["deliveries"] / args.seconds, 1)
        out["delivery_p99_ms"] = round(chat["p99_ms"], 2)
        out["baseline_p99_ms"] = round(base["p99_ms"], 2)
        out["ratio_p99"] = round(chat["p99_ms"] / base["p99_ms"], 3) if base["p99_ms"] else None
        out["delivered_ratio"] = round(chat["delivered"] / max(1, chat["expected"]), 4)

        out["cross_host_event_ms"] = await _cross_host(proxy, hosts, classes, owner, world)
        out.update(await _failover(proxy, hosts, classes, owner, peers))
        out["frames_delivered_ratio"] = None
        out["load_avg_1m"] = round(os.getloadavg()[0], 2)
        return out
    finally:
        for peer in peers:
            peer.ws.transport.abort()
        proxy.stop()
        for host in hosts:
            host.stop()
        redis.stop()
        pg.stop()


def _owner(hosts: list[Any], cohort_id: int) -> int:
    import re

    import httpx

    for i, h in enumerate(hosts):
        if h.process is None or h.process.poll() is not None:
            continue
        text = httpx.get(h.base + "/metrics", timeout=10).text
        if re.search(rf'^estrade_room_started\{{cohort_id="{cohort_id}"\}}', text, re.M):
            return i
    raise RuntimeError(f"cohort {cohort_id} is open on no host")


async def _drain(peer: Any, until: float, seen: dict[str, float], stamps: dict[str, int]) -> None:
    """Receive until ``until``; record when each tagged chat message or hand arrived."""
    while (left := until - time.monotonic()) > 0:
        try:
            msg = await peer._recv(left)
        except TimeoutError:
            return
        if msg is None:
            continue
        tag = None
        if msg["type"] == "chat_message":
            tag = msg["message"]["text"]
        if tag is not None and tag in stamps:
            seen[f"{id(peer)}:{tag}"] = (time.monotonic_ns() - stamps[tag]) / 1e6


async def _phase(classes: list[dict[str, Any]], args: argparse.Namespace, chat: bool) -> dict:
    """Every cohort at ``args.rate`` messages per second for ``args.seconds``."""
    stamps: dict[str, int] = {}
    seen: dict[str, float] = {}
    latencies: list[float] = []
    expected = 0
    end = time.monotonic() + args.seconds
    drains = [
        asyncio.create_task(_drain(p, end + 2, seen, stamps))
        for c in classes
        for p in [c["trainer"], *c["learners"]]
    ]

    async def sender(c: dict[str, Any]) -> None:
        nonlocal expected
        if not chat:
            return
        n = 0
        while time.monotonic() < end:
            learner = c["learners"][n % len(c["learners"])]
            if chat:
                text = f"m{c['id']}-{n}"
                stamps[text] = time.monotonic_ns()
                await learner.send("chat_send", text=text)
                expected += len(c["learners"]) + 1
            n += 1
            await asyncio.sleep(1 / args.rate)

    await asyncio.gather(*(sender(c) for c in classes))
    await asyncio.gather(*drains)
    if chat:
        latencies = list(seen.values())
    else:  # the floor: a ping's round trip through nginx on the same sockets, no chat load
        for c in classes:
            for learner in c["learners"][:5]:
                t0 = time.monotonic_ns()
                await learner.request("ping", expect="pong")
                latencies.append((time.monotonic_ns() - t0) / 1e6)
    return {
        "deliveries": len(seen) if chat else 0,
        "delivered": len(seen),
        "expected": expected,
        "p99_ms": _p99(latencies),
    }


async def _cross_host(
    proxy: Any, hosts: list[Any], classes: list[dict], owner: dict[int, int], world: dict
) -> float | None:
    import httpx

    if len(hosts) < 2:
        return None
    admin = await proxy.cookie(email=world["admin"].email)
    token = dict(p.split("=", 1) for p in admin.split("; "))["csrftoken"]
    times = []
    for k in range(3):
        c = classes[k % len(classes)]
        learner_peer = c["learners"][-1 - k // len(classes)]
        idx = c["learners"].index(learner_peer)
        user = next(cc for cc in world["cohorts"] if cc["id"] == c["id"])["learners"][idx]
        other = hosts[(owner[c["id"]] + 1) % len(hosts)]
        t0 = time.monotonic()
        async with httpx.AsyncClient(base_url=other.base, timeout=30) as client:
            r = await client.patch(
                f"/api/admin/users/{user.id}",
                json={"active": False},
                headers={"Cookie": admin, "x-csrftoken": token},
            )
            assert r.status_code == 200, r.text
        try:
            while True:
                await learner_peer._recv(10)
        except Exception:
            times.append((time.monotonic() - t0) * 1000)
        c["learners"].remove(learner_peer)
        c["cookies"].pop(idx)
    return round(statistics.median(times), 1)


async def _failover(
    proxy: Any, hosts: list[Any], classes: list[dict], owner: dict[int, int], peers: list[Any]
) -> dict[str, Any]:
    victim = max(range(len(hosts)), key=lambda h: list(owner.values()).count(h))
    doomed = [c for c in classes if owner[c["id"]] == victim]
    acked: dict[int, set[str]] = {}
    await asyncio.sleep(10)  # the chat phase's rate-limit windows pass
    for c in doomed:
        acked[c["id"]] = set()
        for n, learner in enumerate(c["learners"]):
            text = f"avant {c['id']}-{n}"
            reply = await learner.request("chat_send", text=text, expect="ack")
            if reply["type"] == "ack":
                acked[c["id"]].add(text)
    resume = {
        id(p): (p.welcome["epoch"], p.last_seq)
        for c in doomed
        for p in [c["trainer"], *c["learners"]]
    }
    killed = time.monotonic()
    hosts[victim].process.kill()
    hosts[victim].process.wait(10)

    async def back(cookie: str, cohort_id: int, old: Any) -> Any:
        epoch, last_seq = resume[id(old)]
        while time.monotonic() - killed < 60:
            try:
                return await proxy.connect(cookie, cohort_id, epoch=epoch, last_seq=last_seq)
            except Exception:
                await asyncio.sleep(0.1)
        raise RuntimeError("not back within 60 s")

    lost = 0
    for c in doomed:
        for p in c["learners"]:
            p.ws.transport.abort()
        c["learners"] = await asyncio.gather(
            *(back(k, c["id"], p) for k, p in zip(c["cookies"], c["learners"], strict=True))
        )
        peers.extend(c["learners"])
        texts = {m["text"] for m in c["learners"][0].welcome["chat"]}
        lost += len(acked[c["id"]] - texts)
    # Chat flows again: one message per cohort reaches every learner there.
    for c in doomed:
        await c["learners"][0].request("chat_send", text=f"après {c['id']}")
        for p in c["learners"]:
            await p.expect("chat_message", timeout=30)
    return {"failover_s": round(time.monotonic() - killed, 2), "lost_acknowledged": lost}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hosts", type=int, default=2)
    ap.add_argument("--cohorts", type=int, default=4)
    ap.add_argument("--learners", type=int, default=20)
    ap.add_argument("--rate", type=float, default=4, help="chat messages per second per cohort")
    ap.add_argument("--seconds", type=float, default=8)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
