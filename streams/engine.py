"""The engine: one batch of input records in, incidents, tasks, feedback and dead letters out.

Agents hand the engine a list of :class:`Envelope`; the engine decodes, calls
the pure domain cores (``classifiers``, ``dispatch``, ``feedback``), makes every
side effect idempotent (the ledger, the incident index, the triage queue, all
in Redis) and sends the results through a :class:`Sink`. Nothing here imports
Faust, so the engine runs the same under a worker, a benchmark or a test.

Every report and alarm becomes a *sighting*. A confident sighting either opens
an incident (which is dispatched: one task) or joins an open incident about the
same problem (no new task: the unit already has it). An unsure report waits in
the triage queue for a person; their decision is a feedback event that
re-enters here.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import orjson

from classifiers import AdaptiveState, AlarmChange, DetectorState, TextClassifier, ThresholdDetector, detector_for
from classifiers.merge import MergePolicy, merge_tokens
from classifiers.store import IncidentIndex, MergeDecision, Sighting
from classifiers.triage import TriagePolicy
from dispatch import CityPack, Dispatcher
from dispatch.store import AsyncUnitStore
from feedback import BusinessCalendar, deadline_for
from streams import metrics
from streams.outcomes import Envelope, dead_letter, event, iso, iso_ts, stable_id, task_id_for
from streams.records import Reading, Rejected, Report, decode_reading, decode_report, parse_object
from streams.sinks import delivered
from streams.state import RESEND, SENT, DetectorStore, Ledger, TriageQueue, with_retry
from streams.topics import CONTRACT_VERSION, Topics

log = logging.getLogger(__name__)

Record = tuple[str, str, dict[str, Any]]  # (topic, key, record)
# An incident record lists at most this many of its sources (all of them in Redis, each join in a `merged` event):
# re-listing hundreds of sources on every join would make the stream grow with the square of the reports.
MAX_LISTED_SOURCES = 50


class Sink(Protocol):
    """Where output records go (streams/sinks.py): at once, acknowledged by the broker, or in the unit's transaction.

    The records of one call may be sent in any grouping, but records with the
    same topic and key keep their order (they land on one partition, in order).
    What must wait until the records are durable (the ledger's marks) goes
    through ``streams.sinks.delivered``.
    """

    async def send_all(self, records: Sequence[tuple[str, bytes, bytes]]) -> None: ...


@dataclass
class BatchResult:
    """What one batch did; for logs, progress output and tests."""

    consumed: int = 0
    accepted: int = 0
    dead_lettered: int = 0
    duplicates: int = 0
    emitted: int = 0
    tasks: int = 0
    merged: int = 0
    triaged: int = 0
    stale: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class _Pending:
    """Records to emit for one ledger key."""

    key: str
    records: list[Record]
    kind: str
    appended_at: float | None = None


@dataclass(frozen=True)
class _Sighted:
    """A report or an alarm on its way to an incident."""

    envelope: Envelope
    ledger_key: str
    source_id: str
    new_incident_id: str
    origin: str  # "report" or "sensor"
    category: str | None
    confidence: float
    method: str
    top: list[Any]
    lat: float
    lon: float
    event_time: datetime
    text: str
    address: str | None = None
    sensor: dict[str, Any] | None = None
    triage: bool = False
    decided_by: str | None = None
    channel: str = "sensor"  # the report's source (app, phone, ...) for rules that match on it


def _calendar(pack: CityPack) -> BusinessCalendar:
    spec = pack.spec.calendar
    return BusinessCalendar(
        zone=pack.zone,
        start=spec.working_hours.start,
        end=spec.working_hours.end,
        days=frozenset(spec.working_hours.days),
        holidays=frozenset(date.fromisoformat(day) for day in spec.holidays),
    )


def _detector(spec: Any) -> Any:
    """The detector a city pack's sensor kind asks for."""
    limits = None
    if spec.open_at is not None and spec.close_at is not None and spec.direction != "both":
        limits = ThresholdDetector(spec.open_at, spec.close_at, spec.direction)
    if spec.detector == "threshold":
        return limits
    return detector_for(spec.detector, limits, direction=spec.direction, **spec.adaptive)


class Engine:
    """Turns batches of reports, readings and triage decisions into outputs for one city pack."""

    def __init__(
        self,
        pack: CityPack,
        classifier: TextClassifier,
        ledger: Ledger,
        detectors: DetectorStore,
        incidents: IncidentIndex,
        triage: TriageQueue,
        sink: Sink,
        topics: Topics,
        *,
        merge_policy: MergePolicy | None = None,
        triage_policy: TriagePolicy | None = None,
        max_skew: timedelta = timedelta(days=1),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        units: AsyncUnitStore | None = None,
    ) -> None:
        self.pack = pack
        self.dispatcher = Dispatcher(pack)
        self.classifier = classifier
        self.ledger = ledger
        self.detectors = detectors
        self.incidents = incidents
        self.triage = triage
        self.sink = sink
        self.topics = topics
        self.merge_policy = merge_policy or MergePolicy()
        self.triage_policy = triage_policy or TriagePolicy(0.25)
        self.max_skew = max_skew
        self.clock = clock
        self.calendar = _calendar(pack)
        self.units = units
        self._capacity_units = [u.id for u in pack.spec.units if u.capacity is not None]
        self._field_teams = [u.id for u in pack.spec.units if u.kind == "field_team"]
        self._detectors = {kind: _detector(spec) for kind, spec in pack.spec.sensor_kinds.items()}
        self._sla_now: datetime | None = None
        self._sla_cache: dict[str | None, dict[str, Any]] = {}

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
                metrics.tally(metrics.DUPLICATES, "report")
                continue
            seen.add(report.report_id)
            valid.append((envelope, report))
            metrics.tally(metrics.INGESTED, "report", metrics.source_label(report.source))
        classified, failed = self._isolated(self._classify, [(e, (e, r)) for e, r in valid], now, "discover")
        pending.extend(failed)
        pending.extend(await self._discover([sighting for _, sighting in classified], now))
        await self._emit(pending, result, "reports")
        metrics.child(metrics.BATCH_SECONDS, "reports").observe(time.perf_counter() - started)
        metrics.flush()
        return result

    def _classify(self, items: list[tuple[Envelope, Report]], now: datetime) -> list[_Sighted]:
        """Category from the reporter's service code when the city knows it, else from the text model."""
        result: list[_Sighted] = []
        by_text: list[int] = []
        for index, (envelope, report) in enumerate(items):
            code = report.service_code
            known = code is not None and self.pack.category(code) is not None
            result.append(
                _Sighted(
                    envelope=envelope,
                    ledger_key=f"report:{report.report_id}",
                    source_id=f"report:{report.report_id}",
                    new_incident_id=stable_id("inc", "report", report.report_id),
                    origin="report",
                    category=code if known else None,
                    confidence=1.0,
                    method="service_code",
                    top=[[code, 1.0]] if known else [],
                    lat=report.lat,
                    lon=report.lon,
                    event_time=report.reported_at,
                    text=report.text,
                    address=report.address,
                    channel=report.source,
                )
            )
            if not known:
                by_text.append(index)
        if by_text:
            predictions = self.classifier.predict([items[i][1].text for i in by_text])
            for index, prediction in zip(by_text, predictions, strict=True):
                in_pack = self.pack.category(prediction.category) is not None
                unsure = not in_pack or self.triage_policy.needs_triage(prediction)
                result[index] = replace(
                    result[index],
                    category=prediction.category if in_pack else None,
                    confidence=prediction.confidence,
                    method="text_model",
                    top=[list(pair) for pair in prediction.top],
                    triage=unsure,
                )
                metrics.CONFIDENCE.observe(prediction.confidence)
        for sighting in result:
            metrics.tally(metrics.CLASSIFIED, sighting.method)
        return result

    # --------------------------------------------------------------- discovery

    async def _discover(self, sighted: list[_Sighted], now: datetime) -> list[_Pending]:
        """Merge or open, dispatch what opened, queue what is unsure; build the records of each."""
        confident = [s for s in sighted if not s.triage and s.category is not None]
        unsure = [s for s in sighted if s.triage or s.category is None]
        requests = [self._sighting(s) for s in confident]
        decisions = (
            await with_retry("merge", lambda: self.incidents.merge_or_open(requests, list_sources=MAX_LISTED_SOURCES))
            if requests
            else []
        )
        opened = [(s, d) for s, d in zip(confident, decisions, strict=True) if d.opened]
        joined = [(s, d) for s, d in zip(confident, decisions, strict=True) if not d.opened]
        pending: list[_Pending] = []
        loads, positions = await self.unit_state() if opened else ({}, {})
        assign = functools.partial(self._assign, loads=loads, positions=positions)
        assigned, failed = self._isolated(assign, [(s.envelope, (s, d)) for s, d in opened], now, "dispatch")
        if self.units is not None and assigned:
            # count the new tasks against their units (a set per unit: a redelivered task counts once)
            holds = [(a.unit_id, task_id_for(d.incident_id)) for (_, d), a in assigned]
            await with_retry("unit_open_tasks", lambda: self.units.open_tasks(holds))
        pending.extend(failed)
        for (sighting, decision), assignment in assigned:
            pending.append(self._opened(sighting, decision, assignment, now))
        for sighting, decision in joined:
            pending.append(self._joined(sighting, decision, list(decision.listed), now))
        if unsure:
            await self.triage.add([(s.new_incident_id, now.timestamp(), self._triage_item(s)) for s in unsure])
            pending.extend(self._queued(s, now) for s in unsure)
        return pending

    def _sighting(self, s: _Sighted) -> Sighting:
        assert s.category is not None
        rule = self.merge_policy.rule_for(s.category)
        return Sighting(
            source_id=s.source_id,
            new_incident_id=s.new_incident_id,
            category=s.category,
            family=rule.family,
            lat=s.lat,
            lon=s.lon,
            event_ts=s.event_time.timestamp(),
            radius_m=rule.radius_m,
            window_s=rule.window_s,
            tokens=merge_tokens(s.text),
            origin=s.origin,
            confidence=s.confidence,
            classified_by=s.method,
        )

    async def unit_state(self) -> tuple[dict[str, int] | None, dict[str, Any] | None]:
        """Open tasks of units with a capacity, and field teams' positions, for load-aware dispatch."""
        if self.units is None:
            return None, None
        units = self.units
        loads = await with_retry("unit_loads", lambda: units.loads(self._capacity_units))
        positions = await with_retry("unit_positions", lambda: units.positions(self._field_teams))
        return loads, positions

    def _assign(
        self,
        items: list[tuple[_Sighted, MergeDecision]],
        now: datetime,
        *,
        loads: dict[str, int] | None = None,
        positions: dict[str, Any] | None = None,
    ) -> list[Any]:
        categories = [d.category for _, d in items]
        lats = np.array([d.lat for _, d in items])
        lons = np.array([d.lon for _, d in items])
        confidences = [s.confidence for s, _ in items]
        sources = [s.channel for s, _ in items]
        return self.dispatcher.assign_batch(
            categories, lats, lons, confidences, sources=sources, now=now, loads=loads, positions=positions or None
        )

    def _incident(
        self,
        s: _Sighted,
        incident_id: str,
        status: str,
        now: datetime,
        *,
        category: str | None,
        first: float,
        last: float,
        lat: float,
        lon: float,
        source_ids: list[str],
        source_count: int = 1,
    ) -> dict[str, Any]:
        record: dict[str, Any] = {
            "schema": CONTRACT_VERSION,
            "incident_id": incident_id,
            "origin": s.origin,
            "status": status,
            "category": category,
            "confidence": s.confidence,
            "classified_by": s.method,
            "top": s.top,
            "lat": lat,
            "lon": lon,
            "address": s.address,
            "source_ids": source_ids,
            "source_count": source_count,
            "first_seen": iso_ts(first),
            "last_seen": iso_ts(last),
            "updated_at": iso(now),
        }
        if s.sensor is not None:
            record["sensor"] = s.sensor
        return record

    def _opened(self, s: _Sighted, d: MergeDecision, assignment: Any, now: datetime) -> _Pending:
        incident = self._incident(
            s,
            d.incident_id,
            "open",
            now,
            category=d.category,
            first=d.first_seen,
            last=d.last_seen,
            lat=d.lat,
            lon=d.lon,
            source_ids=[s.source_id],
        )
        incident["opened_at"] = iso(now)
        records = [(self.topics.incidents, d.incident_id, incident)]
        records += self._task_records(
            incident, assignment.unit_id, assignment.rule, assignment.explanation, now, assignment.co_notify
        )
        metrics.tally(metrics.INCIDENTS, s.origin, d.category)
        return _Pending(s.ledger_key, records, s.origin, s.envelope.timestamp)

    def _joined(self, s: _Sighted, d: MergeDecision, source_ids: list[str], now: datetime) -> _Pending:
        # the incident keeps what opened it: its origin and how sure its category is
        s_as_incident = replace(s, origin=d.origin, confidence=d.confidence, method=d.classified_by, top=[],
                                sensor=None, address=None)  # fmt: skip
        incident = self._incident(
            s_as_incident,
            d.incident_id,
            "open",
            now,
            category=d.category,
            first=d.first_seen,
            last=d.last_seen,
            lat=d.lat,
            lon=d.lon,
            source_ids=source_ids if s.source_id in source_ids else sorted([*source_ids[:-1], s.source_id]),
            source_count=d.sources,
        )
        merged = event(
            "merged",
            d.incident_id,
            "engine",
            now,
            key=s.source_id,
            source_id=s.source_id,
            distance_m=d.distance_m,
            similarity=d.similarity,
            sources=d.sources,
        )
        metrics.tally(metrics.MERGES, s.origin, d.category)
        return _Pending(
            s.ledger_key,
            [(self.topics.incidents, d.incident_id, incident), (self.topics.feedback, d.incident_id, merged)],
            f"merged-{s.origin}",
        )

    def _queued(self, s: _Sighted, now: datetime) -> _Pending:
        ts = s.event_time.timestamp()
        incident = self._incident(
            s,
            s.new_incident_id,
            "triage",
            now,
            category=s.category,
            first=ts,
            last=ts,
            lat=s.lat,
            lon=s.lon,
            source_ids=[s.source_id],
        )
        why = (
            f"confidence {s.confidence:.2f} is below the triage threshold "
            f"{self.triage_policy.threshold_for(s.category):.2f} for {s.category}"
            if s.category is not None
            else "no category of this city fits the report"
        )
        queued = event(
            "triage_needed",
            s.new_incident_id,
            "engine",
            now,
            unit_id=self.pack.spec.fallback_unit,
            guess=s.category,
            confidence=s.confidence,
            top=s.top,
            why=why,
        )
        metrics.tally(metrics.TRIAGE, "queued")
        return _Pending(
            s.ledger_key,
            [(self.topics.incidents, s.new_incident_id, incident), (self.topics.feedback, s.new_incident_id, queued)],
            "triage",
        )

    def _triage_item(self, s: _Sighted) -> dict[str, Any]:
        return {
            "source_id": s.source_id,
            "channel": s.channel,
            "text": s.text,
            "lat": s.lat,
            "lon": s.lon,
            "address": s.address,
            "event_time": iso(s.event_time),
            "guess": s.category,
            "confidence": s.confidence,
            "top": s.top,
        }

    def _task_records(
        self,
        incident: dict[str, Any],
        unit_id: str,
        rule: str,
        explanation: dict[str, Any],
        now: datetime,
        co_notify: tuple[str, ...] = (),
    ) -> list[Record]:
        incident_id = incident["incident_id"]
        task_id = task_id_for(incident_id)
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
            "co_notify": list(co_notify),
        }
        # the work order is built from this event (streams.lifecycle): it carries what the order needs
        dispatched = event("dispatched", incident_id, "engine", now, task_id=task_id, unit_id=unit_id, attempt=1,
                           category=incident["category"], lat=incident["lat"], lon=incident["lon"],
                           address=incident.get("address"), origin=incident["origin"],
                           source_id=incident["source_ids"][0], rule=rule)  # fmt: skip
        metrics.tally(metrics.ASSIGNMENTS, unit_id, rule)
        records = [(self.topics.tasks, incident_id, task), (self.topics.feedback, incident_id, dispatched)]
        # units near a boundary, or named by a rule, hear about it without owning it
        for other in co_notify:
            notice = event("co_notified", incident_id, "engine", now, task_id=task_id, unit_id=other, key=other,
                           owner=unit_id, category=incident["category"])  # fmt: skip
            records.append((self.topics.feedback, incident_id, notice))
        return records

    def _sla(self, category: str | None, now: datetime) -> dict[str, Any]:
        """The deadlines of a task dispatched ``now``; the same for every task of a batch (one clock reading)."""
        if self._sla_now != now:
            self._sla_now, self._sla_cache = now, {}
        cached = self._sla_cache.get(category)
        if cached is None:
            cached = self._sla_cache[category] = self._deadlines(category, now)
        return dict(cached)

    def _deadlines(self, category: str | None, now: datetime) -> dict[str, Any]:
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
            metrics.tally(metrics.INGESTED, "reading", "sensor")
        kinds = {r.sensor_id: r.kind for _, r in readings}
        stored = await self.detectors.load(sorted(kinds))
        states = {sid: self._state(kinds[sid], alarm, model) for sid, (alarm, model) in stored.items()}
        before = dict(states)
        opened: list[_Sighted] = []
        cleared: list[tuple[Reading, Any]] = []
        for envelope, reading in sorted(readings, key=lambda item: (item[1].sensor_id, item[1].observed_at)):
            state = states[reading.sensor_id]
            observed = reading.observed_at.timestamp()
            detector = self._detectors[reading.kind]
            if isinstance(detector, ThresholdDetector):
                new_state, change = detector.step(state, reading.value, observed)
            else:  # the learnt daily pattern runs on the city's wall clock (DST included)
                offset = reading.observed_at.astimezone(self.pack.zone).utcoffset()
                new_state, change = detector.step(
                    state, reading.value, observed, offset.total_seconds() if offset else 0.0
                )
            if new_state is state:
                result.stale += 1
                metrics.tally(metrics.STALE_READINGS, reading.kind)
                continue
            states[reading.sensor_id] = new_state
            if change is AlarmChange.OPENED:
                opened.append(self._alarm(envelope, reading, new_state))
                metrics.tally(metrics.ALARMS, reading.kind, "opened")
            elif change is AlarmChange.CLEARED:
                cleared.append((reading, state))
                metrics.tally(metrics.ALARMS, reading.kind, "cleared")
        pending.extend(await self._discover(opened, now))
        pending.extend(await self._clear_events(cleared, now))
        await self._emit(pending, result, "readings")
        changed = {sid: s for sid, s in states.items() if s != before.get(sid)}
        # saved once the alarms are out: a batch whose transaction does not commit comes again and must find the
        # detectors as they were, or its readings would look stale and its alarms never be raised
        await delivered(self.sink, lambda: self.detectors.save(changed))
        metrics.child(metrics.BATCH_SECONDS, "readings").observe(time.perf_counter() - started)
        metrics.flush()
        return result

    def _state(self, kind: str, alarm: DetectorState, model: bytes | None) -> Any:
        """The detector state a sensor's kind needs, rebuilt from what Redis kept."""
        if isinstance(self._detectors[kind], ThresholdDetector):
            return alarm
        if model is not None:
            try:
                return AdaptiveState.from_bytes(model)
            except ValueError:
                log.warning("unreadable adaptive model for a %s sensor; relearning its pattern", kind)
        return AdaptiveState(alarm=alarm.alarm, since=alarm.since, last_observed=alarm.last_observed)

    def _alarm(self, envelope: Envelope, reading: Reading, state: Any) -> _Sighted:
        kind = self.pack.spec.sensor_kinds[reading.kind]
        source_id = f"sensor:{reading.sensor_id}:{state.since!r}"
        category = self.pack.category(kind.category)
        return _Sighted(
            envelope=envelope,
            ledger_key=f"alarm:{source_id}",
            source_id=source_id,
            new_incident_id=stable_id("inc", "sensor", reading.sensor_id, repr(state.since)),
            origin="sensor",
            category=kind.category,
            confidence=1.0,
            method="sensor_threshold"
            if isinstance(self._detectors[reading.kind], ThresholdDetector)
            else "sensor_pattern",
            top=[[kind.category, 1.0]],
            lat=reading.lat,
            lon=reading.lon,
            event_time=reading.observed_at,
            text=category.name if category else kind.category,
            sensor={"sensor_id": reading.sensor_id, "kind": reading.kind, "value": reading.value, "unit": reading.unit},
        )

    async def _clear_events(self, cleared: list[tuple[Reading, Any]], now: datetime) -> list[_Pending]:
        """The alarm's sensor is back to normal: tell the incident the alarm joined or opened."""
        pending = []
        for reading, open_state in cleared:
            source_id = f"sensor:{reading.sensor_id}:{open_state.since!r}"
            incident_id = await with_retry("incident_of", lambda s=source_id: self.incidents.incident_of(s))
            if incident_id is None:  # the alarm never reached the index (e.g. its dispatch failed)
                incident_id = stable_id("inc", "sensor", reading.sensor_id, repr(open_state.since))
            clear = event(
                "sensor_clear",
                incident_id,
                f"sensor:{reading.sensor_id}",
                now,
                key=source_id,
                value=reading.value,
                observed_at=iso(reading.observed_at),
            )
            pending.append(_Pending(f"clear:{source_id}", [(self.topics.feedback, incident_id, clear)], "clear"))
        return pending

    # ---------------------------------------------------------------- feedback

    async def process_feedback(self, envelopes: Sequence[Envelope]) -> BatchResult:
        """Apply triage decisions from the ops centre; other lifecycle events pass by."""
        now = self.clock()
        result = BatchResult(consumed=len(envelopes))
        pending: list[_Pending] = []
        decided: list[_Sighted] = []
        for envelope in envelopes:
            try:
                record = parse_object(envelope.value)
            except Rejected as exc:
                pending.append(self._dead_letter("feedback", exc.code, exc.reason, envelope, now))
                continue
            if record.get("type") != "triage_decision":
                continue
            sighted = await self._decision(envelope, record, now, pending)
            if sighted is not None:
                decided.append(sighted)
        pending.extend(await self._discover(decided, now))
        await self._emit(pending, result, "feedback")

        async def done() -> None:  # once the decisions' outcomes are out: a replay finds the items still waiting
            for sighted in decided:
                await self.triage.done(sighted.new_incident_id)

        await delivered(self.sink, done)
        return result

    async def _decision(
        self, envelope: Envelope, record: dict[str, Any], now: datetime, pending: list[_Pending]
    ) -> _Sighted | None:
        incident_id, category, by = record.get("incident_id"), record.get("category"), record.get("decided_by")
        if not isinstance(incident_id, str) or not isinstance(category, str) or not isinstance(by, str) or not by:
            reason = "a triage_decision needs string fields incident_id, category and decided_by"
            pending.append(self._dead_letter("triage", "missing_field", reason, envelope, now))
            return None
        if self.pack.category(category) is None:
            reason = f"category {category!r} is not in city pack {self.pack.name}"
            pending.append(self._dead_letter("triage", "unknown_category", reason, envelope, now))
            return None
        item = await self.triage.get(incident_id)
        if item is None:
            reason = f"incident {incident_id} is not waiting in the triage queue"
            pending.append(self._dead_letter("triage", "not_in_triage", reason, envelope, now))
            return None
        metrics.tally(metrics.TRIAGE, "decided")
        # the decision is a labelled example for retraining: text and category travel together
        label = event(
            "triaged",
            incident_id,
            f"person:{by}",
            now,
            key=category,
            category=category,
            guess=item["guess"],
            text=item["text"],
        )
        pending.append(_Pending(f"triaged:{incident_id}", [(self.topics.feedback, incident_id, label)], "triaged"))
        return _Sighted(
            envelope=envelope,
            ledger_key=f"decision:{incident_id}",
            source_id=item["source_id"],
            new_incident_id=incident_id,
            origin="report",
            category=category,
            confidence=1.0,
            method="person",
            top=[[category, 1.0]],
            lat=item["lat"],
            lon=item["lon"],
            event_time=datetime.fromisoformat(item["event_time"]),
            text=item["text"],
            address=item.get("address"),
            decided_by=by,
            channel=item.get("channel", "staff"),
        )

    # ------------------------------------------------------------------ shared

    async def reject(self, envelopes: Sequence[Envelope], stage: str, code: str, reason: str) -> BatchResult:
        """Dead-letter records that could not be processed at all, keeping their exact bytes."""
        now = self.clock()
        result = BatchResult(consumed=len(envelopes))
        await self._emit([self._dead_letter(stage, code, reason, e, now) for e in envelopes], result, stage)
        return result

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
        build: Callable[[list[Any], datetime], list[Any]],
        items: list[tuple[Envelope, Any]],
        now: datetime,
        stage: str,
    ) -> tuple[list[tuple[Any, Any]], list[_Pending]]:
        """Map ``build`` over the payloads of a batch; if it fails, item by item, dead-lettering the culprits.

        ``build`` returns one result per payload; the answer pairs each payload
        with its result, and lists the dead letters of the payloads that failed.
        """
        payloads = [payload for _, payload in items]
        try:
            return list(zip(payloads, build(payloads, now), strict=True)), []
        except Exception:  # noqa: BLE001 - one bad record must not stop the stream
            log.exception("%s failed on a batch of %d; retrying one by one", stage, len(items))
        results: list[tuple[Any, Any]] = []
        failed: list[_Pending] = []
        for envelope, payload in items:
            try:
                results.append((payload, build([payload], now)[0]))
            except Exception as exc:  # noqa: BLE001
                log.exception("%s failed on %s:%s@%s", stage, envelope.topic, envelope.partition, envelope.offset)
                reason = f"{type(exc).__name__}: {exc}"
                failed.append(self._dead_letter(stage, "processing_error", reason, envelope, now))
        return results, failed

    def _dead_letter(self, stage: str, code: str, reason: str, envelope: Envelope, now: datetime) -> _Pending:
        record = dead_letter(stage, code, reason, envelope, now)
        key = record["deadletter_id"]
        return _Pending(f"dlq:{key}", [(self.topics.deadletter, key, record)], f"deadletter:{stage}:{code}")

    async def _emit(self, pending: list[_Pending], result: BatchResult, stream: str) -> None:
        claims = await self.ledger.claim([(p.key, {"records": p.records}) for p in pending])
        out: list[tuple[str, bytes, bytes]] = []
        to_confirm = []
        sent: list[tuple[_Pending, list[Any]]] = []
        for item, claim in zip(pending, claims, strict=True):
            if claim.status == SENT:
                result.duplicates += 1
                metrics.tally(metrics.DUPLICATES, item.kind.split(":")[0])
                continue
            records = claim.payload["records"] if claim.status == RESEND else item.records
            out += [(topic, key.encode("utf-8"), orjson.dumps(record)) for topic, key, record in records]
            to_confirm.append(claim.key)
            sent.append((item, records))
        if out:
            await self.sink.send_all(out)
        await delivered(self.sink, lambda: self.ledger.confirm(to_confirm))
        done = time.time()
        for item, records in sent:
            result.emitted += len(records)
            if item.kind.startswith("deadletter"):
                _, stage, code = item.kind.split(":")
                result.dead_lettered += 1
                result.reasons[code] = result.reasons.get(code, 0) + 1
                metrics.tally(metrics.DEAD_LETTERS, stage, code)
                metrics.tally(metrics.PROCESSED, stream, "deadletter")
                continue
            result.accepted += 1
            result.merged += item.kind.startswith("merged")
            result.triaged += item.kind == "triage"
            opened = any(topic == self.topics.tasks for topic, _, _ in records)
            outcome = (
                "opened"
                if opened
                else "merged"
                if item.kind.startswith("merged")
                else "triage"
                if item.kind == "triage"
                else "other"
            )
            metrics.tally(metrics.PROCESSED, stream, outcome)
            if opened:
                result.tasks += 1
                if item.kind == "report" and item.appended_at is not None:
                    metrics.REPORT_TO_TASK.observe(max(0.0, done - item.appended_at))
        metrics.flush()
