"""The worker's own producer is metered: records and bytes the broker acknowledged, send-to-ack time, and errors by a
bounded class; the series a worker and the API alert on exist at 0 from the start."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
    TopicAuthorizationFailedError,
    UnknownTopicOrPartitionError,
)
from prometheus_client import CollectorRegistry, Counter, Histogram

from streams import metrics
from streams.producemeter import ProduceMeter, RecordTooLarge, error_class, stream_of
from streams.sinks import _Batches


def private_meter() -> tuple[ProduceMeter, CollectorRegistry]:
    """The meter on a registry of its own, so counts from other tests in this interpreter do not mix in."""
    registry = CollectorRegistry()
    meter = ProduceMeter(
        Counter("cityloop_produce_records", "r", ["topic"], registry=registry),
        Counter("cityloop_produce_bytes", "b", ["topic"], registry=registry),
        Histogram("cityloop_produce_seconds", "s", ["topic"], registry=registry),
        Counter("cityloop_produce_errors", "e", ["topic", "error"], registry=registry),
    )
    return meter, registry


class Batch:
    def __init__(self, room: int) -> None:
        self.items: list[tuple[bytes, bytes]] = []
        self.room = room

    def append(self, *, key: bytes, value: bytes, timestamp: None) -> object | None:
        if len(self.items) >= self.room:
            return None
        self.items.append((key, value))
        return object()


class Producer:
    """aiokafka's batch API: each batch's future settles as ``outcome`` says (None: acknowledged)."""

    def __init__(self, outcome: BaseException | None = None, room: int = 100) -> None:
        self.outcome = outcome
        self.room = room
        self.batches = 0

    def create_batch(self) -> Batch:
        return Batch(self.room)

    async def partitions_for(self, topic: str) -> set[int]:
        return {0}

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future[Any]:
        self.batches += 1
        future = asyncio.get_running_loop().create_future()
        if self.outcome is None:
            future.set_result(None)
        else:
            future.set_exception(self.outcome)
        return future


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_acknowledged_batches_count_records_bytes_and_one_latency_per_batch():
    meter, registry = private_meter()
    records = [("city.tasks", b"k%d" % i, b"v" * 10) for i in range(5)] + [("city.feedback", b"k", b"vvv")]
    producer = Producer(room=2)  # five task records: three batches
    asyncio.run(_Batches(meter).send(producer, records))
    assert value(registry, "cityloop_produce_records_total", topic="tasks") == 5
    assert value(registry, "cityloop_produce_bytes_total", topic="tasks") == 5 * (2 + 10)
    assert value(registry, "cityloop_produce_seconds_count", topic="tasks") == 3
    assert value(registry, "cityloop_produce_records_total", topic="feedback") == 1
    assert value(registry, "cityloop_produce_errors_total", topic="tasks", error="timeout") is None


def test_a_failed_batch_counts_an_error_by_class_and_no_records():
    meter, registry = private_meter()
    producer = Producer(outcome=KafkaTimeoutError())
    with pytest.raises(KafkaTimeoutError):
        asyncio.run(_Batches(meter).send(producer, [("city.tasks", b"k", b"v"), ("city.incidents", b"k", b"v")]))
    assert value(registry, "cityloop_produce_errors_total", topic="tasks", error="timeout") == 1
    assert value(registry, "cityloop_produce_errors_total", topic="incidents", error="timeout") == 1
    assert value(registry, "cityloop_produce_records_total", topic="tasks") is None


def test_a_record_larger_than_a_batch_is_a_too_large_error():
    meter, registry = private_meter()
    with pytest.raises(RecordTooLarge):
        asyncio.run(_Batches(meter).send(Producer(room=0), [("city.deadletter", b"k", b"v" * 100)]))
    assert value(registry, "cityloop_produce_errors_total", topic="deadletter", error="too_large") == 1


@pytest.mark.parametrize(
    ("exc", "label"),
    [(KafkaTimeoutError(), "timeout"), (RequestTimedOutError(), "timeout"), (KafkaConnectionError(), "connection"),
     (NotLeaderForPartitionError(), "not_leader"), (MessageSizeTooLargeError(), "too_large"),
     (UnknownTopicOrPartitionError(), "unknown_topic"), (TopicAuthorizationFailedError(), "authorization"),
     (ConnectionResetError(), "connection"), (RuntimeError("x"), "other"), (RecordTooLarge("x"), "too_large")],
)  # fmt: skip
def test_errors_fall_into_a_fixed_set_of_classes(exc, label):
    assert error_class(exc) == label
    assert label in metrics.PRODUCE_ERROR_CLASSES


def test_the_topic_label_is_the_stream_name_and_nothing_else():
    assert stream_of("cityloop.tasks") == "tasks"
    assert stream_of("my.deployment.feedback") == "feedback"
    assert stream_of("cityloop.tasks-v2") == "other"
    assert stream_of("someone-elses-topic") == "other"


FRESH_WORKER = """
import json
from prometheus_client import REGISTRY
from dispatch import load_city_pack
from dispatch.demo_city import write_demo_city
from streams import observability
import pathlib, sys
pack = load_city_pack(write_demo_city(pathlib.Path(sys.argv[1]) / "city"))
observability.start_series(pack, ("acknowledge", "resolve", "verify"))
get = REGISTRY.get_sample_value
outcomes = [s for f in REGISTRY.collect() if f.name == "cityloop_sla_outcomes" for s in f.samples
            if s.name == "cityloop_sla_outcomes_total"]
field_team = next(u for u in pack.spec.units if u.kind == "field_team" and u.department)
print(json.dumps({
    "errors": [get("cityloop_produce_errors_total", {"topic": t, "error": "timeout"})
               for t in ("incidents", "tasks", "feedback", "deadletter")],
    "records": get("cityloop_produce_records_total", {"topic": "tasks"}),
    "outcomes": len(outcomes), "units": len(pack.spec.units),
    "nonzero": sum(s.value for s in outcomes),
    "team": get("cityloop_sla_outcomes_total", {"department": field_team.department, "unit": field_team.id,
                                                 "stage": "acknowledge", "outcome": "met"}),
    "units_seen": sorted({s.labels["unit"] for s in outcomes}) == sorted(u.id for u in pack.spec.units),
    "redis": get("cityloop_redis_errors_total", {"operation": "ledger_claim"}),
    "triage": get("cityloop_triage_total", {"step": "queued"}),
    "alarms": [get("cityloop_sensor_alarm_changes_total", {"kind": k, "change": "opened"})
               for k in pack.spec.sensor_kinds],
    "warnings": get("cityloop_sla_warnings_total", {"category": pack.spec.categories[0].code, "stage": "resolve",
                                                    "level": "red"}),
}))
"""


def test_a_worker_starts_its_produce_and_sla_outcome_series_at_zero(tmp_path):
    """Produce errors per output topic and SLA outcomes per unit of the pack exist at 0 in a fresh worker process."""
    out = subprocess.run([sys.executable, "-c", FRESH_WORKER, str(tmp_path)], capture_output=True, text=True,
                         check=True, timeout=120)  # fmt: skip
    seen = json.loads(out.stdout)
    assert seen["errors"] == [0.0, 0.0, 0.0, 0.0]
    assert seen["records"] == 0.0
    assert seen["outcomes"] == seen["units"] * 3 * 2  # bounded: units x stages x (met, breached)
    assert seen["nonzero"] == 0.0 and seen["team"] == 0.0 and seen["units_seen"]
    assert seen["redis"] == 0.0 and seen["warnings"] == 0.0 and seen["triage"] == 0.0
    assert seen["alarms"] and set(seen["alarms"]) == {0.0}


def test_every_redis_operation_a_worker_retries_is_created_at_zero():
    """The operation labels start_series creates are every label streams/ calls with_retry with."""
    import re
    from pathlib import Path

    from streams import observability

    root = Path(observability.__file__).parent
    called = {m for path in root.rglob("*.py") for m in re.findall(r'with_retry\(\s*"([a-z_]+)"', path.read_text())}
    assert called and called <= set(observability.REDIS_OPERATIONS), sorted(
        called - set(observability.REDIS_OPERATIONS)
    )
