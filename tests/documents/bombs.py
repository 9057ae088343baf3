"""Hostile zip archives, built here byte by byte (all small: the largest is a few MiB).

Each is a real zip that Python's :mod:`zipfile` opens; what makes it hostile is what reading
it naively costs: 256 MiB from 208 bytes, or a table of contents of hundreds of thousands of
entries.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

MIB = 1024 * 1024

# bzip2 (level 9) of 256 MiB of zero bytes, and the CRC-32 of those bytes: computing them
# takes seconds, so they are written out here.
_BZ2_256_MIB_OF_ZEROS = bytes.fromhex(
    "425a68393141592653590e09e2df015f8e4000c0000008200030804d4642a025a90a809731415926"
    "53590e09e2df015f8e4000c0000008200030804d4642a025a90a80973141592653590e09e2df015f"
    "8e4000c0000008200030804d4642a025a90a80973141592653590e09e2df015f8e4000c000000820"
    "0030804d4642a025a90a80973141592653590e09e2df015f8e4000c0000008200030804d4642a025"
    "a90a80973141592653591ecee4db012a3fc000c0040008200030cc0529a6aaa8491b002248f17724"
    "53850906b17caf00"
)
_CRC_256_MIB_OF_ZEROS = 0x2A0E7DBB


class _Writer:
    """Local headers, then the central directory, then the end record: by hand, so sizes,
    methods and counts can be whatever a test needs."""

    def __init__(self) -> None:
        self.out = io.BytesIO()
        self.central: list[bytes] = []

    def add(
        self,
        name: str,
        data: bytes,
        *,
        method: int = 0,
        crc: int | None = None,
        unpacked: int | None = None,
    ) -> None:
        raw = name.encode()
        crc = zlib.crc32(data) if crc is None else crc
        unpacked = len(data) if unpacked is None else unpacked
        offset = self.out.tell()
        self.out.write(
            struct.pack(
                "<4sHHHHHIIIHH",
                b"PK\x03\x04",
                20,
                0x800,
                method,
                0,
                0x21,
                crc,
                len(data),
                unpacked,
                len(raw),
                0,
            )
            + raw
            + data
        )
        self.central.append(
            struct.pack(
                "<4sHHHHHHIIIHHHHHII",
                b"PK\x01\x02",
                20,
                20,
                0x800,
                method,
                0,
                0x21,
                crc,
                len(data),
                unpacked,
                len(raw),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + raw
        )

    def finish(self, announce: int | None = None) -> bytes:
        cd_offset = self.out.tell()
        cd = b"".join(self.central)
        self.out.write(cd)
        count = len(self.central) if announce is None else announce
        self.out.write(
            struct.pack(
                "<4sHHHHIIH",
                b"PK\x05\x06",
                0,
                0,
                count & 0xFFFF,
                count & 0xFFFF,
                len(cd),
                cd_offset,
                0,
            )
        )
        return self.out.getvalue()


def bzip2_mimetype_bomb() -> bytes:
    """An OpenDocument-looking zip whose ``mimetype`` entry unpacks 208 bytes to 256 MiB."""
    w = _Writer()
    w.add(
        "mimetype",
        _BZ2_256_MIB_OF_ZEROS,
        method=zipfile.ZIP_BZIP2,
        crc=_CRC_256_MIB_OF_ZEROS,
        unpacked=256 * MIB,
    )
    w.add("META-INF/manifest.xml", b"<?xml version='1.0'?><manifest/>")
    return w.finish()


def deflate_bomb(size: int = 16 * MIB, name: str = "data.bin") -> bytes:
    """A plain zip with one deflated entry of ``size`` zero bytes (about 1 000:1)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(MIB)
    packed = b"".join(packer.compress(zeros) for _ in range(size // MIB)) + packer.flush()
    crc = 0
    for _ in range(size // MIB):
        crc = zlib.crc32(zeros, crc)
    w = _Writer()
    w.add(name, packed, method=zipfile.ZIP_DEFLATED, crc=crc, unpacked=size)
    return w.finish()


def many_entries(count: int, announce: int | None = None) -> bytes:
    """``count`` empty entries; the end record announces ``announce`` (default: the truth)."""
    w = _Writer()
    for i in range(count):
        w.add(f"{i:07d}", b"")
    return w.finish(announce)


def lying_sizes(declared: int = 3 * 1024 * MIB) -> bytes:
    """Two stored entries that claim ``declared`` bytes each (without holding them)."""
    w = _Writer()
    w.add("a.bin", b"x", unpacked=declared)
    w.add("b.bin", b"y", unpacked=declared)
    return w.finish()


def odf_declaring(media_type: str, payload: tuple[str, bytes]) -> bytes:
    """A zip laid out like an OpenDocument file whose ``mimetype`` says ``media_type``."""
    w = _Writer()
    w.add("mimetype", media_type.encode())
    w.add("META-INF/manifest.xml", b"<?xml version='1.0'?><manifest/>")
    w.add(*payload)
    return w.finish()


EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff" + b"\x00" * 200
