"""Stage *detect*: readings to alarms, one detector per sensor kind of the city pack.

Every detector steps alike, ``step(state, value, observed, utc_offset_s)``
(classifiers/sensors.py, classifiers/anomaly.py); the learnt daily pattern runs
on the city's wall clock, so the offset of each reading (DST included) is
passed. Readings are applied per sensor in time order; a reading not newer
than the sensor's last is stale and changes nothing. An alarm that opens
becomes a sighting (stage *merge* next); one that clears becomes a
``sensor_clear`` event for its incident.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from classifiers import AlarmChange, DetectorState, ThresholdDetector, detector_for
from dispatch import CityPack
from streams.ids import sensor_incident, sensor_source
from streams.outcomes import Envelope
from streams.pipeline.batch import DeadLetter, Sighted
from streams.records import Reading


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


class Detect:
    def __init__(self, pack: CityPack) -> None:
        self.pack = pack
        self.detectors = {kind: detector(spec) for kind, spec in pack.spec.sensor_kinds.items()}

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
        kinds = {r.sensor_id: r.kind for _, r in readings}
        states = {sid: self.detectors[kinds[sid]].restore(alarm, model) for sid, (alarm, model) in stored.items()}
        before = dict(states)
        out = Detected()
        for envelope, reading in sorted(readings, key=lambda item: (item[1].sensor_id, item[1].observed_at)):
            state = states[reading.sensor_id]
            offset = reading.observed_at.astimezone(self.pack.zone).utcoffset()
            new_state, change = self.detectors[reading.kind].step(
                state, reading.value, reading.observed_at.timestamp(), offset.total_seconds() if offset else 0.0
            )
            if new_state is state:
                out.stale.append(reading.kind)
                continue
            states[reading.sensor_id] = new_state
            if change is AlarmChange.OPENED:
                out.opened.append(self.alarm(envelope, reading, new_state))
                out.opened_kinds.append(reading.kind)
            elif change is AlarmChange.CLEARED:
                out.cleared.append((reading, state))
                out.cleared_kinds.append(reading.kind)
        out.changed = {sid: s for sid, s in states.items() if s != before.get(sid)}
        return out

    def alarm(self, envelope: Envelope, reading: Reading, state: Any) -> Sighted:
        kind = self.pack.spec.sensor_kinds[reading.kind]
        source_id = sensor_source(reading.sensor_id, state.since)
        category = self.pack.category(kind.category)
        return Sighted(
            envelope=envelope,
            ledger_key=f"alarm:{source_id}",
            source_id=source_id,
            new_incident_id=sensor_incident(reading.sensor_id, state.since),
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
