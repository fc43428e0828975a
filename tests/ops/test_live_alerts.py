"""The alert rules and the dashboard, checked live: a real Prometheus scrapes a live worker and a live API under the
demo's load, with the real rules of deploy/prometheus/ (alerts.yml and slo.yml).

(a) No alert is pending or firing during ``QUIET_S`` (5 minutes) of normal load. (b) Each fault fires its alert:
field crews that stop acknowledging new tasks (SLA breaches of the category whose acknowledge target the test cuts to
30 s), a record whose processing fails once, Redis paused, the API
killed, the worker stopped (SIGSTOP), the broker paused (produce errors). (c) Every dashboard panel's expression
returns data under the load (Grafana's ``$__rate_interval`` and ``$__range`` replaced by fixed windows).

The rules' ``for:`` durations (minutes) are shortened to ``FOR_S`` seconds in a copy, which is checked to differ
from alerts.yml and slo.yml in nothing else; scrapes and evaluations run every second. Shortening ``for:`` does not
make (a) easier: a pending alert (its expression true for a single evaluation) fails it. Prints what fired when, the
time each fault took to fire its alert, and how many panels had data.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from kafka import KafkaProducer

from dispatch.demo_city import bounds
from tests.ops.livechecks import (
    AlertLog,
    broken_copy,
    load_rule_names,
    panels_without_data,
    quiet_violations,
    report,
    rule_health,
    shortened_rules,
    wait_firing,
)
from tests.ops.livestack import LiveStack
from tests.ops.promserver import Prometheus, poll, start_prometheus, stop
from tests.ops.tools import require

pytestmark = [pytest.mark.integration, pytest.mark.slow]

QUIET_S = float(os.environ.get("CITYLOOP_LIVE_QUIET_S", "300"))  # the 5 minutes; shorter only by hand
FOR_S = 5
WARM_UP_S = 20  # tasks flowing and every target scraped before the quiet window opens


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Callable[[list[Path]], tuple[LiveStack, Prometheus, AlertLog]]]:
    """Start the stack and a Prometheus over it with the given rule files; stop all of it afterwards."""
    binary = require("prometheus")
    stack = LiveStack(tmp_path)
    started: list[Any] = []

    def start(rule_files: list[Path]) -> tuple[LiveStack, Prometheus, AlertLog]:
        stack.start()
        process, prometheus = start_prometheus(
            binary, tmp_path / "prometheus", {"cityloop-worker": [stack.web_port], "cityloop-api": [stack.api_port]},
            rule_files,
        )  # fmt: skip
        started.append(process)
        log = AlertLog(prometheus)
        log.start()
        started.append(log)
        up = 'sum(up{job="cityloop-worker"}) + sum(up{job="cityloop-api"})'
        try:
            poll("both targets up", lambda: prometheus.scalar(up) == 2.0, 30)
        except AssertionError:
            targets = prometheus.get("/api/v1/targets")["activeTargets"]
            raise AssertionError([(t["labels"]["job"], t["health"], t["lastError"]) for t in targets]) from None
        poll("tasks flowing", lambda: prometheus.scalar("sum(cityloop_assignments_total)") or 0, 60)
        poll("every rule evaluated without error", lambda: not rule_health(prometheus), 15)
        time.sleep(WARM_UP_S)
        return stack, prometheus, log

    yield start
    for item in started:
        if isinstance(item, AlertLog):
            item.stopping.set()
        else:
            stop(item)
    stack.stop()


def quiet_figures(prometheus: Prometheus, seconds: float) -> dict[str, str]:
    """What the quiet period looked like through the metrics: report-to-task p99, the SLO's late share, SLAs."""
    window = f"{int(seconds)}s"
    p99 = prometheus.scalar(
        f"histogram_quantile(0.99, sum by (le) (rate(cityloop_report_to_task_seconds_bucket[{window}])))"
    )
    late = prometheus.scalar("cityloop:report_to_task_slow:ratio_rate5m")
    ended = prometheus.query(f"sum by (outcome) (increase(cityloop_sla_outcomes_total[{window}]))")
    outcomes = {series["metric"]["outcome"]: round(float(series["value"][1])) for series in ended}
    late_stages = prometheus.query(f"sum by (category, stage) (increase(cityloop_sla_breaches_total[{window}])) > 0")
    breached = {f"{s['metric']['category']}/{s['metric']['stage']}": round(float(s["value"][1])) for s in late_stages}
    return {"quiet report-to-task p99": f"{p99:.3f} s" if p99 is not None else "none",
            "quiet SLA breaches by category and stage": str(breached or "none"),
            "quiet share of reports later than 5 s": f"{late:.4f}" if late is not None else "none",
            "quiet SLA stages ended": str(outcomes)}  # fmt: skip


def plant_processing_failure(stack: LiveStack) -> None:
    """A valid report whose ledger entry in Redis holds the wrong type: its processing fails (WRONGTYPE, not an
    outage), alone, and it is dead-lettered as ``internal``/``processing_error``; the stream goes on."""
    assert stack.redis is not None
    report_id = f"{stack.run_id}-poison"
    client = redis.Redis.from_url(stack.redis.url)
    client.hset(f"{stack.run_id}:ledger:report:{report_id}", "not", "a ledger entry")
    client.close()
    producer = KafkaProducer(**stack.kafka.kafka_python(), acks="all")
    min_lon, min_lat, max_lon, max_lat = bounds()
    record = {"report_id": report_id, "source": "app", "text": "pothole on the corner", "lat": (min_lat + max_lat) / 2,
              "lon": (min_lon + max_lon) / 2, "reported_at": datetime.now(UTC).isoformat()}  # fmt: skip
    value = json.dumps(record)
    producer.send(stack.topics.reports, key=report_id.encode(), value=value.encode())
    producer.flush()
    producer.close()


def faults(stack: LiveStack) -> list[tuple[str, Callable[[], None], set[str], float, Callable[[], None]]]:
    """(name, induce, alerts expected to fire, seconds allowed, recover), in the order they run: the broker last,
    because the load's own producer waits on it."""
    assert stack.redis is not None and stack.api is not None and stack.worker is not None

    def restart_api() -> None:
        stack.api.start()  # type: ignore[union-attr]
        stack.wait_api_ready()

    def resume_worker() -> None:
        stack.worker.signal(signal.SIGCONT)  # type: ignore[union-attr]
        stack.wait_worker_ready()

    return [
        ("crews stop acknowledging", stack.crews_working.clear, {"CityLoopSlaBreaches"}, 150,
         stack.crews_working.set),
        ("a record fails processing", lambda: plant_processing_failure(stack), {"CityLoopProcessingFailures"}, 60,
         lambda: None),
        ("Redis paused", stack.redis.pause, {"CityLoopRedisUnavailable"}, 90, stack.redis.resume),
        ("API killed", lambda: stack.api.signal(signal.SIGKILL), {"CityLoopApiDown"}, 60, restart_api),  # type: ignore[union-attr]
        ("worker stopped", lambda: stack.worker.signal(signal.SIGSTOP), {"CityLoopWorkerDown", "CityLoopNoWorkerUp"},  # type: ignore[union-attr]
         60, resume_worker),
        ("broker paused", stack.pause_broker, {"CityLoopProduceErrors"}, 90, stack.resume_broker),
    ]  # fmt: skip


@pytest.mark.timeout(QUIET_S + 600)
def test_no_alert_under_normal_load_each_fault_fires_its_alert_and_every_panel_has_data(live, tmp_path):
    """(a) quiet for 5 minutes of the demo's load, (c) every panel with data, (b) each fault's alerts firing."""
    rules = shortened_rules(tmp_path, FOR_S)
    stack, prometheus, log = live(rules)
    assert {r["name"] for r in prometheus.rules()} == load_rule_names(rules)

    quiet_from = time.monotonic()
    time.sleep(QUIET_S)
    noisy = quiet_violations(prometheus, log, quiet_from, QUIET_S)
    total, empty = panels_without_data(prometheus)
    without = len({target.split(": ", 1)[0] for target in empty})
    with_data = f"{total - without}/{total}" + (f" (empty: {empty})" if empty else "")
    quiet_numbers = {"quiet period": f"{QUIET_S:g} s, alerts pending or firing: {noisy or 'none'}",
                     "panels with data": with_data, **quiet_figures(prometheus, QUIET_S)}  # fmt: skip

    fired: dict[str, dict[str, float]] = {}
    failures: list[str] = []
    for name, induce, expected, allowed, recover in faults(stack):
        log.lines.append(f"  fault: {name} (+{time.monotonic() - log.started:.1f} s)")
        since = time.monotonic()
        induce()
        try:
            fired[name] = wait_firing(log, expected, since, allowed)
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
        finally:
            recover()
    times = {name: ", ".join(f"{a} {s:.1f} s" for a, s in sorted(alerts.items())) for name, alerts in fired.items()}
    load = (
        f"{len(stack.sent.reports)} reports, {stack.sent.readings} readings sent; tasks to crews {dict(stack.handed)}; "
        f"crews' actions done {sum(stack.crews.log.done.values())}, refused {dict(stack.crews.log.refused)}, "
        f"failed {len(stack.crews.log.errors)}"
    )
    report(log.lines, **quiet_numbers, **{f"time to fire, {k}": v for k, v in times.items()}, load=load)
    assert not noisy, f"alerts during normal load: {noisy}"
    assert not empty, f"dashboard panels without data under load: {empty}"
    assert not failures, failures


@pytest.mark.timeout(600)
def test_the_live_checks_fail_on_a_noisy_rule_and_on_a_broken_expression(live, tmp_path):
    """The checks above can fail: a rule that counts the load's invalid reports as processing failures is pending
    under normal load (a), and CityLoopApiDown with a misspelt job never fires when the API is killed (b)."""
    noisy = broken_copy(
        shortened_rules(tmp_path / "short", FOR_S)[0],
        tmp_path,
        "CityLoopProcessingFailures",
        'stage=~"discover|dispatch|internal"',
        'stage=~"validate|discover|dispatch|internal"',
    )
    misspelt = broken_copy(noisy, tmp_path / "short", "CityLoopApiDown", 'job="cityloop-api"', 'job="cityloop_api"')
    stack, prometheus, log = live([misspelt])
    quiet_from = time.monotonic()
    time.sleep(30)
    seen = quiet_violations(prometheus, log, quiet_from, 30)
    assert any(alert.startswith("CityLoopProcessingFailures") for alert in seen), seen
    since = time.monotonic()
    assert stack.api is not None
    stack.api.signal(signal.SIGKILL)
    with pytest.raises(AssertionError, match="CityLoopApiDown"):
        wait_firing(log, {"CityLoopApiDown"}, since, 20)
    report(log.lines, broken="a noisy rule pending under normal load; a misspelt job that never fired")
