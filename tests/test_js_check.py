"""The JavaScript check of ``make lint`` (docs/ui.md "Checking the JavaScript")
is not a no-op: with the repository's own jsconfig.json and ESLint config, a page that misuses
protocol.js's typed messages fails ``tsc --noEmit`` and a sloppy one fails ESLint, while the
same page written right passes both.

The tools come from ``make js-tools`` (tools/js, pinned by its package-lock.json); ``make test``
installs them first. Without them these tests fail, saying so: they never skip.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools" / "js" / "node_modules" / ".bin"
PROTOCOL = ROOT / "appliance" / "web" / "static" / "js" / "protocol.js"

# A page as the UI writes them: listens to a typed message, sends with a helper.
RIGHT = """import { Classroom } from "PROTOCOL";

const room = new Classroom(1);
room.on("chat_message", (e) => console.log(e.message.text, e.message.author_name));
room.on("question_voted", (e) => console.log(e.votes + 1));
room.questionVote(12).then((ack) => console.log(ack.ref));
"""

# The same page with the mistakes a type check exists for.
WRONG = {
    "misspelt field of a message": ("e.message.text", "e.mesage.text", "'mesage'"),
    "argument of the wrong type": ("questionVote(12)", 'questionVote("12")', "TS2345"),
    "message type that does not exist": ('"question_voted"', '"question_vote"', "TS2345"),
    "field of the ack that does not exist": ("ack.ref", "ack.reference", "'reference'"),
}


def tool(name: str) -> Path:
    path = TOOLS / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make js-tools` (needs node and npm)")
    return path


def tsc_errors(folder: Path, config: str, pages: dict[str, str]) -> list[tuple[str, str]]:
    """Write `pages` into `folder`, run tsc with a config that extends the repository's
    `config` (so its settings, not a copy), and return (file name, error line) pairs."""
    folder.mkdir(exist_ok=True)
    for name, source in pages.items():
        (folder / name).write_text(source.replace("PROTOCOL", str(PROTOCOL)), encoding="utf-8")
    settings = {"extends": str(ROOT / config), "include": sorted(pages)}
    (folder / "jsconfig.json").write_text(json.dumps(settings), encoding="utf-8")
    done = subprocess.run(
        [tool("tsc"), "-p", str(folder / "jsconfig.json")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # "path/to/page.js(line,col): error TSnnnn: ...", the path relative to the working folder.
    errors = [line for line in done.stdout.splitlines() if "error TS" in line]
    assert (done.returncode != 0) == bool(errors), done.stdout + done.stderr
    return [(Path(line.split("(")[0]).name, line) for line in errors]


def test_tsc_fails_each_wrong_page_and_passes_the_right_one(tmp_path: Path) -> None:
    """One tsc run over the right page and one page per mistake: every wrong page has its
    error, the right one none."""
    pages = {"right.js": RIGHT}
    for i, (right, wrong, _) in enumerate(WRONG.values()):
        assert right in RIGHT
        pages[f"wrong{i}.js"] = RIGHT.replace(right, wrong)
    errors = tsc_errors(tmp_path, "jsconfig.json", pages)
    assert not [e for name, e in errors if name == "right.js"], errors
    for i, (mistake, (_, _, said)) in enumerate(WRONG.items()):
        mine = [e for name, e in errors if name == f"wrong{i}.js"]
        assert mine, f"tsc accepted a {mistake}: {errors}"
        assert any(said in e for e in mine), mine


def test_shared_modules_must_type_every_parameter(tmp_path: Path) -> None:
    """tools/js/jsconfig.shared.json (the modules of static/js/ outside pages/) refuses an
    untyped parameter that the base settings let through."""
    twice = "export function twice(n) {\n  return 2 * n;\n}\n"
    pages = {"typed.js": "/** @param {number} n */\n" + twice, "untyped.js": twice}
    assert tsc_errors(tmp_path / "base", "jsconfig.json", pages) == []
    errors = tsc_errors(tmp_path / "shared", "tools/js/jsconfig.shared.json", pages)
    assert [name for name, _ in errors] == ["untyped.js"], errors
    assert "TS7006" in errors[0][1], errors


def eslint(source: str) -> subprocess.CompletedProcess[str]:
    """ESLint with the repository's config on `source`, as if it were a module of the UI."""
    return subprocess.run(
        [
            tool("eslint"),
            "-c",
            ROOT / "tools/js/eslint.config.js",
            "--stdin",
            "--stdin-filename",
            "appliance/web/static/js/lint-check.js",
        ],
        input=source,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=ROOT,
    )


def test_eslint_passes_a_clean_module_and_fails_a_sloppy_one() -> None:
    done = eslint("export function twice(n) {\n  return 2 * n;\n}\n")
    assert done.returncode == 0, done.stdout + done.stderr
    done = eslint("export function twice(n) {\n  var unused = 1;\n  return 2 * n == 4;\n}\n")
    assert done.returncode != 0
    for rule in ("no-unused-vars", "no-var", "eqeqeq"):
        assert rule in done.stdout, done.stdout
