"""The engine: one batch of input records in, incidents, tasks, feedback and dead letters out.

Agents hand the engine a list of :class:`Envelope`; the engine decodes, calls
the pure domain cores (``classifiers``, ``dispatch``, ``feedback``), makes every
side effect idempotent through the :class:`~streams.state.Ledger`, and sends
the results through a :class:`Sink`. Nothing here imports Faust, so the engine
runs the same under a worker, a benchmark or a test.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import numpy as np

from classifiers import AlarmChange, DetectorState, TextClassifier, ThresholdDetector
from dispatch import CityPack, Dispatcher
from feedback import BusinessCalendar, deadline_for
from streams import metrics
from streams.outcomes import Envelope, dead_letter, iso, stable_id
from streams.records import Reading, Rejected, Report, decode_reading, decode_report
from streams.state import RESEND, SENT, DetectorStore, Ledger
from streams.topics import CONTRACT_VERSION, Topics

log = logging.getLogger(__name__)


class Sink(Protocol):
    """Where output records go; ``send`` returns a future resolved when the broker has the record."""

    async def send(self, topic: str, key: bytes, value: bytes) -> Awaitable[Any]: ...


@dataclass
class BatchResult:
    """What one batch did; for logs, progress output and tests."""

    consumed: int = 0
    accepted: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    emitted: int = 0
    tasks: int = 0
    stale: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class _Pending:
    """Records to emit for one ledger key."""

    key: str
    records: list[tuple[str, str, dict[str, Any]]]  # (topic, key, record)
    kind: str
    appended_at: float | None = None


def _calendar(pack: CityPack) -> BusinessCalendar:
    spec = pack.spec.calendar
    return BusinessCalendar(
        zone=pack.zone,
        start=spec.working_hours.start,
        end=spec.working_hours.end,
        days=frozenset(spec.working_hours.days),
        holidays=frozenset(date.fromisoformat(day) for day in spec.holidays),
    )


class Engine:
    """Turns batches of reports and readings into outputs for one city pack."""

    def __init__(
        self,
        pack: CityPack,
        classifier: TextClassifier,
        ledger: Ledger,
        detectors: DetectorStore,
        sink: Sink,
        topics: Topics,
        *,
        max_skew: timedelta = timedelta(days=1),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.pack = pack
        self.dispatcher = Dispatcher(pack)
        self.classifier = classifier
        self.ledger = ledger
        self.detectors = detectors
        self.sink = sink
        self.topics = topics
        self.max_skew = max_skew
        self.clock = clock
        self.calendar = _calendar(pack)
        self._detectors = {
            kind: ThresholdDetector(spec.open_at, spec.close_at, spec.direction)
            for kind, spec in pack.spec.sensor_kinds.items()
        }

    # ----------------------------------------------------------------- reports

    async def process_reports(self, envelopes: Sequence[Envelope]) -> BatchResult:
        started = time.perf_counter()
        now = self.clock()
        result = BatchResult(consumed=len(envelopes))
        pending: list[_Pending] = []
        valid: list[tuple[Envelope, Report]] = []
        seen: set[str] = set()
        for envelope, report in self._decoded(envelopes, decode_report, now, pending):
            if report.report_id in seen:  # repeated within the batch: one outcome is enough
                result.duplicates += 1
                metrics.DUPLICATES.labels("report").inc()
                continue
            seen.add(report.report_id)
            valid.append((envelope, report))
            metrics.INGESTED.labels("report", metrics.source_label(report.source)).inc()
        pending.extend(self._isolated(self._report_outcomes, valid, now, "discover"))
        await self._emit(pending, result)
        metrics.BATCH_SECONDS.labels("reports").observe(time.perf_counter() - started)
        return result

    def _report_outcomes(self, items: list[tuple[Envelope, Report]], now: datetime) -> list[_Pending]:
        if not items:
            return []
        reports = [report for _, report in items]
        categories, confidences, methods, tops = self._classify(reports)
        lats = np.array([r.lat for r in reports])
        lons = np.array([r.lon for r in reports])
        known = [i for i, c in enumerate(categories) if c is not None]
        assignments: dict[int, Any] = {}
        if known:
            assigned = self.dispatcher.assign_batch(
                [categories[i] for i in known],  # type: ignore[misc]
                lats[known],
                lons[known],
                [confidences[i] for i in known],
                sources=[reports[i].source for i in known],
                now=now,
            )
            assignments = dict(zip(known, assigned, strict=True))
        pending = []
        for i, (envelope, report) in enumerate(items):
            incident_id = stable_id("inc", "report", report.report_id)
            incident = {
                "schema": CONTRACT_VERSION,
                "incident_id": incident_id,
                "origin": "report",
                "status": "open",
                "category": categories[i],
                "confidence": confidences[i],
                "classified_by": methods[i],
                "top": tops[i],
                "lat": report.lat,
                "lon": report.lon,
                "address": report.address,
                "source_ids": [f"report:{report.report_id}"],
                "first_seen": iso(report.reported_at),
                "last_seen": iso(report.reported_at),
                "opened_at": iso(now),
            }
            assignment = assignments.get(i)
            if assignment is not None:
                unit_id, rule, explanation = assignment.unit_id, assignment.rule, assignment.explanation
            else:
                unit_id = self.pack.spec.fallback_unit
                rule = "unclassified"
                explanation = {
                    "pack": self.pack.name,
                    "pack_version": self.pack.version,
                    "rule": rule,
                    "why": f"no category of {self.pack.name} fits this report; the ops centre triages it",
                    "confidence": confidences[i],
                }
            records = self._task_records(incident, unit_id, rule, explanation, now)
            pending.append(_Pending(f"report:{report.report_id}", records, "report", envelope.timestamp))
            metrics.INCIDENTS.labels("report", categories[i] or "unclassified").inc()
        return pending

    def _classify(self, reports: list[Report]) -> tuple[list[str | None], list[float], list[str], list[list[Any]]]:
        categories: list[str | None] = [None] * len(reports)
        confidences = [1.0] * len(reports)
        methods = ["service_code"] * len(reports)
        tops: list[list[Any]] = [[] for _ in reports]
        by_text = []
        for i, report in enumerate(reports):
            if report.service_code and self.pack.category(report.service_code) is not None:
                categories[i] = report.service_code
                tops[i] = [[report.service_code, 1.0]]
            else:
                by_text.append(i)
        if by_text:
            predictions = self.classifier.predict([reports[i].text for i in by_text])
            for i, prediction in zip(by_text, predictions, strict=True):
                known = self.pack.category(prediction.category) is not None
                categories[i] = prediction.category if known else None
                confidences[i] = prediction.confidence
                methods[i] = "text_model"
                tops[i] = [list(pair) for pair in prediction.top]
                metrics.CONFIDENCE.observe(prediction.confidence)
        for method in methods:
            metrics.CLASSIFIED.labels(method).inc()
        return categories, confidences, methods, tops

    def _task_records(
        self, incident: dict[str, Any], unit_id: str, rule: str, explanation: dict[str, Any], now: datetime
    ) -> list[tuple[str, str, dict[str, Any]]]:
        incident_id = incident["incident_id"]
        task_id = f"{incident_id.replace('inc-', 'tsk-', 1)}-1"
        task = {
            "schema": CONTRACT_VERSION,
            "task_id": task_id,
            "incident_id": incident_id,
            "unit_id": unit_id,
            "attempt": 1,
            "category": incident["category"],
            "lat": incident["lat"],
            "lon": incident["lon"],
            "address": incident.get("address"),
            "dispatched_at": iso(now),
            "sla": self._sla(incident["category"], now),
            "reason": {"rule": rule, "explanation": explanation},
        }
        event = {
            "schema": CONTRACT_VERSION,
            "event_id": stable_id("evt", task_id, "dispatched"),
            "type": "dispatched",
            "task_id": task_id,
            "incident_id": incident_id,
            "unit_id": unit_id,
            "actor": "engine",
            "at": iso(now),
        }
        metrics.ASSIGNMENTS.labels(unit_id, rule).inc()
        return [
            (self.topics.incidents, incident_id, incident),
            (self.topics.tasks, incident_id, task),
            (self.topics.feedback, incident_id, event),
        ]

    def _sla(self, category: str | None, now: datetime) -> dict[str, Any]:
        spec = self.pack.category(category) if category else None
        if spec is None or spec.sla is None:
            return {"clock": None, "acknowledge_by": None, "resolve_by": None, "verify_within": None}
        sla = spec.sla
        return {
            "clock": sla.clock,
            "acknowledge_by": iso(deadline_for(now, sla.acknowledge, sla.clock, self.calendar)),
            "resolve_by": iso(deadline_for(now, sla.resolve, sla.clock, self.calendar)),
            "verify_within": sla.verify,
        }

    # ---------------------------------------------------------------- readings

    async def process_readings(self, envelopes: Sequence[Envelope]) -> BatchResult:
        started = time.perf_counter()
        now = self.clock()
        result = BatchResult(consumed=len(envelopes))
        pending: list[_Pending] = []
        readings: list[tuple[Envelope, Reading]] = []
        for envelope, reading in self._decoded(envelopes, decode_reading, now, pending):
            if reading.kind not in self._detectors:
                known = ", ".join(sorted(self._detectors)) or "none"
                reason = f"no detector for sensor kind {reading.kind!r} in city pack {self.pack.name} (known: {known})"
                pending.append(self._dead_letter("detect", "unknown_kind", reason, envelope, now))
                continue
            readings.append((envelope, reading))
            metrics.INGESTED.labels("reading", "sensor").inc()
        sensor_ids = sorted({r.sensor_id for _, r in readings})
        states = await self.detectors.load(sensor_ids)
        before = dict(states)
        opened: list[tuple[Envelope, tuple[Reading, DetectorState]]] = []
        cleared: list[tuple[Reading, DetectorState]] = []
        for envelope, reading in sorted(readings, key=lambda item: (item[1].sensor_id, item[1].observed_at)):
            state = states[reading.sensor_id]
            new_state, change = self._detectors[reading.kind].step(
                state, reading.value, reading.observed_at.timestamp()
            )
            if new_state is state:
                result.stale += 1
                metrics.STALE_READINGS.labels(reading.kind).inc()
                continue
            states[reading.sensor_id] = new_state
            if change is AlarmChange.OPENED:
                opened.append((envelope, (reading, new_state)))
            elif change is AlarmChange.CLEARED:
                cleared.append((reading, state))
        pending.extend(self._clear_event(reading, state, now) for reading, state in cleared)
        pending.extend(self._isolated(self._alarm_outcomes, opened, now, "discover"))
        await self._emit(pending, result)
        changed = {sid: s for sid, s in states.items() if s != before.get(sid)}
        await self.detectors.save(changed)
        metrics.BATCH_SECONDS.labels("readings").observe(time.perf_counter() - started)
        return result

    def _alarm_outcomes(
        self, items: list[tuple[Envelope, tuple[Reading, DetectorState]]], now: datetime
    ) -> list[_Pending]:
        if not items:
            return []
        opened = [alarm for _, alarm in items]
        categories = [self.pack.spec.sensor_kinds[r.kind].category for r, _ in opened]
        lats = np.array([r.lat for r, _ in opened])
        lons = np.array([r.lon for r, _ in opened])
        assignments = self.dispatcher.assign_batch(
            categories, lats, lons, [1.0] * len(opened), sources=["sensor"] * len(opened), now=now
        )
        pending = []
        for (reading, state), category, assignment in zip(opened, categories, assignments, strict=True):
            incident_id = stable_id("inc", "sensor", reading.sensor_id, repr(state.since))
            incident = {
                "schema": CONTRACT_VERSION,
                "incident_id": incident_id,
                "origin": "sensor",
                "status": "open",
                "category": category,
                "confidence": 1.0,
                "classified_by": "sensor_threshold",
                "top": [[category, 1.0]],
                "lat": reading.lat,
                "lon": reading.lon,
                "address": None,
                "source_ids": [f"sensor:{reading.sensor_id}"],
                "sensor": {
                    "sensor_id": reading.sensor_id,
                    "kind": reading.kind,
                    "value": reading.value,
                    "unit": reading.unit,
                },
                "first_seen": iso(reading.observed_at),
                "last_seen": iso(reading.observed_at),
                "opened_at": iso(now),
            }
            records = self._task_records(incident, assignment.unit_id, assignment.rule, assignment.explanation, now)
            pending.append(_Pending(f"alarm:{incident_id}", records, "alarm"))
            metrics.INCIDENTS.labels("sensor", category).inc()
            metrics.ALARMS.labels(reading.kind, "opened").inc()
        return pending

    def _clear_event(self, reading: Reading, open_state: DetectorState, now: datetime) -> _Pending:
        incident_id = stable_id("inc", "sensor", reading.sensor_id, repr(open_state.since))
        event = {
            "schema": CONTRACT_VERSION,
            "event_id": stable_id("evt", incident_id, "sensor_clear"),
            "type": "sensor_clear",
            "incident_id": incident_id,
            "task_id": None,
            "actor": f"sensor:{reading.sensor_id}",
            "value": reading.value,
            "observed_at": iso(reading.observed_at),
            "at": iso(now),
        }
        metrics.ALARMS.labels(reading.kind, "cleared").inc()
        return _Pending(f"clear:{incident_id}", [(self.topics.feedback, incident_id, event)], "clear")

    # ------------------------------------------------------------------ shared

    def _decoded(
        self, envelopes: Sequence[Envelope], decode: Callable[..., Any], now: datetime, pending: list[_Pending]
    ) -> list[tuple[Envelope, Any]]:
        """Decode each envelope; a record that breaks the contract becomes a dead letter in ``pending``."""
        decoded = []
        for envelope in envelopes:
            try:
                decoded.append((envelope, decode(envelope.value, now=now, max_skew=self.max_skew)))
            except Rejected as exc:
                pending.append(self._dead_letter("validate", exc.code, exc.reason, envelope, now))
        return decoded

    def _isolated(
        self,
        build: Callable[[list[Any], datetime], list[_Pending]],
        items: list[tuple[Envelope, Any]],
        now: datetime,
        stage: str,
    ) -> list[_Pending]:
        """Run ``build`` on the whole batch; if it fails, item by item, dead-lettering the culprits."""
        try:
            return build(items, now)
        except Exception:  # noqa: BLE001 - one bad record must not stop the stream
            log.exception("%s failed on a batch of %d; retrying one by one", stage, len(items))
        pending = []
        for item in items:
            try:
                pending.extend(build([item], now))
            except Exception as exc:  # noqa: BLE001
                log.exception("%s failed on %s:%s@%s", stage, item[0].topic, item[0].partition, item[0].offset)
                pending.append(
                    self._dead_letter(stage, "processing_error", f"{type(exc).__name__}: {exc}", item[0], now)
                )
        return pending

    def _dead_letter(self, stage: str, code: str, reason: str, envelope: Envelope, now: datetime) -> _Pending:
        record = dead_letter(stage, code, reason, envelope, now)
        key = record["deadletter_id"]
        return _Pending(f"dlq:{key}", [(self.topics.deadletter, key, record)], f"deadletter:{stage}:{code}")

    async def _emit(self, pending: list[_Pending], result: BatchResult) -> None:
        claims = await self.ledger.claim([(p.key, {"records": p.records}) for p in pending])
        futures = []
        to_confirm = []
        sent: list[tuple[_Pending, list[Any]]] = []
        for item, claim in zip(pending, claims, strict=True):
            if claim.status == SENT:
                result.duplicates += 1
                metrics.DUPLICATES.labels(item.kind.split(":")[0]).inc()
                continue
            records = claim.payload["records"] if claim.status == RESEND else item.records
            item_futures = []
            for topic, key, record in records:
                value = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
                item_futures.append(await self.sink.send(topic, key.encode("utf-8"), value))
            futures.extend(item_futures)
            to_confirm.append(claim.key)
            sent.append((item, records))
        if futures:
            await asyncio.gather(*futures)
        await self.ledger.confirm(to_confirm)
        done = time.time()
        for item, records in sent:
            result.emitted += len(records)
            if item.kind.startswith("deadletter"):
                _, stage, code = item.kind.split(":")
                result.dead_lettered += 1
                result.reasons[code] = result.reasons.get(code, 0) + 1
                metrics.DEAD_LETTERS.labels(stage, code).inc()
                continue
            result.accepted += 1
            if any(topic == self.topics.tasks for topic, _, _ in records):
                result.tasks += 1
            if item.kind == "report" and item.appended_at is not None:
                metrics.REPORT_TO_TASK.observe(max(0.0, done - item.appended_at))
