"""The variables both tools see: the roles' defaults, overridden per site, then resolved.

Ansible resolves ``"{{ other_variable }}"`` in defaults lazily; this module does the same
with plain Jinja2 so that pyinfra renders the shared templates with identical values.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined
from jinja2.nativetypes import NativeEnvironment

REPO = Path(__file__).resolve().parent.parent
ROLES_DIR = REPO / "roles"
# The order of site.yml: a later role's default may reference an earlier one's and back.
ROLES = (
    "postgresql",
    "redis",
    "shared_blobs",
    "nginx",
    "estrade",
    "coturn",
    "nftables",
    "monitoring",
)
# What Jinja2 renders with in both tools (Ansible's template module defaults).
JINJA_ENV_KWARGS = {"trim_blocks": True}

_native = NativeEnvironment(undefined=StrictUndefined)


def role_defaults(roles: tuple[str, ...] = ROLES) -> dict[str, Any]:
    """Every role's ``defaults/main.yml``, merged in play order."""
    merged: dict[str, Any] = {}
    for role in roles:
        path = ROLES_DIR / role / "defaults" / "main.yml"
        merged.update(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    return merged


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, list):
        return any(_has_template(v) for v in value)
    if isinstance(value, dict):
        return any(_has_template(v) for v in value.values())
    return False


def _render(value: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(value, str) and _has_template(value):
        return _native.from_string(value).render(**context)
    if isinstance(value, list):
        return [_render(v, context) for v in value]
    if isinstance(value, dict):
        return {k: _render(v, context) for k, v in value.items()}
    return value


def resolve(values: Mapping[str, Any], max_depth: int = 10) -> dict[str, Any]:
    """Render templated values against the others until nothing is left to render.

    Raises:
        ValueError: a reference loop, or a value still templated after ``max_depth`` passes.
    """
    current = dict(values)
    for _ in range(max_depth):
        pending = [k for k, v in current.items() if _has_template(v)]
        if not pending:
            return current
        current = {k: _render(v, current) if k in pending else v for k, v in current.items()}
    raise ValueError(f"variables still templated after {max_depth} passes: {sorted(pending)}")


def site_variables(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Role defaults, then the site's values (inventory data), resolved."""
    values = role_defaults()
    values.update(overrides)
    return resolve(values)


def wheelhouse_path(variables: Mapping[str, Any]) -> Path:
    path = Path(variables["estrade_wheelhouse"])
    return path if path.is_absolute() else REPO / path


def install_version(variables: Mapping[str, Any]) -> str:
    """``estrade_version``, or the newest estrade wheel in the wheelhouse (as the role does)."""
    if variables["estrade_version"]:
        return str(variables["estrade_version"])
    from packaging.version import Version

    versions = [p.name.split("-")[1] for p in wheelhouse_path(variables).glob("estrade-*.whl")]
    if not versions:
        raise FileNotFoundError(
            f"no estrade-*.whl in {wheelhouse_path(variables)}: make wheelhouse"
        )
    return max(versions, key=Version)


def template_path(role: str, name: str) -> str:
    return str(ROLES_DIR / role / "templates" / name)
