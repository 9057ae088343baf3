"""How many more learners this server can take now (the model is explained in docs/operations.md).

    budget   = cores x cpu_target
    other    = host CPU busy - Estrade's CPU busy (web process + media workers)
    relay    = sum over rooms of learners x (learner_cpu + video_track_cpu x video tracks)
    used     = max(Estrade's CPU busy, relay)                (measured or modelled, the larger)
    marginal = learner_cpu + video_track_cpu x planned video tracks
    machine  = budget - other - used                         (what the host has left)

With media workers (the default), each worker is one event loop on at most one core:

    used_k   = max(worker k's CPU busy, its learners x relay / all learners)
    fits_k   = floor(max(0, cpu_target - used_k) / marginal)  (0 while the worker is down)
    capacity = min(sum of fits_k, floor(max(0, machine) / marginal))

In the web process (``media_workers = 0``), its one loop relays everything:

    capacity = floor(max(0, min(machine, min(cores, 1) x cpu_target - used)) / marginal)

CPU figures are in cores (CPU-seconds per second), measured over the last few seconds.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from appliance.settings import usable_cores

__all__ = ["CapacityEstimate", "CapacityModel", "CpuSampler", "CpuUsage", "WorkerLoad"]


@dataclass(frozen=True, slots=True)
class CpuUsage:
    cores: int
    """Cores this process may run on."""
    host_busy_cores: float
    """Cores' worth of CPU the whole machine used (all processes)."""
    process_busy_cores: float
    """Cores' worth of CPU this process used (its media workers included)."""
    worker_busy_cores: dict[int, float] = field(default_factory=dict)
    """Each media worker's CPU, by worker index (empty: the relay runs in this process)."""


@dataclass(frozen=True, slots=True)
class _Sample:
    wall: float
    process: float
    """This process's own CPU seconds (its workers' are in ``workers``)."""
    host_busy: float
    host_total: float
    workers: dict[int, float] = field(default_factory=dict)


class CpuSampler:
    """Process and host CPU usage over a sliding window of recent samples.

    :meth:`sample` is called periodically (by the event-loop monitor); :meth:`usage` compares
    the current counters with the oldest kept sample, so a scrape sees the last few seconds.
    """

    def __init__(
        self,
        window: int = 10,
        proc_stat: Path = Path("/proc/stat"),
        workers_cpu: Callable[[], dict[int, float]] | None = None,
    ) -> None:
        self._samples: deque[_Sample] = deque(maxlen=window)
        self._proc_stat = proc_stat
        self.cores = usable_cores()
        self.workers_cpu = workers_cpu
        """CPU seconds of each of this process's media workers, by index (counted as this
        process's CPU, and each worker's on its own for its headroom)."""

    def _read(self) -> _Sample:
        busy = total = 0.0
        try:
            # First line: "cpu  user nice system idle iowait irq softirq steal ...", in ticks.
            fields = [float(x) for x in self._proc_stat.read_text().split("\n", 1)[0].split()[1:]]
            total = sum(fields[:8])
            busy = total - fields[3] - fields[4]
        except (OSError, ValueError, IndexError):
            pass  # not Linux: the host is then taken to be this process alone
        workers = self.workers_cpu() if self.workers_cpu is not None else {}
        return _Sample(time.monotonic(), time.process_time(), busy, total, workers)

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
        # A worker restarted (its new process counts from 0) or new counts 0 for a window.
        per_worker = {
            k: max(0.0, (cpu - old.workers.get(k, cpu)) / wall) for k, cpu in now.workers.items()
        }
        process = max(0.0, (now.process - old.process) / wall) + sum(per_worker.values())
        host = process
        if now.host_total > old.host_total:
            host_cpus = os.cpu_count() or self.cores
            share = (now.host_busy - old.host_busy) / (now.host_total - old.host_total)
            host = max(process, share * host_cpus)
        return CpuUsage(self.cores, host, process, per_worker)


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
    per_worker: dict[int, int] = field(default_factory=dict)
    """Learners that still fit on each media worker, by index (empty: no workers)."""


@dataclass(frozen=True, slots=True)
class WorkerLoad:
    """One media worker, as the capacity model sees it."""

    worker: int
    up: bool
    learners: int
    busy_cores: float


@dataclass(frozen=True, slots=True)
class CapacityModel:
    learner_cpu: float
    video_track_cpu: float
    planned_video_tracks: int
    cpu_target: float
    relay_cores: float = 1.0
    """Cores Estrade can relay on: one per event loop (the web process's, or one per media
    worker). With workers, :meth:`estimate` counts each worker's own headroom instead."""

    def learner_cost(self, video_tracks: int) -> float:
        return self.learner_cpu + self.video_track_cpu * video_tracks

    def estimate(
        self,
        cpu: CpuUsage,
        rooms: list[tuple[int, int]],
        workers: Sequence[WorkerLoad] = (),
    ) -> CapacityEstimate:
        """Estimate the learners that still fit.

        Args:
            cpu: the measured usage.
            rooms: ``(learners, video tracks published)`` per open room; a room without
                video yet counts with the planned number of tracks.
            workers: the media workers (empty: the relay runs in this process, on one loop).
        """
        budget = cpu.cores * self.cpu_target
        other = max(0.0, cpu.host_busy_cores - cpu.process_busy_cores)
        relay = sum(
            learners * self.learner_cost(tracks or self.planned_video_tracks)
            for learners, tracks in rooms
        )
        used = max(cpu.process_busy_cores, relay)
        marginal = self.learner_cost(self.planned_video_tracks)
        machine = budget - other - used
        per_worker: dict[int, int] = {}
        if workers:
            learners = sum(learners for learners, _ in rooms)
            per_learner = relay / learners if learners else marginal
            for w in workers:
                worker_used = max(w.busy_cores, w.learners * per_learner)
                headroom = self.cpu_target - worker_used if w.up else 0.0
                per_worker[w.worker] = _fits(headroom, marginal)
            fits = min(sum(per_worker.values()), _fits(machine, marginal))
        else:
            process_budget = min(cpu.cores, self.relay_cores) * self.cpu_target
            fits = _fits(min(machine, process_budget - used), marginal)
        return CapacityEstimate(
            learners=fits,
            budget_cores=budget,
            other_cores=other,
            used_cores=used,
            relay_model_cores=relay,
            marginal_cores=marginal,
            per_worker=per_worker,
        )


def _fits(cores: float, marginal: float) -> int:
    """Learners of ``marginal`` cores each that ``cores`` holds (0 when negative)."""
    return math.floor(max(0.0, cores) / marginal + 1e-9)
