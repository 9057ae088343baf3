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
- ``media``: each cohort's trainer publishes 320x240 VP8 at 30 frames/s (pre-encoded, so the
  client does not spend its CPU encoding) and a microphone (Opus); the first
  ``--media-learners`` learners of each cohort subscribe, the others stay on chat only (one
  client process cannot run 80 WebRTC peers on 2 cores). Trainer and learners are aiortc peers
  behaving as the pages do (tests/helpers/media_pages.py). Once every media learner has
  received a first video frame, and 2 s more (``SETTLE_S``), a window of ``--media-seconds``
  on each learner's own timeline, from the first frame it assembles once the window opens:
  the trainer's camera stamps each frame with its own frame counter (RTP timestamp = counter x
  3000, which the relay keeps), so the window holds exactly ``media_seconds`` x 30 frames made
  by the trainer, whenever they reach the learner. ``frames_delivered_ratio`` = frames of their
  windows the media learners assembled (each once), summed / that many frames x the media
  learners; a learner's window is closed once a later frame arrives, or 5 s after it should
  have ended (the rest counted missing). ``frames_missing``: the difference, in frames;
  ``learners_missing_frames``: how many media learners missed any;
  ``frames_missing_longest_run``: the longest run of consecutive frames one of them missed;
  ``learner_packets_lost``: RTP packets the media learners' receivers counted lost (gaps in
  the sequence numbers the relay gave them, since they subscribed): 0 with frames missing
  means the relay never sent those frames (lost on the trainer's leg into the relay, or
  dropped there), not that the learners' sockets dropped them.
  ``frames_sent_per_s``: the trainers' own counters over the wall-clock time of the window
  (30: the client kept up); ``audio_packets_per_s``: per media learner (the microphone makes
  50).
- ``failover_s``: every learner of the killed host's cohorts sends one chat message and waits
  for its ack; the host holding the most cohorts is killed (SIGKILL) with media flowing;
  seconds until every learner and trainer of those cohorts is back in class through nginx
  (``reload`` + ``welcome``; ``failover_back_s``), every learner has received a chat message
  sent once they were all back (``failover_chat_s``) and every media learner has received a
  video frame again (``failover_media_s``): the trainer publishes again on its new socket's
  ``media_config``, the learners subscribe again on theirs (as the pages do). ``failover_s``
  is the largest of these. ``lost_acknowledged``: acknowledged messages missing from the new
  ``welcome``'s chat.

Each host's ``media_max_rooms`` is set to the number of cohorts: the survivor must relay the
classes it takes over (with the default, 2, it refuses them: ``too_many_rooms``).

    .venv/bin/python benchmarks/scale.py [--hosts 2] [--cohorts 4] [--learners 20]
        [--rate 4] [--seconds 8] [--media-learners 5] [--media-seconds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import itertools
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

#: after every media learner's first frame, before the window: the subscriptions' handshakes
#: and the relay's held frames (the last keyframe and those since) are behind the client
SETTLE_S = 2.0
VIDEO_CLOCK, FRAME_STEP = 90000, 90000 // 30  # the trainer's camera: 30 frames/s


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
    from tests.helpers.media_pages import LearnerPage, TrainerPage
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
    classes: list[dict[str, Any]] = []
    try:
        settings = make_settings(
            tmp, database_url=pg.create_database("estrade_scale"), session_store="file"
        )
        world = await _setup(settings, args)
        env = {"redis_url": redis.url, "session_store": "file", "log_level": "warning"}
        # Sockets are read only during the phases (heartbeats unanswered meanwhile).
        env["ws_idle_timeout_s"] = "600"
        env["chat_rate_limit"] = str(max(5, int(args.rate * 20 / args.learners) + 5))
        # Every host must be able to relay every class: the survivor takes the dead one's over.
        env["media_max_rooms"] = str(max(2, args.cohorts))
        for h in range(args.hosts):
            hosts.append(ProcessServer(settings, tmp / f"host{h}.log", **env).start())
        proxy.start_hosts([f"127.0.0.1:{h.port}" for h in hosts])

        for cohort in world["cohorts"]:
            trainer_cookie = await proxy.cookie(email=cohort["trainer"].email)
            trainer = await proxy.connect(trainer_cookie, cohort["id"])
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
                {
                    "id": cohort["id"],
                    "trainer": trainer,
                    "trainer_cookie": trainer_cookie,
                    "learners": learners,
                    "cookies": cookies,
                    "trainer_page": TrainerPage(replay=True, width=320, height=240, fps=30),
                    "pages": [LearnerPage() for _ in range(args.media_learners)],
                }
            )
        owner = {c["id"]: _owner(hosts, c["id"]) for c in classes}
        out["cohorts_per_host"] = [list(owner.values()).count(h) for h in range(args.hosts)]

        base = await _phase(classes, args, chat=False)
        chat = await _phase(classes, args, chat=True)
        chat_ended = time.monotonic()
        out["deliveries_per_s"] = round(chat["deliveries"] / args.seconds, 1)
        out["delivery_p99_ms"] = round(chat["p99_ms"], 2)
        out["baseline_p99_ms"] = round(base["p99_ms"], 2)
        out["ratio_p99"] = round(chat["p99_ms"] / base["p99_ms"], 3) if base["p99_ms"] else None
        out["delivered_ratio"] = round(chat["delivered"] / max(1, chat["expected"]), 4)

        out["cross_host_event_ms"] = await _cross_host(proxy, hosts, classes, owner, world)
        out.update(await _media(classes, args))
        # The chat phase's rate-limit windows (10 s) pass before the failover's messages.
        await asyncio.sleep(max(0.0, chat_ended + 10 - time.monotonic()))
        out.update(await _failover(proxy, hosts, classes, owner, peers))
        out["load_avg_1m"] = round(os.getloadavg()[0], 2)
        return out
    finally:
        for c in classes:
            for page in [c["trainer_page"], *c["pages"]]:
                with contextlib.suppress(Exception):  # the servers are stopped whatever happens
                    await page.close()
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


async def _media(classes: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    """Trainers publish, media learners subscribe; the steady window's delivered ratio."""
    from tests.media.peers import wait_for

    await asyncio.gather(*(c["trainer_page"].publish(c["trainer"]) for c in classes))
    media = [
        (c, page, peer)
        for c in classes
        for page, peer in zip(c["pages"], c["learners"], strict=False)
    ]
    await asyncio.gather(*(page.start(peer) for _, page, peer in media))
    await asyncio.gather(*(page.first_frame() for _, page, _ in media))
    await asyncio.sleep(SETTLE_S)

    span = round(args.media_seconds * VIDEO_CLOCK)  # the window in RTP timestamp units
    expected = span // FRAME_STEP  # frames the trainer makes in it (pts: its counter x 3000)

    async def window(page: Any) -> tuple[int, int]:
        """Frames of the window this learner assembled (each counted once), and the longest
        run of frames missing among them."""
        frames = page.media.assembled
        start = len(frames)
        await wait_for(lambda: len(frames) > start, within=10, step=0.01)
        first = frames[start][0]

        def offset(ts: int) -> int:  # signed distance from the window's first frame
            return ((ts - first + 2**31) & 0xFFFFFFFF) - 2**31

        with contextlib.suppress(AssertionError):  # not there 5 s late: counted missing
            ended = lambda: offset(frames[-1][0]) >= span  # noqa: E731
            await wait_for(ended, within=args.media_seconds + 5)
        got = sorted({o // FRAME_STEP for ts, _ in frames if 0 <= (o := offset(ts)) < span})
        edges = [-1, *got, expected]
        return len(got), max(b - a - 1 for a, b in itertools.pairwise(edges))

    sent0 = {id(c): c["trainer_page"].frames_sent for c in classes}
    audio0 = [page.audio for _, page, _ in media]
    t0 = time.monotonic()
    windows = await asyncio.gather(*(window(page) for _, page, _ in media))
    got = [n for n, _ in windows]
    elapsed = time.monotonic() - t0
    sent = [c["trainer_page"].frames_sent - sent0[id(c)] for c in classes]
    audio = sum(page.audio - a for (_, page, _), a in zip(media, audio0, strict=True))
    wire_lost = 0  # relay -> learner: gaps in the RTP sequence numbers each receiver counted
    for _, page, _ in media:
        for transceiver in page.media.pc.getTransceivers():
            report = await transceiver.receiver.getStats()
            wire_lost += sum(s.packetsLost for s in report.values() if s.type == "inbound-rtp")
    return {
        "media_learners": len(media),
        "frames_delivered_ratio": round(sum(got) / (expected * len(media)), 4),
        "frames_missing": expected * len(media) - sum(got),
        "learners_missing_frames": sum(1 for g in got if g < expected),
        "frames_missing_longest_run": max(run for _, run in windows),
        "learner_packets_lost": wire_lost,
        "frames_sent_per_s": round(sum(sent) / len(classes) / elapsed, 1),
        "audio_packets_per_s": round(audio / len(media) / elapsed, 1),
    }


async def _failover(
    proxy: Any, hosts: list[Any], classes: list[dict], owner: dict[int, int], peers: list[Any]
) -> dict[str, Any]:
    from tests.helpers.media_pages import RECEIVED_AT, next_message

    victim = max(range(len(hosts)), key=lambda h: list(owner.values()).count(h))
    doomed = [c for c in classes if owner[c["id"]] == victim]
    acked: dict[int, set[str]] = {}
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
        old.ws.transport.abort()
        while time.monotonic() - killed < 60:
            try:
                return await proxy.connect(cookie, cohort_id, epoch=epoch, last_seq=last_seq)
            except Exception:
                await asyncio.sleep(0.1)
        raise RuntimeError("not back within 60 s")

    lost = 0
    done: dict[str, list[float]] = {"back": [], "chat": [], "media": []}

    async def moved(c: dict[str, Any]) -> None:
        nonlocal lost
        trainer, *learners = await asyncio.gather(
            back(c["trainer_cookie"], c["id"], c["trainer"]),
            *(back(k, c["id"], p) for k, p in zip(c["cookies"], c["learners"], strict=True)),
        )
        done["back"].append(time.monotonic())
        c["trainer"], c["learners"] = trainer, learners
        peers.extend([trainer, *learners])
        lost += len(acked[c["id"]] - {m["text"] for m in learners[0].welcome["chat"]})
        text = f"après {c['id']}"

        async def republish() -> None:  # TrainerMedia: on media_config once the socket is back
            await next_message(trainer, lambda m: m["type"] == "media_config")
            await c["trainer_page"].publish(trainer)

        async def chat(peer: Any) -> None:
            msg = await next_message(
                peer,
                lambda m: m["type"] == "chat_message" and m["message"]["text"] == text,
                timeout=60,
            )
            done["chat"].append(msg.get(RECEIVED_AT, time.monotonic()))

        async def media(page: Any, peer: Any) -> None:
            await page.resume(peer, timeout=60)  # reads the socket meanwhile: chat is stamped
            await asyncio.gather(chat(peer), _first(page))

        async def _first(page: Any) -> None:
            done["media"].append(await page.first_frame(timeout=60))

        await learners[0].send("chat_send", text=text)  # no ref: its ack is read as any message
        pages = c["pages"]
        await asyncio.gather(
            republish(),
            *(media(page, peer) for page, peer in zip(pages, learners, strict=False)),
            *(chat(peer) for peer in learners[len(pages) :]),
        )

    await asyncio.gather(*(moved(c) for c in doomed))
    parts = {k: round(max(v) - killed, 2) for k, v in done.items()}
    return {
        "failover_s": max(parts.values()),
        "failover_back_s": parts["back"],
        "failover_chat_s": parts["chat"],
        "failover_media_s": parts["media"],
        "lost_acknowledged": lost,
        "moved_cohorts": len(doomed),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hosts", type=int, default=2)
    ap.add_argument("--cohorts", type=int, default=4)
    ap.add_argument("--learners", type=int, default=20)
    ap.add_argument("--rate", type=float, default=4, help="chat messages per second per cohort")
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument(
        "--media-learners", type=int, default=5, help="learners receiving media per cohort"
    )
    ap.add_argument(
        "--media-seconds", type=float, default=8, help="steady window of frames_delivered_ratio"
    )
    args = ap.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
