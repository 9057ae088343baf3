"""Rendering the shared templates the way each tool does (used by both test tiers)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from provisioning.variables import JINJA_ENV_KWARGS, REPO, ROLES, site_variables

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
SITE_VARS = HERE / "site-vars.yml"


def templates() -> list[tuple[str, str]]:
    return sorted((p.parent.parent.name, p.name) for p in (REPO / "roles").glob("*/templates/*.j2"))


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        raise AssertionError(f"{name} is missing: pip install -e '.[deploy]'")
    return str(path)


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
        ANSIBLE_LOCALHOST_WARNING="False",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="False",
        ANSIBLE_NOCOLOR="1",
        PATH=f"{BIN}:{env.get('PATH', '')}",
    )
    return env


def render_with_ansible(site_vars: Path, out: Path) -> None:
    extra = {
        "repo": str(REPO),
        "role_order": list(ROLES),
        "ansible_python_interpreter": sys.executable,
        "site_vars": str(site_vars),
        "out": str(out),
        "templates": [{"role": r, "name": n} for r, n in templates()],
    }
    for role, _ in templates():
        (out / role).mkdir(parents=True, exist_ok=True)
    extra_file = out / "extra.json"
    extra_file.write_text(json.dumps(extra))
    proc = subprocess.run(
        [
            tool("ansible-playbook"),
            "-i",
            "localhost,",
            str(HERE / "render.yml"),
            "-e",
            f"@{extra_file}",
        ],
        capture_output=True,
        text=True,
        env=ansible_env(),
        cwd=REPO,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    extra_file.unlink()


def render_with_pyinfra(site_vars: Path, out: Path) -> dict[str, Any]:
    """Render through pyinfra's own template loader, as files.template does."""
    return render_values_with_pyinfra(yaml.safe_load(site_vars.read_text()) or {}, out)


MULTIHOST = REPO / "inventories" / "multihost"


def multihost_ansible_values(name: str) -> dict[str, Any]:
    """A host's values as Ansible merges its inventory (``ansible-inventory --host``)."""
    proc = subprocess.run(
        [tool("ansible-inventory"), "-i", str(MULTIHOST), "--host", name],
        capture_output=True,
        text=True,
        env=ansible_env(),
        cwd=REPO,
        timeout=60,
        check=True,
    )
    values = json.loads(proc.stdout)
    return {k: v for k, v in values.items() if not k.startswith("ansible_")}


def render_values_with_pyinfra(values: dict[str, Any], out: Path) -> dict[str, Any]:
    """Render every template through pyinfra's loader with a host's inventory data."""
    from pyinfra.api.util import get_template

    variables = site_variables(values)
    for role, name in templates():
        template = get_template(
            str(REPO / "roles" / role / "templates" / name), jinja_env_kwargs=dict(JINJA_ENV_KWARGS)
        )
        (out / role).mkdir(parents=True, exist_ok=True)
        (out / role / name).write_text(template.render(**variables))
    return variables
