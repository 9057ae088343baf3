"""Media relay benchmark: CPU per learner of the forwarding relay vs. aiortc's MediaRelay.

One aiortc trainer (synthetic 640x480 VP8 at 30 fps plus Opus) publishes to a relay running in
a child process (so its CPU time can be read from /proc); N aiortc learners count frames
without decoding, two of them decode. The same run measures ``aiortc.contrib.media.MediaRelay``
(decode once, encode per learner) with a few learners as the baseline.

    .venv/bin/python benchmarks/relay.py [--learners 30] [--baseline-learners 3] [--seconds 10]

Prints one JSON line. Everything stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- the relay process -----------------------------------------------------------------------


async def serve(mode: str) -> None:
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
        )
        server = MediaServer(settings)
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
                elif op == "stats":
                    st = room.stats()
                    cam = room.sources["camera"].stats
                    res = {
                        "video_frames_in": cam.frames_in,
                        "video_bytes_in": cam.bytes_in,
                        "video_packets_in": cam.packets_in,
                        "audio_packets_in": room.sources["audio"].stats.packets_in,
                        "plis_out": st["plis_out"],
                        "overflows": st["queue_overflows"],
                        "join": st["join_to_first_frame_s"],
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
    def __init__(self, mode: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", mode],
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


async def run(mode: str, learners: int, seconds: float, decoding: int) -> dict[str, Any]:
    from tests.media.peers import Learner, Trainer, wait_for

    relay = Relay(mode)
    trainer = Trainer(width=640, height=480, fps=30)
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


def pin_trainer_bitrate(bps: int) -> None:
    """The synthetic trainer encodes at ``bps`` whatever the relay's REMB says (~1 Mbps)."""
    from aiortc.codecs import vpx

    vpx.DEFAULT_BITRATE = vpx.MIN_BITRATE = vpx.MAX_BITRATE = bps


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--learners", type=int, default=int(os.environ.get("RELAY_LEARNERS", 30)))
    parser.add_argument("--baseline-learners", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--serve", choices=["forward", "transcode"])
    args = parser.parse_args()
    if args.serve:
        await serve(args.serve)
        return
    pin_trainer_bitrate(1_000_000)
    load_before = loadavg()
    fwd = await run("forward", args.learners, args.seconds, decoding=2)
    base = await run("transcode", args.baseline_learners, args.seconds, decoding=2)
    print(
        json.dumps(
            {
                "benchmark": "relay",
                "learners": args.learners,
                "learners_per_core": round(fwd["learners_per_core"], 1),
                "baseline_learners": args.baseline_learners,
                "baseline_learners_per_core": round(base["learners_per_core"], 2),
                "ratio_vs_baseline": round(fwd["learners_per_core"] / base["learners_per_core"], 1),
                "frames_delivered_ratio": round(fwd["frames_delivered_ratio"], 4),
                "join_to_first_frame_p95_s": round(fwd["join_p95_s"], 3),
                "relay_cpu_per_learner_s": round(fwd["cpu_per_learner_s"], 5),
                "learners_per_core_including_publisher": round(args.learners / fwd["cpu_busy"], 1),
                "relay_cpu_idle": round(fwd["cpu_idle"], 3),
                "relay_cpu_busy": round(fwd["cpu_busy"], 3),
                "baseline_cpu_per_learner_s": round(base["cpu_per_learner_s"], 4),
                "video_kbps": round(fwd["video_kbps_in"]),
                "video_fps": round(fwd["video_fps"], 1),
                "audio_packets_per_learner_s_min": round(fwd["audio_packets_per_learner_s_min"], 1),
                "packets_in_per_s": round(fwd["packets_per_s"]),
                "relay_us_per_packet_per_learner": round(
                    fwd["cpu_per_learner_s"] / max(fwd["packets_per_s"], 1) * 1e6, 1
                ),
                "decoded_frames": fwd["decoded_frames"],
                "decoded_sizes": fwd["decoded_sizes"],
                "plis_out": fwd["plis_out"],
                "queue_overflows": fwd["overflows"],
                "loadavg_before": load_before,
                "loadavg_after": loadavg(),
                "cpus": os.cpu_count(),
                "transcoding": False,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
