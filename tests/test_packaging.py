"""Every folder of Python code under appliance/ ships in the wheel.

``[tool.setuptools.packages.find]`` finds only regular packages: a folder of modules without an
``__init__.py`` (appliance/replays had none at first) works from the source tree and in tests,
and is missing from the installed wheel.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import find_packages

ROOT = Path(__file__).resolve().parents[1]


def test_every_python_folder_is_a_package() -> None:
    shipped = set(find_packages(where=str(ROOT), include=["appliance*"]))
    folders = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "appliance").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    assert folders - shipped == set()
