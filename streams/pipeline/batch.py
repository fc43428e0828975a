"""What flows between the stages: sightings, emissions with typed outcomes, and a batch's result."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from streams.outcomes import Envelope, dead_letter

Record = tuple[str, str, dict[str, Any]]  # (topic, key, record)


class Sink(Protocol):
    """Where output records go (streams/sinks.py): at once, acknowledged by the broker, or in the unit's transaction.

    The records of one call may be sent in any grouping, but records with the
    same topic and key keep their order (they land on one partition, in order).
    What must wait until the records are durable (the ledger's marks) goes
    through ``streams.sinks.delivered``.
    """

    async def send_all(self, records: Sequence[tuple[str, bytes, bytes]]) -> None: ...


class Outcome(enum.Enum):
    """What became of one input (or of one occasion, such as an alarm clearing)."""

    OPENED = "opened"  # a new incident, dispatched: one task
    MERGED = "merged"  # joined an open incident: no new task
    TRIAGE = "triage"  # waits for a person at the ops centre
    CLEARED = "clear"  # a sensor back to normal: told to its incident
    LABELLED = "triaged"  # a person's triage decision, kept as a labelled example
    LIFECYCLE = "lifecycle"  # a work order's follow-ups
    DEAD_LETTER = "deadletter"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Why an input could not be processed: the stage, a reason code from the contract, and a sentence."""

    stage: str
    code: str
    reason: str


@dataclass
class Emission:
    """The records of one outcome, emitted (and deduplicated by the ledger) under one key."""

    key: str
    records: list[Record]
    outcome: Outcome
    origin: str = ""  # "report" or "sensor", for incidents and merges
    dead_letter: DeadLetter | None = None
    appended_at: float | None = None  # the input's broker time, for report-to-task latency

    @property
    def label(self) -> str:
        """The ``kind`` label of the duplicates metric (kept from contract version 1 of the metrics)."""
        if self.outcome is Outcome.OPENED:
            return self.origin
        if self.outcome is Outcome.MERGED:
            return f"merged-{self.origin}"
        return self.outcome.value


def dead_lettered(why: DeadLetter, envelope: Envelope, now: datetime, topic: str) -> Emission:
    """The dead letter of one input record, keeping its exact bytes."""
    record = dead_letter(why.stage, why.code, why.reason, envelope, now)
    key = record["deadletter_id"]
    return Emission(f"dlq:{key}", [(topic, key, record)], Outcome.DEAD_LETTER, dead_letter=why)


@dataclass(frozen=True)
class Sighted:
    """A report, an alarm or a triage decision on its way to an incident."""

    envelope: Envelope
    ledger_key: str
    source_id: str
    new_incident_id: str
    origin: str  # "report" or "sensor"
    category: str | None
    confidence: float
    method: str
    top: list[Any]
    lat: float | None  # None: a report located by an address only, waiting for a person to place it
    lon: float | None
    event_time: datetime
    text: str
    address: str | None = None
    sensor: dict[str, Any] | None = None
    triage: bool = False
    decided_by: str | None = None
    channel: str = "sensor"  # the report's source (app, phone, ...) for rules that match on it
    model_version: str | None = None  # the text model's version, when it classified this report

    @property
    def located(self) -> bool:
        return self.lat is not None and self.lon is not None

    @property
    def confident(self) -> bool:
        return not self.triage and self.category is not None and self.located


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
