"""pyinfra inventory of several hosts, read from the Ansible inventory inventories/multihost.

The same files drive both tools: hosts.yml (groups, per-host values) and group_vars/
(all, then each group), merged the way Ansible merges them (a host's own values win over
its group's, a group's over ``all``'s). Run:

    pyinfra provisioning/multihost_inventory.py provisioning/multihost.py
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

INVENTORY = Path(__file__).resolve().parent.parent / "inventories" / "multihost"
GROUPS = ("estrade_database", "estrade_app", "estrade_proxy")


def _group_vars(inventory: Path, group: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    folder = inventory / "group_vars" / group
    for path in sorted(folder.glob("*.yml")) if folder.is_dir() else []:
        merged.update(yaml.safe_load(path.read_text(encoding="utf-8")) or {})
    return merged


def host_values(inventory: Path = INVENTORY) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Per group, each host as (address, its merged values); ``ansible_*`` become pyinfra's."""
    hosts = yaml.safe_load((inventory / "hosts.yml").read_text(encoding="utf-8"))
    common = _group_vars(inventory, "all")
    groups: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for group, body in hosts.items():
        for name, own in ((body or {}).get("hosts") or {}).items():
            values = {**common, **_group_vars(inventory, group), **(own or {})}
            address = values.pop("ansible_host", name)
            user = values.pop("ansible_user", None)
            values = {k: v for k, v in values.items() if not k.startswith("ansible_")}
            if user:
                values["ssh_user"] = user
            values["multihost_name"] = name
            groups.setdefault(group, []).append((address, values))
    return groups


_groups = host_values()
estrade_database = _groups.get("estrade_database", [])
estrade_app = _groups.get("estrade_app", [])
estrade_proxy = _groups.get("estrade_proxy", [])
