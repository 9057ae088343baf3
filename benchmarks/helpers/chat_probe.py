"""The chat probe of benchmarks/relay.py, in a process of its own.

Timed in the benchmark's client, chat delivery included that client's own event loop, which
also runs the 30-100 aiortc learners (0.2-0.3 core): under media a probe message waited for
their packets as much as for the server. Here two sockets of their own (the trainer, logged in
again: a session of its own; and one more learner, not receiving media) live in this process,
whose loop does nothing else, so ``chat_p99_ms_under_media`` times the server.

Driven over stdin/stdout by relay.py: prints ``ready`` once both sockets are open; each line
``go SECONDS RATE`` runs one probe (the trainer posts RATE messages a second, the learner's
socket times them) and prints one JSON list of delivery times in ms; ``quit`` (or end of
input) closes.

    python benchmarks/helpers/chat_probe.py BASE_URL WS_URL LEARNER_COOKIE
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import httpx
import websockets


async def login_trainer(base: str) -> str:
    async with httpx.AsyncClient(base_url=base) as http:
        await http.get("/api/auth/csrf")
        http.headers["x-csrftoken"] = http.cookies["csrftoken"]
        r = await http.post(
            "/api/auth/login",
            json={"email": "trainer@bench.test", "password": "bench password 1"},
        )
        r.raise_for_status()
        return "; ".join(f"{k}={v}" for k, v in http.cookies.items())


async def main(base: str, url: str, learner_cookie: str) -> None:
    trainer_cookie = await login_trainer(base)
    sender = await websockets.connect(url, additional_headers={"Cookie": trainer_cookie})
    receiver = await websockets.connect(url, additional_headers={"Cookie": learner_cookie})
    sent: dict[str, float] = {}
    got: list[float] = []

    async def read(ws: Any, timed: bool) -> None:
        async for raw in ws:
            now = time.monotonic()
            msg = json.loads(raw)
            if msg["type"] == "heartbeat":
                await ws.send('{"type": "heartbeat"}')
            elif timed and msg["type"] == "chat_message":
                start = sent.pop(msg["message"]["text"], None)
                if start is not None:
                    got.append((now - start) * 1000)

    readers = [
        asyncio.ensure_future(read(sender, False)),
        asyncio.ensure_future(read(receiver, True)),
    ]
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    try:
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
            if not line or line[0] != "go":
                break
            seconds, rate = float(line[1]), float(line[2])
            got.clear()
            start = time.monotonic()
            for i in range(int(seconds * rate)):
                text = f"probe {start:.3f} {i}"
                sent[text] = time.monotonic()
                await sender.send(json.dumps({"type": "chat_send", "text": text}))
                await asyncio.sleep(max(0.0, start + (i + 1) / rate - time.monotonic()))
            await asyncio.sleep(1.0)  # the last ones arrive
            lost = len(sent)
            sent.clear()
            print(json.dumps({"ms": got, "lost": lost}), flush=True)
    finally:
        for task in readers:
            task.cancel()
        await sender.close()
        await receiver.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
