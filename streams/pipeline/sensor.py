"""What the stages report, observed at their boundaries: Prometheus in the worker, a recording fake in tests.

The stages compute and return; the engine hands what each returned to a
:class:`Sensor`. :class:`PrometheusSensor` turns it into the counters and
histograms of docs/METRICS.md; :class:`RecordingSensor` keeps it as plain
tallies that a test can read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

from streams import metrics
from streams.pipeline.batch import Emission, Outcome, Sighted


class Sensor(Protocol):
    def ingested(self, kind: str, channels: Sequence[str]) -> None: ...
    def duplicate(self, label: str, count: int = 1) -> None: ...
    def classified(self, sighted: Sequence[Sighted], confidences: Sequence[float]) -> None: ...
    def readings(self, stale: Sequence[str], opened: Sequence[str], cleared: Sequence[str]) -> None: ...
    def discovered(self, emissions: Sequence[Emission], categories: Sequence[str | None]) -> None: ...
    def assigned(self, unit_id: str, rule: str) -> None: ...
    def emitted(self, stream: str, sent: Sequence[tuple[Emission, list[Any]]], tasks_topic: str, at: float) -> None: ...
    def batch_done(self, stream: str, seconds: float) -> None: ...


def outcome_label(emission: Emission, records: list[Any], tasks_topic: str) -> str:
    """The ``outcome`` label of cityloop_processed_total."""
    if emission.outcome is Outcome.DEAD_LETTER:
        return "deadletter"
    if any(topic == tasks_topic for topic, _, _ in records):
        return "opened"
    if emission.outcome in (Outcome.MERGED, Outcome.TRIAGE):
        return emission.outcome.value
    return "other"


class PrometheusSensor:
    """The worker's metrics (docs/METRICS.md)."""

    def ingested(self, kind: str, channels: Sequence[str]) -> None:
        for channel in channels:
            metrics.tally(metrics.INGESTED, kind, metrics.source_label(channel))

    def duplicate(self, label: str, count: int = 1) -> None:
        if count:
            metrics.tally(metrics.DUPLICATES, label, amount=count)

    def classified(self, sighted: Sequence[Sighted], confidences: Sequence[float]) -> None:
        for confidence in confidences:
            metrics.CONFIDENCE.observe(confidence)
        for sighting in sighted:
            metrics.tally(metrics.CLASSIFIED, sighting.method)
            if sighting.method == "text_model":
                metrics.tally(metrics.TEXT_MODEL_OUTCOMES, "triage" if sighting.triage else "automatic")

    def readings(self, stale: Sequence[str], opened: Sequence[str], cleared: Sequence[str]) -> None:
        for kind in stale:
            metrics.tally(metrics.STALE_READINGS, kind)
        for kind in opened:
            metrics.tally(metrics.ALARMS, kind, "opened")
        for kind in cleared:
            metrics.tally(metrics.ALARMS, kind, "cleared")

    def discovered(self, emissions: Sequence[Emission], categories: Sequence[str | None]) -> None:
        for emission, category in zip(emissions, categories, strict=True):
            if emission.outcome is Outcome.OPENED:
                metrics.tally(metrics.INCIDENTS, emission.origin, category or "-")
            elif emission.outcome is Outcome.MERGED:
                metrics.tally(metrics.MERGES, emission.origin, category or "-")
            elif emission.outcome is Outcome.TRIAGE:
                metrics.tally(metrics.TRIAGE, "queued")

    def assigned(self, unit_id: str, rule: str) -> None:
        metrics.tally(metrics.ASSIGNMENTS, unit_id, rule or "-")

    def emitted(self, stream: str, sent: Sequence[tuple[Emission, list[Any]]], tasks_topic: str, at: float) -> None:
        for emission, records in sent:
            outcome = outcome_label(emission, records, tasks_topic)
            if emission.dead_letter is not None:
                metrics.tally(metrics.DEAD_LETTERS, emission.dead_letter.stage, emission.dead_letter.code)
            elif emission.outcome is Outcome.LABELLED:  # counted when sent: a redelivered decision is not counted
                metrics.tally(metrics.TRIAGE, "decided")
            metrics.tally(metrics.PROCESSED, stream, outcome)
            if outcome == "opened" and emission.origin == "report" and emission.appended_at is not None:
                metrics.REPORT_TO_TASK.observe(max(0.0, at - emission.appended_at))
        metrics.flush()

    def batch_done(self, stream: str, seconds: float) -> None:
        metrics.child(metrics.BATCH_SECONDS, stream).observe(seconds)
        metrics.flush()


class RecordingSensor:
    """Keeps what the stages reported, as ``(what, labels...) -> count``, for tests."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[str, ...]] = Counter()
        self.confidences: list[float] = []
        self.latencies: list[float] = []

    def ingested(self, kind: str, channels: Sequence[str]) -> None:
        for channel in channels:
            self.counts["ingested", kind, channel] += 1

    def duplicate(self, label: str, count: int = 1) -> None:
        if count:
            self.counts["duplicate", label] += count

    def classified(self, sighted: Sequence[Sighted], confidences: Sequence[float]) -> None:
        self.confidences.extend(confidences)
        for sighting in sighted:
            self.counts["classified", sighting.method] += 1

    def readings(self, stale: Sequence[str], opened: Sequence[str], cleared: Sequence[str]) -> None:
        for what, kinds in (("stale", stale), ("alarm_opened", opened), ("alarm_cleared", cleared)):
            for kind in kinds:
                self.counts[what, kind] += 1

    def discovered(self, emissions: Sequence[Emission], categories: Sequence[str | None]) -> None:
        for emission, category in zip(emissions, categories, strict=True):
            self.counts[emission.outcome.value, emission.origin, category or "-"] += 1

    def assigned(self, unit_id: str, rule: str) -> None:
        self.counts["assigned", unit_id, rule] += 1

    def emitted(self, stream: str, sent: Sequence[tuple[Emission, list[Any]]], tasks_topic: str, at: float) -> None:
        for emission, records in sent:
            self.counts["processed", stream, outcome_label(emission, records, tasks_topic)] += 1
            if emission.dead_letter is not None:
                self.counts["dead_letter", emission.dead_letter.stage, emission.dead_letter.code] += 1
            elif emission.outcome is Outcome.LABELLED:
                self.counts["triage_decided",] += 1
            if emission.appended_at is not None and emission.origin == "report":
                self.latencies.append(at - emission.appended_at)

    def batch_done(self, stream: str, seconds: float) -> None:
        self.counts["batch", stream] += 1

    def total(self, *prefix: str) -> int:
        """The sum of every tally whose labels start with ``prefix``."""
        return sum(count for key, count in self.counts.items() if key[: len(prefix)] == prefix)
