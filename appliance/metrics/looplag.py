"""Event-loop lag: how late a periodic wake-up runs, i.e. how long callbacks wait to run."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from prometheus_client import Gauge

__all__ = ["LoopMonitor"]


class LoopMonitor:
    """Sleeps ``interval`` seconds in a loop and records how much later than asked it woke.

    A lag of tens of milliseconds means every socket message and media packet handled in Python
    waits that long. ``on_tick`` runs at each wake-up (the CPU sampler hooks in there).
    """

    def __init__(
        self, gauge: Gauge, interval: float = 0.5, on_tick: Callable[[], None] | None = None
    ) -> None:
        self._gauge = gauge
        self._interval = interval
        self._on_tick = on_tick
        self._task: asyncio.Task[None] | None = None
        self.last_lag_s = 0.0
        """The lag at the last check (what the gauge shows; the operator page reads it)."""

    async def _run(self) -> None:
        while True:
            start = time.perf_counter()
            await asyncio.sleep(self._interval)
            lag = time.perf_counter() - start - self._interval
            self.last_lag_s = max(0.0, lag)
            self._gauge.set(self.last_lag_s)
            if self._on_tick is not None:
                self._on_tick()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
