"""WebM files in the recorder's layout (the contract with branch ``rec``), made by the tests.

VP8 video of a moving test pattern and an Opus tone, each in its own file, every timestamp in
milliseconds from the recording's start (one origin for every kind, as the recorder writes).
"""

from __future__ import annotations

import math
from array import array
from fractions import Fraction
from pathlib import Path

import av

__all__ = ["write_kind", "write_recording"]


def write_kind(
    path: Path,
    kind: str,
    seconds: float,
    *,
    fps: int = 15,
    width: int = 320,
    gap: tuple[float, float] | None = None,
) -> None:
    """One kind's file; ``gap``: (from, to) seconds with no video frame (the source was off)."""
    height = width * 9 // 16
    with av.open(str(path), "w", format="webm") as out:
        if kind == "audio":
            stream = out.add_stream("libopus", rate=48000)
            stream.layout = "mono"  # type: ignore[union-attr]
            samples = int(48000 * seconds)
            for start in range(0, samples - 959, 960):
                pcm = array(
                    "h",
                    (
                        int(9000 * math.sin(2 * math.pi * 440 * (start + n) / 48000))
                        for n in range(960)
                    ),
                )
                frame = av.AudioFrame(format="s16", layout="mono", samples=960)
                frame.planes[0].update(pcm.tobytes())
                frame.sample_rate = 48000
                frame.pts = start
                frame.time_base = Fraction(1, 48000)
                for packet in stream.encode(frame):  # type: ignore[union-attr]
                    out.mux(packet)
        else:
            stream = out.add_stream("libvpx", rate=fps)
            stream.width, stream.height = width, height  # type: ignore[union-attr]
            stream.pix_fmt = "yuv420p"  # type: ignore[union-attr]
            stream.codec_context.time_base = Fraction(1, 1000)
            shade = 60 if kind == "camera" else 180
            row_bg = bytes((shade, shade, shade)) * width
            for i in range(int(seconds * fps)):
                if gap is not None and gap[0] <= i / fps < gap[1]:
                    continue
                x = (i * 7) % (width - 40)
                row_box = bytes((shade, shade, shade)) * x + bytes((230, 40, 40)) * 40
                row_box += bytes((shade, shade, shade)) * (width - x - 40)
                img = row_bg * 20 + row_box * 40 + row_bg * (height - 60)
                frame = av.VideoFrame(width, height, "rgb24")
                frame.planes[0].update(img)
                frame = frame.reformat(format="yuv420p")
                frame.pts = int(i * 1000 / fps)
                frame.time_base = Fraction(1, 1000)
                for packet in stream.encode(frame):  # type: ignore[union-attr]
                    out.mux(packet)
        for packet in stream.encode(None):  # type: ignore[union-attr]
            out.mux(packet)


def write_recording(
    directory: Path,
    seconds: float,
    kinds: tuple[str, ...] = ("audio", "camera", "screen"),
    *,
    segments: bool = False,
    screen_gap: tuple[float, float] | None = None,
) -> None:
    """Final files (``{kind}.webm``), or, with ``segments``, the recorder's open segments."""
    directory.mkdir(parents=True, exist_ok=True)
    for kind in kinds:
        name = f"{kind}-0001.webm" if segments else f"{kind}.webm"
        write_kind(directory / name, kind, seconds, gap=screen_gap if kind == "screen" else None)
