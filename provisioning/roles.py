"""One pyinfra deploy per Ansible role, same order, same files, same services.

Operations are generated from the host's state before the run (pyinfra's facts), so
one-off commands are guarded by facts and restarts are keyed on what changed.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import File, Link
from pyinfra.facts.server import Command, Users
from pyinfra.operations import apt, files, server, systemd
from pyinfra.operations.util import any_changed

from provisioning.variables import (
    JINJA_ENV_KWARGS,
    REPO,
    install_version,
    template_path,
    wheelhouse_path,
)

APT_CACHE_S = 86400


def _template(v: dict[str, Any], role: str, name: str, dest: str, mode: str, **kw: Any):
    return files.template(
        name=f"Render {name} to {dest}",
        src=template_path(role, name),
        dest=dest,
        mode=mode,
        jinja_env_kwargs=dict(JINJA_ENV_KWARGS),
        **kw,
        **v,
    )


def _packages(name: str, packages: list[str]):
    return apt.packages(name=name, packages=packages, update=True, cache_time=APT_CACHE_S)


@deploy("PostgreSQL")
def postgresql(v: dict[str, Any]) -> None:
    from pyinfra.operations import postgres

    if len(v["postgresql_password"]) < 16:
        raise ValueError("set postgresql_password (at least 16 characters)")
    _packages("Install PostgreSQL", ["postgresql", "python3-psycopg2"])
    systemd.service(
        name="Enable and start PostgreSQL", service="postgresql.service", running=True, enabled=True
    )
    # pyinfra's postgres.role sets a given password on every run (it cannot compare it):
    # give it only when the role cannot sign in with it yet, as Ansible's module compares.
    signs_in = host.get_fact(
        Command,
        command=f"PGPASSWORD={shlex.quote(v['postgresql_password'])} psql -h 127.0.0.1 "
        f"-U {v['postgresql_user']} -d {v['postgresql_database']} -tAc 'select 1' "
        "2>/dev/null || true",
    )
    postgres.role(
        name="Create the database role",
        role=v["postgresql_user"],
        password=None if (signs_in or "").strip() == "1" else v["postgresql_password"],
        login=True,
        _su_user="postgres",
    )
    postgres.database(
        name="Create the database",
        database=v["postgresql_database"],
        owner=v["postgresql_user"],
        encoding="UTF8",
        _su_user="postgres",
    )
    # Several hosts: listen on the private network, let the app hosts' network sign in.
    changes = []
    if v["postgresql_allowed_networks"]:
        changes.append(
            _template(
                v,
                "postgresql",
                "postgresql-estrade.conf.j2",
                f"{v['postgresql_conf_dir']}/conf.d/estrade.conf",
                "644",
                user="postgres",
                group="postgres",
            )
        )
    for network in v["postgresql_allowed_networks"]:
        line = f"host {v['postgresql_database']} {v['postgresql_user']} {network} scram-sha-256"
        changes.append(
            files.line(
                name=f"Let {network} sign in with a password",
                path=f"{v['postgresql_conf_dir']}/pg_hba.conf",
                line=f"^{re.escape(line)}$",
                replace=line,
            )
        )
    if changes:
        systemd.service(
            name="Restart PostgreSQL",
            service="postgresql.service",
            restarted=True,
            _if=any_changed(*changes),
        )


@deploy("Redis")
def redis(v: dict[str, Any]) -> None:
    if len(str(v["redis_password"])) < 32 or not v["redis_bind_addresses"]:
        raise ValueError("set redis_password (at least 32 characters) and redis_bind_addresses")
    _packages("Install Redis", ["redis-server"])
    # After the package: dpkg would otherwise put its own redis.conf in place of ours.
    conf = _template(
        v, "redis", "redis.conf.j2", "/etc/redis/redis.conf", "640", user="redis", group="redis"
    )
    systemd.service(
        name="Restart Redis", service="redis-server.service", restarted=True, _if=conf.did_change
    )
    systemd.service(
        name="Enable and start Redis", service="redis-server.service", running=True, enabled=True
    )


@deploy("Shared documents (NFS server)")
def shared_blobs(v: dict[str, Any]) -> None:
    if not v["shared_blobs_clients"] or not all(
        str(v[k]) for k in ("shared_blobs_uid", "shared_blobs_gid")
    ):
        raise ValueError(
            "set shared_blobs_clients and shared_blobs_uid/shared_blobs_gid (the app hosts' "
            "estrade_uid/estrade_gid: NFS checks numbers)"
        )
    user, group, data = v["shared_blobs_user"], v["shared_blobs_group"], v["shared_blobs_dir"]
    server.group(
        name="Create the estrade group, with the app hosts' gid",
        group=group,
        gid=int(v["shared_blobs_gid"]),
        system=True,
    )
    # shell= is the account's login shell, not a subprocess shell.
    server.user(  # noqa: S604
        name="Create the estrade system user, with the app hosts' uid",
        user=user,
        uid=int(v["shared_blobs_uid"]),
        group=group,
        system=True,
        home=data,
        shell="/usr/sbin/nologin",
        ensure_home=False,
    )
    for path in (data, *(f"{data}/{folder}" for folder in v["shared_blobs_folders"])):
        files.directory(name=f"Create {path}", path=path, user=user, group=group, mode="750")
    files.directory(
        name="Create the exports folder",
        path="/etc/exports.d",
        user="root",
        group="root",
        mode="755",
    )
    # Before the package: its postinst starts the server, which then exports them at once.
    exports = _template(
        v,
        "shared_blobs",
        "estrade.exports.j2",
        "/etc/exports.d/estrade.exports",
        "644",
        user="root",
        group="root",
    )
    _packages("Install the NFS server", ["nfs-kernel-server"])
    systemd.service(
        name="Enable and start the NFS server",
        service="nfs-server.service",
        running=True,
        enabled=True,
    )
    server.shell(
        name="Export the shared folders again", commands=["exportfs -ra"], _if=exports.did_change
    )


@deploy("TLS reverse proxy (nginx)")
def nginx(v: dict[str, Any]) -> None:
    mode = v["nginx_tls_mode"]
    if mode not in ("internal", "upload", "host"):
        raise ValueError("nginx_tls_mode is internal, upload or host")
    _packages(
        "Install nginx, its stream module and openssl", ["nginx", "libnginx-mod-stream", "openssl"]
    )
    server.group(
        name="Create the group that may read the TLS key", group=v["nginx_tls_group"], system=True
    )
    files.directory(
        name="Create the TLS folder",
        path=v["nginx_tls_dir"],
        user="root",
        group=v["nginx_tls_group"],
        mode="750",
    )
    files.directory(
        name="Create the ACME folder",
        path=v["nginx_acme_webroot"],
        user="root",
        group="root",
        mode="755",
    )
    _template(
        v,
        "nginx",
        "estrade-internal-ca.sh.j2",
        "/usr/local/sbin/estrade-internal-ca",
        "755",
        user="root",
        group="root",
    )
    changes = []
    # Missing, or issued before the TURN name was added: (re-)issue it with the same CA.
    names = host.get_fact(
        Command,
        command=f"openssl x509 -in {v['nginx_tls_certificate']} -noout "
        f"-checkhost {v['nginx_turn_server_name']} 2>/dev/null || true",
    )
    if mode == "internal" and "does match" not in (names or ""):
        changes.append(
            server.shell(
                name="Generate the internal CA and server certificate",
                commands=[f"/usr/local/sbin/estrade-internal-ca {v['nginx_tls_dir']}"],
            )
        )
    if mode == "upload":
        for src, dest, fmode in (
            (v["nginx_tls_certificate_src"], v["nginx_tls_certificate"], "644"),
            (v["nginx_tls_private_key_src"], v["nginx_tls_private_key"], "640"),
        ):
            changes.append(
                files.put(
                    name=f"Copy {dest}",
                    src=src,
                    dest=dest,
                    user="root",
                    group=v["nginx_tls_group"],
                    mode=fmode,
                )
            )
    files.file(
        name="Let the TLS group read the private key",
        path=v["nginx_tls_private_key"],
        user="root",
        group=v["nginx_tls_group"],
        mode="640",
    )
    changes.append(
        files.link(
            name="Remove the distribution's default site",
            path="/etc/nginx/sites-enabled/default",
            present=False,
        )
    )
    changes.append(
        _template(
            v,
            "nginx",
            "estrade-site.conf.j2",
            "/etc/nginx/sites-available/estrade.conf",
            "644",
            user="root",
            group="root",
        )
    )
    changes.append(
        files.link(
            name="Enable the Estrade site",
            path="/etc/nginx/sites-enabled/estrade.conf",
            target="/etc/nginx/sites-available/estrade.conf",
        )
    )
    changes.append(
        _template(
            v,
            "nginx",
            "estrade-stream.conf.j2",
            "/etc/nginx/estrade-stream.conf",
            "644",
            user="root",
            group="root",
        )
    )
    # Debian's nginx.conf includes sites only inside http {}: stream {} needs the main context.
    changes.append(
        files.line(
            name="Include the port 443 listener in nginx.conf",
            path="/etc/nginx/nginx.conf",
            line=r"^include /etc/nginx/estrade-stream\.conf;$",
            replace="include /etc/nginx/estrade-stream.conf;",
        )
    )
    server.shell(
        name="Check the nginx configuration", commands=["nginx -t -q"], _if=any_changed(*changes)
    )
    systemd.service(
        name="Enable and start nginx", service="nginx.service", running=True, enabled=True
    )
    systemd.service(
        name="Reload nginx", service="nginx.service", reloaded=True, _if=any_changed(*changes)
    )


def shared_blobs_mount_units(v: dict[str, Any]) -> list[str]:
    """Several hosts: the NFS mount unit of each shared folder, named after its path as systemd
    wants (the estrade role's tasks build the same names); none when estrade_shared_blobs_from
    is empty. Plain paths only: other characters would need systemd's escaping."""
    if not v["estrade_shared_blobs_from"]:
        return []
    if not re.fullmatch(r"(/[A-Za-z0-9_]+)+", v["estrade_data_dir"]):
        raise ValueError("with estrade_shared_blobs_from, estrade_data_dir is a plain path")
    base = v["estrade_data_dir"][1:].replace("/", "-")
    return [f"{base}-{folder}.mount" for folder in v["estrade_shared_blobs_folders"]]


def estrade_started_units(v: dict[str, Any]) -> list[str]:
    """The units the estrade role enables and starts after the mounts: the appliance, and its
    backup timer unless estrade_backup_timer is false (another app host backs up)."""
    return ["estrade.service", *(["estrade-backup.timer"] if v["estrade_backup_timer"] else [])]


@deploy("Estrade appliance")
def estrade(v: dict[str, Any]) -> None:
    if not str(v["estrade_public_url"]).startswith(("http://", "https://")):
        raise ValueError("estrade_public_url must start with http(s)://")
    if v["estrade_turn_settings"] and len(v["estrade_turn_secret"]) < 32:
        raise ValueError("estrade_turn_secret needs at least 32 characters")
    shared = v["estrade_shared_blobs_folders"] if v["estrade_shared_blobs_from"] else []
    version = install_version(v)
    prefix, user, group = v["estrade_prefix"], v["estrade_user"], v["estrade_group"]
    venv = f"{prefix}/venvs/{version}"
    config = f"{v['estrade_config_dir']}/estrade.toml"

    _packages(
        "Install the system packages the appliance needs",
        [
            "python3-venv",
            "logrotate",
            "postgresql-client" if v["estrade_database_url"] else "python3",
            *(["nfs-common"] if shared else []),
        ],
    )
    server.group(
        name="Create the estrade group",
        group=group,
        system=True,
        gid=v["estrade_gid"] if str(v["estrade_gid"]) else None,
    )
    # shell= is the account's login shell, not a subprocess shell.
    server.user(  # noqa: S604
        name="Create the estrade system user",
        user=user,
        group=group,
        uid=v["estrade_uid"] if str(v["estrade_uid"]) else None,
        system=True,
        home=v["estrade_data_dir"],
        shell="/usr/sbin/nologin",
        ensure_home=False,
    )
    for path, owner, grp, mode in (
        (prefix, "root", "root", "755"),
        (f"{prefix}/venvs", "root", "root", "755"),
        (f"{prefix}/wheelhouse", "root", "root", "755"),
        # 0751: others pass through (not list) to the TLS folder inside, which coturn's user
        # reads through its own group; estrade.toml stays root:estrade 0640.
        (v["estrade_config_dir"], "root", group, "751"),
        (v["estrade_data_dir"], user, group, "750"),
        (v["estrade_log_dir"], "root", group, "750"),
        (v["estrade_backup_dir"], "root", "root", "700"),
    ):
        files.directory(name=f"Create {path}", path=path, user=owner, group=grp, mode=mode)

    files.sync(
        name="Copy the wheelhouse to the host",
        src=str(wheelhouse_path(v)),
        dest=f"{prefix}/wheelhouse",
        user="root",
        group="root",
        mode="644",
        dir_mode="755",
    )
    # pyvenv.cfg, not bin/python: the File fact does not follow symlinks.
    if not host.get_fact(File, path=f"{venv}/pyvenv.cfg"):
        server.shell(
            name="Create the virtualenv of this version",
            commands=[f"{v['estrade_python']} -m venv {venv}"],
        )
    installed = host.get_fact(File, path=f"{venv}/bin/estrade")
    if not installed:
        server.shell(
            name="Install Estrade from the wheelhouse, without network",
            commands=[
                f"{venv}/bin/pip install --quiet --no-index "
                f"--find-links={prefix}/wheelhouse estrade=={version}"
            ],
        )
    conf = _template(v, "estrade", "estrade.toml.j2", config, "640", user="root", group=group)
    link = host.get_fact(Link, path=f"{prefix}/current")
    if not installed or not link or link.get("link_target") != venv:
        server.shell(
            name="Migrate the database with the new version before switching to it",
            commands=[
                f"cd {v['estrade_data_dir']} && runuser -u {user} -- "
                f"env ESTRADE_CONFIG={config} {venv}/bin/estrade migrate"
            ],
        )
    current = files.link(
        name="Point the current link at the migrated version", path=f"{prefix}/current", target=venv
    )
    units = [
        _template(
            v,
            "estrade",
            f"{unit}.j2",
            f"/etc/systemd/system/{unit}",
            "644",
            user="root",
            group="root",
        )
        for unit in ("estrade.service", "estrade-backup.service", "estrade-backup.timer")
    ]
    mounts = shared_blobs_mount_units(v)
    units += [
        _template(
            v,
            "estrade",
            "estrade-shared-blobs.mount.j2",
            f"/etc/systemd/system/{mount}",
            "644",
            user="root",
            group="root",
            estrade_shared_blobs_folder=folder,
        )
        for folder, mount in zip(shared, mounts, strict=True)
    ]
    _template(
        v,
        "estrade",
        "estrade-backup.sh.j2",
        "/usr/local/sbin/estrade-backup",
        "750",
        user="root",
        group="root",
    )
    _template(
        v,
        "estrade",
        "estrade.logrotate.j2",
        "/etc/logrotate.d/estrade",
        "644",
        user="root",
        group="root",
    )
    systemd.daemon_reload(name="Reload systemd", _if=any_changed(*units))
    systemd.service(
        name="Restart estrade",
        service="estrade.service",
        restarted=True,
        _if=any_changed(conf, current, *units),
    )
    for unit in (*mounts, *estrade_started_units(v)):
        systemd.service(name=f"Enable and start {unit}", service=unit, running=True, enabled=True)
    # Several app hosts: another host backs up the shared database and documents. The units
    # stay installed (`systemctl enable --now estrade-backup.timer` moves the backups here).
    if "estrade-backup.timer" not in estrade_started_units(v):
        systemd.service(
            name="Stop and disable the backup timer, another host backs up",
            service="estrade-backup.timer",
            running=False,
            enabled=False,
        )


@deploy("coturn")
def coturn(v: dict[str, Any]) -> None:
    if len(str(v["coturn_static_auth_secret"])) < 32:
        raise ValueError("set estrade_turn_secret (or coturn_static_auth_secret), 32+ characters")
    # The package's postinst starts coturn: our configuration must be there first.
    conf = _template(
        v, "coturn", "turnserver.conf.j2", "/etc/turnserver.conf", "644", user="root", group="root"
    )
    _packages("Install coturn", ["coturn"])
    # dpkg puts the package's own file in place of a file it did not know: write ours again.
    conf_again = _template(
        v, "coturn", "turnserver.conf.j2", "/etc/turnserver.conf", "644", user="root", group="root"
    )
    users = host.get_fact(Users)
    changes = [conf, conf_again]
    if v["coturn_tls_group"] not in users.get("turnserver", {}).get("groups", []):
        changes.append(
            server.shell(
                name="Let coturn read the TLS key",
                commands=[f"usermod -aG {v['coturn_tls_group']} turnserver"],
            )
        )
    systemd.service(
        name="Restart coturn", service="coturn.service", restarted=True, _if=any_changed(*changes)
    )
    systemd.service(
        name="Enable and start coturn", service="coturn.service", running=True, enabled=True
    )


@deploy("nftables firewall")
def nftables(v: dict[str, Any]) -> None:
    _packages("Install nftables", ["nftables"])
    rules = _template(
        v, "nftables", "nftables.conf.j2", "/etc/nftables.conf", "755", user="root", group="root"
    )
    server.shell(
        name="Check the ruleset", commands=["nft -c -f /etc/nftables.conf"], _if=rules.did_change
    )
    systemd.service(
        name="Reload nftables", service="nftables.service", reloaded=True, _if=rules.did_change
    )
    systemd.service(
        name="Enable and start nftables", service="nftables.service", running=True, enabled=True
    )


@deploy("Monitoring (Prometheus, node_exporter)")
def monitoring(v: dict[str, Any]) -> None:
    _packages("Install Prometheus and node_exporter", ["prometheus", "prometheus-node-exporter"])
    options = [
        _template(
            v,
            "monitoring",
            "prometheus.default.j2",
            "/etc/default/prometheus",
            "644",
            user="root",
            group="root",
        ),
        _template(
            v,
            "monitoring",
            "prometheus-node-exporter.default.j2",
            "/etc/default/prometheus-node-exporter",
            "644",
            user="root",
            group="root",
        ),
    ]
    files.directory(
        name="Create the alert rules folder",
        path=v["monitoring_rules_dir"],
        user="root",
        group="root",
        mode="755",
    )
    changes = list(options)
    for rule in sorted((REPO / v["monitoring_rules_src"]).glob("*.yml")):
        changes.append(
            files.put(
                name=f"Copy alert rules {rule.name}",
                src=str(rule),
                dest=f"{v['monitoring_rules_dir']}/{Path(rule).name}",
                user="root",
                group="root",
                mode="644",
            )
        )
    if v["monitoring_estrade_metrics_token"]:
        from io import StringIO

        changes.append(
            files.put(
                name="Write the scrape token",
                src=StringIO(v["monitoring_estrade_metrics_token"]),
                dest="/etc/prometheus/estrade-metrics.token",
                user="root",
                group="prometheus",
                mode="640",
            )
        )
    changes.append(
        _template(
            v,
            "monitoring",
            "prometheus.yml.j2",
            "/etc/prometheus/prometheus.yml",
            "644",
            user="root",
            group="root",
        )
    )
    server.shell(
        name="Check the Prometheus configuration and rules",
        commands=["promtool check config /etc/prometheus/prometheus.yml"],
        _if=any_changed(*changes),
    )
    systemd.service(
        name="Restart prometheus",
        service="prometheus.service",
        restarted=True,
        _if=any_changed(*changes),
    )
    systemd.service(
        name="Restart node_exporter",
        service="prometheus-node-exporter.service",
        restarted=True,
        _if=any_changed(*options),
    )
    for unit in ("prometheus.service", "prometheus-node-exporter.service"):
        systemd.service(name=f"Enable and start {unit}", service=unit, running=True, enabled=True)
