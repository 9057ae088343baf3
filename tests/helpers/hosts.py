"""Several hosts behind the real proxy (#15), shared by tests/test_hosts_proxy.py and the browser
tests: which host owns a cohort (:func:`owner`), and :class:`BrowserHosts`, the browsers' stack —
``estrade serve`` processes on one PostgreSQL database, one ``redis-server`` and one data folder
(the shared mount), behind nginx from the roles' templates (:class:`~tests.helpers.proxy.Proxy`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from tests.helpers.browser import ADMIN_EMAIL, PASSWORD, Api
from tests.helpers.proxy import Proxy
from tests.helpers.server import ServedProcess, run_estrade

__all__ = ["BrowserHosts", "owner"]


def owner(hosts: list[Any], cohort_id: int) -> int:
    """Which of ``hosts`` (served processes) holds the cohort's room (its /metrics, read
    directly); fails unless exactly one does."""
    owners = [
        i
        for i, h in enumerate(hosts)
        if h.process is not None
        and h.process.poll() is None
        and re.search(
            rf'^estrade_room_started\{{cohort_id="{cohort_id}"\}}',
            httpx.get(h.base + "/metrics", timeout=10).text,
            re.M,
        )
    ]
    assert len(owners) == 1, f"cohort {cohort_id} open on hosts {owners}"
    return owners[0]


class BrowserHosts:
    """``count`` app processes behind nginx for browsers: :attr:`url` is the proxy (HTTPS with
    the test CA: contexts need ``ignore_https_errors``), :meth:`api` the admin API through it."""

    ignore_https_errors = True

    def __init__(self, root: Path, database_url: str, redis_url: str, count: int = 2) -> None:
        self.root = root
        self.proxy = Proxy(root / "proxy")
        data = root / "data"  # one folder for every host: the shared mount (docs/deploy.md)
        env = {
            "ESTRADE_DATABASE_URL": database_url,
            "ESTRADE_REDIS_URL": redis_url,
            "ESTRADE_SESSION_STORE": "file",  # with redis_url: Redis
            "ESTRADE_PUBLIC_URL": self.proxy.url,
            "ESTRADE_ADMIN_PASSWORD": PASSWORD,
        }
        self.hosts = [
            ServedProcess(data, env, log_path=root / f"host-{i}.log") for i in range(count)
        ]
        for host in self.hosts:
            # The relay's UDP ports on loopback: a range of 50 per host (as BrowserServer).
            port_min = 40000 + (host.port % 200) * 50
            host.env["ESTRADE_MEDIA_PORT_MIN"] = str(port_min)
            host.env["ESTRADE_MEDIA_PORT_MAX"] = str(port_min + 49)
        self.apis: list[Api] = []

    @property
    def url(self) -> str:
        return self.proxy.url

    def start(self) -> BrowserHosts:
        try:
            args = ["create-admin", ADMIN_EMAIL, "--name", "Admin", "--password-from-env"]
            r = run_estrade(args, self.hosts[0].env, timeout=120)
            assert r.returncode == 0, r.stdout + r.stderr
            for host in self.hosts:
                host.start()
            self.proxy.start_hosts([f"127.0.0.1:{h.port}" for h in self.hosts])
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for api in self.apis:
            api.close()
        self.apis.clear()
        self.proxy.stop()
        for host in self.hosts:
            host.stop()

    def api(self, email: str = ADMIN_EMAIL) -> Api:
        api = Api(self.url, verify=self.proxy.tls()).login(email)
        self.apis.append(api)
        return api

    def owner(self, cohort_id: int) -> int:
        return owner(self.hosts, cohort_id)
