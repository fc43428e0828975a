"""The alert rules load in Prometheus' own checker and pass their unit tests (promtool test rules)."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.ops.catalogue import ROOT, base_name, catalogue, metric_names
from tests.ops.tools import require

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"


def test_promtool_check_rules_accepts_the_rules():
    """`promtool check rules` parses every rule and its PromQL."""
    result = subprocess.run([require("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True,
                            timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_rule_unit_tests_pass():
    """`promtool test rules` runs alerts_test.yml: each alert fires on its case, with its labels, and not before."""
    result = subprocess.run([require("promtool"), "test", "rules", RULE_TESTS.name], capture_output=True, text=True,
                            timeout=120, cwd=RULE_TESTS.parent)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_unit_tested_firing():
    """Every alert in alerts.yml has at least one promtool case where it fires."""
    alerts = {r["alert"] for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r}
    fired = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts == fired, f"alerts without a firing test: {sorted(alerts - fired)}"


def test_alerts_use_catalogued_metrics_and_carry_severity_and_summary():
    """Every metric an alert reads is in docs/METRICS.md; every alert has a severity and a summary."""
    entries = catalogue()
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            names = {base_name(n, entries) for n in metric_names(rule["expr"])}
            assert names, rule["alert"]
            assert names <= set(entries), f"{rule['alert']} reads {sorted(names - set(entries))}"
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"]


RUNBOOK = ROOT / "docs" / "RUNBOOK.md"


def test_every_alert_links_its_own_section_of_the_runbook():
    """Each alert's runbook_url is docs/RUNBOOK.md#<alert>, and the runbook has that anchor and a heading for it."""
    runbook = RUNBOOK.read_text()
    anchors = set(re.findall(r'<a id="([A-Za-z]+)"></a>', runbook))
    headings = set(re.findall(r"^### (\w+)$", runbook, flags=re.MULTILINE))
    alerts = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"] if "alert" in r]
    for rule in alerts:
        assert rule["annotations"].get("runbook_url") == f"docs/RUNBOOK.md#{rule['alert']}", rule["alert"]
    names = {r["alert"] for r in alerts}
    assert anchors == names, f"stray anchors {sorted(anchors - names)}, alerts without one {sorted(names - anchors)}"
    assert headings == names


WORKER_ONLY = re.compile(r"(cityloop_worker_ready|cityloop_ingest_commits_total)(\{[^}]*\})?")


def test_worker_only_metrics_are_read_from_the_worker_job():
    """A rule on a gauge another process might export at 0 filters the job (the API fired CityLoopWorkerNotReady)."""
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            for name, matchers in WORKER_ONLY.findall(rule["expr"]):
                assert 'job="cityloop-worker"' in matchers, (rule["alert"], name)


def test_the_timer_alert_reads_a_bucket_the_histogram_has():
    """CityLoopSlaTimerStuck subtracts the le="60.0" bucket: the code must keep a 60 s bound with that label."""
    from streams.metrics import TIMER_LAG

    assert 60.0 in TIMER_LAG._upper_bounds
    assert 'le="60.0"' in RULES.read_text()
