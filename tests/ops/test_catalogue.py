"""docs/METRICS.md and the code agree: every metric the worker defines is catalogued with its type and labels."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from streams import metrics
from streams.lag import LAG_METRIC, LagCollector
from streams.topics import Topics
from tests.ops.catalogue import catalogue, metric_names

BANNED_LABELS = {"report_id", "incident_id", "task_id", "sensor_id", "event_id", "deadletter_id", "id", "offset"}


def _defined() -> dict[str, tuple[str, frozenset[str]]]:
    found = {}
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            name = value._name + ("_total" if value._type == "counter" else "")
            found[name] = (value._type, frozenset(value._labelnames))
    return found


def test_every_domain_metric_is_catalogued_with_its_type_and_labels():
    """Each metric in streams/metrics.py has a row in docs/METRICS.md with the same type and label names."""
    entries = catalogue()
    for name, (kind, labels) in _defined().items():
        assert name in entries, f"{name} is not in docs/METRICS.md"
        assert entries[name].type == kind, f"{name}: catalogue says {entries[name].type}, code says {kind}"
        assert entries[name].labels == labels, f"{name}: catalogue {sorted(entries[name].labels)} vs {sorted(labels)}"


def test_every_catalogued_cityloop_metric_exists():
    """No row of the catalogue names a CityLoop metric the code does not define (Faust's are checked live)."""
    defined = set(_defined()) | {LAG_METRIC}
    ours = {n for n in catalogue() if n.startswith("cityloop_") and not n.startswith("cityloop_faust_")}
    assert ours == defined


def test_lag_collector_is_catalogued():
    """The lag gauge, served by a custom collector, matches its row."""
    collector = LagCollector([], topics=Topics("x"))
    registry = CollectorRegistry()
    registry.register(collector)
    (family,) = collector.describe()
    entry = catalogue()[LAG_METRIC]
    assert (family.name, family.type) == (entry.name, entry.type)
    assert entry.labels == {"stream", "partition"}


def test_names_and_labels_follow_the_conventions():
    """Counters end in _total, durations are in seconds, and no label is a per-record id (bounded label sets)."""
    for entry in catalogue().values():
        if entry.type == "counter":
            assert entry.name.endswith("_total"), entry.name
        assert not entry.name.endswith(("_ms", "_milliseconds", "_minutes")), entry.name
        assert not entry.labels & BANNED_LABELS, entry.name


def test_promql_metric_names_are_found():
    """The expression parser used on dashboards and alerts finds metric names and nothing else."""
    expr = (
        'sum by (stream) (rate(cityloop_ingested_total{kind="report",source=~"a|b"}[5m])) / ignoring(x) '
        "histogram_quantile(0.9, sum by (le) (rate(cityloop_report_to_task_seconds_bucket[$__rate_interval]))) "
        "and on(instance) up == 0 or absent(cityloop_worker_ready) offset 5m > bool 1"
    )
    assert metric_names(expr) == {
        "cityloop_ingested_total",
        "cityloop_report_to_task_seconds_bucket",
        "up",
        "cityloop_worker_ready",
    }
