"""A real Prometheus scrapes a real worker: metrics come back through its API, the alert rules load and evaluate."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.catalogue import ROOT
from tests.ops.fixtures import make_report
from tests.ops.promserver import Prometheus, poll, start_prometheus, stop
from tests.ops.tools import require

pytestmark = pytest.mark.integration

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
REPORTS = 25


@pytest.fixture
def prometheus_for(tmp_path: Path) -> Iterator[Any]:
    """Start a Prometheus on a free loopback port scraping the given worker ports every second, with our rules."""
    binary = require("prometheus")
    started: list[subprocess.Popen[bytes]] = []

    def start(*worker_ports: int) -> Prometheus:
        process, server = start_prometheus(binary, tmp_path / "prometheus", {"cityloop-worker": list(worker_ports)},
                                           [RULES])  # fmt: skip
        started.append(process)
        return server

    yield start
    for process in started:
        stop(process)


def test_prometheus_scrapes_a_worker_and_the_rules_evaluate_on_it(workers, producer, topics, prometheus_for):
    """Prometheus scrapes a worker's /metrics; ingested reports are queryable through its HTTP API; the alert
    rules are loaded and healthy; and when the worker is SIGKILLed, CityLoopWorkerDown becomes pending."""
    worker = workers.start()
    prometheus = prometheus_for(worker.web_port)
    poll("worker target up", lambda: prometheus.scalar('up{job="cityloop-worker"}') == 1.0, 30)

    now = datetime.now(UTC).isoformat()
    for i in range(REPORTS):
        record = make_report(i, "prom", now)
        producer.send(topics.reports, key=record["report_id"].encode(), value=json.dumps(record).encode())
    producer.flush()
    ingested = poll(
        "ingested reports in Prometheus",
        lambda: prometheus.scalar('sum(cityloop_ingested_total{job="cityloop-worker",kind="report"})') == REPORTS,
        60,
    )
    assert ingested
    assert prometheus.scalar("sum(cityloop_assignments_total)") == REPORTS
    lag = poll("lag series", lambda: prometheus.query("cityloop_consumer_lag_records"), 30)
    assert {series["metric"]["stream"] for series in lag} == {"reports", "readings", "feedback"}

    groups = prometheus.get("/api/v1/rules")["groups"]
    expected = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]}
    loaded = {rule["name"]: rule for group in groups for rule in group["rules"]}
    assert set(loaded) == expected

    def rules_healthy() -> bool:
        rules = [rule for group in prometheus.get("/api/v1/rules")["groups"] for rule in group["rules"]]
        return all(rule.get("health") == "ok" for rule in rules)

    poll("every rule evaluated without error", rules_healthy, 15)

    assert worker.kill(signal.SIGKILL) == -signal.SIGKILL

    def worker_down_pending() -> bool:
        alerts = prometheus.get("/api/v1/alerts")["alerts"]
        return any(a["labels"]["alertname"] == "CityLoopWorkerDown" and a["state"] == "pending" for a in alerts)

    poll("CityLoopWorkerDown pending", worker_down_pending, 20)
    print(f"\nprometheus: scraped a worker, read back {REPORTS} ingested reports, {len(loaded)} rules loaded and "
          "healthy, CityLoopWorkerDown pending after SIGKILL")  # fmt: skip


def test_promtool_finds_nothing_to_fix_in_a_workers_metrics(workers, producer, topics):
    """A worker starts its failure counters at 0; `promtool check metrics` on a live scrape (after traffic, so
    labelled series exist) reports no problem."""
    promtool = require("promtool")
    worker = workers.start()
    # before any traffic: the counters CityLoopProcessingFailures takes increase() of exist at 0 (a one-off failure
    # is then an increase; a series created at its first increment starts at 1 and increase() sees nothing)
    assert 'cityloop_deadletters_total{reason="processing_error",stage="dispatch"} 0.0' in worker.metrics()
    now = datetime.now(UTC).isoformat()
    records = [make_report(i, "lint", now) for i in range(5)] + [{"report_id": "bad"}]
    for record in records:
        producer.send(topics.reports, key=record["report_id"].encode(), value=json.dumps(record).encode())
    producer.flush()

    def processed() -> bool:
        text = worker.metrics()
        return "cityloop_assignments_total{" in text and "cityloop_deadletters_total{" in text

    poll("traffic in the metrics", processed, 60)
    result = subprocess.run([promtool, "check", "metrics"], input=worker.metrics(), capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0 and not result.stdout.strip() and not result.stderr.strip(), (
        result.stdout + result.stderr
    )
