"""Stages *triage split*, *merge* and *route*: sightings to incidents, incidents to the one responsible unit.

* **triage split**: a sighting without a category of this city, or below its
  category's confidence threshold, waits in the triage queue for a person;
* **merge**: a confident sighting joins an open incident about the same problem
  (same category family, near in space and time, similar words) or opens one;
  one Lua call per batch (classifiers/store.py);
* **route**: each incident that opened is assigned by the city pack's polygons
  and rules (dispatch), reading the loads of units with a capacity and the
  positions of field teams; the new tasks count against their units at once.

Then *build records* (streams/pipeline/build.py) makes each outcome's records.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from classifiers.merge import MergePolicy, merge_tokens
from classifiers.store import IncidentIndex, MergeDecision, Sighting
from dispatch import CityPack, Dispatcher
from dispatch.store import AsyncUnitStore
from streams.ids import indexed_method, iso, sensor_of_source, task_id_for
from streams.outcomes import Envelope
from streams.pipeline.batch import DeadLetter, Emission, Sighted
from streams.pipeline.build import Records
from streams.pipeline.isolate import isolated
from streams.state import TriageQueue

# An incident record lists at most this many of its sources (all of them in Redis, each join in a `merged` event):
# re-listing hundreds of sources on every join would make the stream grow with the square of the reports.
MAX_LISTED_SOURCES = 50


@dataclass
class Discovered:
    emissions: list[Emission] = field(default_factory=list)
    categories: list[str | None] = field(default_factory=list)  # per emission: the incident's category
    assignments: list[Any] = field(default_factory=list)  # what route decided for each incident that opened
    failed: list[tuple[Envelope, DeadLetter]] = field(default_factory=list)


class UnitState:
    """Open tasks of units with a capacity, and field teams' positions, as dispatch reads them."""

    def __init__(self, pack: CityPack, units: AsyncUnitStore | None) -> None:
        self.units = units
        self._capacity_units = [u.id for u in pack.spec.units if u.capacity is not None]
        self._field_teams = [u.id for u in pack.spec.units if u.kind == "field_team"]

    async def read(self) -> tuple[dict[str, int] | None, dict[str, Any] | None]:
        if self.units is None:
            return None, None
        units = self.units
        loads = await units.loads(self._capacity_units)
        positions = await units.positions(self._field_teams)
        return loads, positions

    async def hold(self, holds: list[tuple[str, str]]) -> None:
        """Count new tasks against their units (a set per unit: a redelivered task counts once)."""
        if self.units is not None and holds:
            units = self.units
            await units.open_tasks(holds)


class Discover:
    def __init__(
        self,
        dispatcher: Dispatcher,
        incidents: IncidentIndex,
        triage: TriageQueue,
        unit_state: UnitState,
        merge_policy: MergePolicy,
        records: Records,
    ) -> None:
        self.dispatcher = dispatcher
        self.incidents = incidents
        self.triage = triage
        self.unit_state = unit_state
        self.merge_policy = merge_policy
        self.records = records

    async def __call__(self, sighted: Sequence[Sighted], now: datetime) -> Discovered:
        out = Discovered()
        confident = [s for s in sighted if s.confident]
        unsure = [s for s in sighted if not s.confident]
        decisions = await self.merge(confident)
        opened = [(s, d) for s, d in zip(confident, decisions, strict=True) if d.opened]
        joined = [(s, d) for s, d in zip(confident, decisions, strict=True) if not d.opened]
        assigned, out.failed = await self.route(opened, now)
        await self.unit_state.hold([(a.unit_id, task_id_for(d.incident_id)) for (_, d), a in assigned])
        for (s, d), assignment in assigned:
            out.emissions.append(self.records.opened(s, d, assignment, now))
            out.categories.append(d.category)
            out.assignments.append(assignment)
        for s, d in joined:
            out.emissions.append(self.records.joined(s, d, now))
            out.categories.append(d.category)
        if unsure:
            await self.triage.add([(s.new_incident_id, now.timestamp(), Records.triage_item(s)) for s in unsure])
            for s in unsure:
                out.emissions.append(self.records.queued(s, now))
                out.categories.append(s.category)
        return out

    async def merge(self, confident: list[Sighted]) -> list[MergeDecision]:
        if not confident:
            return []
        requests = [self._sighting(s) for s in confident]
        return await self.incidents.merge_or_open(requests, list_sources=MAX_LISTED_SOURCES)

    async def route(
        self, opened: list[tuple[Sighted, MergeDecision]], now: datetime
    ) -> tuple[list[tuple[tuple[Sighted, MergeDecision], Any]], list[tuple[Envelope, DeadLetter]]]:
        if not opened:
            return [], []
        loads, positions = await self.unit_state.read()

        def assign(items: list[tuple[Sighted, MergeDecision]], now: datetime) -> list[Any]:
            return self.dispatcher.assign_batch(
                [d.category for _, d in items],
                np.array([d.lat for _, d in items]),
                np.array([d.lon for _, d in items]),
                [s.confidence for s, _ in items],
                sources=[s.channel for s, _ in items],
                now=now,
                loads=loads,
                positions=positions or None,
            )

        return isolated(assign, [(s.envelope, (s, d)) for s, d in opened], now, "dispatch", ids=sighted_ids)

    def _sighting(self, s: Sighted) -> Sighting:
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
            classified_by=indexed_method(s.method, s.model_version),
            said=said(s),
        )


def sighted_ids(item: tuple[Sighted, MergeDecision]) -> dict[str, str | None]:
    """The log ids of a sighting being routed: its report or sensor, the incident it opened and that one's task."""
    s, decision = item
    if s.origin == "sensor":
        source = {"sensor_id": sensor_of_source(s.source_id)}
    else:
        source = {"report_id": s.source_id.removeprefix("report:")}
    return {**source, "incident_id": decision.incident_id, "task_id": task_id_for(decision.incident_id)}


def said(s: Sighted) -> str:
    """What a source said, as the incident keeps it for people: its words (cut at 500 characters), channel, time."""
    words: dict[str, Any] = {"text": s.text[:500], "channel": s.channel if s.origin == "report" else s.origin,
                             "at": iso(s.event_time)}  # fmt: skip
    if s.address:
        words["address"] = s.address
    if s.sensor:
        words["sensor"] = s.sensor
    return orjson.dumps(words).decode()
