"""The demo's traffic: the simulated city it plays into the streams, and what an ops centre sees come out.

:func:`play_city` sends the residents' reports and the sensors' readings and
prints a row of progress every few seconds; the ops centre's person files the
true category of each report the classifier was unsure about. An
:class:`Observer` thread reads the output streams (tasks, incidents, dead
letters, lifecycle events) into :class:`Observed`, beside :class:`Sent`, what
was sent; :func:`drain` waits until every report is accounted for, and
:func:`summarize` turns both into the run's summary. :mod:`streams.demo` starts
and stops the processes around it.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from dispatch.demo_city import bounds
from streams.democrews import Crews
from streams.demoview import progress_header, progress_row
from streams.ids import report_incident
from streams.kafkaaccess import KafkaAccess
from streams.simulator import CitySimulator, play, utc_now
from streams.topics import Topics

LIFECYCLE_SHOWN = ("ack", "reject", "resolve", "verify", "close", "reopen", "sla_warning", "escalate", "arbitrate")


@dataclass
class Observed:
    """What the ops centre saw on the output streams."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    tasks_by_unit: Counter[str] = field(default_factory=Counter)
    task_incidents: set[str] = field(default_factory=set)
    incidents: dict[str, str] = field(default_factory=dict)  # incident id -> origin
    report_fate: dict[str, str] = field(default_factory=dict)  # report id -> opened / merged / triage
    merged_sources: int = 0
    dead_by_reason: Counter[str] = field(default_factory=Counter)
    dead_offsets: set[str] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)
    triage_waiting: dict[str, float] = field(default_factory=dict)  # incident id -> when seen
    triage_decided: int = 0
    sensor_clears: int = 0
    events: Counter[str] = field(default_factory=Counter)  # lifecycle event type -> count
    late: set[tuple[str, str]] = field(default_factory=set)  # (incident, stage) escalated: the deadline passed
    done_stage: dict[str, set[str]] = field(default_factory=lambda: {"acknowledge": set(), "resolve": set()})


@dataclass
class Sent:
    reports: dict[str, float] = field(default_factory=dict)  # report id -> send time
    categories: dict[str, str] = field(default_factory=dict)  # report id -> the problem's true category
    by_incident: dict[str, str] = field(default_factory=dict)  # the incident id a report would open -> report id
    garbage: int = 0
    resent: int = 0
    readings: int = 0
    played_s: float = 0.0  # seconds of simulated city played so far


class Observer(threading.Thread):
    def __init__(
        self,
        kafka: KafkaAccess,
        topics: Topics,
        sent: Sent,
        seen: Observed,
        on_task: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(
            topics.tasks, topics.incidents, topics.deadletter, topics.feedback,
            **kafka.kafka_python(), auto_offset_reset="earliest", enable_auto_commit=False, group_id=None,
            fetch_max_wait_ms=20,
        )  # fmt: skip
        self.topics = topics
        self.sent = sent
        self.seen = seen
        self.on_task = on_task
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for batch in self.consumer.poll(timeout_ms=200).values():
                now = time.time()
                with self.seen.lock:
                    for message in batch:
                        self._see(message.topic, json.loads(message.value), now)
        self.consumer.close()

    def _see(self, topic: str, record: dict[str, Any], now: float) -> None:
        seen = self.seen
        if topic == self.topics.tasks:
            if self.on_task is not None:
                self.on_task(record)  # every attempt: the unit holding it acts on it
            if record["incident_id"] in seen.task_incidents:
                return
            seen.task_incidents.add(record["incident_id"])
            seen.tasks_by_unit[record["unit_id"]] += 1
            report_id = self.sent.by_incident.get(record["incident_id"])
            if report_id is not None and report_id in self.sent.reports:
                seen.latencies.append(now - self.sent.reports[report_id])
        elif topic == self.topics.incidents:
            seen.incidents.setdefault(record["incident_id"], record["origin"])
            for source in record["source_ids"]:
                report_id = source.removeprefix("report:")
                if source.startswith("report:") and report_id not in seen.report_fate:
                    opened = self.sent.by_incident.get(record["incident_id"]) == report_id
                    fate = "triage" if record["status"] == "triage" else "opened" if opened else "merged"
                    seen.report_fate[report_id] = fate
        elif topic == self.topics.deadletter:
            if record["deadletter_id"] not in seen.dead_offsets:
                seen.dead_offsets.add(record["deadletter_id"])
                seen.dead_by_reason[record["reason_code"]] += 1
        elif topic == self.topics.feedback:
            kind = record["type"]
            if kind in LIFECYCLE_SHOWN:
                seen.events[kind] += 1
            if kind == "escalate" and record.get("stage") in seen.done_stage:
                seen.late.add((record["incident_id"], record["stage"]))
            elif kind in ("ack", "resolve"):
                seen.done_stage["acknowledge" if kind == "ack" else "resolve"].add(record["incident_id"])
            if kind == "sensor_clear":
                seen.sensor_clears += 1
            elif kind == "merged":
                seen.merged_sources += 1
            elif kind == "triage_needed":
                seen.triage_waiting.setdefault(record["incident_id"], now)
            elif kind == "triaged":
                seen.triage_decided += 1


def play_city(
    kafka: KafkaAccess,
    topics: Topics,
    sent: Sent,
    seen: Observed,
    duration: float,
    rate: float,
    sensors: int,
    run_id: str,
    echo: Callable[[str], None],
) -> None:
    """Play the simulated city for ``duration`` seconds (``sent.played_s``), printing a row of progress every few."""
    producer = KafkaProducer(**kafka.kafka_python(), acks="all", linger_ms=5)
    simulator = CitySimulator(bounds(), run_id, sensors_count=sensors)
    every = 5.0 if duration >= 30 else 2.0
    last_print = 0.0
    echo(progress_header())
    try:
        for elapsed, reports, readings in play(simulator, rate, duration):
            sent.played_s = elapsed
            for record in reports:
                producer.send(topics.reports, key=record.key, value=record.value)
                if not record.valid:
                    sent.garbage += 1
                elif record.report_id in sent.reports:
                    sent.resent += 1
                else:
                    assert record.report_id is not None and record.category is not None
                    sent.reports[record.report_id] = time.time()
                    sent.categories[record.report_id] = record.category
                    sent.by_incident[report_incident(record.report_id)] = record.report_id
            for record in readings:  # each sensor reports once a second
                producer.send(topics.readings, key=record.key, value=record.value)
                sent.readings += 1
            _decide_triage(producer, topics, sent, seen, delay=2.0)
            if elapsed - last_print >= every:
                last_print = elapsed
                echo(progress_row(elapsed, _progress_counts(sent, seen)))
        producer.flush()
        if sent.played_s - last_print >= 0.5:
            echo(progress_row(sent.played_s, _progress_counts(sent, seen)))
    finally:
        producer.close()


def _progress_counts(sent: Sent, seen: Observed) -> dict[str, int]:
    with seen.lock:
        return {
            "reports": len(sent.reports) + sent.garbage + sent.resent,
            "incidents": len(seen.incidents),
            "tasks": sum(seen.tasks_by_unit.values()),
            "triage": len(seen.triage_waiting),
            "dead": sum(seen.dead_by_reason.values()),
            "acked": seen.events["ack"],
            "resolved": seen.events["resolve"],
            "closed": seen.events["close"],
            "late": len(seen.late),
        }


def _decide_triage(producer: KafkaProducer, topics: Topics, sent: Sent, seen: Observed, delay: float) -> None:
    """The ops centre's person: after ``delay`` seconds, file the true category of each unsure report."""
    now = time.time()
    with seen.lock:
        due = [i for i, at in seen.triage_waiting.items() if at is not None and now - at >= delay]
        for incident_id in due:
            seen.triage_waiting[incident_id] = None  # type: ignore[assignment]
    for incident_id in due:
        report_id = sent.by_incident.get(incident_id)
        if report_id is None:
            continue
        decision = {"type": "triage_decision", "incident_id": incident_id, "category": sent.categories[report_id],
                    "decided_by": "demo-operator", "at": utc_now().isoformat()}  # fmt: skip
        producer.send(topics.feedback, key=incident_id.encode(), value=json.dumps(decision).encode())


def drain(kafka: KafkaAccess, topics: Topics, sent: Sent, seen: Observed, timeout: float) -> None:
    """Wait for the last reports to be accounted for and the last triage decisions to be applied."""
    producer = KafkaProducer(**kafka.kafka_python(), acks="all")
    try:
        _wait_accounted(producer, topics, sent, seen, timeout)
    finally:
        producer.close()


def _wait_accounted(producer: KafkaProducer, topics: Topics, sent: Sent, seen: Observed, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _decide_triage(producer, topics, sent, seen, delay=0.0)
        producer.flush()
        with seen.lock:
            accounted = set(sent.reports) <= set(seen.report_fate)
            decided = seen.triage_decided >= sum(1 for v in seen.report_fate.values() if v == "triage")
            dead = sum(seen.dead_by_reason.values()) >= sent.garbage
        if accounted and decided and dead:
            return
        time.sleep(0.2)


def summarize(sent: Sent, seen: Observed) -> dict[str, Any]:
    """What was sent against what came out: the counts, the latencies and the SLA stages met or missed."""
    with seen.lock:
        fates = Counter(seen.report_fate[r] for r in sent.reports if r in seen.report_fate)
        latencies = sorted(seen.latencies)
        dead_total = sum(seen.dead_by_reason.values())
        origins = Counter(seen.incidents.values())
        incidents_from_reports = origins.get("report", 0)
        return {
            "reports_sent": len(sent.reports) + sent.garbage + sent.resent,
            "reports_valid_unique": len(sent.reports),
            "reports_garbage": sent.garbage,
            "reports_resent": sent.resent,
            "readings_sent": sent.readings,
            "reports_opened_incident": fates.get("opened", 0),
            "reports_merged": fates.get("merged", 0),
            "reports_triaged": fates.get("triage", 0),
            "triage_decisions_applied": seen.triage_decided,
            "merges": seen.merged_sources,
            "incidents": dict(origins),
            "merge_ratio": round(len(sent.reports) / incidents_from_reports, 3) if incidents_from_reports else None,
            "tasks": sum(seen.tasks_by_unit.values()),
            "tasks_by_unit": dict(seen.tasks_by_unit.most_common()),
            "sensor_alarms_cleared": seen.sensor_clears,
            "dead_letters": dict(seen.dead_by_reason.most_common()),
            "latency_p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
            "latency_p99_ms": round(1000 * latencies[int(0.99 * (len(latencies) - 1))], 1) if latencies else None,
            "lifecycle_events": dict(seen.events),
            "sla": {
                stage: {
                    "met": len(done - {i for i, st in seen.late if st == stage}),
                    "missed": sum(1 for _, st in seen.late if st == stage),
                }
                for stage, done in seen.done_stage.items()
            },  # fmt: skip
            "reports_unaccounted": len(set(sent.reports) - set(seen.report_fate)),
            "garbage_without_dead_letter": max(0, sent.garbage - dead_total),
        }


def full_summary(sent: Sent, seen: Observed, crews: Crews | None, started_pids: list[int],
                 interrupted: bool) -> dict[str, Any]:  # fmt: skip
    """:func:`summarize`, with what the crews did and how the run ended."""
    summary = summarize(sent, seen)
    if crews is not None:
        with crews.log.lock:
            summary["crew_actions"] = dict(crews.log.done)
            summary["crew_refused"] = dict(crews.log.refused)
            summary["crew_errors"] = len(crews.log.errors)
    summary["started_pids"] = started_pids
    summary["played_s"] = round(sent.played_s, 1)
    summary["interrupted"] = interrupted
    return summary
