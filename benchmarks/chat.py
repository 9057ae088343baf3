"""Chat fan-out benchmark: one cohort, N learners and a trainer on a real server (127.0.0.1).

Two phases on the same server and sockets, at the same total rate for the same time:

- ``chat`` (first, ``--settle`` seconds after the connects): learners send chat messages
  (stored, then fanned out to everyone).
- ``baseline``: learners raise and lower their hand. Same socket, dispatch, channels and
  fan-out path as chat, but nothing is stored: the floor this machine gives right now.

The server's data directory (SQLite) is in the temporary directory (``TMPDIR``): on disk by
default, so commits pay a real fsync. ``--database postgresql`` runs the same on a throwaway
PostgreSQL 15 started from /usr/lib/postgresql/15/bin (tests/pg.py, as the tests do, but with
fsync on: a commit is on disk), its data in the same temporary directory.

Every learner receives every event. Latency is send to receipt per learner (one client
process, one clock: time.monotonic_ns). Prints ONE JSON line with both phases, their
ratio, the CPU used by the server and by the client (``storage_cpu_ms_per_message``: the chat
phase's server CPU minus the baseline's, per message), and the load average (the machine is
shared: compare ``delivery_p99_ms`` with ``baseline_p99_ms`` rather than across runs).

The learners' chat rate limit (default 5 messages / 10 s) is kept when the per-learner rate
stays under 80% of it; otherwise the server is started with ``ESTRADE_CHAT_RATE_LIMIT`` raised
(reported as ``chat_rate_limit``; ``--rate-limit N`` forces it). Refused messages are counted
in ``rate_limited`` and not expected to be delivered.

    .venv/bin/python benchmarks/chat.py [--learners 200] [--rate 50] [--seconds 10]
        [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgspec
import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def seed(settings, n: int, base: str) -> tuple[int, list[str]]:
    from appliance import db
    from appliance.accounts import schemas as s
    from appliance.accounts import services
    from appliance.accounts.tables import Enrolment, User

    engine = db.bind(settings)
    await db.start(engine, 0)
    today = dt.date.today()
    cohort = await services.create_cohort(
        s.CohortIn(name="Bench", first_day=today, last_day=today + dt.timedelta(days=1))
    )
    trainer = await services.create_user(
        s.UserIn(
            email="trainer@bench.test",
            display_name="Trainer",
            role="trainer",
            password="bench password 1",
        )
    )
    await services.enrol(cohort.id, trainer.id)
    learners = [
        User(email=f"l{i}@bench.test", display_name=f"Learner {i}", role="learner")
        for i in range(n)
    ]
    await User.insert(*learners)
    ids = [u["id"] for u in await User.select(User.id).where(User.role == "learner")]
    await Enrolment.insert(*[Enrolment(cohort=cohort.id, user=i, role="learner") for i in ids])
    links = await services.issue_many(cohort.id, ids, base_url=base, ttl=dt.timedelta(days=1))
    await db.close(engine)
    return cohort.id, [link.url for link in links]


async def wait_ready(http: httpx.AsyncClient, seconds: float) -> None:
    """Poll ``/ready`` until the served process answers 200 (or ``seconds`` have passed)."""
    for _ in range(int(seconds * 10)):
        try:
            if (await http.get("/ready")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)


async def cookie_for(client: httpx.AsyncClient, url: str) -> str:
    client.cookies.clear()
    await client.get("/api/auth/csrf")
    r = await client.post(url, json={}, headers={"x-csrftoken": client.cookies["csrftoken"]})
    assert r.status_code == 200, r.text
    return "; ".join(f"{k}={v}" for k, v in client.cookies.items())


def rate_limit_for(args: argparse.Namespace, limit: int = 5, window_s: int = 10) -> int:
    """The server's chat rate limit: the default, or raised when the learners would reach it."""
    per_learner = args.rate / args.learners * window_s
    return limit if per_learner <= 0.8 * limit else math.ceil(per_learner * 2)


class Phase:
    """What the client saw during one phase: per-event send times and receipt latencies."""

    def __init__(self, learners: int) -> None:
        self.sent_at: dict[str, int] = {}
        self.latencies: list[int] = []
        self.received = [0] * learners
        self.rate_limited = 0
        self.errors = 0

    def figures(self, prefix: str, sent: int, elapsed: float, cpu: float) -> dict:
        lat = sorted(self.latencies)

        def pct(q: float) -> float:
            return round(lat[min(len(lat) - 1, int(q * len(lat)))] / 1e6, 2) if lat else -1

        return {
            f"{prefix}messages_sent": sent,
            f"{prefix}deliveries": sum(self.received),
            f"{prefix}p50_ms": pct(0.50),
            f"{prefix}p99_ms": pct(0.99),
            f"{prefix}max_ms": pct(1.0),
            f"{prefix}deliveries_per_s": round(sum(self.received) / elapsed, 1),
            f"{prefix}server_cpu_s": round(cpu, 2),
            f"{prefix}rate_limited": self.rate_limited,
            f"{prefix}errors": self.errors,
        }


class Event(msgspec.Struct):
    type: str
    message: dict | None = None
    user_id: int | None = None
    ref: str | None = None


async def run(args: argparse.Namespace) -> dict:
    from appliance.settings import load_settings

    tmp = Path(tempfile.mkdtemp(prefix="estrade-bench-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    limit = args.rate_limit or rate_limit_for(args)
    pg = None
    database_url = ""
    if args.database == "postgresql":
        from tests.pg import start_postgres

        pg = start_postgres(durable=True)
        database_url = pg.create_database("estrade_bench")
    env = {
        **os.environ,
        "ESTRADE_DATA_DIR": str(tmp),
        "ESTRADE_PORT": str(port),
        "ESTRADE_SESSION_STORE": "memory",
        "ESTRADE_LOG_LEVEL": "warning",
        "ESTRADE_PUBLIC_URL": base,
        "ESTRADE_CHAT_RATE_LIMIT": str(limit),
        "ESTRADE_DATABASE_URL": database_url,
    }
    server = subprocess.Popen(  # noqa: ASYNC220 (started once, before timing)
        [sys.executable, "-m", "appliance", "serve"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            await wait_ready(http, 60.0)
            settings = load_settings(
                env={}, data_dir=str(tmp), session_store="memory", database_url=database_url
            )
            cohort_id, links = await seed(settings, args.learners, base)
            cookies = [await cookie_for(http, link) for link in links]
            http.cookies.clear()
            r = await http.get("/api/auth/csrf")
            http.headers["x-csrftoken"] = http.cookies["csrftoken"]
            r = await http.post(
                "/api/auth/login",
                json={"email": "trainer@bench.test", "password": "bench password 1"},
            )
            assert r.status_code == 200, r.text
            trainer_cookie = "; ".join(f"{k}={v}" for k, v in http.cookies.items())

        url = f"ws://127.0.0.1:{port}/ws/cohorts/{cohort_id}"
        HEARTBEAT = '{"type": "heartbeat"}'
        decoder = msgspec.json.Decoder(Event)
        welcome = msgspec.json.Decoder(dict)

        async def open_ws(cookie: str):
            ws = await websockets.connect(
                url, additional_headers={"Cookie": cookie}, max_size=None, compression=None
            )
            user_id = welcome.decode(await ws.recv())["you"]["user_id"]
            return ws, user_id

        phase = Phase(args.learners)

        def key_of(msg: Event) -> str | None:
            if msg.type == "chat_message":
                return msg.message["text"] if msg.message else None
            if msg.type in ("hand_raised", "hand_lowered"):
                return f"{msg.type} {msg.user_id}"
            return None

        async def reader(i: int, ws) -> None:
            async for raw in ws:
                now = time.monotonic_ns()
                msg = decoder.decode(raw)
                if msg.type == "heartbeat":  # answered as the browser does (docs/protocol.md)
                    await ws.send(HEARTBEAT)
                    continue
                if msg.type == "rate_limited":
                    phase.rate_limited += 1
                elif msg.type in ("error", "forbidden"):
                    phase.errors += 1
                key = key_of(msg)
                if key is None:
                    continue
                sent = phase.sent_at.get(key)
                if sent is not None:
                    phase.latencies.append(now - sent)
                    phase.received[i] += 1

        async def drain(ws) -> None:
            async for raw in ws:
                if decoder.decode(raw).type == "heartbeat":
                    await ws.send(HEARTBEAT)

        # Each socket read (its heartbeats answered) from its connect on: the connects of 200
        # learners may take longer than the server's idle timeout.
        sockets = []
        readers = []
        for i in range(0, args.learners, 20):
            opened = await asyncio.gather(*[open_ws(c) for c in cookies[i : i + 20]])
            for ws, user_id in opened:
                readers.append(asyncio.create_task(reader(len(sockets), ws)))
                sockets.append((ws, user_id))
        trainer, _ = await open_ws(trainer_cookie)
        readers.append(asyncio.create_task(drain(trainer)))
        await asyncio.sleep(args.settle)  # let presence events settle

        async def run_phase(kind: str) -> dict:
            nonlocal phase
            phase = Phase(args.learners)
            raised: set[int] = set()
            cpu0, t0 = cpu_seconds(server.pid), time.monotonic()
            total = int(args.rate * args.seconds)
            sent = 0
            while sent < total:
                delay = t0 + sent / args.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                ws, user_id = sockets[sent % args.learners]
                if kind == "chat":
                    text = f"m{sent}"
                    frame = {"type": "chat_send", "text": text}
                    key = text
                elif user_id in raised:
                    raised.discard(user_id)
                    frame, key = {"type": "hand_lower"}, f"hand_lowered {user_id}"
                else:
                    raised.add(user_id)
                    frame, key = {"type": "hand_raise"}, f"hand_raised {user_id}"
                phase.sent_at[key] = time.monotonic_ns()
                await ws.send(json.dumps(frame))
                sent += 1

            # A refused message (rate_limited) is delivered to nobody: not expected.
            def expected() -> int:
                return (sent - phase.rate_limited) * args.learners

            deadline = time.monotonic() + 10
            while sum(phase.received) < expected() and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            elapsed = time.monotonic() - t0
            cpu = cpu_seconds(server.pid) - cpu0
            # Lower the hands still raised, so the next phase starts from a quiet room (those
            # events are not matched: a fresh table of send times).
            phase.sent_at = {}
            for ws, user_id in sockets:
                if user_id in raised:
                    await ws.send(json.dumps({"type": "hand_lower"}))
            await asyncio.sleep(1)
            prefix = "" if kind == "chat" else "baseline_"
            return {
                **phase.figures(prefix, sent, elapsed, cpu),
                f"{prefix}expected_deliveries": expected(),
                f"{prefix}lost": expected() - sum(phase.received),
                f"{prefix}elapsed_s": round(elapsed, 2),
            }

        load_before = os.getloadavg()
        client0, wall0 = time.process_time(), time.monotonic()
        # Chat first, right after the connects, as in a class that starts: the commits then
        # meet the disk still busy with the connect storm's writes (the worst case).
        chat = await run_phase("chat")
        baseline = await run_phase("baseline")
        client_cpu, wall = time.process_time() - client0, time.monotonic() - wall0
        for t in readers:
            t.cancel()
        # Together: one after the other, the last ones would wait past the server's idle
        # timeout (nobody answers their heartbeats any more).
        await asyncio.gather(*(ws.close() for ws in [*(ws for ws, _ in sockets), trainer]))
        chat = {
            k.replace("p50_ms", "delivery_p50_ms")
            .replace("p99_ms", "delivery_p99_ms")
            .replace("max_ms", "delivery_max_ms")
            if not k.startswith("baseline_")
            else k: v
            for k, v in chat.items()
        }
        return {
            "benchmark": "chat",
            "learners": args.learners,
            "rate_per_s": args.rate,
            "seconds": args.seconds,
            "chat_rate_limit": limit,
            **chat,
            "server_cpu_share": round(chat["server_cpu_s"] / chat["elapsed_s"], 2),
            **baseline,
            "p99_vs_baseline": round(
                chat["delivery_p99_ms"] / max(baseline["baseline_p99_ms"], 0.01), 2
            ),
            # What storing costs the server, per message: the chat phase's CPU minus the
            # baseline's (same sockets and fan-out), less sensitive to a busy machine than p99.
            "storage_cpu_ms_per_message": round(
                (chat["server_cpu_s"] - baseline["baseline_server_cpu_s"])
                / max(chat["messages_sent"], 1)
                * 1000,
                2,
            ),
            "client_cpu_s": round(client_cpu, 2),
            "client_cpu_share": round(client_cpu / wall, 2),
            "cpus": os.cpu_count(),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()],
            "database": args.database,
        }
    finally:
        server.terminate()
        server.wait(timeout=20)
        if pg is not None:
            pg.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--learners", type=int, default=200)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument(
        "--rate-limit",
        type=int,
        default=0,
        help="the server's chat rate limit per learner (default: 5 / 10 s, raised if reached)",
    )
    ap.add_argument(
        "--settle", type=float, default=1.0, help="seconds between the connects and the chat"
    )
    ap.add_argument(
        "--database",
        choices=["sqlite", "postgresql"],
        default="sqlite",
        help="SQLite on disk in TMPDIR (default) or a throwaway PostgreSQL 15 with fsync on",
    )
    args = ap.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
