"""The cost of one pipe (appliance/media/pipe.py) per frame, owner and sibling, in µs of CPU.

    .venv/bin/python benchmarks/pipe_cost.py [--seconds 10] [--fps 30] [--packets 5]

Two processes over a real UNIX socket, as between two media workers: this one is the owner (a
:class:`PipeHub` feeding a room whose real :class:`Source` s deliver the frames), a child
process is the sibling (a :class:`PipeHub` listening, its :class:`PipedSource` s receiving).
Frames are paced as a class sends them (camera at ``--fps`` with ``--packets`` RTP payloads of
~1000 bytes, Opus every 20 ms), so each one wakes the sibling as in a served class. Nobody
subscribes on either side: what is left is the pipe. The owner's figure is its CPU with the
pipe minus the same pacing without it (a window of the same length, same process). Prints one
JSON line.

``--batch-ms W`` gathers the owner's frames W ms before each write (the
``media_pipe_batch_ms`` setting): fewer wake-ups of the sibling, each frame up to W ms later.
``delay_ms_p50``/``delay_ms_p99``/``delay_ms_max``: from a frame's due time on the owner to its
arrival at the sibling's source (one monotonic clock for both processes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.media.forward import Frame, Source  # noqa: E402
from appliance.media.pipe import PipedSource, PipeHub  # noqa: E402
from appliance.media.room import SLOTS  # noqa: E402

COHORT = 7


class _Room:
    """What the pipe reads of a room: its cohort and its sources (the rest is not on its path)."""

    def __init__(self, sources: dict[str, Any]) -> None:
        self.cohort_id = COHORT
        self.sources = sources


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def sibling(path: str) -> None:
    room = _Room({slot: PipedSource(slot, kind) for slot, kind in SLOTS})
    arrivals: list[tuple[str, int, float]] = []
    for source in room.sources.values():
        source.outlets.append(
            lambda source, frame: arrivals.append((source.slot, frame.pts, time.monotonic()))
        )
    hub = PipeHub(lambda cohort: room if cohort == COHORT else None)  # type: ignore[arg-type,return-value]
    hub.piped[COHORT] = None
    await hub.listen(path)
    print("ready", flush=True)
    # stdin: "mark" -> reply with CPU seconds and frames received so far; EOF -> stop
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.readline():
        frames = sum(s.stats.frames_in for s in room.sources.values())
        usage = resource.getrusage(resource.RUSAGE_SELF)
        print(
            json.dumps(
                {"cpu_s": cpu_s(), "frames": frames, "sys_s": usage.ru_stime, "arrivals": arrivals}
            ),
            flush=True,
        )
        arrivals = []
    await hub.close()


def frames(fps: float, packets: int, seconds: float) -> list[tuple[float, str, Frame]]:
    """(when, slot, frame) for ``seconds``: the camera's frames and Opus packets, in time order."""
    out: list[tuple[float, str, Frame]] = []
    n = 0
    while n / fps < seconds:
        payloads = tuple(os.urandom(1000) for _ in range(packets))
        size = sum(map(len, payloads))
        out.append((n / fps, "camera", Frame(None, n % 60 == 0, size, n * 3000, payloads)))
        n += 1
    n = 0
    while n * 0.02 < seconds:
        out.append((n * 0.02, "audio", Frame(None, True, 100, n * 960, (os.urandom(100),))))
        n += 1
    return sorted(out, key=lambda e: e[0])


async def paced(
    sources: dict[str, Source], plan: list[tuple[float, str, Frame]], due: dict[Any, float]
) -> float:
    """Deliver the plan in real time; the CPU seconds this process used meanwhile. ``due``
    gets each frame's due time by (slot, pts)."""
    c0 = cpu_s()
    t0 = time.monotonic()
    due.update({(slot, frame.pts): t0 + at for at, slot, frame in plan})
    for at, slot, frame in plan:
        delay = t0 + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        sources[slot].deliver(frame)
    return cpu_s() - c0


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--packets", type=int, default=5, help="RTP payloads per camera frame")
    parser.add_argument(
        "--batch-ms", type=float, default=0.0, help="the owner's batch window (0: each frame)"
    )
    parser.add_argument("--sibling", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sibling:
        await sibling(args.sibling)
        return
    path = os.path.join(tempfile.mkdtemp(prefix="estrade-pipe-cost-"), "pipe.sock")
    child = await asyncio.create_subprocess_exec(
        sys.executable, os.environ.get("PIPE_COST_SIBLING", __file__), "--sibling", path,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    assert (await child.stdout.readline()).strip() == b"ready"

    async def mark() -> dict[str, float]:
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(b"mark\n")
        return json.loads(await child.stdout.readline())  # type: ignore[no-any-return]

    sources = {slot: Source(slot, kind) for slot, kind in SLOTS}
    room = _Room(sources)
    plan = frames(args.fps, args.packets, args.seconds)
    load = [os.getloadavg()[0]]
    due: dict[Any, float] = {}
    without = await paced(sources, plan, due)  # the pacing alone (no pipe yet)
    hub = PipeHub(lambda cohort: None, args.batch_ms / 1000)
    await hub.feed(room, 1, path, 1)  # type: ignore[arg-type]
    await asyncio.sleep(0.5)
    before = await mark()
    owner = await paced(sources, plan, due)
    await asyncio.sleep(0.5)
    after = await mark()
    load.append(os.getloadavg()[0])
    await hub.close()
    child.stdin.close()
    await child.wait()
    received = after["frames"] - before["frames"]
    delays = sorted((at - due[slot, pts]) * 1000 for slot, pts, at in after["arrivals"])
    print(
        json.dumps(
            {
                "benchmark": "pipe_cost",
                "frames": len(plan),
                "frames_received": received,
                "owner_us_per_frame": round((owner - without) / len(plan) * 1e6, 1),
                "sibling_us_per_frame": round(
                    (after["cpu_s"] - before["cpu_s"]) / max(received, 1) * 1e6, 1
                ),
                "owner_cpu_s": round(owner, 4),
                "owner_cpu_s_without_pipe": round(without, 4),
                "sibling_cpu_s": round(after["cpu_s"] - before["cpu_s"], 4),
                "sibling_sys_s": round(after["sys_s"] - before["sys_s"], 4),
                "seconds": args.seconds,
                "batch_ms": args.batch_ms,
                "delay_ms_p50": round(delays[len(delays) // 2], 2),
                "delay_ms_p99": round(delays[int(len(delays) * 0.99)], 2),
                "delay_ms_max": round(delays[-1], 2),
                "loadavg": load,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    uvloop.run(main())  # as the media workers run
