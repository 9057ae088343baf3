"""The provisioning package lives at the repository root, outside the installed wheel."""

import sys
from pathlib import Path

REPO = str(Path(__file__).resolve().parents[2])
if REPO not in sys.path:
    sys.path.insert(0, REPO)


def pytest_addoption(parser):
    parser.addoption(
        "--boots",
        type=int,
        default=1,
        help="booted tier: boot and stop this many fresh hosts in a row (make test-boots)",
    )
