"""What a worker serves at ``/metrics`` besides its domain counters: consumer lag, and series that start at 0.

Faust's own Prometheus sensor is not installed. Every series it had was empty or told less than one of ours: its
consumer reads no CityLoop topic (streams/ingest.py does), its producer metrics never saw a record (the sinks send
record batches to the aiokafka producer under it; streams/producemeter.py counts them), and its names broke the
conventions (latencies in milliseconds without a unit, gauges named ``total``, ``offset_commited``). docs/METRICS.md
maps each of its series to ours.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import REGISTRY, CollectorRegistry

from dispatch import CityPack
from streams import lag, metrics, producemeter
from streams.citypolicy import sla_owner
from streams.state import INCIDENT_CALLS, ORDER_CALLS, UNIT_CALLS
from streams.topics import Topics

SLA_OUTCOMES = ("met", "breached")
SLA_LEVELS = ("yellow", "red")
TRIAGE_STEPS = ("queued", "decided")
ALARM_CHANGES = ("opened", "cleared")
# The operation labels of cityloop_redis_errors_total a worker can count: its direct calls (streams/state.py's
# with_retry) and its stores' retried calls (tests/unit/streams/test_produce_metrics.py checks the list is whole).
REDIS_OPERATIONS = tuple(dict.fromkeys((
    "ledger_claim", "ledger_confirm", "detector_load", "detector_save", "triage_add", "triage_get", "triage_list",
    "triage_done", "triage_score", *INCIDENT_CALLS.values(), *UNIT_CALLS.values(), *ORDER_CALLS.values(),
)))  # fmt: skip


METRICS_PATH = "/metrics"


def install(
    app: faust.App, topics: Topics, sources: Sequence[lag.LagSource], registry: CollectorRegistry = REGISTRY
) -> lag.LagCollector:
    """Serve ``registry`` at ``/metrics`` on the worker's web server (Faust's sensor used to), with the consumer
    lag of ``sources`` (the consumers the worker reads with)."""

    @app.page(METRICS_PATH)
    async def metrics_view(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(registry), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    return lag.install(sources, topics, registry)


def start_series(pack: CityPack, stages: Iterable[str]) -> None:
    """Create at 0 what a worker's alerts and panels read: produce counters per output topic, Redis errors per
    operation, triage steps, sensor alarms and stale readings per sensor kind, SLA warnings per category and SLA
    outcomes per unit.

    A labelled series appears at its first increment, so until then a panel shows nothing (is it broken, or is all
    well?) and ``increase()`` misses that first one. The units, departments and categories come from the city pack
    and the rest from fixed tables of the code, so the series stay bounded whatever the traffic.
    """
    producemeter.WORKER.start(metrics.WORKER_OUTPUT_STREAMS)
    for operation in REDIS_OPERATIONS:
        metrics.REDIS_ERRORS.labels(operation)
    for step in TRIAGE_STEPS:
        metrics.TRIAGE.labels(step)
    for kind in pack.spec.sensor_kinds:
        metrics.STALE_READINGS.labels(kind)
        for change in ALARM_CHANGES:
            metrics.ALARMS.labels(kind, change)
    stages = tuple(stages)
    for category in pack.spec.categories:
        for stage in stages:
            for level in SLA_LEVELS:
                metrics.SLA_WARNINGS.labels(category.code, stage, level)
    for unit in pack.spec.units:
        department, unit_id = sla_owner(pack, unit.id)
        for stage in stages:
            for outcome in SLA_OUTCOMES:
                metrics.SLA_OUTCOMES.labels(department, unit_id, stage, outcome)
