"""A bounded look inside a zip archive: its table of contents and a few bytes of one entry.

:mod:`zipfile` reads the whole central directory into memory (one object per entry, however
many the end record announces) and decompresses whatever it is asked to read. An upload is
hostile until proven otherwise, so this module reads the end record first, refuses an archive
whose table of contents is larger than :data:`MAX_CD_BYTES` or announces more than
:data:`MAX_ENTRIES` entries, walks the entries itself (stopping at the limit whatever the end
record said), and never decompresses anything: the only entry whose content is read, the
OpenDocument ``mimetype``, must be stored uncompressed (ODF 1.2 part 3, 3.3), and only its
first :data:`MAX_PEEK` bytes are read.

Declared sizes are checked too, so a learner is never handed a zip bomb to open: more than
:data:`MAX_UNPACKED` bytes in all, or an entry that claims to expand more than
:data:`MAX_RATIO` times (deflate cannot exceed about 1 032:1; real documents stay far below
100:1) is refused.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import BinaryIO

__all__ = [
    "MAX_CD_BYTES",
    "MAX_ENTRIES",
    "MAX_PEEK",
    "MAX_RATIO",
    "MAX_UNPACKED",
    "ArchiveRefused",
    "DamagedArchive",
    "Entry",
    "Toc",
    "read_toc",
]

MAX_ENTRIES = 10_000
MAX_CD_BYTES = 4 * 1024 * 1024
MAX_UNPACKED = 2 * 1024 * 1024 * 1024
MAX_RATIO = 200
# Below this declared size an entry's ratio does not matter (a 10 KiB XML part of zeros...).
RATIO_FLOOR = 1024 * 1024
MAX_PEEK = 128

_EOCD = struct.Struct("<4sHHHHIIH")  # end of central directory record (22 bytes)
_EOCD64_LOCATOR = struct.Struct("<4sIQI")  # 20 bytes
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")  # 56 bytes
_CDH = struct.Struct("<4sHHHHHHIIIHHHHHII")  # central directory header (46 bytes)
_LFH = struct.Struct("<4sHHHHHIIIHH")  # local file header (30 bytes)
_MAX_COMMENT = 65535


class DamagedArchive(ValueError):
    """Not a readable zip archive."""


class ArchiveRefused(ValueError):
    """A readable archive over one of the limits (a zip bomb, or an absurd table of contents)."""


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    method: int
    compressed: int
    unpacked: int
    header_offset: int


@dataclass(frozen=True, slots=True)
class Toc:
    """What the central directory says, after the limits were checked."""

    entries: dict[str, Entry]
    base: int  # bytes prepended to the archive (offsets are relative to it)

    def peek(self, fp: BinaryIO, name: str) -> bytes | None:
        """The first :data:`MAX_PEEK` bytes of a *stored* entry (``None``: absent or packed)."""
        entry = self.entries.get(name)
        if entry is None or entry.method != 0:
            return None
        fp.seek(self.base + entry.header_offset)
        header = fp.read(_LFH.size)
        if len(header) != _LFH.size:
            raise DamagedArchive("a local header is cut short")
        sig, *_, name_len, extra_len = _LFH.unpack(header)
        if sig != b"PK\x03\x04":
            raise DamagedArchive("a local header is missing")
        fp.seek(name_len + extra_len, 1)
        return fp.read(min(entry.compressed, MAX_PEEK))


def _end_record(fp: BinaryIO, size: int) -> tuple[int, int, int, int]:
    """(entries, central directory size, its offset, where the end record(s) start)."""
    tail_len = min(size, _EOCD.size + _MAX_COMMENT)
    fp.seek(size - tail_len)
    tail = fp.read(tail_len)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _EOCD.size:
        raise DamagedArchive("no end of central directory")
    _, disk, cd_disk, _, count, cd_size, cd_offset, _ = _EOCD.unpack_from(tail, at)
    eocd_pos = size - tail_len + at
    if disk != 0 or cd_disk != 0:
        raise DamagedArchive("multi-volume archives are not accepted")
    if count == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:
        loc_pos = eocd_pos - _EOCD64_LOCATOR.size
        if loc_pos < 0:
            raise DamagedArchive("zip64 locator missing")
        fp.seek(loc_pos)
        sig, _, _, _ = _EOCD64_LOCATOR.unpack(fp.read(_EOCD64_LOCATOR.size))
        if sig != b"PK\x06\x07":
            raise DamagedArchive("zip64 locator missing")
        # The zip64 record sits right before its locator (whatever was prepended).
        eocd64_pos = loc_pos - _EOCD64.size
        if eocd64_pos < 0:
            raise DamagedArchive("zip64 end record missing")
        fp.seek(eocd64_pos)
        fields = _EOCD64.unpack(fp.read(_EOCD64.size))
        if fields[0] != b"PK\x06\x06":
            raise DamagedArchive("zip64 end record missing")
        count, cd_size, cd_offset = fields[7], fields[8], fields[9]
        return count, cd_size, cd_offset, eocd64_pos
    return count, cd_size, cd_offset, eocd_pos


def _zip64_sizes(extra: bytes, unpacked: int, compressed: int, offset: int) -> tuple[int, ...]:
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        pos += 4 + length
        if tag != 0x0001:
            continue
        values = [unpacked, compressed, offset]
        i = 0
        for k, v in enumerate(values):
            if v == 0xFFFFFFFF:
                if i + 8 > len(body):
                    raise DamagedArchive("a zip64 extra field is cut short")
                values[k] = struct.unpack_from("<Q", body, i)[0]
                i += 8
        return tuple(values)
    return unpacked, compressed, offset


def read_toc(fp: BinaryIO, size: int) -> Toc:
    """Read and check an archive's table of contents.

    Raises:
        DamagedArchive: not a zip, or its structures contradict each other.
        ArchiveRefused: over :data:`MAX_ENTRIES`, :data:`MAX_CD_BYTES`,
            :data:`MAX_UNPACKED` or :data:`MAX_RATIO` (the message says which).
    """
    count, cd_size, cd_offset, end_pos = _end_record(fp, size)
    if count > MAX_ENTRIES:
        raise ArchiveRefused(f"the archive holds {count} files (at most {MAX_ENTRIES})")
    if cd_size > MAX_CD_BYTES:
        raise ArchiveRefused(
            f"the archive's table of contents is {cd_size // 1024} KiB "
            f"(at most {MAX_CD_BYTES // 1024 // 1024} MiB)"
        )
    cd_start = end_pos - cd_size
    base = cd_start - cd_offset
    if cd_start < 0 or base < 0:
        raise DamagedArchive("the central directory lies outside the file")
    fp.seek(cd_start)
    cd = fp.read(cd_size)
    if len(cd) != cd_size:
        raise DamagedArchive("the central directory is cut short")
    entries: dict[str, Entry] = {}
    total = 0
    pos = 0
    while pos < cd_size:
        if len(entries) >= MAX_ENTRIES:
            raise ArchiveRefused(f"the archive holds more than {MAX_ENTRIES} files")
        if pos + _CDH.size > cd_size:
            raise DamagedArchive("a central directory entry is cut short")
        (sig, _, _, flags, method, _, _, _, compressed, unpacked, name_len, extra_len,
         comment_len, _, _, _, offset) = _CDH.unpack_from(cd, pos)  # fmt: skip
        if sig != b"PK\x01\x02":
            raise DamagedArchive("a central directory entry is damaged")
        name_end = pos + _CDH.size + name_len
        extra_end = name_end + extra_len
        if extra_end + comment_len > cd_size:
            raise DamagedArchive("a central directory entry is cut short")
        raw_name = cd[pos + _CDH.size : name_end]
        name = raw_name.decode("utf-8" if flags & 0x800 else "cp437", "replace")
        unpacked, compressed, offset = _zip64_sizes(
            cd[name_end:extra_end], unpacked, compressed, offset
        )
        pos = extra_end + comment_len
        total += unpacked
        if total > MAX_UNPACKED:
            raise ArchiveRefused(
                f"the archive would unpack to more than {MAX_UNPACKED // 1024**3} GiB"
            )
        if unpacked > RATIO_FLOOR and unpacked > MAX_RATIO * max(compressed, 1):
            raise ArchiveRefused(
                f"the archive's entry {name[:80]!r} would expand {unpacked // max(compressed, 1)}"
                f" times (at most {MAX_RATIO})"
            )
        if offset + _LFH.size > cd_start - base:
            raise DamagedArchive("an entry lies outside the file")
        entries.setdefault(name, Entry(name, method, compressed, unpacked, offset))
    return Toc(entries, base)
