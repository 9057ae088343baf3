"""Password hashing with argon2id (argon2-cffi's defaults, RFC 9106 low-memory profile).

argon2 costs ~0.1-0.2 s of CPU per hash on purpose: it never runs on the event loop, which
serves every live classroom. :class:`PasswordWorkers` verifies in a small thread pool
(argon2-cffi releases the GIL while hashing) behind a bounded queue: over the bound a sign-in
is refused at once (503 with Retry-After) instead of waiting behind a flood.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = [
    "PasswordWorkers",
    "WorkersBusy",
    "hash_password",
    "hash_password_off_loop",
    "verify_password",
]

_hasher = PasswordHasher()
# Verified against when the account does not exist, so timing does not tell which emails exist.
_DUMMY_HASH = _hasher.hash("estrade-dummy-password")

MIN_PASSWORD_LENGTH = 10


def hash_password(password: str) -> str:
    return _hasher.hash(password)


async def hash_password_off_loop(password: str) -> str:
    """:func:`hash_password` in a worker thread (admins setting passwords: rare, never bursty)."""
    return await asyncio.to_thread(hash_password, password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


WORKER_NICENESS = 19
"""Password threads run at a lower CPU priority than the event loop (Linux: niceness is per
thread, and argon2's own lane threads inherit it), so a burst of sign-ins on a busy machine
delays sign-ins, not the classes."""


def _lower_priority() -> None:
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICENESS)


class WorkersBusy(Exception):
    """Every password worker is busy and the queue is full: refuse now, retry shortly."""


class PasswordWorkers:
    """argon2 verification off the event loop: ``workers`` threads, ``queue`` waiting at most."""

    def __init__(self, workers: int, queue: int) -> None:
        self.workers = workers
        self.limit = workers + queue
        self.in_flight = 0
        self._pool: ThreadPoolExecutor | None = None

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Verify in a worker thread; raises :class:`WorkersBusy` at once when over the bound.

        The check and the count happen before the first ``await``, so concurrent callers
        cannot all pass the bound together.
        """
        if self.in_flight >= self.limit:
            raise WorkersBusy
        self.in_flight += 1
        try:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    self.workers, thread_name_prefix="argon2", initializer=_lower_priority
                )
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, verify_password, password_hash, password)
        finally:
            self.in_flight -= 1

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
