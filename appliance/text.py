"""Limits on client text and dates shared by every schema and service.

PostgreSQL cannot store NUL in ``text``/``varchar`` (the driver raised: HTTP 500 there, while
SQLite stored it); names and titles hold no control characters at all. Dates beyond what the
time-zone arithmetic can shift (year 1 with a positive offset, 9999-12-31 plus a day) raised
``OverflowError``: dates outside :data:`EARLIEST`..:data:`LATEST` are refused with a 400.
"""

from __future__ import annotations

import datetime as dt

from appliance.errors import field_error

__all__ = [
    "EARLIEST",
    "LATEST",
    "NO_CONTROL",
    "NO_NUL",
    "check_day",
    "check_moment",
    "csv_safe",
    "has_control",
]

# msgspec patterns are searched: anchored on both ends.
NO_NUL = r"^[^\x00]*$"
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"

EARLIEST = dt.date(1970, 1, 1)
LATEST = dt.date(2199, 12, 31)


def has_control(text: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


def check_day(key: str, day: dt.date) -> None:
    if not EARLIEST <= day <= LATEST:
        raise field_error(key, f"give a date from {EARLIEST} to {LATEST}")


def check_moment(key: str, moment: dt.datetime) -> None:
    """A date-time in range; its local date is checked first, so no arithmetic can overflow."""
    check_day(key, moment.date())
    if moment.tzinfo is not None:
        check_day(key, moment.astimezone(dt.UTC).date())


def csv_safe(value: str) -> str:
    """A cell a spreadsheet shows as text: one starting with = + - @ would run as a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value
