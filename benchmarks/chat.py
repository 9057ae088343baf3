"""Chat fan-out benchmark: one cohort, N learners and a trainer on a real server (127.0.0.1).

Learners send chat at a steady total rate for a fixed time; every learner receives every
message. Prints ONE JSON line: deliveries, delivery latency (send to receipt, per learner),
and the server process's CPU time during the chat phase.

    .venv/bin/python benchmarks/chat.py [--learners 200] [--rate 50] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
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
    links = await services._issue_many(cohort.id, ids, base_url=base, ttl_days=1)
    await db.close(engine)
    return cohort.id, [link.url for link in links]


async def cookie_for(client: httpx.AsyncClient, url: str) -> str:
    client.cookies.clear()
    r = await client.get(url)
    assert r.status_code == 303, r.text
    return "; ".join(f"{k}={v}" for k, v in client.cookies.items())


class ChatMsg(msgspec.Struct):
    type: str
    message: dict | None = None


async def run(args: argparse.Namespace) -> dict:
    from appliance.settings import load_settings

    tmp = Path(tempfile.mkdtemp(prefix="estrade-bench-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "ESTRADE_DATA_DIR": str(tmp),
        "ESTRADE_PORT": str(port),
        "ESTRADE_SESSION_STORE": "memory",
        "ESTRADE_LOG_LEVEL": "warning",
        "ESTRADE_PUBLIC_URL": base,
    }
    server = subprocess.Popen(  # noqa: ASYNC220 (started once, before timing)
        [sys.executable, "-m", "appliance", "serve"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
    )
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            for _ in range(200):
                try:
                    if (await http.get("/ready")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            settings = load_settings(env={}, data_dir=str(tmp), session_store="memory")
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
        latencies: list[float] = []
        received = [0] * args.learners
        decoder = msgspec.json.Decoder(ChatMsg)

        async def open_ws(cookie: str):
            ws = await websockets.connect(
                url, additional_headers={"Cookie": cookie}, max_size=None, compression=None
            )
            await ws.recv()  # welcome
            return ws

        sockets = []
        for i in range(0, args.learners, 20):
            sockets += await asyncio.gather(*[open_ws(c) for c in cookies[i : i + 20]])
        trainer = await open_ws(trainer_cookie)

        async def reader(i: int, ws) -> None:
            async for raw in ws:
                if '"chat_message"' not in raw:
                    continue
                msg = decoder.decode(raw)
                sent = float(msg.message["text"].split()[1])
                latencies.append(time.time() - sent)
                received[i] += 1

        async def drain(ws) -> None:
            async for _ in ws:
                pass

        readers = [asyncio.create_task(reader(i, ws)) for i, ws in enumerate(sockets)]
        readers.append(asyncio.create_task(drain(trainer)))
        await asyncio.sleep(1)  # let presence events settle

        cpu0 = cpu_seconds(server.pid)
        t0 = time.monotonic()
        sent = 0
        total = int(args.rate * args.seconds)
        while sent < total:
            due = t0 + sent / args.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            ws = sockets[sent % args.learners]
            await ws.send(json.dumps({"type": "chat_send", "text": f"t {time.time():.6f} m{sent}"}))
            sent += 1
        expected = sent * args.learners
        deadline = time.monotonic() + 10
        while sum(received) < expected and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds(server.pid) - cpu0
        for t in readers:
            t.cancel()
        for ws in [*sockets, trainer]:
            await ws.close()
        lat = sorted(latencies)

        def pct(q: float) -> float:
            return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 2) if lat else -1

        return {
            "benchmark": "chat",
            "learners": args.learners,
            "rate_per_s": args.rate,
            "seconds": args.seconds,
            "messages_sent": sent,
            "deliveries": sum(received),
            "expected_deliveries": expected,
            "lost": expected - sum(received),
            "delivery_p50_ms": pct(0.50),
            "delivery_p99_ms": pct(0.99),
            "delivery_max_ms": pct(1.0),
            "deliveries_per_s": round(sum(received) / elapsed, 1),
            "server_cpu_s": round(cpu, 2),
            "server_cpu_share": round(cpu / elapsed, 2),
            "database": "sqlite",
        }
    finally:
        server.terminate()
        server.wait(timeout=20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--learners", type=int, default=200)
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
