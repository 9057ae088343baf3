"""When each video kind of a recording was live: the replay page shows the camera as the main
view where the screen was off, as learners saw it. Found by reading packet timestamps (no
decoding) once, off the event loop, and kept beside the files (``presence.json``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

__all__ = ["GAP_S", "presence"]

log = logging.getLogger("estrade.replays")

GAP_S = 1.5
"""No frame for longer than this: the source was off (cameras send frames continuously)."""
VIDEO = ("camera", "screen")


def _scan(path: Path) -> list[list[float]]:
    import av

    intervals: list[list[float]] = []
    with av.open(str(path)) as container:
        stream = container.streams[0]
        tb = float(stream.time_base) if stream.time_base is not None else 0.001
        start = last = None
        for packet in container.demux(stream):
            if packet.pts is None:
                continue
            t = packet.pts * tb
            if start is None or last is None:
                start = last = t
                continue
            if t - last > GAP_S:
                intervals.append([round(start, 3), round(last, 3)])
                start = t
            last = t
        if start is not None and last is not None:
            intervals.append([round(start, 3), round(last, 3)])
    return intervals


def presence(directory: Path) -> dict[str, list[list[float]]]:
    """Kind -> [[from, to], ...] seconds with frames. Synchronous: ``asyncio.to_thread``."""
    cache = directory / "presence.json"
    try:
        cached = json.loads(cache.read_text())
        if isinstance(cached, dict):
            return {str(k): v for k, v in cached.items()}
    except (OSError, ValueError):
        pass
    found: dict[str, list[list[float]]] = {}
    for kind in VIDEO:
        path = directory / f"{kind}.webm"
        if not path.is_file():
            continue
        try:
            found[kind] = _scan(path)
        except Exception as exc:  # a damaged file: the page shows it as it can
            log.warning("cannot scan %s: %s", path, exc)
            return found
    try:
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(found))
        tmp.rename(cache)
    except OSError as exc:
        log.warning("cannot keep %s: %s", cache, exc)
    return found
