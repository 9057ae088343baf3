"""Replays: a cohort's recording policy, its recordings, the replay list and timeline,
retention and quota (docs/replays.md).

Import from the modules (``controllers``, ``services``, ``tables``): this package is loaded by
Piccolo's app registry, so it imports nothing itself.
"""
