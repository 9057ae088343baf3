"""The content-addressed blob store: ``DATA_DIR/documents/sha256/<ab>/<sha256>``.

An upload streams into ``documents/tmp/`` (same file system, so the final rename is atomic),
is hashed and checked as it arrives, fsynced, then renamed to its SHA-256 path. Identical
content is stored once. Nothing from the client ever becomes part of a path.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import hashlib
import os
import re
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio.to_thread

__all__ = ["BlobStore", "Received", "TooLarge"]

HEAD_BYTES = 8192
_WRITE_BATCH = 1024 * 1024
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_STALE_TMP_S = 24 * 3600


class TooLarge(Exception):
    """The body passed the limit; the message says which limit (HTTP 413)."""


@dataclass(slots=True)
class Received:
    """A complete upload, in a temporary file until :meth:`BlobStore.commit`."""

    tmp_path: Path
    sha256: str
    size: int
    head: bytes
    is_text: bool


class BlobStore:
    """Blobs on disk (a folder every host mounts, with several hosts), plus this process's lock
    ordering "add a reference" and "drop the last one" (the database orders hosts: services.py)."""

    def __init__(self, data_dir: Path) -> None:
        self.root = Path(data_dir) / "documents"
        self.tmp_dir = self.root / "tmp"
        self.blob_dir = self.root / "sha256"
        # One process owns the store: this lock keeps a delete from removing a blob that an
        # upload of the same content is about to reference.
        self.lock = asyncio.Lock()

    def path(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.blob_dir / sha256[:2] / sha256

    def sweep(self) -> int:
        """Remove temporary files left by a crash (older than a day); returns how many."""
        removed = 0
        if not self.tmp_dir.is_dir():
            return 0
        cutoff = time.time() - _STALE_TMP_S
        for entry in self.tmp_dir.iterdir():
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    entry.unlink()
                    removed += 1
        return removed

    async def receive(self, chunks: AsyncIterator[bytes], limit: int, too_large: str) -> Received:
        """Stream ``chunks`` to a temporary file, hashing and counting as they come.

        Raises:
            TooLarge: as soon as more than ``limit`` bytes arrived (message ``too_large``);
                the temporary file is removed. Any other error also removes it.
        """
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        tmp_path = self.tmp_dir / f"upload-{secrets.token_hex(12)}"
        digest = hashlib.sha256()
        decoder = codecs.getincrementaldecoder("utf-8")()
        is_text = True
        head = bytearray()
        size = 0
        batch: list[bytes] = []
        batched = 0
        fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if size > limit:
                    raise TooLarge(too_large)
                digest.update(chunk)
                if len(head) < HEAD_BYTES:
                    head += chunk[: HEAD_BYTES - len(head)]
                if is_text:
                    try:
                        decoder.decode(chunk)
                    except UnicodeDecodeError:
                        is_text = False
                    is_text = is_text and b"\x00" not in chunk
                batch.append(chunk)
                batched += len(chunk)
                if batched >= _WRITE_BATCH:
                    await anyio.to_thread.run_sync(_write_all, fd, batch)
                    batch, batched = [], 0
            await anyio.to_thread.run_sync(_write_all, fd, batch)
            await anyio.to_thread.run_sync(os.fsync, fd)
            if is_text:
                try:
                    decoder.decode(b"", final=True)
                except UnicodeDecodeError:
                    is_text = False
        except BaseException:
            os.close(fd)
            tmp_path.unlink(missing_ok=True)
            raise
        os.close(fd)
        return Received(tmp_path, digest.hexdigest(), size, bytes(head), is_text and size > 0)

    def discard(self, received: Received) -> None:
        received.tmp_path.unlink(missing_ok=True)

    async def commit(self, received: Received) -> Path:
        """Move the upload to its content address (call with :attr:`lock` held)."""
        final = self.path(received.sha256)
        if final.exists():
            received.tmp_path.unlink(missing_ok=True)  # same content already stored
            return final
        await anyio.to_thread.run_sync(_place, received.tmp_path, final)
        return final

    async def remove(self, sha256: str) -> None:
        """Delete a blob that no document refers to any more (call with :attr:`lock` held)."""
        self.path(sha256).unlink(missing_ok=True)

    def usage(self) -> tuple[int, int]:
        """(blobs, bytes) actually on disk, after deduplication."""
        count = total = 0
        if self.blob_dir.is_dir():
            for blob in self.blob_dir.glob("*/*"):
                count += 1
                total += blob.stat().st_size
        return count, total


def _write_all(fd: int, chunks: list[bytes]) -> None:
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            view = view[os.write(fd, view) :]


def _place(tmp_path: Path, final: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp_path, final)
    # Make the rename itself durable.
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
