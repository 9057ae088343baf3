"""Attendance: an append-only, hash-chained log of connections, signing windows, signatures
and corrections, and the exports built from it."""

__all__: list[str] = []
