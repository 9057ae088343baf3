"""The replay side's seam onto the recorder (docs/replays.md, /work contract with branch ``rec``).

Branch ``rec`` provides ``appliance.media.recorder`` (``RecordingFiles``, ``finalize_directory``)
and the ``RecordingEnded`` media event; until it is merged this module holds stand-ins of the
same shape, so the classroom side can be written and tested against the contract.

replaced by branch rec: at merge, import ``RecordingFiles`` and ``finalize_directory`` from
``appliance.media.recorder`` and ``RecordingEnded`` from where ``rec`` defines it, and delete
the stand-ins below (their callers use only the contract's names and fields).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

__all__ = ["KINDS", "RecordingEnded", "RecordingFiles", "finalize_directory"]

log = logging.getLogger("estrade.replays")

KINDS = ("audio", "camera", "screen")
EndReason = Literal["stopped", "write_error", "disk_full", "relay_restarted", "room_closed"]
_SEGMENT = re.compile(r"^(audio|camera|screen)-(\d{4,})\.webm$")


@dataclass(frozen=True, slots=True)
class RecordingFiles:  # replaced by branch rec
    duration_s: float
    files: dict[str, int]


@dataclass(frozen=True, slots=True)
class RecordingEnded:  # replaced by branch rec
    cohort_id: int
    directory: str
    reason: EndReason
    result: RecordingFiles | None


def finalize_directory(path: Path) -> RecordingFiles:  # replaced by branch rec
    """Stand-in for the recorder's: join each kind's segments (packets copied, never decoded)
    into ``{kind}.webm``, delete the segments, measure the final files. Synchronous and
    idempotent: run it with ``asyncio.to_thread``."""
    import av

    segments: dict[str, list[Path]] = {}
    if path.is_dir():
        for entry in sorted(path.iterdir()):
            m = _SEGMENT.match(entry.name)
            if m is not None:
                segments.setdefault(m.group(1), []).append(entry)
    for kind, parts in segments.items():
        final = path / f"{kind}.webm"
        if final.exists():
            continue
        try:
            _join(parts, final)
        except (av.error.FFmpegError, OSError, ValueError) as exc:
            log.warning("could not join the %s segments of %s: %s", kind, path, exc)
            final.unlink(missing_ok=True)
            continue
        for part in parts:
            part.unlink(missing_ok=True)
    files: dict[str, int] = {}
    duration = 0.0
    for kind in KINDS:
        final = path / f"{kind}.webm"
        if not final.is_file():
            continue
        files[kind] = final.stat().st_size
        try:
            with av.open(str(final)) as container:
                if container.duration is not None:
                    duration = max(duration, container.duration / 1_000_000)
        except av.error.FFmpegError as exc:
            log.warning("cannot read %s: %s", final, exc)
    return RecordingFiles(duration_s=round(duration, 3), files=files)


def _join(parts: list[Path], final: Path) -> None:
    import av

    if len(parts) == 1:
        parts[0].rename(final)
        return
    tmp = final.with_suffix(".part")
    with av.open(str(tmp), "w", format="webm") as out:
        stream = None
        last_dts = -1
        for part in parts:
            try:
                src_container = av.open(str(part))
            except av.error.FFmpegError:
                continue  # a damaged last segment: what came before is kept
            with src_container:
                src = src_container.streams[0]
                if stream is None:
                    stream = out.add_stream_from_template(src)
                try:
                    for packet in src_container.demux(src):
                        if packet.dts is None or packet.dts <= last_dts:
                            continue
                        last_dts = packet.dts
                        packet.stream = stream
                        out.mux(packet)
                except av.error.FFmpegError:
                    pass  # trimmed at the first damaged packet
    tmp.rename(final)
