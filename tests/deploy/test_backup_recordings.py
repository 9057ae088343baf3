"""``estrade-backup create`` with and without the class recordings (docs/replays.md), run for
real: the script rendered by pyinfra from the role's template, pointed at a temporary data
folder (SQLite), a temporary backup folder and this Python."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.deploy.helpers import SITE_VARS, render_with_pyinfra

pytestmark = pytest.mark.slow


def _script(tmp_path: Path, data: Path, backups: Path) -> Path:
    variables = render_with_pyinfra(SITE_VARS, tmp_path / "pyinfra")
    text = (tmp_path / "pyinfra" / "estrade" / "estrade-backup.sh.j2").read_text()
    for name, value in (
        ("DATA_DIR", data),
        ("BACKUP_DIR", backups),
        ("PYTHON", sys.executable),
        ("DATABASE_URL", ""),
    ):
        start = text.index(f"\n{name}=") + 1
        end = text.index("\n", start)
        text = text[:start] + f'{name}="{value}"' + text[end:]
    assert variables.get("estrade_backup_recordings", False) is False  # off by default
    script = tmp_path / "estrade-backup"
    script.write_text(text)
    return script


def _members(archive: Path, tmp_path: Path) -> set[str]:
    with tarfile.open(archive) as outer:
        outer.extractall(tmp_path / "x", filter="data")
    with tarfile.open(tmp_path / "x" / "data.tar.gz") as inner:
        return set(inner.getnames())


def test_backups_include_recordings_only_when_asked(tmp_path: Path) -> None:
    data, backups = tmp_path / "data", tmp_path / "backups"
    (data / "recordings" / "1" / "7").mkdir(parents=True)
    (data / "recordings" / "1" / "7" / "camera.webm").write_bytes(b"\x1aE\xdf\xa3 webm")
    (data / "documents").mkdir()
    (data / "documents" / "ab").write_bytes(b"doc")
    sqlite3.connect(data / "estrade.sqlite3").close()
    script = _script(tmp_path, data, backups)

    def create(*args: str) -> set[str]:
        for old in backups.glob("*.tar.gz"):
            old.unlink()
        proc = subprocess.run(["sh", str(script), "create", *args], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        [archive] = backups.glob("estrade-*.tar.gz")
        out = tmp_path / f"out{len(args)}{args[:1]}"
        return _members(archive, out)

    default = create()
    assert "./documents/ab" in default
    assert not any("recordings" in m for m in default), default
    assert "./recordings/1/7/camera.webm" in create("--with-recordings")
    without = create("--without-recordings")
    assert not any("recordings" in m for m in without)
    assert not any(m.endswith("estrade.sqlite3") for m in create("--with-recordings"))
    bad = subprocess.run(["sh", str(script), "create", "--all"], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr
