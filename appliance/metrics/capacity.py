"""How many more learners this server can take now (the model is explained in docs/operations.md).

    budget   = cores x cpu_target
    other    = host CPU busy - this process's CPU busy        (what the rest of the machine uses)
    relay    = sum over rooms of learners x (learner_cpu + video_track_cpu x video tracks)
    used     = max(process CPU busy, relay)                   (measured or modelled, the larger)
    marginal = learner_cpu + video_track_cpu x planned video tracks
    free     = min(budget - other - used,                   (the machine)
                   min(cores, relay_cores) x cpu_target - used)   (one event loop per process:
                                                  relay_cores = 1, or the media workers)
    capacity = floor(max(0, free) / marginal)

CPU figures are in cores (CPU-seconds per second), measured over the last few seconds.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CapacityEstimate", "CapacityModel", "CpuSampler", "CpuUsage"]


@dataclass(frozen=True, slots=True)
class CpuUsage:
    cores: int
    """Cores this process may run on."""
    host_busy_cores: float
    """Cores' worth of CPU the whole machine used (all processes)."""
    process_busy_cores: float
    """Cores' worth of CPU this process used."""


@dataclass(frozen=True, slots=True)
class _Sample:
    wall: float
    process: float
    host_busy: float
    host_total: float


class CpuSampler:
    """Process and host CPU usage over a sliding window of recent samples.

    :meth:`sample` is called periodically (by the event-loop monitor); :meth:`usage` compares
    the current counters with the oldest kept sample, so a scrape sees the last few seconds.
    """

    def __init__(
        self,
        window: int = 10,
        proc_stat: Path = Path("/proc/stat"),
        children_cpu: Callable[[], float] | None = None,
    ) -> None:
        self._samples: deque[_Sample] = deque(maxlen=window)
        self._proc_stat = proc_stat
        self.cores = _usable_cores()
        self.children_cpu = children_cpu
        """CPU seconds of this process's media workers (counted as this process's)."""

    def _read(self) -> _Sample:
        busy = total = 0.0
        try:
            # First line: "cpu  user nice system idle iowait irq softirq steal ...", in ticks.
            fields = [float(x) for x in self._proc_stat.read_text().split("\n", 1)[0].split()[1:]]
            total = sum(fields[:8])
            busy = total - fields[3] - fields[4]
        except (OSError, ValueError, IndexError):
            pass  # not Linux: the host is then taken to be this process alone
        process = time.process_time()
        if self.children_cpu is not None:
            # A worker restarted from 0 makes this drop: usage() clamps at 0 for a window.
            process += self.children_cpu()
        return _Sample(time.monotonic(), process, busy, total)

    def sample(self) -> None:
        self._samples.append(self._read())

    def usage(self) -> CpuUsage:
        now = self._read()
        if not self._samples:
            self._samples.append(now)
            return CpuUsage(self.cores, 0.0, 0.0)
        old = self._samples[0]
        wall = now.wall - old.wall
        if wall <= 0:
            return CpuUsage(self.cores, 0.0, 0.0)
        process = max(0.0, (now.process - old.process) / wall)
        host = process
        if now.host_total > old.host_total:
            host_cpus = os.cpu_count() or self.cores
            share = (now.host_busy - old.host_busy) / (now.host_total - old.host_total)
            host = max(process, share * host_cpus)
        return CpuUsage(self.cores, host, process)


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class CapacityEstimate:
    learners: int
    """How many more learners fit now."""
    budget_cores: float
    other_cores: float
    used_cores: float
    relay_model_cores: float
    marginal_cores: float
    """CPU one more learner costs, in cores."""


@dataclass(frozen=True, slots=True)
class CapacityModel:
    learner_cpu: float
    video_track_cpu: float
    planned_video_tracks: int
    cpu_target: float
    relay_cores: float = 1.0
    """Cores Estrade can relay on: one per event loop (the web process's, or each media
    worker's with ``ESTRADE_MEDIA_WORKERS`` > 0)."""

    def learner_cost(self, video_tracks: int) -> float:
        return self.learner_cpu + self.video_track_cpu * video_tracks

    def estimate(self, cpu: CpuUsage, rooms: list[tuple[int, int]]) -> CapacityEstimate:
        """Estimate the learners that still fit.

        Args:
            cpu: the measured usage.
            rooms: ``(learners, video tracks published)`` per open room; a room without
                video yet counts with the planned number of tracks.
        """
        budget = cpu.cores * self.cpu_target
        other = max(0.0, cpu.host_busy_cores - cpu.process_busy_cores)
        relay = sum(
            learners * self.learner_cost(tracks or self.planned_video_tracks)
            for learners, tracks in rooms
        )
        used = max(cpu.process_busy_cores, relay)
        marginal = self.learner_cost(self.planned_video_tracks)
        process_budget = min(cpu.cores, self.relay_cores) * self.cpu_target
        free = max(0.0, min(budget - other - used, process_budget - used))
        return CapacityEstimate(
            learners=math.floor(free / marginal + 1e-9),
            budget_cores=budget,
            other_cores=other,
            used_cores=used,
            relay_model_cores=relay,
            marginal_cores=marginal,
        )
