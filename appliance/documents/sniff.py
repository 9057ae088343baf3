"""Decide a document's type from its content, against an allow-list.

The signature check is the ``filetype`` library's (fixed magic numbers, no guessing); zip
containers are then looked into (:mod:`appliance.documents.zipscan`, bounded) to tell OOXML
and OpenDocument files from plain archives, because their first bytes are those of any zip.
Plain text is valid UTF-8 without NUL bytes (checked while the upload streams). The file
name's extension must agree with the content.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import filetype

from appliance.documents import zipscan

__all__ = ["ALLOWED", "Kind", "SuspiciousArchive", "UnsupportedType", "sniff"]


class UnsupportedType(ValueError):
    """The content is outside the allow-list, or contradicts the file name (HTTP 415)."""


@dataclass(frozen=True, slots=True)
class Kind:
    media_type: str
    extensions: frozenset[str]
    previewable: bool = False


def _k(media_type: str, *extensions: str, previewable: bool = False) -> Kind:
    return Kind(media_type, frozenset(extensions), previewable)


_OOXML = "application/vnd.openxmlformats-officedocument."
_ODF = "application/vnd.oasis.opendocument."
TEXT = _k(
    # Served with "; charset=utf-8" (Litestar adds it to text/* types).
    "text/plain",
    *[
        "txt",
        "text",
        "md",
        "markdown",
        "rst",
        "csv",
        "tsv",
        "log",
        "json",
        "xml",
        "yaml",
        "yml",
        "toml",
        "ini",
        "cfg",
        "conf",
        "sql",
        "sh",
        "py",
        "c",
        "h",
        "cpp",
        "hpp",
        "java",
        "js",
        "ts",
        "css",
        "html",
        "htm",
        "php",
        "rb",
        "go",
        "rs",
    ],
)
ZIP = _k("application/zip", "zip")

ALLOWED: dict[str, Kind] = {
    k.media_type: k
    for k in (
        _k("application/pdf", "pdf", previewable=True),
        _k("image/png", "png", previewable=True),
        _k("image/jpeg", "jpg", "jpeg", "jpe", previewable=True),
        _k("image/gif", "gif", previewable=True),
        _k("image/webp", "webp", previewable=True),
        _k(_OOXML + "wordprocessingml.document", "docx"),
        _k(_OOXML + "spreadsheetml.sheet", "xlsx"),
        _k(_OOXML + "presentationml.presentation", "pptx"),
        _k(_ODF + "text", "odt"),
        _k(_ODF + "spreadsheet", "ods"),
        _k(_ODF + "presentation", "odp"),
        ZIP,
        TEXT,
    )
}

# The part every OOXML package of that kind has (ECMA-376 part 2).
_OOXML_MAIN_PARTS = {
    "word/document.xml": _OOXML + "wordprocessingml.document",
    "xl/workbook.xml": _OOXML + "spreadsheetml.sheet",
    "ppt/presentation.xml": _OOXML + "presentationml.presentation",
}


class SuspiciousArchive(UnsupportedType):
    """A zip archive over the limits of :mod:`appliance.documents.zipscan` (HTTP 422)."""


# What a zip container may declare itself to be: only zip-based formats.
_ODF_KINDS = {t: k for t, k in ALLOWED.items() if t.startswith(_ODF)}


def _zip_kind(path: Path) -> Kind:
    """An office document when the archive is one, else a plain zip.

    The archive's own claims decide only between zip-based formats: a ``mimetype`` entry that
    says ``application/pdf`` does not make a zip a PDF.
    """
    try:
        with path.open("rb") as fp:
            toc = zipscan.read_toc(fp, path.stat().st_size)
            names = toc.entries
            # OpenDocument: a stored ``mimetype`` entry names the type (ODF 1.2 part 3, 3.3),
            # next to the manifest every package has.
            declared = toc.peek(fp, "mimetype")
            if declared is not None and "META-INF/manifest.xml" in names:
                kind = _ODF_KINDS.get(declared.decode("ascii", "replace").strip())
                if kind is not None:
                    return kind
            if "[Content_Types].xml" in names:
                for part, media_type in _OOXML_MAIN_PARTS.items():
                    if part in names:
                        return ALLOWED[media_type]
    except zipscan.ArchiveRefused as exc:
        raise SuspiciousArchive(f"{exc}: refused as a possible zip bomb") from None
    except (zipscan.DamagedArchive, OSError, struct.error):
        raise UnsupportedType("the zip archive is damaged") from None
    return ZIP


def _extension(name: str) -> str:
    stem, dot, ext = name.rpartition(".")
    return ext.lower() if dot and stem else ""


def sniff(path: Path, head: bytes, *, is_text: bool, name: str) -> Kind:
    """The allowed kind of the file at ``path``.

    Args:
        path: the complete file (zip containers are read through their central directory).
        head: its first bytes (at least 8 KiB when the file is that long).
        is_text: the whole file decoded as UTF-8 without NUL bytes.
        name: the (already cleaned) original file name, checked against the content.

    Raises:
        UnsupportedType: outside the allow-list, or the name's extension says otherwise.
    """
    guess = filetype.guess(head)
    if guess is not None:
        if guess.mime == "application/zip" or guess.mime.startswith((_OOXML, _ODF)):
            kind = _zip_kind(path)
        elif guess.mime in ALLOWED:
            kind = ALLOWED[guess.mime]
        else:
            raise UnsupportedType(f"{guess.mime} files are not accepted")
    elif is_text:
        kind = TEXT
    else:
        raise UnsupportedType("this type of file is not accepted")
    ext = _extension(name)
    if ext and ext not in kind.extensions:
        raise UnsupportedType(
            f"the content is {kind.media_type.split(';')[0]}, not what the name {name!r} says"
        )
    return kind
