"""Real sample files of each allowed type, built here (nothing fetched)."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib


def png(width: int = 2, height: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def pdf() -> bytes:
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, obj in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (i, obj))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (4, xref))
    return out.getvalue()


def gif() -> bytes:
    return (
        b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
        b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
    )


def jpeg() -> bytes:
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + b"\x00" * 64


def webp() -> bytes:
    payload = b"VP8L\x0a\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00"
    return b"RIFF" + struct.pack("<I", 4 + len(payload)) + b"WEBP" + payload


def _zip(entries: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in entries:
            method = zipfile.ZIP_STORED if name == "mimetype" else zipfile.ZIP_DEFLATED
            archive.writestr(name, data, compress_type=method)
    return out.getvalue()


def _ooxml(main_part: str) -> bytes:
    return _zip(
        [
            ("[Content_Types].xml", b"<?xml version='1.0'?><Types/>"),
            ("_rels/.rels", b"<?xml version='1.0'?><Relationships/>"),
            ("docProps/app.xml", b"<?xml version='1.0'?><Properties/>"),
            (main_part, b"<?xml version='1.0'?><root/>"),
        ]
    )


def _odf(kind: str) -> bytes:
    return _zip(
        [
            ("mimetype", f"application/vnd.oasis.opendocument.{kind}".encode()),
            ("content.xml", b"<?xml version='1.0'?><office:document-content/>"),
            ("META-INF/manifest.xml", b"<?xml version='1.0'?><manifest/>"),
        ]
    )


def plain_zip() -> bytes:
    return _zip([("exercice/README.txt", b"hello"), ("exercice/main.py", b"print(1)\n")])


OOXML = "application/vnd.openxmlformats-officedocument."
ODF = "application/vnd.oasis.opendocument."

# name -> (content, expected media type)
ALLOWED: dict[str, tuple[bytes, str]] = {
    "cours.pdf": (pdf(), "application/pdf"),
    "schema.png": (png(), "image/png"),
    "photo.jpg": (jpeg(), "image/jpeg"),
    "anim.gif": (gif(), "image/gif"),
    "image.webp": (webp(), "image/webp"),
    "tp.docx": (_ooxml("word/document.xml"), OOXML + "wordprocessingml.document"),
    "notes.xlsx": (_ooxml("xl/workbook.xml"), OOXML + "spreadsheetml.sheet"),
    "slides.pptx": (_ooxml("ppt/presentation.xml"), OOXML + "presentationml.presentation"),
    "tp.odt": (_odf("text"), ODF + "text"),
    "notes.ods": (_odf("spreadsheet"), ODF + "spreadsheet"),
    "slides.odp": (_odf("presentation"), ODF + "presentation"),
    "exercice.zip": (plain_zip(), "application/zip"),
    "lisez-moi.txt": ("Énoncé : écrire un programme.\n".encode(), "text/plain"),
}
