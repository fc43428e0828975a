"""The engine: one batch of input records in, incidents, tasks, feedback and dead letters out.

Each input stream is a short list of stages (streams/pipeline/), declared
below; every stage is a function or a small class from batch to batch in its
own module, and what each returns is reported to a :class:`Sensor` at the
boundary (Prometheus in the worker, a recording fake in tests). Nothing here
imports Faust or Kafka, so the engine runs the same under a worker, a benchmark
or a unit test with in-memory stores.

Every report and alarm becomes a *sighting*. A confident sighting either opens
an incident (which is dispatched: one task) or joins an open incident about the
same problem (no new task: the unit already has it). An unsure report waits in
the triage queue for a person; their decision is a feedback event that
re-enters here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from classifiers import TextClassifier
from classifiers.merge import MergePolicy
from classifiers.store import IncidentIndex
from classifiers.triage import TriagePolicy
from dispatch import CityPack, Dispatcher
from dispatch.store import AsyncUnitStore
from feedback import Policy
from feedback.reasons import TaskReasons
from streams.ids import sensor_source
from streams.outcomes import Envelope
from streams.pipeline.batch import BatchResult, DeadLetter, Emission, Sink, dead_lettered
from streams.pipeline.build import Records
from streams.pipeline.classify import Classify
from streams.pipeline.decode import decode, first_of_each_report
from streams.pipeline.detect import Detect
from streams.pipeline.discover import Discover, Discovered, UnitState
from streams.pipeline.emit import Emitter, count
from streams.pipeline.isolate import isolated
from streams.pipeline.sensor import PrometheusSensor, Sensor
from streams.pipeline.triage import TriageDecisions
from streams.records import decode_reading, decode_report
from streams.sinks import delivered
from streams.state import DetectorStore, Ledger, TriageQueue
from streams.topics import Topics

log = logging.getLogger(__name__)

__all__ = ["BatchResult", "Engine", "Sink"]


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
        policy: Policy,
        *,
        merge_policy: MergePolicy | None = None,
        triage_policy: TriagePolicy | None = None,
        max_skew: timedelta = timedelta(days=1),
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        units: AsyncUnitStore | None = None,
        sensor: Sensor | None = None,
        reasons: TaskReasons | None = None,
    ) -> None:
        self.pack = pack
        self.topics = topics
        self.sink = sink
        self.clock = clock
        self.max_skew = max_skew
        self.detectors = detectors
        self.triage = triage
        self.sensor = sensor or PrometheusSensor()
        self.dispatcher = Dispatcher(pack)
        self.merge_policy = merge_policy or MergePolicy()
        self.unit_state = UnitState(pack, units)
        triage_policy = triage_policy or TriagePolicy(0.25)
        self.records = Records(pack, topics, policy, triage_policy)
        # the stages
        self.classify = Classify(pack, classifier, triage_policy)
        self.detect = Detect(pack)
        self.discover = Discover(self.dispatcher, incidents, triage, self.unit_state, self.merge_policy, self.records)
        self.decisions = TriageDecisions(pack, triage, self.records)
        self.emit = Emitter(ledger, sink, reasons=reasons, tasks_topic=topics.tasks)
        self.incidents = incidents

    def use_model(self, classifier: TextClassifier, triage_policy: TriagePolicy, version: str) -> None:
        """Classify from the next batch on with another model and its thresholds (streams/modelwatch.py).

        Called between batches only: a batch is classified, and its triage reasons worded, by one model.
        """
        self.classify.classifier = classifier
        self.classify.triage_policy = triage_policy
        self.classify.model_version = version
        self.records.triage_policy = triage_policy

    # ----------------------------------------------------------------- reports

    async def process_reports(self, envelopes: Sequence[Envelope]) -> BatchResult:
        """decode -> deduplicate -> classify -> triage split -> merge -> route -> build records -> emit"""
        started, now = time.perf_counter(), self.clock()
        result = BatchResult(consumed=len(envelopes))
        decoded, rejected = decode(envelopes, decode_report, now, self.max_skew)
        reports, repeats = first_of_each_report(decoded)
        result.duplicates += repeats
        self.sensor.duplicate("report", repeats)
        self.sensor.ingested("report", [report.source for _, report in reports])
        classified, failed = isolated(self.classify, [(e, (e, r)) for e, r in reports], now, "discover",
                                      ids=lambda item: {"report_id": item[1].report_id})  # fmt: skip
        sighted = [sighting for _, sighting in classified]
        self.sensor.classified(sighted, [s.confidence for s in sighted if s.method == "text_model"])
        discovered = await self.discover(sighted, now)
        self._observe(discovered)
        emissions = self._dead_letters([*rejected, *failed, *discovered.failed], now) + discovered.emissions
        await self._emit(emissions, result, "reports")
        self.sensor.batch_done("reports", time.perf_counter() - started)
        return result

    # ---------------------------------------------------------------- readings

    async def process_readings(self, envelopes: Sequence[Envelope]) -> BatchResult:
        """decode -> known kind -> detect -> merge -> route -> build records -> emit -> save detectors"""
        started, now = time.perf_counter(), self.clock()
        result = BatchResult(consumed=len(envelopes))
        decoded, rejected = decode(envelopes, decode_reading, now, self.max_skew)
        readings, unknown = self.detect.known(decoded)
        self.sensor.ingested("reading", ["sensor"] * len(readings))
        stored = await self.detectors.load(sorted({r.sensor_id for _, r in readings}))
        detected = self.detect(readings, stored)
        result.stale += len(detected.stale)
        self.sensor.readings(detected.stale, detected.opened_kinds, detected.cleared_kinds)
        discovered = await self.discover(detected.opened, now)
        self._observe(discovered)
        cleared = []
        for reading, open_state in detected.cleared:  # told to the incident the alarm opened or joined
            source = sensor_source(reading.sensor_id, open_state.since)
            incident_id = await self.incidents.incident_of(source)
            cleared.append(self.records.cleared(reading, open_state, incident_id, now))
        emissions = self._dead_letters([*rejected, *unknown, *discovered.failed], now)
        await self._emit([*emissions, *discovered.emissions, *cleared], result, "readings")
        # saved once the alarms are out: a batch whose transaction does not commit comes again and must find the
        # detectors as they were, or its readings would look stale and its alarms never be raised
        await delivered(self.emit.sink, lambda: self.detectors.save(detected.changed, detected.latest))
        self.sensor.batch_done("readings", time.perf_counter() - started)
        return result

    # ---------------------------------------------------------------- feedback

    async def process_feedback(self, envelopes: Sequence[Envelope]) -> BatchResult:
        """Triage decisions: parse -> check -> merge -> route -> build records -> emit -> leave the queue.

        Other lifecycle events pass by (streams/lifecycle.py applies them).
        """
        now = self.clock()
        result = BatchResult(consumed=len(envelopes))
        decisions = await self.decisions(envelopes, now)
        discovered = await self.discover(decisions.sighted, now)
        self._observe(discovered)
        emissions = self._dead_letters([*decisions.rejected, *discovered.failed], now)
        await self._emit([*emissions, *decisions.labels, *discovered.emissions], result, "feedback")

        async def done() -> None:  # once the decisions' outcomes are out: a replay finds the items still waiting
            for sighted in decisions.sighted:
                await self.triage.done(sighted.new_incident_id)

        await delivered(self.emit.sink, done)
        return result

    # ------------------------------------------------------------------ shared

    async def reject(self, envelopes: Sequence[Envelope], stage: str, code: str, reason: str) -> BatchResult:
        """Dead-letter records that could not be processed at all, keeping their exact bytes."""
        now = self.clock()
        result = BatchResult(consumed=len(envelopes))
        why = DeadLetter(stage, code, reason)
        await self._emit(self._dead_letters([(e, why) for e in envelopes], now), result, stage)
        return result

    async def unit_loads(self) -> tuple[dict[str, int] | None, dict[str, object] | None]:
        """The units' loads and field teams' positions as dispatch reads them (the lifecycle re-routes with them)."""
        return await self.unit_state.read()

    def _dead_letters(self, rejected: Sequence[tuple[Envelope, DeadLetter]], now: datetime) -> list[Emission]:
        return [dead_lettered(why, envelope, now, self.topics.deadletter) for envelope, why in rejected]

    def _observe(self, discovered: Discovered) -> None:
        self.sensor.discovered(discovered.emissions, discovered.categories)
        for assignment in discovered.assignments:
            self.sensor.assigned(assignment.unit_id, assignment.rule)

    async def _emit(self, emissions: list[Emission], result: BatchResult, stream: str) -> None:
        sent, skipped = await self.emit(emissions)
        for emission in skipped:
            self.sensor.duplicate(emission.label)
        count(result, sent, skipped, self.topics.tasks)
        self.sensor.emitted(stream, sent, self.topics.tasks, time.time())
