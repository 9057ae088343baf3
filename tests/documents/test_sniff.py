"""The content sniffer on hostile archives and names (no server: the pure functions)."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
from pathlib import Path

import pytest

from appliance.documents import zipscan
from appliance.documents.names import MAX_NAME, BadName, clean_name
from appliance.documents.sniff import SuspiciousArchive, UnsupportedType, sniff
from tests.documents import bombs, samples


def _sniff(tmp_path: Path, content: bytes, name: str) -> str:
    path = tmp_path / "upload"
    path.write_bytes(content)
    return sniff(path, content[:8192], is_text=False, name=name).media_type


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (bombs.bzip2_mimetype_bomb, "would expand"),
        (bombs.deflate_bomb, "would expand"),
        (bombs.lying_sizes, "would unpack to more than 2 GiB"),
        (lambda: bombs.many_entries(zipscan.MAX_ENTRIES + 1), "holds 10001 files"),
        # The end record says 1; the walk stops at the limit all the same.
        (lambda: bombs.many_entries(zipscan.MAX_ENTRIES + 1, announce=1), "more than 10000"),
        (lambda: bombs.many_entries(90_000, announce=1), "table of contents is"),
    ],
    ids=["bzip2-mimetype", "deflate", "declared-total", "entries", "entries-lying", "toc-size"],
)
def test_zip_bombs_are_refused_from_the_table_of_contents(
    tmp_path: Path, make, message: str
) -> None:
    content = make()
    tracemalloc.start()
    try:
        with pytest.raises(SuspiciousArchive, match=message):
            _sniff(tmp_path, content, "archive.zip")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Never more than the table of contents (4 MiB at most) and what describes it.
    assert peak < 3 * len(content) + 8 * 1024 * 1024, peak


def test_only_the_first_bytes_of_mimetype_are_read(tmp_path: Path) -> None:
    declared = b"application/vnd.oasis.opendocument.text" + b" " * 10_000_000
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("mimetype", declared, compress_type=zipfile.ZIP_STORED)
        z.writestr("META-INF/manifest.xml", b"<manifest/>")
    content = out.getvalue()
    path = tmp_path / "big-mimetype.odt"
    path.write_bytes(content)
    with path.open("rb") as fp:
        toc = zipscan.read_toc(fp, len(content))
        assert toc.peek(fp, "mimetype") == declared[: zipscan.MAX_PEEK]
    assert _sniff(tmp_path, content, "tp.odt") == "application/vnd.oasis.opendocument.text"


@pytest.mark.parametrize(
    "declared", ["application/pdf", "image/png", "text/plain", "application/zip"]
)
def test_a_zip_cannot_declare_itself_something_else(tmp_path: Path, declared: str) -> None:
    content = bombs.odf_declaring(declared, ("run.exe", bombs.EXE))
    # What it really is: a zip archive; named as what it claims, it is refused.
    assert _sniff(tmp_path, content, "archive.zip") == "application/zip"
    with pytest.raises(UnsupportedType, match="the content is application/zip"):
        _sniff(tmp_path, content, "cours.pdf")


def test_opendocument_needs_its_manifest_and_a_stored_mimetype(tmp_path: Path) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        z.writestr("content.xml", "<x/>")
    assert _sniff(tmp_path, out.getvalue(), "a.zip") == "application/zip"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("mimetype", "application/vnd.oasis.opendocument.text")
        z.writestr("META-INF/manifest.xml", "<manifest/>")
    assert _sniff(tmp_path, out.getvalue(), "b.zip") == "application/zip"


def test_real_documents_still_pass(tmp_path: Path) -> None:
    for name, (content, media_type) in samples.ALLOWED.items():
        if content.startswith(b"PK"):
            assert _sniff(tmp_path, content, name) == media_type, name


def test_zip64_archives_are_read(tmp_path: Path) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        with z.open("big.txt", "w", force_zip64=True) as f:
            f.write(b"hello")
        z.writestr("small.txt", b"hi")
    content = out.getvalue()
    with io.BytesIO(content) as fp:
        toc = zipscan.read_toc(fp, len(content))
    assert set(toc.entries) == {"big.txt", "small.txt"}
    assert toc.entries["big.txt"].unpacked == 5


@pytest.mark.parametrize(
    "content",
    [b"PK\x03\x04" + b"\x00" * 100, samples.plain_zip()[:-10], samples.plain_zip()[40:]],
    ids=["no-directory", "cut-end", "cut-start"],
)
def test_damaged_archives_are_unsupported(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(UnsupportedType, match="damaged"):
        _sniff(tmp_path, b"PK\x03\x04" + content[4:], "a.zip")


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("run.bat.", "run.bat"),
        ("run.bat..", "run.bat"),
        ("run.bat . .", "run.bat"),
        ("run.bat\u3000", "run.bat"),
        ("  notes.txt  ", "notes.txt"),
        ("...", "document"),
    ],
)
def test_dots_and_spaces_at_the_end_are_dropped(raw: str, kept: str) -> None:
    assert clean_name(raw) == kept


def test_a_too_long_name_is_refused_not_cut() -> None:
    assert clean_name("x" * (MAX_NAME - 4) + ".pdf") == "x" * (MAX_NAME - 4) + ".pdf"
    with pytest.raises(BadName, match="at most 255"):
        clean_name("x" * MAX_NAME + ".pdf")
