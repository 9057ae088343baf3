"""HTTP conditional and range requests (RFC 9110 sections 13 and 14) for Litestar's ``File``.

Litestar 2.25's ``File`` response streams a whole file and has no Range support. It reads
through a pluggable file system, so a single byte range is served by handing it a file system
whose files are a window (offset, length) of the real one: the response still streams from
disk in chunks and sets ``Content-Length`` from the window.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

import anyio
from anyio import AsyncFile
from litestar.file_system import FileSystemAdapter

__all__ = ["BadRange", "ByteRange", "WindowFileSystem", "etag_matches", "parse_range"]

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_LARGEST = 19  # digits: more than any file size


class BadRange(ValueError):
    """The Range header cannot be served (HTTP 416)."""


@dataclass(frozen=True, slots=True)
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(header: str, size: int) -> ByteRange | None:
    """One byte range from a ``Range`` header, or ``None`` to send the whole file.

    Several ranges are answered with the whole file (allowed by RFC 9110 14.2); another
    unit is ignored. A malformed or unsatisfiable ``bytes`` range raises :class:`BadRange`.
    """
    value = header.strip()
    if not value.lower().startswith("bytes="):
        return None
    value = "bytes=" + value[6:].strip()
    if "," in value:
        return None
    match = _RANGE.match(value.replace(" ", ""))
    if match is None:
        raise BadRange(f"malformed range {header!r}")
    first, last = match.groups()
    if not first and not last:
        raise BadRange(f"malformed range {header!r}")
    if not first:  # suffix: the last N bytes
        suffix = _position(last)
        if suffix == 0 or size == 0:
            raise BadRange("empty suffix range")
        return ByteRange(max(0, size - suffix), size - 1)
    start = _position(first)
    end = _position(last) if last else size - 1
    if end < start:
        raise BadRange(f"malformed range {header!r}")
    if start >= size:
        raise BadRange(f"range starts after the end of the file ({size} bytes)")
    return ByteRange(start, min(end, size - 1))


def _position(digits: str) -> int:
    """A byte position; past :data:`_LARGEST` digits it is beyond any file anyway.

    ``int()`` refuses strings of more than 4 300 digits (a ``ValueError``: it was a 500).
    """
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= _LARGEST else 10**_LARGEST


def etag_matches(header: str, etag: str) -> bool:
    """Weak comparison of an ``If-None-Match`` list against our (strong, quoted) ETag."""
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


class _Window:
    """An async file limited to ``length`` bytes from ``start``."""

    def __init__(self, file: AsyncFile[bytes], length: int) -> None:
        self._file = file
        self._left = length

    async def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        size = self._left if size < 0 else min(size, self._left)
        data = await self._file.read(size)
        self._left -= len(data)
        return data

    async def __aenter__(self) -> _Window:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._file.aclose()


class WindowFileSystem:
    """A Litestar file system whose files are the byte range ``window`` of the real ones."""

    def __init__(self, window: ByteRange) -> None:
        self.window = window

    async def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        result = await anyio.to_thread.run_sync(os.stat, path)
        info: dict[str, Any] = dict(await FileSystemAdapter.parse_stat_result(path, result))
        info["size"] = self.window.length
        return info

    async def open(self, file: str, mode: str = "rb", buffering: int = -1) -> _Window:
        handle = await anyio.open_file(file, "rb")
        await handle.seek(self.window.start)
        return _Window(handle, self.window.length)
