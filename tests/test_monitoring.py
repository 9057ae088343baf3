"""monitoring/: promtool checks, the dashboard's structure, and every PromQL expression of the
dashboard and the alert rules run against a real Prometheus scraping a running appliance."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from appliance.app import create_app
from appliance.metrics.sources import MediaWorker
from tests.helpers.server import free_port, serve
from tests.helpers.world import make_settings
from tests.metrics_fakes import FakeMedia, a_class

MONITORING = Path(__file__).parents[1] / "monitoring"
RULES = MONITORING / "rules" / "estrade.rules.yml"
DASHBOARD = MONITORING / "grafana" / "estrade-dashboard.json"
ALERTS = {
    "EstradeDown",
    "EstradeCapacityLow",
    "EstradeEventLoopLagHigh",
    "EstradeLearnersLossHigh",
    "EstradeLearnersRttHigh",
    "EstradeIceFailuresRising",
    "EstradeDocumentsDiskNearlyFull",
    "EstradeRecordingsDiskFilling",
    "EstradeTurnUnreachable",
    "EstradeMediaWorkerRestarted",
    "EstradeMediaWorkerDown",
    "EstradeMediaWorkerLoopLagHigh",
    "EstradeRedisDown",
}


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is missing: run `make system-deps` (Debian package prometheus)"
    return path


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, cwd=MONITORING)


def test_promtool_check_config() -> None:
    r = run(tool("promtool"), "check", "config", "prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_check_rules() -> None:
    r = run(tool("promtool"), "check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in r.stdout


def test_promtool_test_rules() -> None:
    r = run(tool("promtool"), "test", "rules", "tests/estrade.rules.test.yml")
    assert r.returncode == 0, r.stdout + r.stderr


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_every_alert_has_summary_description_and_a_firing_and_quiet_unit_test() -> None:
    rules = _rules()
    assert {r["alert"] for r in rules} == ALERTS
    for rule in rules:
        assert rule["annotations"]["summary"].strip()
        assert len(rule["annotations"]["description"]) > 80, rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
    tests = yaml.safe_load((MONITORING / "tests" / "estrade.rules.test.yml").read_text())["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for t in tests:
        for case in t["alert_rule_test"]:
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    assert firing == ALERTS
    assert quiet == ALERTS


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def test_dashboard_structure() -> None:
    d = _dashboard()
    assert d["uid"] and d["title"] and isinstance(d["schemaVersion"], int)
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["cohort"]["allValue"] == ".*"
    panels = d["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        area = {
            (x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])
        }
        assert not area & cells, f"panel {p['title']!r} overlaps another"
        cells |= area
        assert p["type"] in {"row", "stat", "timeseries"}, p["type"]
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in p["targets"]]
        assert refs and len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["expr"].strip()
            for var in re.findall(r"\$(\w+)", t["expr"]):
                assert var in variables or var == "__rate_interval", f"unknown ${var}"
    titles = " ".join(p["title"].lower() for p in panels)
    topics = ("rooms", "participants", "bitrate", "loss", "capacity", "workers", "host", "disk")
    for topic in topics:
        assert topic in titles, f"no panel about {topic}"


def _expressions() -> list[str]:
    exprs = [r["expr"] for r in _rules()]
    for p in _dashboard()["panels"]:
        for t in p.get("targets", []):
            # Grafana fills these in before querying; use what it would with "All" cohorts.
            exprs.append(t["expr"].replace("$__rate_interval", "1m").replace("$cohort", ".*"))
    return exprs


class WithWorkers(FakeMedia):
    """The fake class's relay in two media workers; worker 1 was restarted once."""

    def media_workers(self) -> list[MediaWorker]:
        return [MediaWorker(k, True, 1, 12 * k, 2.5, 0.002, k) for k in range(2)]


@pytest.fixture
def prometheus_and_appliance(tmp_path: Path) -> Iterator[str]:
    """A running appliance (fake classroom sources) scraped every second by a real Prometheus."""
    app = create_app(make_settings(tmp_path))
    metrics = app.state.metrics
    live, media, docs = a_class(cohort_id=7, learners=12)
    metrics.attach(live=live, media=WithWorkers(media.rooms), documents=docs)
    metrics.room_opened(7)
    for rtt, loss in ((0.05, 0.0), (0.4, 0.2)):
        metrics.learner_report(7, rtt_s=rtt, loss_ratio=loss)
    metrics.first_frame(1.1)
    with serve(app) as base:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(RULES)],
                    "scrape_configs": [
                        {
                            "job_name": "estrade",
                            "static_configs": [{"targets": [base.removeprefix("http://")]}],
                        }
                    ],
                }
            )
        )
        log = (tmp_path / "prometheus.log").open("w")
        proc = subprocess.Popen(
            [
                tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(10)
            log.close()


def _query(prom: str, expr: str) -> httpx.Response:
    return httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5)


def test_prometheus_scrapes_the_appliance_and_every_expression_runs(
    prometheus_and_appliance: str, tmp_path: Path
) -> None:
    prom = prometheus_and_appliance
    deadline = time.monotonic() + 25
    series = 0
    while time.monotonic() < deadline:
        try:
            r = _query(
                prom,
                'count({__name__=~"estrade_.+", job="estrade"}) and on() up{job="estrade"} == 1',
            )
            result = r.json()["data"]["result"] if r.status_code == 200 else []
            if result:
                series = int(float(result[0]["value"][1]))
                break
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    log = (tmp_path / "prometheus.log").read_text()
    assert series > 50, f"no estrade_ series scraped in time; prometheus said:\n{log}"

    failures = []
    for expr in _expressions():
        r = _query(prom, expr)
        if r.status_code != 200 or r.json().get("status") != "success":
            failures.append(f"{expr}\n  -> {r.status_code} {r.text[:300]}")
    assert not failures, "\n".join(failures)

    # The figures went through: the fake class shows up as the sources report it.
    def scalar(expr: str) -> float:
        result = _query(prom, expr).json()["data"]["result"]
        assert result, expr
        return float(result[0]["value"][1])

    assert scalar('sum(estrade_participants{role="learner"})') == 15
    assert scalar('estrade_media_tracks_published{cohort_id="7", kind="video"}') == 2
    assert scalar("estrade_capacity_learners") >= 0
    assert scalar('estrade_learner_rtt_seconds_count{cohort_id="7"}') == 2
    # The media workers' series (the dashboard's row, the worker alerts) are there.
    assert scalar("sum(estrade_media_worker_up)") == 2
    assert scalar('estrade_media_worker_learners{worker="1"}') == 12
    assert scalar('estrade_media_worker_restarts_total{worker="1"}') == 1
    assert scalar('estrade_media_worker_loop_lag_seconds{worker="0"}') == 0.002
    assert scalar("count(estrade_media_worker_capacity_learners)") == 2

    # The rules loaded in the real server and evaluate without error.
    deadline = time.monotonic() + 5
    while True:
        groups = httpx.get(f"{prom}/api/v1/rules", timeout=5).json()["data"]["groups"]
        rules = [rule for g in groups for rule in g["rules"]]
        if all(rule["lastEvaluation"] > "1971" for rule in rules) or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert {rule["name"] for rule in rules} == ALERTS
    assert all(rule["health"] == "ok" for rule in rules), rules
