"""Pure helpers of the documents package: ranges, names, the temporary-file sweep."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from appliance.documents.names import clean_name, content_disposition
from appliance.documents.ranges import BadRange, ByteRange, etag_matches, parse_range
from appliance.documents.storage import BlobStore


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", ByteRange(0, 0)),
        ("bytes=10-", ByteRange(10, 99)),
        ("bytes=-10", ByteRange(90, 99)),
        ("bytes=-1000", ByteRange(0, 99)),
        ("bytes=95-1000", ByteRange(95, 99)),
        ("items=0-5", None),
        ("bytes=0-1,4-5", None),
        # More digits than int() converts (4 300): beyond any file, not a 500.
        ("bytes=-" + "9" * 4400, ByteRange(0, 99)),
        ("bytes=0-" + "9" * 4400, ByteRange(0, 99)),
        ("bytes=" + "0" * 4400 + "5-6", ByteRange(5, 6)),
    ],
)
def test_parse_range(header: str, expected: ByteRange | None) -> None:
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize(
    "header",
    ["bytes=100-", "bytes=5-4", "bytes=x-1", "bytes=-0", "bytes=", "bytes=" + "9" * 4400 + "-"],
)
def test_bad_ranges(header: str) -> None:
    with pytest.raises(BadRange):
        parse_range(header, 100)


def test_etag_matches() -> None:
    assert etag_matches('"a", W/"b"', '"b"')
    assert etag_matches("*", '"b"')
    assert not etag_matches('"a"', '"b"')


def test_names() -> None:
    assert clean_name("  \t ") == "document"
    assert content_disposition("inline", "a;b.pdf") == 'inline; filename="a;b.pdf"'
    assert content_disposition("attachment", "日本.txt") == (
        "attachment; filename=\"__.txt\"; filename*=UTF-8''%E6%97%A5%E6%9C%AC.txt"
    )


def test_sweep_removes_only_stale_temporary_files(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    store.tmp_dir.mkdir(parents=True)
    stale, fresh = store.tmp_dir / "upload-old", store.tmp_dir / "upload-new"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    old = time.time() - 2 * 24 * 3600
    os.utime(stale, (old, old))
    assert store.sweep() == 1
    assert not stale.exists() and fresh.exists()


def test_store_paths_come_only_from_hashes(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    assert store.path("ab" + "0" * 62) == tmp_path / "documents" / "sha256" / "ab" / (
        "ab" + "0" * 62
    )
    with pytest.raises(ValueError, match="not a sha256"):
        store.path("../../etc/passwd")
