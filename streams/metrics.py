"""Domain metrics (prometheus-client). Label values come from bounded sets only.

Each process serves only its own series, from its own registry: the worker prometheus-client's default registry
(where Faust's sensor registers too), the API :data:`API_REGISTRY`, ``cityloop connectors``
:data:`CONNECTORS_REGISTRY`. Every module defines all of them on import, so a metric registered on the default
registry would otherwise show up, at zero, on the API's ``/metrics`` as well (242 worker series did).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry

KNOWN_SOURCES = frozenset({"app", "web", "phone", "email", "open311", "sms", "social", "sensor", "staff"})
# RFC 9110's methods and PATCH; anything else a client invents is counted as "other" (one series, not one a name).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})


def source_label(source: str) -> str:
    """Map a producer-chosen source onto a bounded label value."""
    return source if source in KNOWN_SOURCES else "other"


def method_label(method: str) -> str:
    """Map a client-chosen HTTP method onto a bounded label value."""
    return method if method in KNOWN_METHODS else "other"


def _process_registry() -> CollectorRegistry:
    """A registry with prometheus-client's process, platform and GC series, as the default registry has."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


API_REGISTRY = _process_registry()
CONNECTORS_REGISTRY = _process_registry()


@functools.lru_cache(maxsize=16_384)
def child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, remembered: label sets are bounded, and the hot path counts per record."""
    return metric.labels(*labels)


_tallies: dict[tuple[Any, ...], float] = {}


def tally(metric: Any, *labels: str, amount: float = 1.0) -> None:
    """Count towards a counter; :func:`flush` adds the sums (one locked increment per label set, not per record)."""
    key = (metric, *labels)
    _tallies[key] = _tallies.get(key, 0.0) + amount


def flush() -> None:
    """Add what :func:`tally` counted since the last flush (call at the end of each batch)."""
    if not _tallies:
        return
    items = list(_tallies.items())
    _tallies.clear()
    for (metric, *labels), amount in items:
        child(metric, *labels).inc(amount)


INGESTED = Counter(
    "cityloop_ingested_total",
    "Valid records accepted from the input topics.",
    ["kind", "source"],
)
DEAD_LETTERS = Counter(
    "cityloop_deadletters_total",
    "Records sent to the dead-letter topic.",
    ["stage", "reason"],
)
DUPLICATES = Counter(
    "cityloop_duplicates_total",
    "Redelivered or repeated records recognised and not processed again.",
    ["kind"],
)
PROCESSED = Counter(
    "cityloop_processed_total",
    "Input records whose outcome the broker acknowledged, by stream and outcome "
    "(opened an incident, merged into one, queued for triage, dead-lettered, other).",
    ["stream", "outcome"],
)
INCIDENTS = Counter(
    "cityloop_incidents_opened_total",
    "Incidents opened.",
    ["origin", "category"],
)
MERGES = Counter(
    "cityloop_merges_total",
    "Reports and alarms that joined an open incident instead of opening one.",
    ["origin", "category"],
)
TRIAGE = Counter(
    "cityloop_triage_total",
    "Reports queued for a person because the classifier was unsure, and decisions applied.",
    ["step"],
)
ASSIGNMENTS = Counter(
    "cityloop_assignments_total",
    "Tasks assigned to units.",
    ["unit", "rule"],
)
CLASSIFIED = Counter(
    "cityloop_classified_total",
    "Reports given a category, by method.",
    ["method"],
)
TEXT_MODEL_OUTCOMES = Counter(
    "cityloop_text_model_outcomes_total",
    "Reports the text model classified, by what followed: dispatched without a person (automatic) or triage.",
    ["outcome"],
)
MODEL_INFO = Gauge(
    "cityloop_model_info",
    "1 for the text model version classifying reports now (seed, file:<name>, or a registry version); one series.",
    ["version"],
)
MODEL_RELOADS = Counter(
    "cityloop_model_reloads_total",
    "New registry versions the worker tried to switch to: loaded, or refused (the old model kept running).",
    ["outcome"],
)
CONFIDENCE = Histogram(
    "cityloop_classification_confidence",
    "Confidence of text-model classifications.",
    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0),
)
ALARMS = Counter(
    "cityloop_sensor_alarm_changes_total",
    "Sensor alarms opened and cleared.",
    ["kind", "change"],
)
STALE_READINGS = Counter(
    "cityloop_stale_readings_total",
    "Readings not newer than the last one applied for their sensor (redelivered or out of order).",
    ["kind"],
)
REPORT_TO_TASK = Histogram(
    "cityloop_report_to_task_seconds",
    "From a report's append to the reports topic to its task being acknowledged by the broker.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
BATCH_SECONDS = Histogram(
    "cityloop_batch_seconds",
    "Time to process one batch, by stream.",
    ["stream"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
REDIS_ERRORS = Counter(
    "cityloop_redis_errors_total",
    "Redis calls that failed and were retried.",
    ["operation"],
)
API_REQUESTS = Counter(
    "cityloop_api_requests_total",
    "HTTP API requests, by method, route template and status.",
    ["method", "route", "status"],
    registry=API_REGISTRY,
)
API_SECONDS = Histogram(
    "cityloop_api_request_seconds",
    "HTTP API request handling time, by route template.",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=API_REGISTRY,
)
READY = Gauge("cityloop_worker_ready", "1 when the worker has partitions assigned and state connected.")
INGEST_PARTITIONS = Gauge(
    "cityloop_ingest_partitions",
    "Partitions of the reports and readings topics this worker's batch consumer holds.",
)
COMMITS = Counter(
    "cityloop_ingest_commits_total",
    "Offset commits of the batch consumer (reports and readings), each for batches the broker acknowledged.",
)
CONSUMED = Counter(
    "cityloop_consumed_records",
    "Input records the batch consumer finished (outcomes acknowledged by the broker), per stream: the pace the "
    "lag is worked off at.",
    ["stream"],
)
REBALANCES = Counter(
    "cityloop_ingest_rebalances",
    "Partition assignments the batch consumer received (one per rebalance of its group, the first join included).",
)
TRANSACTIONS = Counter(
    "cityloop_transactions_total",
    "Kafka transactions of the exactly-once sink (an input batch's output with its offsets, or a timer round).",
    ["outcome"],
)
STATE_REBUILDS = Counter(
    "cityloop_state_rebuilds_total",
    "Rebuilds of Redis's state from the Kafka log by this worker, after it found Redis without its state epoch.",
    ["outcome"],
)
STATE_REBUILD_SECONDS = Gauge(
    "cityloop_state_rebuild_seconds",
    "How long this worker's last rebuild of Redis's state from the log took (0 before any).",
)

# --- What the worker's own producer sends (streams/sinks.py), and the API's (streams/api/context.py). Faust's
# producer metrics never saw these records: the sinks hand record batches to the aiokafka producer under Faust's.
# ``topic`` is the stream's name without the deployment's prefix (``tasks``, not ``cityloop.tasks``); ``error`` a
# class from :data:`PRODUCE_ERRORS_CLASSES`, never an exception's message.
STREAMS = ("reports", "readings", "incidents", "tasks", "feedback", "deadletter")
WORKER_OUTPUT_STREAMS = ("incidents", "tasks", "feedback", "deadletter")
API_OUTPUT_STREAMS = ("reports", "feedback")
INPUT_STREAMS = ("reports", "readings", "feedback")  # what a worker consumes: the lag's and CONSUMED's labels
PRODUCE_ERROR_CLASSES = ("timeout", "connection", "not_leader", "too_large", "unknown_topic", "authorization", "other")
_PRODUCE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_PRODUCE_HELP = {
    "records": "Records the broker acknowledged, by topic (the stream's name).",
    "bytes": "Key and value bytes of the records the broker acknowledged, by topic.",
    "seconds": "From a record batch handed to the producer to the broker's acknowledgement (or failure), by topic.",
    "errors": "Produce calls that failed (the records are sent again by the retry), by topic and error class.",
}
PRODUCE_RECORDS = Counter("cityloop_produce_records", _PRODUCE_HELP["records"], ["topic"])
PRODUCE_BYTES = Counter("cityloop_produce_bytes", _PRODUCE_HELP["bytes"], ["topic"])
PRODUCE_SECONDS = Histogram("cityloop_produce_seconds", _PRODUCE_HELP["seconds"], ["topic"], buckets=_PRODUCE_BUCKETS)
PRODUCE_ERRORS = Counter("cityloop_produce_errors", _PRODUCE_HELP["errors"], ["topic", "error"])
API_PRODUCE_RECORDS = Counter("cityloop_produce_records", _PRODUCE_HELP["records"], ["topic"], registry=API_REGISTRY)
API_PRODUCE_BYTES = Counter("cityloop_produce_bytes", _PRODUCE_HELP["bytes"], ["topic"], registry=API_REGISTRY)
API_PRODUCE_SECONDS = Histogram("cityloop_produce_seconds", _PRODUCE_HELP["seconds"], ["topic"],
                                buckets=_PRODUCE_BUCKETS, registry=API_REGISTRY)  # fmt: skip
API_PRODUCE_ERRORS = Counter("cityloop_produce_errors", _PRODUCE_HELP["errors"], ["topic", "error"],
                             registry=API_REGISTRY)  # fmt: skip

# --- SLA outcomes per unit and department: what a city manager asks first. Both labels come from the city pack (a
# unit of another pack, after a pack change, is "other"), so the series are bounded by its units times the stages.
SLA_OUTCOMES = Counter(
    "cityloop_sla_outcomes",
    "SLA stages of tasks that ended met (done before the deadline) or breached (the deadline passed first), by "
    "the unit responsible, its department, the stage and the outcome.",
    ["department", "unit", "stage", "outcome"],
)

# --- The closed loop (work orders, SLA timers). Defined here so dashboards, alerts and docs/METRICS.md have one
# name for each; the work-order lifecycle and the SLA timer set them. Labels: category comes from the city pack,
# type and stage from the lifecycle's fixed tables; never a task or incident id.
SLA_WARNINGS = Counter(
    "cityloop_sla_warnings_total",
    "Tasks whose SLA clock entered the yellow or red zone before a deadline, by category, stage and level.",
    ["category", "stage", "level"],
)
SLA_BREACHES = Counter(
    "cityloop_sla_breaches_total",
    "Tasks that missed an SLA deadline, by category and stage (acknowledge, resolve, verify).",
    ["category", "stage"],
)
_LIFECYCLE_BUCKETS = (60, 300, 900, 1800, 3600, 7200, 14400, 28800, 86400, 172800, 345600, 604800, 1209600, 2592000)
TIME_TO_ACKNOWLEDGE = Histogram(
    "cityloop_time_to_acknowledge_seconds",
    "From a task's dispatch to the unit acknowledging it, by category.",
    ["category"],
    buckets=_LIFECYCLE_BUCKETS,
)
TIME_TO_RESOLVE = Histogram(
    "cityloop_time_to_resolve_seconds",
    "From a task's dispatch to the unit resolving it, by category.",
    ["category"],
    buckets=_LIFECYCLE_BUCKETS,
)
ORDER_EVENTS = Counter(
    "cityloop_order_events_total",
    "Lifecycle events applied to work orders (transitions and notices), by type.",
    ["type"],
)
LIFECYCLE_REFUSED = Counter(
    "cityloop_lifecycle_refused_total",
    "Lifecycle events refused and dead-lettered, by reason code.",
    ["reason"],
)
TIMER_EVENTS = Counter(
    "cityloop_timer_events_total",
    "Events the SLA timer emitted (sla_warning, escalate, sensor verify), by type and stage.",
    ["type", "stage"],
)
TIMER_LAG = Histogram(
    "cityloop_timer_lag_seconds",
    "From a deadline falling due to its event being acknowledged by the broker.",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)

# --- Connectors (`cityloop connectors`, and the API's callback route). `connector` is the unit id of a unit with a
# connector in the city pack (a bounded set); `reason` a fixed code of streams/connectors/base.py.
CONNECTOR_SENT = Counter(
    "cityloop_connector_sent_total",
    "Records a unit's system took (a 2xx answer), by connector and kind (task, event).",
    ["connector", "kind"],
    registry=CONNECTORS_REGISTRY,
)
CONNECTOR_FAILED = Counter(
    "cityloop_connector_failures_total",
    "Attempts that failed, by connector and reason (network, timeout, http_5xx, http_429, http_4xx; open311: "
    "unmapped, unsupported).",
    ["connector", "reason"],
    registry=CONNECTORS_REGISTRY,
)
CONNECTOR_DEAD_LETTERS = Counter(
    "cityloop_connector_deadletters_total",
    "Records a connector gave up on and dead-lettered, by connector and reason code.",
    ["connector", "reason"],
    registry=CONNECTORS_REGISTRY,
)
CONNECTOR_PENDING = Gauge(
    "cityloop_connector_pending_records",
    "Records waiting in a connector's queue (not yet taken by the unit's system nor dead-lettered).",
    ["connector"],
    registry=CONNECTORS_REGISTRY,
)
CONNECTOR_LAG = Gauge(
    "cityloop_connector_lag_seconds",
    "Age of the oldest record waiting in a connector's queue (0 when it is empty).",
    ["connector"],
    registry=CONNECTORS_REGISTRY,
)
CONNECTOR_SECONDS = Histogram(
    "cityloop_connector_request_seconds",
    "Time of one attempt to send to a unit's system, whatever its outcome.",
    ["connector"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=CONNECTORS_REGISTRY,
)
CONNECTOR_OPEN = Gauge(
    "cityloop_connector_breaker_open",
    "1 while a connector's circuit breaker is open (nothing is sent to that system until the cooldown ends).",
    ["connector"],
    registry=CONNECTORS_REGISTRY,
)
CONNECTOR_CALLBACKS = Counter(
    "cityloop_connector_callbacks_total",
    "Status callbacks from units' systems (POST /connectors/{unit_id}/events), by connector and outcome.",
    ["connector", "outcome"],
    registry=API_REGISTRY,
)
CONNECTOR_POLLS = Counter(
    "cityloop_connector_polls_total",
    "Polls of units' systems that cannot call back (open311), by connector and outcome (ok, or a failure reason).",
    ["connector", "outcome"],
    registry=CONNECTORS_REGISTRY,
)
CONNECTOR_POLL_SECONDS = Histogram(
    "cityloop_connector_poll_seconds",
    "Time of one poll of a unit's system (every request it holds open), whatever its outcome.",
    ["connector"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
    registry=CONNECTORS_REGISTRY,
)
CONNECTOR_UPDATES = Counter(
    "cityloop_connector_updates_total",
    "Statuses found by polling, by connector and outcome: written (as lifecycle events), current (the order was "
    "there already), refused (the lifecycle table does not allow it), stale (the task is no longer the unit's).",
    ["connector", "outcome"],
    registry=CONNECTORS_REGISTRY,
)
# The API's triage calls go through the same retrying Redis calls (streams/state.py TriageQueue): in its process only
# they count here, so it serves the family too.
API_REGISTRY.register(REDIS_ERRORS)

# The same family as DEAD_LETTERS, served by `cityloop connectors`: a courier dead-letters what a unit's system will
# not take (stage "connector"). Its own object, so the worker's stages never show on the connectors' /metrics.
CONNECTOR_STAGE_DEAD_LETTERS = Counter(
    "cityloop_deadletters_total",
    "Records sent to the dead-letter topic.",
    ["stage", "reason"],
    registry=CONNECTORS_REGISTRY,
)

# --- Series created at 0 when a process starts. A labelled series appears at its first increment, already at 1,
# so ``increase()`` over it sees nothing: a one-off failure would never fire CityLoopProcessingFailures. Only the
# label values known up front (fixed tables of the code, the city pack's categories), so the sets stay bounded.
_PROCESSING_ERROR = ("processing_error",)
_TRIAGE_REFUSALS = ("missing_field", "unknown_category", "not_in_triage")
CONNECTOR_DEAD_LETTER_REASONS = ("delivery_failed", "delivery_refused")


def worker_dead_letter_labels(reason_codes: Iterable[str]) -> list[tuple[str, str]]:
    """(stage, reason) pairs a worker can count: the contract's codes where records are decoded, a fixed code else."""
    codes = tuple(reason_codes)
    table = {
        "validate": codes,
        "detect": ("unknown_kind",),
        "discover": _PROCESSING_ERROR,
        "dispatch": _PROCESSING_ERROR,
        "internal": _PROCESSING_ERROR,
        "triage": _TRIAGE_REFUSALS,
        "feedback": codes,
    }
    return [(stage, reason) for stage, reasons in table.items() for reason in reasons]


def start_worker_series(reason_codes: Iterable[str], categories: Iterable[str], stages: Iterable[str]) -> None:
    """Create the worker's alerting counters at 0: dead letters by stage and reason, SLA breaches per category,
    records consumed per stream."""
    for stage, reason in worker_dead_letter_labels(reason_codes):
        DEAD_LETTERS.labels(stage, reason)
    stages = tuple(stages)
    for category in categories:
        for stage in stages:
            SLA_BREACHES.labels(category, stage)
    for outcome in ("done", "failed"):
        STATE_REBUILDS.labels(outcome)
    for stream in INPUT_STREAMS:  # at 0: a worker that finishes nothing has a pace of 0, not none (the lag alerts)
        CONSUMED.labels(stream)


def start_connector_series(unit_ids: Iterable[str]) -> None:
    """Create ``cityloop connectors``' dead-letter counters at 0, per connector and in the total by stage."""
    units = tuple(unit_ids)
    for reason in CONNECTOR_DEAD_LETTER_REASONS:
        CONNECTOR_STAGE_DEAD_LETTERS.labels("connector", reason)
        for unit_id in units:
            CONNECTOR_DEAD_LETTERS.labels(unit_id, reason)
