"""Media relay benchmark: CPU per learner of the relay as served, beside the in-process figure.

**Served** (the judge): ``estrade serve`` runs in a child process (SQLite in a temporary data
directory, media on 127.0.0.1). One aiortc trainer (synthetic 640x480 VP8 at 30 fps, encoder
pinned at ``--bitrate``, plus Opus) and N count-only aiortc learners signal over the classroom
socket like browsers: each learner has its own join link, cookie and socket, sends
``media_subscribe``, answers ``media_offer`` with ``media_answer``. The server process's CPU
(all threads, ``/proc/<pid>/stat``) is read over a window with the trainer publishing and the
learners' sockets open but not subscribed (N=0), then over the same window with the N learners
receiving; per learner = (busy - idle) / N.

**In-process** (the old figure, same sitting): the relay alone (``MediaServer``, no web app)
in a child process driven over a local socket, the same trainer and learners.

    .venv/bin/python benchmarks/relay.py [--learners 30] [--seconds 12] [--send-path lean]
        [--compare-send-path aiortc] [--no-in-process] [--transcode-baseline 3]
        [--layers-learners 10] [--layers-only] [--media-workers N] [--compare-media-workers M]
        [--chat-probe] [--recording-rounds 3] [--recording-only]

**Media workers** (``--media-workers N``, docs/media-workers.md): the server runs the relay in
N worker processes; the CPU figures then add up the served process and its children, and
``web_cpu_busy`` / ``workers_cpu_busy`` show each. ``--compare-media-workers M`` serves a
second time with M workers (0: in process) in the same sitting: ``workers_cost_ratio``.
``--chat-probe``: the trainer posts 10 chat messages a second through both windows and a
learner's socket times their delivery: ``chat_p99_ms_idle`` (trainer publishing, nobody
receiving) beside ``chat_p99_ms_under_media`` (the N learners receiving) — what the relay in
the web process costs chat, and what workers give back. The probe runs in a process of its
own (benchmarks/helpers/chat_probe.py: a second trainer session and one more learner), not
in this client's event loop, which runs the aiortc learners and delayed their messages too.

**Temporal layers** (same sitting, ``--layers-learners``): a trainer sending L1T3 VP8, learners
moved together full -> camera_half -> camera_quarter -> full over their sockets;
``cpu_per_learner_by_level`` (served CPU-seconds per learner-second at each level: a lower level
must cost less) and ``layer_switch_keyframes`` (keyframes the steps cost: goal 0).

**Recording** (same sitting, ``--recording-rounds``; docs/recordings.md): the relay alone with a
trainer sending Opus + camera + screen, CPU windows in turn: publishing to nobody, recording,
one learner receiving. ``recording_cpu_per_stream_s`` (CPU-seconds per second to record the
trainer's three tracks), ``recording_vs_one_learner`` (against forwarding them to one learner:
goal <= 1.0), ``recording_bytes_per_hour``, ``recording_finalize_cpu_s_per_hour`` (the remux
into final files at the end).

``RELAY_SERVER_CPUS=0`` (an experiment) runs the server and its workers on CPU 0 and this
client on the others: with every worker on one core, nothing of the server runs at once, which
tells the cost of running at once (caches, the host's clock) from the cost of piping.

``--client-nice 10`` (root only) runs this client at niceness 10 and the server, its workers
and the chat probe at 0. The 30 learners stand in for 30 browsers on 30 other machines; here
they take about half a core of the same two, and their bursts reach the chat probe's tail
under media (p50 unchanged). With the client niced the server and its workers still compete
with each other and with the probe as they would on a server (docs/media-workers.md "Chat's
tail": it takes part of the tail away, not all). With ``--repeat``,
``chat_p99_ms_*_pooled`` is the p99 of every N-worker window's messages together (~300 per
30 s window): one window's p99 is its two or three latest messages.

Prints one JSON line. Everything stays on 127.0.0.1. The machine is shared: read the load
average beside the figures and prefer the same-run ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the relay process -----------------------------------------------------------------------


async def serve(mode: str, send_path: str | None = None) -> None:
    """Child process: a relay driven by JSON lines on a local TCP socket."""
    from appliance.media.network import IceScope, ice_scope

    scope = IceScope("127.0.0.1")
    if mode == "forward":
        from appliance.media import MediaServer
        from appliance.settings import load_settings

        settings = load_settings(
            env={},
            data_dir=tempfile.mkdtemp(),
            media_interface="127.0.0.1",
            media_max_learners_per_room=1000,
            **({"media_send_path": send_path} if send_path else {}),
        )
        ended: list[Any] = []
        server = MediaServer(settings, ended.append)
        room = server.room(1)
    else:
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
        from aiortc.contrib.media import MediaRelay

        from appliance.media.sdp import pin_codecs

        relay = MediaRelay()
        tracks: dict[str, Any] = {}
        pcs: dict[Any, Any] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := await reader.readline():
            req = json.loads(line)
            op = req["op"]
            res: dict[str, Any] = {}
            if mode == "forward":
                if op == "publish":
                    res["sdp"] = await room.publish(req["sdp"])
                elif op == "subscribe":
                    res["sdp"] = (await room.subscribe(req["id"])).sdp
                elif op == "answer":
                    await room.accept_answer(req["id"], req["sdp"])
                elif op == "leave":
                    await room.leave(req["id"])
                elif op == "record_start":
                    await server.start_recording(1, Path(req["dir"]))
                elif op == "record_stop":
                    await server.stop_recording(1)
                    result = ended[-1].result
                    res = {"reason": ended[-1].reason, "files": result.files if result else {}}
                    res["duration_s"] = result.duration_s if result else 0.0
                elif op == "stats":
                    st = room.stats()
                    cam = room.sources["camera"].stats
                    res = {
                        "recording_bytes": server.stats().recording_bytes,
                        "video_frames_in": cam.frames_in,
                        "video_bytes_in": cam.bytes_in,
                        "video_packets_in": cam.packets_in,
                        "audio_packets_in": room.sources["audio"].stats.packets_in,
                        "plis_out": st.plis_out,
                        "overflows": st.queue_overflows,
                        "join": st.join_to_first_frame_s,
                        # frames the relay received since each learner's first frame
                        "expected": {
                            str(i): cam.frames_in - lr.tracks["camera"].stats.source_frames_at_first
                            for i, lr in room._learners.items()
                        },
                    }
            else:
                if op == "publish":
                    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
                    pcs["publisher"] = pc

                    @pc.on("track")
                    def on_track(track: Any) -> None:
                        tracks[track.kind] = track

                    with ice_scope(scope):
                        await pc.setRemoteDescription(RTCSessionDescription(req["sdp"], "offer"))
                        for t in pc.getTransceivers():
                            pin_codecs(t)
                        await pc.setLocalDescription(await pc.createAnswer())
                    res["sdp"] = pc.localDescription.sdp
                elif op == "subscribe":
                    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
                    pcs[req["id"]] = pc
                    for kind in ("audio", "video"):
                        t = pc.addTransceiver(relay.subscribe(tracks[kind]), direction="sendonly")
                        pin_codecs(t)
                    with ice_scope(scope):
                        await pc.setLocalDescription(await pc.createOffer())
                    res["sdp"] = pc.localDescription.sdp
                elif op == "answer":
                    await pcs[req["id"]].setRemoteDescription(
                        RTCSessionDescription(req["sdp"], "answer")
                    )
                elif op == "stats":
                    res = {"video_frames_in": -1}
            writer.write(json.dumps(res).encode() + b"\n")
            await writer.drain()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    print(port, flush=True)
    await asyncio.Event().wait()


# -- the driver ------------------------------------------------------------------------------


class Relay:
    def __init__(self, mode: str, send_path: str | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", mode]
            + (["--send-path", send_path] if send_path else []),
            stdout=subprocess.PIPE,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)

    async def call(self, **req: Any) -> dict[str, Any]:
        self.writer.write(json.dumps(req).encode() + b"\n")
        await self.writer.drain()
        return json.loads(await self.reader.readline())

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


async def cpu_rate(relay: Relay, seconds: float) -> float:
    c0, t0 = relay.cpu_s(), time.monotonic()
    await asyncio.sleep(seconds)
    return (relay.cpu_s() - c0) / (time.monotonic() - t0)


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


# -- as served: `estrade serve` in a child process, signalling over the classroom socket ------


async def metrics_sum(base: str, name: str, **labels: str) -> float:
    """Sum of the samples of one metric on the served process's /metrics (127.0.0.1)."""
    import httpx

    async with httpx.AsyncClient(base_url=base) as http:
        text = (await http.get("/metrics")).text
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + "{", name + " ")) and all(w in line for w in want)
    )


def trainer_packets(trainer: Any) -> int:
    """RTP packets the trainer's senders sent (aiortc's own counter, as in its getStats)."""
    return sum(
        t.sender._RTCRtpSender__packet_count for t in trainer.pc.getTransceivers() if t.sender
    )


def p95(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(0.95 * len(values)))] if values else -1.0


def proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def tree_cpu_s(pid: int) -> dict[int, float]:
    """CPU seconds of ``pid`` and of its children (the media workers of ``estrade serve``)."""
    cpu = {pid: proc_cpu_s(pid)}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            cpu[int(stat.parent.name)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    return cpu


#: ``--client-nice N``: this client's niceness (the server and the chat probe start at 0)
CLIENT_NICE = 0


def _unniced() -> list[str]:
    """The prefix that starts a child back at niceness 0 when this client runs niced."""
    return ["nice", "-n", str(-CLIENT_NICE)] if CLIENT_NICE else []


def cpu_rates(before: dict[int, float], after: dict[int, float], wall: float) -> dict[int, float]:
    """Cores used by each process over ``wall`` seconds (processes present at both reads)."""
    return {pid: (after[pid] - before[pid]) / wall for pid in before.keys() & after.keys()}


class ProbeProcess:
    """benchmarks/chat_probe.py in a child process: the chat probe timed by an event loop that
    runs nothing else (not the client's, busy with the aiortc learners)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, args: tuple[str, str, str]) -> ProbeProcess:
        proc = await asyncio.create_subprocess_exec(
            *_unniced(), sys.executable, str(Path(__file__).parent / "helpers" / "chat_probe.py"),
            *args,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if line.strip() != b"ready":
            raise RuntimeError(f"chat probe process did not start: {line!r}")
        return cls(proc)

    async def run(self, seconds: float, rate: float = 10.0) -> list[float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"go {seconds} {rate}\n".encode())
        await self.proc.stdin.drain()
        result = json.loads(await asyncio.wait_for(self.proc.stdout.readline(), seconds + 30))
        if result["lost"]:
            raise RuntimeError(f"chat probe: {result['lost']} messages never arrived")
        return list(result["ms"])

    async def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.write(b"quit\n")
            with contextlib.suppress(ConnectionError):
                await self.proc.stdin.drain()
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


class Sock:
    """A classroom socket that keeps reading (so the server never blocks on it)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.reader = asyncio.ensure_future(self._read())
        self.refs = 0
        self.watch: Any = None  # called with each message as it arrives (the chat probe)
        self.probe_args: tuple[str, str, str] | None = None  # served_class(spare_learner=True)
        self.level = "full"  # the learner's rung of the ladder, from media_quality
        self.steps = 0  # automatic steps (the relay's ladder)

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                if msg["type"] == "heartbeat":  # answered like a browser, or dropped as dead
                    await self.ws.send('{"type": "heartbeat"}')
                    continue
                if msg["type"] == "media_quality":
                    self.level = msg["level"]
                    self.steps += bool(msg.get("automatic"))
                if self.watch is not None:
                    self.watch(msg)
                self.queue.put_nowait(msg)
        except Exception:  # closed
            return

    async def expect(self, type_: str, timeout: float = 20.0, **match: Any) -> dict[str, Any]:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while True:
            msg = await asyncio.wait_for(self.queue.get(), max(0.01, deadline - time.monotonic()))
            if msg["type"] in ("error", "forbidden") and msg.get("ref") in match.values():
                raise RuntimeError(f"refused: {msg}")
            if msg["type"] == type_ and all(msg.get(k) == v for k, v in match.items()):
                return msg

    async def send(self, type_: str, **fields: Any) -> None:
        await self.ws.send(json.dumps({"type": type_, **fields}))

    async def request(self, type_: str, **fields: Any) -> dict[str, Any]:
        self.refs += 1
        ref = f"b{self.refs}"
        await self.send(type_, ref=ref, **fields)
        return await self.expect("ack", ref=ref)

    async def close(self) -> None:
        await self.ws.close()
        self.reader.cancel()


def _cpus(spec: str) -> set[int]:
    """CPUs named like taskset's list: "0", "0,1", "2-3"."""
    out: set[int] = set()
    for part in spec.split(","):
        low, _, high = part.partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return out


@contextlib.asynccontextmanager
async def served_class(
    learners: int,
    send_path: str | None = None,
    media_workers: int = 0,
    worker_learners: int = 0,
    spare_learner: bool = False,
    hold_full: bool = False,
) -> AsyncIterator[tuple[subprocess.Popen[bytes], str, Sock, list[Sock]]]:
    """``estrade serve`` in a child process with a seeded cohort: (process, base URL, the
    trainer's socket, one socket per learner, connected). Everything is closed on exit.
    ``spare_learner``: one more learner enrolled, not connected; the trainer's socket's
    ``probe_args`` are then (base URL, socket URL, that learner's cookie) for
    helpers/chat_probe.py. ``hold_full``: the ladder's loss and RTT thresholds out of reach
    (with learners that send no REMB, see run_served, every learner stays at ``full``)."""
    import httpx
    import websockets
    from chat import cookie_for, free_port, seed, wait_ready  # benchmarks/chat.py

    from appliance.settings import load_settings

    tmp = Path(tempfile.mkdtemp(prefix="estrade-relay-bench-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        "ESTRADE_DATA_DIR": str(tmp),
        "ESTRADE_PORT": str(port),
        "ESTRADE_SESSION_STORE": "memory",
        "ESTRADE_LOG_LEVEL": "warning",
        "ESTRADE_PUBLIC_URL": base,
        "ESTRADE_MEDIA_INTERFACE": "127.0.0.1",
        "ESTRADE_MEDIA_MAX_LEARNERS_PER_ROOM": str(max(200, learners)),
    }
    if send_path:
        env["ESTRADE_MEDIA_SEND_PATH"] = send_path
    if hold_full:
        env["ESTRADE_MEDIA_STEP_DOWN_LOSS"] = "1"
        env["ESTRADE_MEDIA_STEP_DOWN_RTT_S"] = "3600"
    env["ESTRADE_MEDIA_WORKERS"] = str(media_workers)
    if worker_learners:  # the class spreads over the workers past this many on one
        env["ESTRADE_MEDIA_WORKER_LEARNERS"] = str(worker_learners)
    log = (tmp / "serve.log").open("wb")
    command = [sys.executable, "-m", "appliance", "serve"]
    if os.environ.get("RELAY_SERVER_CPUS"):  # an experiment: the server (and its workers) on
        # these CPUs, this client on the others (does running at once cost CPU?)
        command = ["taskset", "-c", os.environ["RELAY_SERVER_CPUS"], *command]
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)) - _cpus(env["RELAY_SERVER_CPUS"]))
    command = [*_unniced(), *command]
    server = subprocess.Popen(  # noqa: ASYNC220 (started once, before timing)
        command, env=env, cwd=ROOT, stdout=log, stderr=log
    )
    socks: list[Sock] = []
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            await wait_ready(http, 30.0)
            settings = load_settings(env={}, data_dir=str(tmp), session_store="memory")
            cohort_id, links = await seed(settings, learners + spare_learner, base)
            cookies = [await cookie_for(http, link) for link in links]
            http.cookies.clear()
            await http.get("/api/auth/csrf")
            http.headers["x-csrftoken"] = http.cookies["csrftoken"]
            r = await http.post(
                "/api/auth/login",
                json={"email": "trainer@bench.test", "password": "bench password 1"},
            )
            assert r.status_code == 200, r.text
            trainer_cookie = "; ".join(f"{k}={v}" for k, v in http.cookies.items())
        url = f"ws://127.0.0.1:{port}/ws/cohorts/{cohort_id}"

        async def connect(cookie: str) -> Sock:
            ws = await websockets.connect(url, additional_headers={"Cookie": cookie}, max_size=None)
            return Sock(ws)

        tsock = await connect(trainer_cookie)
        if spare_learner:
            tsock.probe_args = (base, url, cookies[learners])
        socks.append(tsock)
        for i in range(0, learners, 20):
            socks += await asyncio.gather(*[connect(c) for c in cookies[i : min(i + 20, learners)]])
        yield server, base, tsock, socks[1:]
    finally:
        for sock in socks:
            await sock.close()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


async def run_served(
    learners: int,
    seconds: float,
    send_path: str | None,
    warmup: float,
    profile: str | None = None,
    burst: int = 10,
    light: bool = False,
    media_workers: int = 0,
    probe: bool = False,
    worker_learners: int = 0,
    hold_full: bool = False,
) -> dict[str, Any]:
    from tests.media.peers import Learner, Trainer, wait_for

    peers: list[Learner] = []
    trainer: Trainer | None = None
    served = served_class(
        learners,
        send_path,
        media_workers,
        worker_learners,
        spare_learner=probe,
        hold_full=hold_full,
    )
    prober: ProbeProcess | None = None
    async with served as (server, base, tsock, lsocks):
        try:
            trainer = Trainer(replay=True, width=640, height=480, fps=30)
            await tsock.send("media_publish", sdp=await trainer.offer())
            await trainer.answer((await tsock.expect("media_answer"))["sdp"])
            if probe:
                await tsock.request("session_start")  # chat as in a running class
                assert tsock.probe_args is not None
                prober = await ProbeProcess.start(tsock.probe_args)
            await asyncio.sleep(warmup)  # ICE, DTLS, the sockets' presence storm settling
            load = os.getloadavg()[0]
            # The served process and its media workers (ESTRADE_MEDIA_WORKERS > 0), together.
            c0, t0 = tree_cpu_s(server.pid), time.monotonic()
            chat_idle: list[float] = []
            if probe:  # chat with the trainer publishing and nobody receiving media
                assert prober is not None
                chat_idle = await prober.run(seconds)
            else:
                await asyncio.sleep(seconds)
            idle_by_pid = cpu_rates(c0, tree_cpu_s(server.pid), time.monotonic() - t0)
            idle = sum(idle_by_pid.values())

            steps: dict[str, list[float]] = {
                "offer": [],
                "answer": [],
                "acked": [],
                "connected": [],
            }

            async def join(sock: Sock) -> Learner:
                learner = Learner(decode=False)
                t0 = learner.started_at = time.monotonic()

                @learner.pc.on("connectionstatechange")
                def connected() -> None:
                    if learner.pc.connectionState == "connected":
                        steps["connected"].append(time.monotonic() - t0)

                await sock.send("media_subscribe")
                offer = await sock.expect("media_offer")
                steps["offer"].append(time.monotonic() - t0)
                answer = await learner.answer(offer["sdp"])
                steps["answer"].append(time.monotonic() - t0)
                if hold_full:  # and no REMB from the learners: the ladder steps on those too
                    for t in learner.pc.getTransceivers():
                        t.receiver._RTCRtpReceiver__remote_bitrate_estimator = None
                if light:
                    learner.go_light()
                await sock.request("media_answer", sdp=answer)
                steps["acked"].append(time.monotonic() - t0)
                return learner

            # Browsers arrive in small bursts.
            for i in range(0, learners, burst):
                peers += await asyncio.gather(*[join(s) for s in lsocks[i : i + burst]])

            def video(p: Any) -> list[float]:  # light learners: the busiest SSRC is the camera
                return max(p.light.values(), key=lambda e: e[1])

            if light:
                await wait_for(lambda: all(len(p.light) >= 2 for p in peers), within=30)
                await asyncio.sleep(0.5)
                joins = sorted(video(p)[0] - p.started_at for p in peers)
            else:
                await wait_for(lambda: all(p.first_frame_at for p in peers), within=30)
                joins = sorted(p.first_frame_at - p.started_at for p in peers)  # type: ignore[operator]
            await asyncio.sleep(2.0)
            # Where the learners are (the placement, from the web process's per-worker series).
            by_worker = [
                int(await metrics_sum(base, "estrade_media_worker_learners", worker=str(k)))
                for k in range(media_workers)
            ]
            packets0 = [p.packets for p in peers]
            trainer0 = trainer_packets(trainer)
            client0 = time.process_time()
            spy = None
            if profile:
                # py-spy samples the served process over the window (its CPU figure is then
                # inflated by the sampling: read the breakdown, not learners_per_core).
                spy = subprocess.Popen(  # noqa: ASYNC220
                    [str(Path(sys.executable).parent / "py-spy"), "record",
                     "--pid", str(server.pid), "--duration", str(int(seconds)), "--rate", "250",
                     "--format", "raw", "--native", "--subprocesses", "--output", profile],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            sent0 = await metrics_sum(base, "estrade_media_forwarded_packets_total")
            steps0 = sum(sock.steps for sock in lsocks)
            c0, t0 = tree_cpu_s(server.pid), time.monotonic()
            chat_busy: list[float] = []
            if probe:  # the same chat while the relay serves every learner
                assert prober is not None
                chat_busy = await prober.run(seconds)
            else:
                await asyncio.sleep(seconds)
            if spy is not None:
                await asyncio.to_thread(spy.wait)
            wall = time.monotonic() - t0
            busy_by_pid = cpu_rates(c0, tree_cpu_s(server.pid), wall)
            busy = sum(busy_by_pid.values())
            workers_busy = sorted(
                (v for pid, v in busy_by_pid.items() if pid != server.pid), reverse=True
            )
            client = (time.process_time() - client0) / wall
            pps = [(p.packets - n) / wall for p, n in zip(peers, packets0, strict=True)]
            trainer_pps = (trainer_packets(trainer) - trainer0) / wall
            # Packets the relay sent (its senders' counters; retransmissions not included).
            sent_pps = (
                await metrics_sum(base, "estrade_media_forwarded_packets_total") - sent0
            ) / wall
            load = max(load, os.getloadavg()[0])
            # The ladder steps a learner whose client reports loss down (camera_half drops
            # temporal layers): the relay then sends fewer packets for the same learners, and
            # a figure per learner no longer compares two servings like with like.
            ladder = {
                "steps_in_window": sum(sock.steps for sock in lsocks) - steps0,
                "below_full_at_end": sum(sock.level != "full" for sock in lsocks),
            }
            # The relay's own view: NACKs and PLIs (learners' losses, keyframes asked for).
            rtcp = {
                f"{kind}_{direction}": await metrics_sum(
                    base, f"estrade_rtcp_{kind}_total", direction=direction
                )
                for kind in ("nack", "pli")
                for direction in ("received", "sent")
            }
            # Delivery: the trainer stops, the last frames arrive; each learner's frames against the
            # frames between its first and last (RTP timestamps advance 3000 per frame at 30 fps).
            await trainer.close()
            await asyncio.sleep(1.5)
            if light:  # packets: the frames cannot be told apart undecrypted
                got = sum(int(video(p)[1]) for p in peers)
                expected = sum(int(video(p)[3] - video(p)[2]) + 1 for p in peers)
            else:
                got = sum(len(p.assembled) for p in peers)
                # modulo 2**32: a stream whose RTP timestamp wrapped counts right
                expected = sum(
                    ((p.assembled[-1][0] - p.assembled[0][0]) % 2**32) // 3000 + 1 for p in peers
                )
            per_learner = max(busy - idle, 1e-9) / learners
            pps_mean = sum(pps) / len(pps)
            us_per_packet = per_learner / max(pps_mean, 1) * 1e6
            return {
                "learners_per_core": learners / max(busy - idle, 1e-9),
                # the same cost for the stream the trainer sent (a loaded client may receive less)
                "learners_per_core_at_trainer_rate": 1e6 / max(us_per_packet * trainer_pps, 1e-9),
                "trainer_packets_per_s": trainer_pps,
                "us_per_packet_per_learner": us_per_packet,
                # per packet the relay SENT: not skewed by a client too starved to receive them all
                "us_per_packet_sent": max(busy - idle, 1e-9) / max(sent_pps, 1) * 1e6,
                "relay_packets_sent_per_s": sent_pps,
                # the same seen from the learners (all of them), to check the relay's count
                "learners_packets_received_per_s": sum(pps),
                "frames_delivered_ratio": got / max(expected, 1),
                "join_to_first_frame_p95_s": p95(joins),
                "join_p95_steps_s": {k: round(p95(v), 3) for k, v in steps.items()},
                "server_cpu_idle": idle,
                "server_cpu_busy": busy,
                # the web process alone (sockets, chat, HTTP; and the relay when in process)
                "web_cpu_idle": idle_by_pid.get(server.pid, 0.0),
                "web_cpu_busy": busy_by_pid.get(server.pid, 0.0),
                "workers_cpu_busy": workers_busy,
                "workers_cpu_idle_total": sum(
                    v for pid, v in idle_by_pid.items() if pid != server.pid
                ),
                "learners_by_worker": by_worker,
                "chat_p50_ms_idle": pct(chat_idle, 0.5),
                "chat_p99_ms_idle": pct(chat_idle, 0.99),
                "chat_p50_ms_under_media": pct(chat_busy, 0.5),
                "chat_p99_ms_under_media": pct(chat_busy, 0.99),
                # the samples themselves (not printed): --repeat pools them over the servings
                "chat_ms_idle": chat_idle,
                "chat_ms_under_media": chat_busy,
                "packets_per_learner_s": pps_mean,
                "packets_per_learner_s_min": min(pps),
                "loadavg": load,
                "client_cpu": client,
                "relay_rtcp": rtcp,
                "ladder": ladder,
            }
        finally:
            if prober is not None:
                await prober.close()
            for p in peers:
                await p.close()
            if trainer is not None:
                await trainer.close()


# -- temporal layers: the cost of each camera level, keyframes on a step ---------------------


async def run_layers(learners: int, seconds: float, warmup: float) -> dict[str, Any]:
    """A trainer sending L1T3 VP8 (640x480, 30 fps, libvpx's 3-layer pattern), N count-only
    learners moved together through the camera levels over their sockets (``media_quality``):
    the served process's CPU per learner at each level, and how many keyframes the steps cost
    (PLIs the relay sent the trainer, keyframes the trainer sent: goal 0).

    The learners are aiortc peers whose stock jitter buffer asks for a keyframe (PLI) on any
    missing sequence number, so a step that left a hole would show as a request.
    """
    from tests.media.peers import Learner, Trainer, wait_for

    levels = ("full", "camera_half", "camera_quarter")
    peers: list[Learner] = []
    trainer: Trainer | None = None
    async with served_class(learners) as (server, base, tsock, lsocks):
        try:
            trainer = Trainer(layered=True, width=320, height=240, frames=300, bitrate=500_000)
            video = trainer.video
            await tsock.send("media_publish", sdp=await trainer.offer())
            await trainer.answer((await tsock.expect("media_answer"))["sdp"])
            await asyncio.sleep(warmup)
            c0, t0 = proc_cpu_s(server.pid), time.monotonic()
            await asyncio.sleep(seconds)
            idle = (proc_cpu_s(server.pid) - c0) / (time.monotonic() - t0)

            async def join(sock: Sock) -> Learner:
                learner = Learner(decode=False)
                await sock.send("media_subscribe")
                offer = await sock.expect("media_offer")
                await sock.request("media_answer", sdp=await learner.answer(offer["sdp"]))
                return learner

            for i in range(0, learners, 10):
                peers += await asyncio.gather(*[join(sock) for sock in lsocks[i : i + 10]])
            await wait_for(lambda: all(p.frames["video"] for p in peers), within=30)
            await asyncio.sleep(2.0)

            async def keyframes() -> tuple[float, float]:
                """(keyframes the relay asked the trainer for, PLIs from learners). The trainer's
                own keyframe when its replay loops (every ``frames`` / 30 s) is not a request."""
                sent = await metrics_sum(base, "estrade_rtcp_pli_total", direction="sent")
                got = await metrics_sum(base, "estrade_rtcp_pli_total", direction="received")
                return sent, got

            cpu: dict[str, float] = {}
            fps: dict[str, float] = {}
            counts: list[tuple[float, float]] = []
            # The first window stays at full (no step: the same-run baseline for keyframes),
            # then down step by step, then straight back up.
            for n, level in enumerate((*levels, "full")):
                counts.append(await keyframes())
                if n:
                    await asyncio.gather(
                        *[sock.request("media_quality", level=level) for sock in lsocks]
                    )
                await asyncio.sleep(1.5)  # a step up waits for layer-sync frames
                frames0 = sum(p.frames["video"] for p in peers)
                c0, t0 = proc_cpu_s(server.pid), time.monotonic()
                await asyncio.sleep(seconds)
                wall = time.monotonic() - t0
                busy = (proc_cpu_s(server.pid) - c0) / wall
                if level not in cpu:
                    cpu[level] = max(busy - idle, 1e-9) / learners
                    fps[level] = (sum(p.frames["video"] for p in peers) - frames0) / wall / learners
            counts.append(await keyframes())
            return {
                # over the three windows that began with a step (down, down, up)
                "layer_switch_keyframes": int(
                    counts[4][0] - counts[1][0] + counts[4][1] - counts[1][1]
                ),
                "layer_switch_plis_from_learners": int(counts[4][1] - counts[1][1]),
                # over the first window, without a step (what the link and the client cost)
                "keyframes_without_switch": int(
                    counts[1][0] - counts[0][0] + counts[1][1] - counts[0][1]
                ),
                "plis_from_learners_without_switch": int(counts[1][1] - counts[0][1]),
                "cpu_per_learner_by_level": {k: round(v, 6) for k, v in cpu.items()},
                "cpu_ratio_by_level": {k: round(v / cpu["full"], 3) for k, v in cpu.items()},
                "fps_by_level": {k: round(v, 1) for k, v in fps.items()},
                "layers_server_cpu_idle": round(idle, 3),
                "layers_trainer_kbps": round(
                    sum(map(len, video.encoded)) * 8 * 30 / len(video.encoded) / 1000  # type: ignore[union-attr]
                ),
            }
        finally:
            for p in peers:
                await p.close()
            if trainer is not None:
                await trainer.close()


# -- in process: the relay alone (the old figure) ---------------------------------------------


async def run_in_process(
    mode: str, learners: int, seconds: float, decoding: int, send_path: str | None = None
) -> dict[str, Any]:
    from tests.media.peers import Learner, Trainer, wait_for

    relay = Relay(mode, send_path)
    trainer = Trainer(replay=True, width=640, height=480, fps=30)
    peers: list[Learner] = []
    try:
        await relay.connect()
        await trainer.answer((await relay.call(op="publish", sdp=await trainer.offer()))["sdp"])
        await asyncio.sleep(3.0)  # warm-up: ICE, DTLS, bitrate ramp
        idle = await cpu_rate(relay, min(seconds, 5.0))

        async def join(i: int) -> Learner:
            learner = Learner(decode=i < decoding)
            offer = (await relay.call(op="subscribe", id=i))["sdp"]
            learner.started_at = time.monotonic()
            await relay.call(op="answer", id=i, sdp=await learner.answer(offer))
            return learner

        for i in range(learners):
            peers.append(await join(i))
        await wait_for(lambda: all(p.first_frame_at for p in peers), within=20)
        joins = sorted(p.first_frame_at - p.started_at for p in peers)  # type: ignore[operator]
        await asyncio.sleep(2.0)
        audio0 = [p.frames["audio"] for p in peers]
        stats0 = await relay.call(op="stats")
        busy = await cpu_rate(relay, seconds)
        stats1 = await relay.call(op="stats")
        audio = [p.frames["audio"] - a for p, a in zip(peers, audio0, strict=True)]
        frames_in = stats1["video_frames_in"] - stats0["video_frames_in"]
        # Delivery: stop the trainer, let the queues drain, then compare each learner's frames
        # with what the relay received since that learner's first frame. aiortc's receiving
        # buffer holds the last frame back until the next one starts: +1 per learner.
        await trainer.close()
        await asyncio.sleep(1.5)
        final = await relay.call(op="stats")
        expected = final.get("expected")
        ratio = None  # MediaRelay re-encodes: no frame-for-frame comparison
        if expected:
            got = sum(min(p.frames["video"] + 1, expected[str(i)]) for i, p in enumerate(peers))
            ratio = got / sum(expected.values())
        per_learner = max(busy - idle, 1e-9) / learners
        return {
            "cpu_idle": idle,
            "cpu_busy": busy,
            "cpu_per_learner_s": per_learner,
            "learners_per_core": 1.0 / per_learner,
            "frames_delivered_ratio": ratio or 0.0,
            "decoded_frames": sum(p.frames["video"] for p in peers[:decoding]),
            "decoded_sizes": sorted({s for p in peers[:decoding] for s in p.sizes}),
            "join_p95_s": joins[min(len(joins) - 1, int(0.95 * len(joins)))],
            "video_kbps_in": (stats1.get("video_bytes_in", 0) - stats0.get("video_bytes_in", 0))
            * 8
            / 1000
            / seconds,
            "video_fps": frames_in / seconds,
            "audio_packets_per_learner_s_min": min(audio) / seconds,
            "packets_per_s": sum(
                stats1.get(k, 0) - stats0.get(k, 0)
                for k in ("video_packets_in", "audio_packets_in")
            )
            / seconds,
            "plis_out": stats1.get("plis_out"),
            "overflows": stats1.get("overflows"),
        }
    finally:
        for p in peers:
            await p.close()
        await trainer.close()
        relay.stop()


# -- recording: what it costs beside forwarding (#14, docs/recordings.md) ---------------------


def median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def threads_cpu_s(pid: int) -> float:
    """CPU seconds of the live threads of ``pid`` (schedstat: nanoseconds, not 10 ms ticks)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e9


async def threads_cpu_rate(pid: int, seconds: float) -> float:
    c0, t0 = threads_cpu_s(pid), time.monotonic()
    await asyncio.sleep(seconds)
    return (threads_cpu_s(pid) - c0) / (time.monotonic() - t0)


async def run_recording(seconds: float, rounds: int) -> dict[str, Any]:
    """The relay alone in a child process (as ``run_in_process``), one trainer sending Opus, a
    640x480 30 fps camera and a 960x540 5 fps screen (pre-encoded: the trainer's encoder does
    not compete for the CPU). Windows of ``seconds``, ``rounds`` times in turn: the trainer
    publishing to nobody (idle), the same while recording, the same with one learner receiving
    all three tracks. The relay process's CPU (all threads: the recorder's writer too; from
    schedstat, so short windows still resolve a few ms)."""
    from tests.media.peers import Learner, ReplayVideo, Trainer, wait_for

    relay = Relay("forward")
    trainer = Trainer(replay=True, width=640, height=480, fps=30)
    folder = tempfile.mkdtemp(prefix="estrade-rec-bench-")
    windows: dict[str, list[float]] = {"idle": [], "recording": [], "one_learner": []}
    recorded_bytes = 0
    recorded_s = 0.0
    finalize_cpu = 0.0
    sizes: dict[str, int] = {}
    try:
        await relay.connect()
        await trainer.answer((await relay.call(op="publish", sdp=await trainer.offer()))["sdp"])
        screen = ReplayVideo(960, 540, fps=5, gop=50)
        t = trainer.pc.addTransceiver(screen, direction="sendonly")
        t.sender._send_keyframe = screen.request_keyframe
        await trainer.answer((await relay.call(op="publish", sdp=await trainer.offer()))["sdp"])
        await asyncio.sleep(3.0)  # ICE, DTLS, the encoders' first frames
        for k in range(rounds):
            pid = relay.proc.pid
            windows["idle"].append(await threads_cpu_rate(pid, seconds))
            directory = f"{folder}/{k}"
            await relay.call(op="record_start", dir=directory)
            await asyncio.sleep(1.0)  # the keyframes asked for at the start
            before = (await relay.call(op="stats"))["recording_bytes"]
            started = time.monotonic()
            windows["recording"].append(await threads_cpu_rate(pid, seconds))
            recorded_bytes += (await relay.call(op="stats"))["recording_bytes"] - before
            recorded_s += time.monotonic() - started
            cpu0 = relay.cpu_s()  # the whole process: the writer thread ends meanwhile
            stopped = await relay.call(op="record_stop")
            finalize_cpu += relay.cpu_s() - cpu0
            assert stopped["reason"] == "stopped", stopped
            for kind, size in stopped["files"].items():
                sizes[kind] = sizes.get(kind, 0) + size
            learner = Learner(decode=False)
            offer = (await relay.call(op="subscribe", id=k))["sdp"]
            await relay.call(op="answer", id=k, sdp=await learner.answer(offer))
            await wait_for(lambda learner=learner: learner.first_frame_at is not None, within=20)
            await asyncio.sleep(1.0)
            windows["one_learner"].append(await threads_cpu_rate(pid, seconds))
            await relay.call(op="leave", id=k)
            await learner.close()
        # Each round against its own idle window (the machine's load drifts between rounds),
        # then the median round.
        idle = windows["idle"]
        recording = max(
            median([b - a for a, b in zip(idle, windows["recording"], strict=True)]), 1e-9
        )
        one = max(median([b - a for a, b in zip(idle, windows["one_learner"], strict=True)]), 1e-9)
        return {
            "recording_cpu_per_stream_s": recording,
            "forwarding_cpu_one_learner_s": one,
            "recording_vs_one_learner": recording / one,
            "recording_bytes_per_hour": recorded_bytes / max(recorded_s, 1e-9) * 3600,
            "recording_finalize_cpu_s_per_hour": finalize_cpu / max(recorded_s, 1e-9) * 3600,
            "recording_file_bytes": sizes,
            "recording_windows": windows,
        }
    finally:
        await trainer.close()
        relay.stop()
        shutil.rmtree(folder, ignore_errors=True)


# -- the profile breakdown --------------------------------------------------------------------

#: (category, markers): a sample goes to the first category one of whose markers is in its stack
PROFILE_CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("srtp_protect", ("Session.protect ",)),
    ("srtcp_protect", ("Session.protect_rtcp ",)),
    ("srtp_unprotect", ("Session.unprotect",)),
    ("aiortc_rtp_serialize", ("RtpPacket.serialize ",)),
    ("aiortc_clock_reads", ("current_ntp_time ", "current_datetime ")),
    ("aiortc_encoder_pack", ("Encoder.pack ",)),
    ("lean_send_python", ("LeanOutput.",)),
    ("forwarder_python", ("ForwardTrack.", "Source.deliver ", "_frame (")),
    ("assembler_python", ("VideoTap.", "AudioTap.")),
    ("aiortc_receiver", ("RTCRtpReceiver.", "_handle_rtp_data ", "RtpPacket.parse ")),
    ("rtcp", ("_run_rtcp ", "_handle_rtcp", "RtcpPacket")),
    (
        "ice_stun",
        ("request_received ", "send_stun ", "check_start ", "StunProtocol.datagram_received"),
    ),
    ("aiortc_sender_coroutines", ("RTCRtpSender._run_rtp ", "_send_rtp ", "Connection.send")),
    ("dtls_recv", ("RTCDtlsTransport._recv_next ", "RTCDtlsTransport.__run ")),
]
_SEND_LEAVES = ("sendmsg", "sendto", "__libc_sendmsg", "__libc_sendto", "__sendmsg", "uv__udp")
_IDLE_MARKERS = ("Condition.wait ", "QueueListener.dequeue ", "Event.wait ")
_IDLE_LEAVES = ("epoll_pwait", "epoll_wait", "uv__io_poll")
_LOOP_FILES = ("_asynciomodule.c", "(loop.c", "(cbhandles", "(handles", "(core.c", "(timer.c")


def profile_breakdown(path: str) -> dict[str, float]:
    """Shares of the relay's busy samples (py-spy ``--format raw --native``): the served
    process's, or its media workers' together when it has some."""
    counts: dict[str, int] = {}
    total = 0
    lines = Path(path).read_text().splitlines()
    # py-spy --subprocesses: with media workers, the relay is theirs (the web process left out).
    workers = any("appliance.media.worker" in line for line in lines)
    for line in lines:
        stack, _, n = line.rpartition(" ")
        if workers and "appliance.media.worker" not in stack:
            continue
        frames = stack.split(";")
        leaf = frames[-1].split(" ", 1)[0]
        if leaf in _IDLE_LEAVES or any(m in stack for m in _IDLE_MARKERS):
            continue
        total += int(n)
        in_send = "send_data " in stack or "LeanOutput.send " in stack or "retransmit " in stack
        native_leaf = ".py:" not in frames[-1] and "pylibsrtp" not in stack
        if leaf.startswith(_SEND_LEAVES) or (in_send and native_leaf and "cffi" not in stack):
            category = "udp_sendto"
        elif leaf.startswith(("recvmsg", "recvfrom", "__libc_recv")):
            category = "udp_recv"
        elif "_Feed.outlet " in stack or (
            "PipeHub._accepted " in stack and "deliver " not in stack
        ):
            category = "pipe"  # the owner's encode + write, the sibling's read + decode
        elif any(f in frames[-1] for f in _LOOP_FILES):
            category = "asyncio_loop"  # scheduling: tasks, futures, handles, libuv
        else:
            category = next(
                (name for name, marks in PROFILE_CATEGORIES if any(m in stack for m in marks)),
                "asyncio_loop" if ".py:" not in stack.split("Handle__run", 1)[-1] else "other",
            )
        counts[category] = counts.get(category, 0) + int(n)
    return {k: round(v / max(total, 1), 3) for k, v in sorted(counts.items(), key=lambda x: -x[1])}


def pin_trainer_bitrate(bps: int) -> None:
    """The synthetic trainer encodes at ``bps`` whatever the relay's REMB says."""
    from aiortc.codecs import vpx

    vpx.DEFAULT_BITRATE = vpx.MIN_BITRATE = vpx.MAX_BITRATE = bps


def r(x: float, n: int = 1) -> float:
    return round(x, n)


def _recording_figures(rec: dict[str, Any]) -> dict[str, Any]:
    return {
        "recording_cpu_per_stream_s": r(rec["recording_cpu_per_stream_s"], 5),
        "forwarding_cpu_one_learner_s": r(rec["forwarding_cpu_one_learner_s"], 5),
        "recording_vs_one_learner": r(rec["recording_vs_one_learner"], 2),
        "recording_bytes_per_hour": int(rec["recording_bytes_per_hour"]),
        "recording_finalize_cpu_s_per_hour": r(rec["recording_finalize_cpu_s_per_hour"], 2),
        "recording_file_bytes": rec["recording_file_bytes"],
        "recording_windows": {
            k: [r(v, 4) for v in vs] for k, vs in rec["recording_windows"].items()
        },
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--learners", type=int, default=int(os.environ.get("RELAY_LEARNERS", 30)))
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--bitrate", type=int, default=1_200_000)
    parser.add_argument("--send-path", default=None, help="ESTRADE_MEDIA_SEND_PATH for the server")
    parser.add_argument(
        "--compare-send-path", default=None, help="also serve with this send path (same sitting)"
    )
    parser.add_argument("--no-in-process", action="store_true")
    parser.add_argument("--transcode-baseline", type=int, default=0, metavar="LEARNERS")
    parser.add_argument("--join-burst", type=int, default=10, help="learners joining at once")
    parser.add_argument(
        "--light",
        action="store_true",
        help="learners count SRTP packets by their clear header (no decryption, no RTCP from "
        "them): the relay's forwarding cost when the client is short of CPU; delivery is then "
        "counted in video packets",
    )
    parser.add_argument(
        "--media-workers", type=int, default=0, help="ESTRADE_MEDIA_WORKERS for the server"
    )
    parser.add_argument(
        "--compare-media-workers",
        type=int,
        default=None,
        metavar="N",
        help="also serve with N media workers (same sitting; 0: the relay in the web process)",
    )
    parser.add_argument(
        "--worker-learners",
        type=int,
        default=0,
        metavar="N",
        help="ESTRADE_MEDIA_WORKER_LEARNERS for the --media-workers serving (0: the class "
        "spread evenly by work: (learners - TRAINER_LEARNERS) / workers, rounded up)",
    )
    parser.add_argument(
        "--chat-probe",
        action="store_true",
        help="the trainer posts 10 chat messages/s during both windows; a learner's socket "
        "times them (chat_p99_ms_idle, chat_p99_ms_under_media)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        metavar="N",
        help="with --compare-media-workers: N pairs of servings, alternating which goes first; "
        "pipe_overhead is then the median of the pairs' ratios (pipe_overhead_pairs: each)",
    )
    parser.add_argument(
        "--client-nice",
        type=int,
        default=0,
        metavar="N",
        help="run this client (the learners: browsers on other machines in a real class) at "
        "niceness N, the server, its workers and the chat probe at 0 (root only): on a "
        "machine this small the client's CPU on the same cores otherwise sets the chat's tail",
    )
    parser.add_argument(
        "--ladder",
        action="store_true",
        help="with --compare-media-workers: leave the relay's ladder on (by default its loss "
        "and RTT thresholds are out of reach there and the learners send no REMB: a client "
        "short of CPU reports loss, the ladder steps its learners down, and the two servings "
        "no longer send the same packets)",
    )
    parser.add_argument("--profile", metavar="FILE", help="py-spy the served relay (raw stacks)")
    parser.add_argument("--serve", choices=["forward", "transcode"])
    parser.add_argument(
        "--layers-learners",
        type=int,
        default=10,
        help="learners moved through the camera levels (VP8 temporal layers); 0: skip",
    )
    parser.add_argument(
        "--layers-only", action="store_true", help="only the temporal-layer figures"
    )
    parser.add_argument(
        "--recording-rounds",
        type=int,
        default=3,
        help="idle / recording / one-learner windows, in turn, this many times; 0: skip",
    )
    parser.add_argument("--recording-only", action="store_true", help="only the recording figures")
    args = parser.parse_args()
    if args.client_nice:
        if os.geteuid() != 0:
            parser.error("--client-nice needs root: the server and the probe start back at 0")
        global CLIENT_NICE
        CLIENT_NICE = args.client_nice
        os.nice(CLIENT_NICE)
    if args.serve:
        await serve(args.serve, args.send_path)
        return
    if args.layers_only:
        load_before = loadavg()
        layered = await run_layers(args.layers_learners, args.seconds, args.warmup)
        out = {"benchmark": "relay", "layers_learners": args.layers_learners, **layered}
        out.update(seconds=args.seconds, loadavg_before=load_before, loadavg_after=loadavg())
        print(json.dumps({**out, "cpus": os.cpu_count()}), flush=True)
        return
    if args.recording_only:
        pin_trainer_bitrate(args.bitrate)
        load_before = loadavg()
        recorded = await run_recording(args.seconds, max(1, args.recording_rounds))
        out = {"benchmark": "relay", **_recording_figures(recorded)}
        out.update(seconds=args.seconds, loadavg_before=load_before, loadavg_after=loadavg())
        print(json.dumps({**out, "cpus": os.cpu_count()}), flush=True)
        return
    if args.profile and not (Path(sys.executable).parent / "py-spy").exists():
        raise SystemExit("--profile needs py-spy in this environment: .venv/bin/pip install py-spy")
    pin_trainer_bitrate(args.bitrate)
    load_before = loadavg()
    # Comparing servings: the learners stay at full quality in both (see --ladder).
    hold_full = args.compare_media_workers is not None and not args.ladder
    from appliance.media.remote import TRAINER_LEARNERS

    share = args.worker_learners
    if not share and args.media_workers > 1:
        # Spread by work: the owner's part of the class, counting the trainer it receives as
        # TRAINER_LEARNERS learners (the placement then gives the siblings the rest).
        share = max(1, -(-(args.learners - TRAINER_LEARNERS) // args.media_workers))

    def serving(workers: int, profile: str | None = None, send_path: str | None = None) -> Any:
        """One serving with ``workers`` media workers (the class spread over them past
        ``share`` learners each when they are the --media-workers ones) and ``send_path``
        (default: --send-path)."""
        return run_served(
            args.learners,
            args.seconds,
            send_path or args.send_path,
            args.warmup,
            burst=args.join_burst,
            light=args.light,
            media_workers=workers,
            probe=args.chat_probe,
            profile=profile,
            worker_learners=share if workers == args.media_workers else 0,
            hold_full=hold_full,
        )

    served = await serving(args.media_workers, args.profile)
    # The capacity model's measured cost: the whole served tree (web + workers) per learner.
    cpu_per_learner = max(served["server_cpu_busy"] - served["server_cpu_idle"], 1e-9)
    cpu_per_learner /= args.learners
    out: dict[str, Any] = {
        "benchmark": "relay",
        "learners": args.learners,
        "join_burst": args.join_burst,
        "light_learners": args.light,
        "send_path": args.send_path or "default",
        "learners_per_core": r(served["learners_per_core"]),
        "learners_per_core_at_trainer_rate": r(served["learners_per_core_at_trainer_rate"]),
        "trainer_packets_per_s": r(served["trainer_packets_per_s"]),
        "us_per_packet_per_learner": r(served["us_per_packet_per_learner"]),
        "us_per_packet_sent": r(served["us_per_packet_sent"]),
        "relay_packets_sent_per_s": r(served["relay_packets_sent_per_s"]),
        "frames_delivered_ratio": r(served["frames_delivered_ratio"], 4),
        "join_to_first_frame_p95_s": r(served["join_to_first_frame_p95_s"], 3),
        "join_p95_steps_s": served["join_p95_steps_s"],
        "server_cpu_idle": r(served["server_cpu_idle"], 3),
        "server_cpu_busy": r(served["server_cpu_busy"], 3),
        "media_workers": args.media_workers,
        "web_cpu_idle": r(served["web_cpu_idle"], 3),
        "web_cpu_busy": r(served["web_cpu_busy"], 3),
        "workers_cpu_busy": [r(v, 3) for v in served["workers_cpu_busy"]],
        "worker_learners": share,
        "learners_by_worker": served["learners_by_worker"],
        "cpu_per_learner": r(cpu_per_learner, 5),
        "projected_learners_per_host": round((os.cpu_count() or 1) * 0.8 / cpu_per_learner),
        **(
            {
                k: r(served[k], 1)
                for k in (
                    "chat_p50_ms_idle",
                    "chat_p99_ms_idle",
                    "chat_p50_ms_under_media",
                    "chat_p99_ms_under_media",
                )
            }
            if args.chat_probe
            else {}
        ),
        "packets_per_learner_s": r(served["packets_per_learner_s"]),
        "packets_per_learner_s_min": r(served["packets_per_learner_s_min"]),
        "client_cpu": r(served["client_cpu"], 2),
        "relay_rtcp": served["relay_rtcp"],
        "ladder": served["ladder"],
        "ladder_held_full": hold_full,
    }
    if args.profile:
        out["profiled"] = True  # the CPU figures above include py-spy's sampling
        shares = out["profile_shares"] = profile_breakdown(args.profile)
        # The same, as µs of the served process per packet per learner (fixed costs, such as
        # receiving the trainer's packets, spread over the learners).
        scale = served["server_cpu_busy"] / args.learners / served["packets_per_learner_s"] * 1e6
        out["profile_us_per_packet_per_learner"] = {k: r(v * scale, 2) for k, v in shares.items()}
    if args.compare_send_path:
        # the same serving but for the send path (the same workers: one thing changes)
        other = await serving(args.media_workers, send_path=args.compare_send_path)
        out.update(
            {
                "compare_send_path": args.compare_send_path,
                "compare_learners_per_core": r(other["learners_per_core"]),
                "compare_learners_per_core_at_trainer_rate": r(
                    other["learners_per_core_at_trainer_rate"]
                ),
                "compare_us_per_packet_per_learner": r(other["us_per_packet_per_learner"]),
                "compare_us_per_packet_sent": r(other["us_per_packet_sent"]),
                "ratio_sent_vs_compare": r(
                    other["us_per_packet_sent"] / max(served["us_per_packet_sent"], 1e-9), 2
                ),
                "compare_frames_delivered_ratio": r(other["frames_delivered_ratio"], 4),
                "compare_join_to_first_frame_p95_s": r(other["join_to_first_frame_p95_s"], 3),
                "ratio_vs_compare": r(
                    other["us_per_packet_per_learner"]
                    / max(served["us_per_packet_per_learner"], 1e-9),
                    2,
                ),
            }
        )
    if args.media_workers > 1:
        # The work really splits: the busiest worker's share of all workers' CPU.
        workers = served["workers_cpu_busy"]
        out["busiest_worker_share"] = r(max(workers) / max(sum(workers), 1e-9), 3)
    if args.compare_media_workers is not None:
        other = await serving(
            args.compare_media_workers, args.profile and f"{args.profile}.compare"
        )
        out.update(
            {
                "compare_media_workers": args.compare_media_workers,
                "compare_us_per_packet_sent": r(other["us_per_packet_sent"]),
                "compare_server_cpu_busy": r(other["server_cpu_busy"], 3),
                "compare_web_cpu_busy": r(other["web_cpu_busy"], 3),
                "compare_workers_cpu_busy": [r(v, 3) for v in other["workers_cpu_busy"]],
                "compare_frames_delivered_ratio": r(other["frames_delivered_ratio"], 4),
                "compare_join_to_first_frame_p95_s": r(other["join_to_first_frame_p95_s"], 3),
                "compare_chat_p99_ms_idle": r(other["chat_p99_ms_idle"], 1),
                "compare_chat_p99_ms_under_media": r(other["chat_p99_ms_under_media"], 1),
                # relay CPU per packet sent, these workers against the compared ones
                "workers_cost_ratio": r(
                    served["us_per_packet_sent"] / max(other["us_per_packet_sent"], 1e-9), 2
                ),
                "learners_packets_received_per_s": r(served["learners_packets_received_per_s"]),
                "compare_learners_packets_received_per_s": r(
                    other["learners_packets_received_per_s"]
                ),
                "compare_ladder": other["ladder"],
            }
        )
        if args.compare_media_workers:

            def relay_per_learner(run: dict[str, Any]) -> float:
                """The workers' CPU (busy minus idle) per learner: the relay's own cost."""
                busy = sum(run["workers_cpu_busy"]) - run["workers_cpu_idle_total"]
                return max(busy, 1e-9) / args.learners

            def per_packet(run: dict[str, Any]) -> float:
                """The same, per packet the relay sent (µs): a starved run that sent less does
                not look cheaper."""
                busy = sum(run["workers_cpu_busy"]) - run["workers_cpu_idle_total"]
                return max(busy, 1e-9) / max(run["relay_packets_sent_per_s"], 1) * 1e6

            def pair(mine: dict[str, Any], theirs: dict[str, Any]) -> dict[str, Any]:
                return {
                    "pipe_overhead": r(relay_per_learner(mine) / relay_per_learner(theirs), 3),
                    "per_packet": r(per_packet(mine) / per_packet(theirs), 3),
                    "both_delivered": min(
                        mine["frames_delivered_ratio"], theirs["frames_delivered_ratio"]
                    )
                    >= 0.99,
                    "relay_cpu_per_learner": [
                        r(relay_per_learner(mine), 5),
                        r(relay_per_learner(theirs), 5),
                    ],
                    "busiest_worker_share": r(
                        max(mine["workers_cpu_busy"]) / max(sum(mine["workers_cpu_busy"]), 1e-9),
                        3,
                    ),
                    "loadavg": r(max(mine["loadavg"], theirs["loadavg"]), 2),
                    "client_cpu": [r(mine["client_cpu"], 2), r(theirs["client_cpu"], 2)],
                    "packets_sent_per_s": [
                        r(mine["relay_packets_sent_per_s"]),
                        r(theirs["relay_packets_sent_per_s"]),
                    ],
                    "below_full": [
                        mine["ladder"]["below_full_at_end"],
                        theirs["ladder"]["below_full_at_end"],
                    ],
                    # the N-worker serving's chat probe: idle, under media
                    "chat_p99_ms": [
                        r(mine["chat_p99_ms_idle"], 1),
                        r(mine["chat_p99_ms_under_media"], 1),
                    ],
                }

            mine, theirs = relay_per_learner(served), relay_per_learner(other)
            out["workers_cpu_idle_total"] = r(served["workers_cpu_idle_total"], 3)
            out["compare_workers_cpu_idle_total"] = r(other["workers_cpu_idle_total"], 3)
            out["relay_cpu_per_learner"] = r(mine, 5)
            out["compare_relay_cpu_per_learner"] = r(theirs, 5)
            out["compare_relay_packets_sent_per_s"] = r(other["relay_packets_sent_per_s"])
            # Piping costs little: the relay's CPU per learner spread over N workers against
            # one worker (and per packet sent). Only a run where both servings delivered every
            # frame compares like with like: a starved client loses packets, the relay then
            # answers NACKs and PLIs and sends fewer packets.
            out["pipe_overhead"] = r(mine / theirs, 3)
            out["pipe_overhead_per_packet"] = r(per_packet(served) / per_packet(other), 3)
            out["both_delivered"] = (
                min(served["frames_delivered_ratio"], other["frames_delivered_ratio"]) >= 0.99
            )
            if args.repeat > 1:
                # More pairs, alternating which serving goes first (N, 1, 1, N, N, 1...): load
                # that rises or falls over the sitting hits both. Each pair is a ratio of its
                # own; pipe_overhead is then their median (the first pair's figures stay in
                # the keys above, pipe_overhead_first).
                pairs = [pair(served, other)]
                mine_runs = [served]
                for k in range(1, args.repeat):
                    if k % 2:
                        theirs_run = await serving(args.compare_media_workers)
                        mine_run = await serving(args.media_workers)
                    else:
                        mine_run = await serving(args.media_workers)
                        theirs_run = await serving(args.compare_media_workers)
                    pairs.append(pair(mine_run, theirs_run))
                    mine_runs.append(mine_run)
                out["pipe_overhead_pairs"] = pairs
                out["pipe_overhead_first"] = out["pipe_overhead"]
                out["pipe_overhead"] = r(median([p["pipe_overhead"] for p in pairs]), 3)
                delivered = [p["pipe_overhead"] for p in pairs if p["both_delivered"]]
                out["pipe_overhead_median_delivered"] = (
                    r(median(delivered), 3) if delivered else None
                )
                out["pipe_overhead_per_packet"] = r(median([p["per_packet"] for p in pairs]), 3)
                out["both_delivered"] = all(p["both_delivered"] for p in pairs)
                if args.chat_probe:  # the N-worker servings' chat, each run and the median
                    chat = [p["chat_p99_ms"] for p in pairs]
                    out["chat_p99_ms_idle_median"] = r(median([c[0] for c in chat]), 1)
                    out["chat_p99_ms_under_media_median"] = r(median([c[1] for c in chat]), 1)
                    out["chat_under_media_vs_idle_median"] = r(
                        median([c[1] / max(c[0], 1e-9) for c in chat]), 2
                    )
                    # One window's p99 is its one or two latest messages out of ~10 a second:
                    # the N-worker servings' windows pooled give the p99 of several hundred.
                    idle = [ms for run in mine_runs for ms in run["chat_ms_idle"]]
                    busy = [ms for run in mine_runs for ms in run["chat_ms_under_media"]]
                    p99_idle, p99_busy = pct(idle, 0.99), pct(busy, 0.99)
                    out["chat_messages_pooled"] = [len(idle), len(busy)]
                    out["chat_p99_ms_idle_pooled"] = r(p99_idle, 1)
                    out["chat_p99_ms_under_media_pooled"] = r(p99_busy, 1)
                    out["chat_under_media_vs_idle_pooled"] = r(p99_busy / max(p99_idle, 1e-9), 2)
        if args.profile:
            out["compare_profile_shares"] = profile_breakdown(f"{args.profile}.compare")
    if not args.no_in_process:
        fwd = await run_in_process(
            "forward", args.learners, args.seconds, decoding=2, send_path=args.send_path
        )
        out.update(
            {
                "in_process_learners_per_core": r(fwd["learners_per_core"]),
                "in_process_us_per_packet_per_learner": r(
                    fwd["cpu_per_learner_s"] / max(fwd["packets_per_s"], 1) * 1e6
                ),
                "in_process_frames_delivered_ratio": r(fwd["frames_delivered_ratio"], 4),
                "in_process_join_p95_s": r(fwd["join_p95_s"], 3),
                "served_vs_in_process": r(
                    served["learners_per_core"] / max(fwd["learners_per_core"], 1e-9), 2
                ),
            }
        )
    if args.layers_learners:
        out.update(await run_layers(args.layers_learners, args.seconds, args.warmup))
    if args.recording_rounds:
        out.update(_recording_figures(await run_recording(args.seconds, args.recording_rounds)))
    if args.transcode_baseline:
        base = await run_in_process("transcode", args.transcode_baseline, args.seconds, decoding=2)
        out["transcode_baseline_learners_per_core"] = r(base["learners_per_core"], 2)
    out.update(
        {
            "video_bitrate": args.bitrate,
            "seconds": args.seconds,
            "loadavg_before": load_before,
            "loadavg_during": served["loadavg"],
            "loadavg_after": loadavg(),
            "cpus": os.cpu_count(),
            "client_nice": CLIENT_NICE,
        }
    )
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
