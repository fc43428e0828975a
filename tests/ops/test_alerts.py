"""The alert rules load in Prometheus' own checker and pass their unit tests (promtool test rules)."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.ops.catalogue import ROOT, base_name, catalogue, metric_names
from tests.ops.tools import require

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
SLO_RULES = ROOT / "deploy" / "prometheus" / "slo.yml"  # the report-to-task SLO: recording rules, burn-rate alerts
RULE_FILES = (RULES, SLO_RULES)
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"


def rules() -> list[dict]:
    """Every rule of every rule file, alerts and recording rules."""
    return [r for path in RULE_FILES for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]


def alert_rules() -> list[dict]:
    return [r for r in rules() if "alert" in r]


def test_promtool_check_rules_accepts_the_rules():
    """`promtool check rules` parses every rule and its PromQL."""
    result = subprocess.run([require("promtool"), "check", "rules", *map(str, RULE_FILES)], capture_output=True,
                            text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_FILES)


def test_promtool_rule_unit_tests_pass():
    """`promtool test rules` runs alerts_test.yml: each alert fires on its case, with its labels, and not before."""
    result = subprocess.run([require("promtool"), "test", "rules", RULE_TESTS.name], capture_output=True, text=True,
                            timeout=120, cwd=RULE_TESTS.parent)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_unit_tested_firing():
    """Every alert in alerts.yml and slo.yml has at least one promtool case where it fires; the tests load both."""
    assert yaml.safe_load(RULE_TESTS.read_text())["rule_files"] == [p.name for p in RULE_FILES]
    alerts = {r["alert"] for r in alert_rules()}
    fired = {
        case["alertname"]
        for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert alerts == fired, f"alerts without a firing test: {sorted(alerts - fired)}"


def test_alerts_use_catalogued_metrics_and_carry_severity_and_summary():
    """Every metric a rule reads is in docs/METRICS.md or recorded by a rule (a name with colons); every alert has
    a severity and a summary."""
    entries = catalogue()
    recorded = {r["record"] for r in rules() if "record" in r}
    assert all(":" in name for name in recorded), "recorded series are named level:metric:operations"
    for rule in rules():
        names = {base_name(n, entries) for n in metric_names(rule["expr"])}
        what = rule.get("alert") or rule["record"]
        assert names, what
        assert names <= set(entries) | recorded, f"{what} reads {sorted(names - set(entries) - recorded)}"
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"]


RUNBOOK = ROOT / "docs" / "RUNBOOK.md"


def test_every_alert_links_its_own_section_of_the_runbook():
    """Each alert's runbook_url is docs/RUNBOOK.md#<alert>, and the runbook has that anchor and a heading for it."""
    runbook = RUNBOOK.read_text()
    anchors = set(re.findall(r'<a id="([A-Za-z]+)"></a>', runbook))
    headings = set(re.findall(r"^### (\w+)$", runbook, flags=re.MULTILINE))
    alerts = alert_rules()
    for rule in alerts:
        assert rule["annotations"].get("runbook_url") == f"docs/RUNBOOK.md#{rule['alert']}", rule["alert"]
    names = {r["alert"] for r in alerts}
    assert anchors == names, f"stray anchors {sorted(anchors - names)}, alerts without one {sorted(names - anchors)}"
    assert headings == names


WORKER_ONLY = re.compile(r"(cityloop_worker_ready|cityloop_ingest_commits_total)(\{[^}]*\})?")


def test_worker_only_metrics_are_read_from_the_worker_job():
    """A rule on a gauge another process might export at 0 filters the job (the API fired CityLoopWorkerNotReady)."""
    for rule in rules():
        for name, matchers in WORKER_ONLY.findall(rule["expr"]):
            assert 'job="cityloop-worker"' in matchers, (rule.get("alert") or rule["record"], name)


def test_the_timer_alert_reads_a_bucket_the_histogram_has():
    """CityLoopSlaTimerStuck subtracts the le="60.0" bucket: the code must keep a 60 s bound with that label."""
    from streams.metrics import TIMER_LAG

    assert 60.0 in TIMER_LAG._upper_bounds
    assert 'le="60.0"' in RULES.read_text()


def test_the_slo_reads_a_bucket_the_histogram_has():
    """The SLO counts reports within 5 s from the le="5.0" bucket: the code must keep that bound, spelled so."""
    from streams.metrics import REPORT_TO_TASK

    assert 5.0 in REPORT_TO_TASK._upper_bounds
    ratios = [r["expr"] for r in rules() if r.get("record", "").startswith("cityloop:report_to_task_slow:")]
    assert len(ratios) == 4 and all('le="5.0"' in expr for expr in ratios)
