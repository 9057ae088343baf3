"""Per-cohort locks for services that must serialise their writes within this process."""

from __future__ import annotations

import asyncio

__all__ = ["CohortLocks"]


class CohortLocks:
    """One :class:`asyncio.Lock` per event loop and cohort.

    Keyed by loop too: a lock is bound to the loop that first waits on it, and tests (or a
    CLI command) run several loops in one process.
    """

    def __init__(self) -> None:
        self._locks: dict[tuple[int, int], asyncio.Lock] = {}

    def __call__(self, cohort_id: int) -> asyncio.Lock:
        key = (id(asyncio.get_running_loop()), cohort_id)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock
