"""Sliding-window counters for failed sign-ins (per address and per account).

Kept in the process: with several nodes, put the appliance behind a proxy that pins a client
to one node, or lower the limits accordingly (documented in docs/operations.md).

An attempt is *reserved* (counted) before the handler awaits anything, so concurrent attempts
cannot all pass the check before any of them is recorded; a successful sign-in gives its
reservation back.
"""

import time
from collections import defaultdict, deque
from collections.abc import Callable

__all__ = ["SlidingWindow"]


class SlidingWindow:
    def __init__(
        self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._hits: defaultdict[str, deque[float]] = defaultdict(deque)

    def _prune(self, key: str) -> deque[float]:
        hits = self._hits[key]
        horizon = self._clock() - self.window_s
        while hits and hits[0] <= horizon:
            hits.popleft()
        if not hits:
            del self._hits[key]
            return deque()
        return hits

    def retry_after(self, key: str) -> int:
        """Seconds until ``key`` may try again; 0 when it may try now."""
        hits = self._prune(key)
        if len(hits) < self.limit:
            return 0
        return max(1, int(hits[0] + self.window_s - self._clock()) + 1)

    def hit(self, key: str) -> None:
        self._hits[key].append(self._clock())

    def release(self, key: str) -> None:
        """Give back the most recent hit of ``key`` (a reserved attempt that did not fail)."""
        hits = self._hits.get(key)
        if hits:
            hits.pop()
            if not hits:
                del self._hits[key]

    def reset(self, key: str) -> None:
        self._hits.pop(key, None)
