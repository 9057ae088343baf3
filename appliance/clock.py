"""The one clock of the server: every stored time and every expiry check reads it.

Aware UTC datetimes only. Code calls ``clock.utcnow()`` through the module, so a test can
replace this one function (``monkeypatch.setattr(clock, "utcnow", ...)``) for all of them.
"""

from __future__ import annotations

import datetime as dt

__all__ = ["utcnow"]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
