"""Stage *detect*: readings to alarms, one detector per sensor kind of the city pack.

Every detector steps alike, ``step(state, value, observed, utc_offset_s)``
(classifiers/sensors.py, classifiers/anomaly.py); the learnt daily pattern runs
on the city's wall clock, so the offset of each reading (DST included) is
passed. Readings are applied per sensor in time order; a reading not newer
than the sensor's last is stale and changes nothing. An alarm that opens
becomes a sighting (stage *merge* next); one that clears becomes a
``sensor_clear`` event for its incident.

Sensors of an adaptive kind (``detector: adaptive`` or ``both``) are stepped
together, one bank per kind (classifiers/anomaly_bank.py): their stored models
decoded at once, the batch's readings applied by ``step_readings`` and the
changed rows encoded at once, which gives what stepping reading by reading
gives (tests/unit/pipeline/test_detect_bank.py). ``step_readings`` takes one
utc offset per reading, so a batch that spans a DST change needs no special
case. Threshold kinds, and a sensor whose readings in one batch are of more
than one kind, are stepped reading by reading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from classifiers import (
    CLEARED_CODE,
    AdaptiveBank,
    AdaptiveDetector,
    AdaptiveState,
    AlarmChange,
    DetectorState,
    ThresholdDetector,
    alarm_change,
    detector_for,
    step_readings,
)
from dispatch import CityPack
from streams.ids import sensor_incident, sensor_source
from streams.outcomes import Envelope
from streams.pipeline.batch import DeadLetter, Sighted
from streams.records import Reading

NEVER_SEEN = (DetectorState(), None)  # what DetectorStore.load gives for a sensor it has nothing of


def detector(spec: Any) -> Any:
    """The detector a city pack's sensor kind asks for."""
    limits = None
    if spec.open_at is not None and spec.close_at is not None and spec.direction != "both":
        limits = ThresholdDetector(spec.open_at, spec.close_at, spec.direction)
    if spec.detector == "threshold":
        return limits
    return detector_for(spec.detector, limits, direction=spec.direction, **spec.adaptive)


@dataclass
class Detected:
    """What one batch of readings did to its sensors."""

    opened: list[Sighted] = field(default_factory=list)
    cleared: list[tuple[Reading, Any]] = field(default_factory=list)  # (the reading, the state it cleared)
    changed: dict[str, Any] = field(default_factory=dict)  # sensor id -> state to save
    stale: list[str] = field(default_factory=list)  # kinds of the stale readings
    opened_kinds: list[str] = field(default_factory=list)
    cleared_kinds: list[str] = field(default_factory=list)
    latest: dict[str, Reading] = field(default_factory=dict)  # sensor id -> its newest reading applied


@dataclass(frozen=True, slots=True)
class EncodedState:
    """An adaptive sensor's state to save, encoded by the bank: what ``DetectorStore.save`` reads of a state."""

    alarm: bool
    since: float
    last_observed: float
    model: bytes  # as AdaptiveState.to_bytes writes it

    def to_bytes(self) -> bytes:
        return self.model


class Stepped(NamedTuple):
    """What one reading did: applied (else stale), the alarm change, and the state it cleared (for a clear)."""

    applied: bool
    change: AlarmChange | None = None
    since: float = 0.0  # of the alarm it opened
    cleared: Any = None


STALE = Stepped(False)


class Detect:
    def __init__(self, pack: CityPack, *, bank: bool = True) -> None:
        self.pack = pack
        self.detectors = {kind: detector(spec) for kind, spec in pack.spec.sensor_kinds.items()}
        self.bank = bank  # False: every kind reading by reading (the benchmark compares the two)
        self.adaptive = {kind for kind, d in self.detectors.items() if isinstance(d, AdaptiveDetector)}

    def known(self, readings: list[tuple[Envelope, Reading]]) -> tuple[list[tuple[Envelope, Reading]], list[Any]]:
        """Readings of kinds the pack has a detector for, and the others with why."""
        kept, unknown = [], []
        for envelope, reading in readings:
            if reading.kind in self.detectors:
                kept.append((envelope, reading))
                continue
            known = ", ".join(sorted(self.detectors)) or "none"
            reason = f"no detector for sensor kind {reading.kind!r} in city pack {self.pack.name} (known: {known})"
            unknown.append((envelope, DeadLetter("detect", "unknown_kind", reason)))
        return kept, unknown

    def __call__(
        self, readings: list[tuple[Envelope, Reading]], stored: dict[str, tuple[DetectorState, bytes | None]]
    ) -> Detected:
        """Step each sensor's detector through its readings, from the ``stored`` state of each sensor."""
        kinds = {r.sensor_id: r.kind for _, r in readings}  # a sensor's state is restored by its last reading's kind
        ordered = sorted(readings, key=lambda item: (item[1].sensor_id, item[1].observed_at))
        mixed = {r.sensor_id for _, r in readings if r.kind != kinds[r.sensor_id]}
        bankable = self.adaptive if self.bank else set()
        banked: dict[str, list[int]] = {}  # adaptive kind -> positions in ``ordered``
        single: list[int] = []
        for i, (_, reading) in enumerate(ordered):
            if reading.kind in bankable and reading.sensor_id not in mixed:
                banked.setdefault(reading.kind, []).append(i)
            else:
                single.append(i)
        steps: list[Stepped] = [STALE] * len(ordered)
        changed = self.step_each(ordered, single, stored, kinds, steps)
        for kind, positions in banked.items():
            changed.update(self.step_bank(self.detectors[kind], ordered, positions, stored, steps))
        out = Detected(changed={sid: changed[sid] for sid in [*stored, *kinds] if sid in changed})
        for (envelope, reading), step in zip(ordered, steps, strict=True):
            if not step.applied:
                out.stale.append(reading.kind)
                continue
            out.latest[reading.sensor_id] = reading  # ``ordered`` is by sensor, then time: the last one stays
            if step.change is AlarmChange.OPENED:
                out.opened.append(self.alarm(envelope, reading, step.since))
                out.opened_kinds.append(reading.kind)
            elif step.change is AlarmChange.CLEARED:
                out.cleared.append((reading, step.cleared))
                out.cleared_kinds.append(reading.kind)
        return out

    def offset(self, reading: Reading, zone: Any) -> float:
        """The city's utc offset at the reading's time, in seconds."""
        offset = reading.observed_at.astimezone(zone).utcoffset()
        return offset.total_seconds() if offset else 0.0

    def step_each(
        self,
        ordered: list[tuple[Envelope, Reading]],
        positions: list[int],
        stored: dict[str, tuple[DetectorState, bytes | None]],
        kinds: dict[str, str],
        steps: list[Stepped],
    ) -> dict[str, Any]:
        """Step the readings at ``positions`` (each sensor's in time order) one by one; the states that changed."""
        zone = self.pack.zone
        restored: dict[str, Any] = {}
        states: dict[str, Any] = {}
        for i in positions:
            reading = ordered[i][1]
            sid = reading.sensor_id
            if sid not in states:
                states[sid] = restored[sid] = self.detectors[kinds[sid]].restore(*stored.get(sid, NEVER_SEEN))
            state = states[sid]
            new_state, change = self.detectors[reading.kind].step(
                state, reading.value, reading.observed_at.timestamp(), self.offset(reading, zone)
            )
            if new_state is state:  # a detector returns the state it was given when the reading is not applied
                continue
            states[sid] = new_state
            steps[i] = Stepped(True, change, new_state.since, state)
        return {sid: state for sid, state in states.items() if state is not restored[sid]}

    def step_bank(
        self,
        detector: AdaptiveDetector,
        ordered: list[tuple[Envelope, Reading]],
        positions: list[int],
        stored: dict[str, tuple[DetectorState, bytes | None]],
        steps: list[Stepped],
    ) -> dict[str, EncodedState]:
        """Step one adaptive kind's readings at ``positions`` together; the states that changed, encoded."""
        zone = self.pack.zone
        readings = [ordered[i][1] for i in positions]
        sensors = list(dict.fromkeys(r.sensor_id for r in readings))
        row_of = {sid: row for row, sid in enumerate(sensors)}
        rows = [row_of[r.sensor_id] for r in readings]
        values = [r.value for r in readings]
        times = [r.observed_at.timestamp() for r in readings]
        offsets = [self.offset(r, zone) for r in readings]
        entries = [stored.get(sid, NEVER_SEEN) for sid in sensors]
        result = step_readings(detector, AdaptiveBank.restore(detector, entries), rows, values, times, offsets)
        applied = result.applied.tolist()
        clearing = set()
        for i, row, observed, done, code in zip(positions, rows, times, applied, result.changes.tolist(), strict=True):
            if done:  # an alarm this reading opens opened at its time
                steps[i] = Stepped(True, alarm_change(code), observed)
                if code == CLEARED_CODE:
                    clearing.add(row)
        if clearing:  # rare: step those sensors again one by one for the state each clear cleared
            states = {row: _restored_quietly(*entries[row]) for row in clearing}
            for i, row, value, observed, offset in zip(positions, rows, values, times, offsets, strict=True):
                if row in states:
                    state = states[row]
                    states[row], change = detector.step(state, value, observed, offset)
                    if change is AlarmChange.CLEARED:
                        steps[i] = steps[i]._replace(cleared=state)
        touched = np.unique(np.asarray(rows, dtype=np.intp)[result.applied])
        if not len(touched):
            return {}
        part = result.bank.take(touched)
        columns = (touched.tolist(), part.alarm.tolist(), part.since.tolist(), part.last_observed.tolist())
        return {sensors[row]: EncodedState(alarm, since, last, model)
                for row, alarm, since, last, model in zip(*columns, part.to_bytes(), strict=True)}  # fmt: skip

    def alarm(self, envelope: Envelope, reading: Reading, since: float) -> Sighted:
        """The sighting of an alarm that opened at ``since`` (epoch seconds) with this reading."""
        kind = self.pack.spec.sensor_kinds[reading.kind]
        source_id = sensor_source(reading.sensor_id, since)
        category = self.pack.category(kind.category)
        return Sighted(
            envelope=envelope,
            ledger_key=f"alarm:{source_id}",
            source_id=source_id,
            new_incident_id=sensor_incident(reading.sensor_id, since),
            origin="sensor",
            category=kind.category,
            confidence=1.0,
            method=self.detectors[reading.kind].method,
            top=[[kind.category, 1.0]],
            lat=reading.lat,
            lon=reading.lon,
            event_time=reading.observed_at,
            text=category.name if category else kind.category,
            sensor={"sensor_id": reading.sensor_id, "kind": reading.kind, "value": reading.value, "unit": reading.unit},
        )


def _restored_quietly(alarm: DetectorState, model: bytes | None) -> AdaptiveState:
    """``AdaptiveDetector.restore`` without its warning (given once already, when the bank was restored)."""
    if model is not None:
        try:
            return AdaptiveState.from_bytes(model)
        except ValueError:
            pass
    return AdaptiveState(alarm=alarm.alarm, since=alarm.since, last_observed=alarm.last_observed)
