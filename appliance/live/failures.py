"""Unexpected handler failures: logged with a traceback, but not once per frame."""

from __future__ import annotations

import logging
import time

__all__ = ["FailureLog"]

log = logging.getLogger("estrade.live")


class FailureLog:
    """Log a handler's unexpected failure with its traceback once per (message type, error)
    per ``every_s``; repeats in between are only counted (a client must not be able to fill
    the log with a traceback per frame)."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self._last: dict[tuple[str, str], tuple[float, int]] = {}

    def log(self, tag: str, exc: Exception) -> None:
        key = (tag, type(exc).__qualname__)
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.every_s:
            self._last[key] = (last[0], last[1] + 1)
            return
        repeats = last[1] if last is not None else 0
        if len(self._last) > 1000:  # bounded: forget the oldest kinds
            self._last.pop(next(iter(self._last)))
        self._last[key] = (now, 0)
        log.error(
            "handler for %s failed (%d more like it since the last report)",
            tag,
            repeats,
            exc_info=exc,
        )
