"""What the live alert test checks, apart from the processes: rule copies with shorter ``for:``, a log of every alert
state Prometheus reports, the quiet-period verdict, an alert's time to fire, and the dashboard's expressions."""

from __future__ import annotations

import copy
import json
import math
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.ops.catalogue import ROOT
from tests.ops.promserver import Prometheus

RULE_FILES = (ROOT / "deploy" / "prometheus" / "alerts.yml", ROOT / "deploy" / "prometheus" / "slo.yml")
DASHBOARDS = sorted((ROOT / "deploy" / "grafana" / "dashboards").glob("*.json"))
# Grafana's variables, as a fixed window: its $__rate_interval at a 1 s scrape is a minute at most; the quiet
# period is the time range a manager would look at.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "5m", "$__interval": "15s"}


def shortened_rules(workdir: Path, for_s: int, sources: Iterable[Path] = RULE_FILES) -> list[Path]:
    """Copies of the rule files whose non-zero ``for:`` is ``for_s`` seconds; everything else in each rule, its
    expression, labels and annotations, is checked to be the original's."""
    copies = []
    workdir.mkdir(parents=True, exist_ok=True)
    for source in sources:
        original = yaml.safe_load(source.read_text())
        changed = copy.deepcopy(original)
        for group in changed["groups"]:
            for rule in group["rules"]:
                if rule.get("for") not in (None, "0m", "0s"):
                    rule["for"] = f"{for_s}s"
        for old_group, new_group in zip(original["groups"], changed["groups"], strict=True):
            assert old_group["name"] == new_group["name"]
            for old, new in zip(old_group["rules"], new_group["rules"], strict=True):
                assert {k: v for k, v in old.items() if k != "for"} == {k: v for k, v in new.items() if k != "for"}
        target = workdir / source.name
        target.write_text(yaml.safe_dump(changed, sort_keys=False))
        copies.append(target)
    return copies


def broken_copy(source: Path, workdir: Path, alert: str, old: str, new: str) -> Path:
    """A copy of a rule file with one alert's expression edited (``old`` -> ``new``), to show a check fails."""
    document = yaml.safe_load(source.read_text())
    rule = next(r for g in document["groups"] for r in g["rules"] if r.get("alert") == alert)
    assert old in rule["expr"], (alert, rule["expr"])
    rule["expr"] = rule["expr"].replace(old, new)
    target = workdir / f"broken-{source.name}"
    target.write_text(yaml.safe_dump(document, sort_keys=False))
    return target


@dataclass(eq=False)  # a thread: hashed by identity
class AlertLog(threading.Thread):
    """Polls Prometheus' alerts twice a second and keeps every moment an alert entered a state (pending, firing)."""

    prometheus: Prometheus
    started: float = field(default_factory=time.monotonic)
    entered: list[tuple[str, str, float]] = field(default_factory=list)  # (alertname, state, monotonic time)
    lines: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        threading.Thread.__init__(self, daemon=True)

    def run(self) -> None:
        active: set[tuple[str, str]] = set()
        while not self.stopping.is_set():
            try:
                alerts = self.prometheus.alerts()
            except OSError:
                alerts = []
            now = time.monotonic()
            current = set()
            with self.lock:
                for alert in alerts:
                    key = (alert["labels"]["alertname"], alert["state"])
                    current.add(key)
                    if key not in active:
                        self.entered.append((*key, now))
                        labels = {k: v for k, v in alert["labels"].items() if k not in ("alertname", "severity")}
                        self.lines.append(f"  +{now - self.started:6.1f} s  {key[0]} {key[1]} {labels}")
                        active.add(key)
                for key in active - current:
                    self.lines.append(f"  +{now - self.started:6.1f} s  {key[0]} resolved ({key[1]})")
                active = current
            self.stopping.wait(0.5)

    def seen_since(self, since: float) -> list[tuple[str, str]]:
        with self.lock:
            return [(name, state) for name, state, at in self.entered if at >= since]

    def firing_since(self, alert: str, since: float) -> float | None:
        """When ``alert`` first entered the firing state at or after ``since``."""
        with self.lock:
            return next((at for name, state, at in self.entered if name == alert and state == "firing" and at >= since),
                        None)  # fmt: skip


def quiet_violations(prometheus: Prometheus, log: AlertLog, start: float, seconds: float) -> list[str]:
    """Every alert pending or firing in the quiet window: those the poll saw, and those Prometheus' own ALERTS
    series kept (which a poll could miss between two looks)."""
    seen = [f"{name} {state}" for (name, state) in log.seen_since(start)]
    kept = prometheus.query(f"max_over_time(ALERTS[{max(1, int(seconds))}s])")
    seen += [f"{s['metric']['alertname']} {s['metric']['alertstate']} (ALERTS)" for s in kept]
    return sorted(set(seen))


def wait_firing(log: AlertLog, alerts: Iterable[str], since: float, timeout: float) -> dict[str, float]:
    """Seconds from ``since`` to each alert's first firing (all of them), or AssertionError naming the missing."""
    wanted = set(alerts)
    deadline = since + timeout
    while True:
        fired = {a: at - since for a in wanted if (at := log.firing_since(a, since)) is not None}
        if set(fired) == wanted:
            return fired
        if time.monotonic() > deadline:
            raise AssertionError(f"not firing within {timeout:g} s: {sorted(wanted - set(fired))}")
        time.sleep(0.5)


def panel_expressions(dashboard: Path) -> list[tuple[str, str]]:
    """(panel title, expression with Grafana's variables replaced) for every target of every panel."""
    found = []
    for panel in json.loads(dashboard.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"{panel['title']}: a Grafana variable the test does not know: {expr}"
            found.append((panel["title"], expr))
    return found


def has_data(prometheus: Prometheus, expr: str) -> bool:
    """At least one series with a finite value (a ratio of nothing to nothing, NaN, is no data)."""
    for series in prometheus.query(expr):
        value = float(series["value"][1])
        if not math.isnan(value) and not math.isinf(value):
            return True
    return False


def panels_without_data(prometheus: Prometheus, dashboards: Iterable[Path] = DASHBOARDS) -> tuple[int, list[str]]:
    """(panels with a query, "title: expression" of each target that returned no data)."""
    titles: set[str] = set()
    empty = []
    for dashboard in dashboards:
        for title, expr in panel_expressions(dashboard):
            titles.add(title)
            if not has_data(prometheus, expr):
                empty.append(f"{title}: {expr}")
    return len(titles), empty


def report(lines: list[str], **numbers: Any) -> str:
    text = "\n".join(["", "live alerts: what fired when", *lines, *(f"  {k}: {v}" for k, v in numbers.items())])
    print(text)
    return text


def rule_health(prometheus: Prometheus) -> list[str]:
    """Rules Prometheus could not evaluate (a broken expression, a bad label template)."""
    return [f"{r['name']}: {r.get('lastError')}" for r in prometheus.rules() if r.get("health") != "ok"]


def load_rule_names(paths: Iterable[Path]) -> set[str]:
    return {
        r.get("alert") or r["record"]
        for p in paths
        for g in yaml.safe_load(p.read_text())["groups"]
        for r in g["rules"]
    }
