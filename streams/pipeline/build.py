"""Stage *build records*: the incident, task and feedback records of each outcome, and every later task.

The first task of an incident (built here from the dispatch) and every later
one (built by the worker's lifecycle from the work order after a rejection, a
re-route or a reopening) come from :func:`task_record`, with the deadlines of
the feedback package's clocks: :func:`feedback.views.dispatch_sla` for a new
order, :func:`feedback.views.task_sla` for an existing one.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from classifiers.merge import merge_tokens
from classifiers.store import MergeDecision
from classifiers.triage import TriagePolicy
from dispatch import CityPack
from feedback import Policy
from feedback.views import dispatch_sla
from streams.ids import iso, iso_ts, method_and_version, sensor_actor, sensor_incident, sensor_source, task_id_for
from streams.outcomes import event
from streams.pipeline.batch import Emission, Outcome, Record, Sighted
from streams.records import Reading
from streams.topics import CONTRACT_VERSION, Topics


def task_record(
    *,
    task_id: str,
    incident_id: str,
    unit_id: str,
    attempt: int,
    category: str | None,
    lat: float | None,
    lon: float | None,
    address: str | None,
    dispatched_at: datetime,
    sla: dict[str, Any],
    rule: str | None,
    explanation: dict[str, Any],
    co_notify: tuple[str, ...] | list[str] = (),
) -> dict[str, Any]:
    """A task on ``<prefix>.tasks``: what a unit is asked to do, by when, and why it is theirs."""
    return {
        "schema": CONTRACT_VERSION,
        "task_id": task_id,
        "incident_id": incident_id,
        "unit_id": unit_id,
        "attempt": attempt,
        "category": category,
        "lat": lat,
        "lon": lon,
        "address": address,
        "dispatched_at": iso(dispatched_at),
        "sla": sla,
        "reason": {"rule": rule, "explanation": explanation},
        "co_notify": list(co_notify),
    }


def co_notices(
    topics: Topics, incident_id: str, task_id: str, owner: str, category: str | None, others: Any, at: datetime,
    key: str,
) -> list[Record]:  # fmt: skip
    """Units near a boundary, or named by a rule, hear of a task without owning it."""
    return [
        (topics.feedback, incident_id, event("co_notified", incident_id, "engine", at, task_id=task_id, unit_id=other,
                                             key=f"{key}{other}", owner=owner, category=category))
        for other in others
    ]  # fmt: skip


class Records:
    """Builds the records of each outcome for one city pack; pure, given the time ``now``."""

    def __init__(self, pack: CityPack, topics: Topics, policy: Policy, triage_policy: TriagePolicy) -> None:
        self.pack = pack
        self.topics = topics
        self.policy = policy
        self.triage_policy = triage_policy
        self._sla_at: datetime | None = None
        self._sla_cache: dict[str | None, dict[str, Any]] = {}

    def incident(
        self, s: Sighted, incident_id: str, status: str, now: datetime, *, category: str | None, first: float,
        last: float, lat: float | None, lon: float | None, source_ids: list[str], source_count: int = 1,
    ) -> dict[str, Any]:  # fmt: skip
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
        if s.model_version is not None and s.method == "text_model":
            record["model_version"] = s.model_version  # which model classified it (docs/CONTRACT.md)
        return record

    def opened(self, s: Sighted, d: MergeDecision, assignment: Any, now: datetime) -> Emission:
        """A new incident, its first task and the ``dispatched`` event the work order is made from."""
        incident = self.incident(s, d.incident_id, "open", now, category=d.category, first=d.first_seen,
                                 last=d.last_seen, lat=d.lat, lon=d.lon, source_ids=[s.source_id])  # fmt: skip
        incident["opened_at"] = iso(now)
        records: list[Record] = [(self.topics.incidents, d.incident_id, incident)]
        # the opener's merge words ride on the dispatched event: a rebuild of the merge index from the log reads them;
        # a report's text too: a later recategorisation labels it (classifiers/examples.py)
        records += self.first_task(incident, assignment, now, merge_words=" ".join(merge_tokens(s.text)),
                                   text=s.text if s.origin == "report" else None)  # fmt: skip
        return Emission(s.ledger_key, records, Outcome.OPENED, s.origin, appended_at=s.envelope.timestamp)

    def first_task(
        self, incident: dict[str, Any], assignment: Any, now: datetime, merge_words: str | None = None,
        text: str | None = None,
    ) -> list[Record]:  # fmt: skip
        incident_id, unit_id, rule = incident["incident_id"], assignment.unit_id, assignment.rule
        task_id = task_id_for(incident_id)
        task = task_record(
            task_id=task_id, incident_id=incident_id, unit_id=unit_id, attempt=1, category=incident["category"],
            lat=incident["lat"], lon=incident["lon"], address=incident.get("address"), dispatched_at=now,
            sla=self.sla(incident["category"], now), rule=rule, explanation=assignment.explanation,
            co_notify=assignment.co_notify,
        )  # fmt: skip
        # the work order is built from this event (streams.lifecycle): it carries what the order needs
        dispatched = event("dispatched", incident_id, "engine", now, task_id=task_id, unit_id=unit_id, attempt=1,
                           category=incident["category"], lat=incident["lat"], lon=incident["lon"],
                           address=incident.get("address"), origin=incident["origin"],
                           source_id=incident["source_ids"][0], rule=rule)  # fmt: skip
        if merge_words is not None:
            dispatched["merge_tokens"] = merge_words
        if text is not None:
            dispatched["text"] = text
        records: list[Record] = [(self.topics.tasks, incident_id, task),
                                 (self.topics.feedback, incident_id, dispatched)]  # fmt: skip
        records += co_notices(self.topics, incident_id, task_id, unit_id, incident["category"], assignment.co_notify,
                              now, key="")  # fmt: skip
        return records

    def sla(self, category: str | None, now: datetime) -> dict[str, Any]:
        """The deadlines of a first task dispatched ``now``; one reading per category and batch (one clock)."""
        if self._sla_at != now:
            self._sla_at, self._sla_cache = now, {}
        cached = self._sla_cache.get(category)
        if cached is None:
            spec = self.policy.slas.get(category) if category else None
            cached = self._sla_cache[category] = dispatch_sla(spec, now, self.policy.calendar)
        return dict(cached)

    def joined(self, s: Sighted, d: MergeDecision, now: datetime) -> Emission:
        """The incident a sighting joined, updated, and a ``merged`` event: no new task."""
        listed = list(d.listed)
        # the incident keeps what opened it: its origin and how sure its category is
        method, version = method_and_version(d.classified_by)  # and the model that classified the opener
        as_incident = replace(s, origin=d.origin, confidence=d.confidence, method=method, model_version=version, top=[],
                              sensor=None, address=None)  # fmt: skip
        sources = listed if s.source_id in listed else sorted([*listed[:-1], s.source_id])
        incident = self.incident(as_incident, d.incident_id, "open", now, category=d.category, first=d.first_seen,
                                 last=d.last_seen, lat=d.lat, lon=d.lon, source_ids=sources,
                                 source_count=d.sources)  # fmt: skip
        mine = {"model_version": s.model_version} if s.model_version is not None and s.method == "text_model" else {}
        merged = event("merged", d.incident_id, "engine", now, key=s.source_id, source_id=s.source_id,
                       distance_m=d.distance_m, similarity=d.similarity, sources=d.sources, **mine)  # fmt: skip
        records: list[Record] = [(self.topics.incidents, d.incident_id, incident),
                                 (self.topics.feedback, d.incident_id, merged)]  # fmt: skip
        return Emission(s.ledger_key, records, Outcome.MERGED, s.origin)

    def queued(self, s: Sighted, now: datetime) -> Emission:
        """An incident waiting in triage, and the ``triage_needed`` event that says why."""
        ts = s.event_time.timestamp()
        incident = self.incident(s, s.new_incident_id, "triage", now, category=s.category, first=ts, last=ts,
                                 lat=s.lat, lon=s.lon, source_ids=[s.source_id])  # fmt: skip
        if not s.located:
            why = (f"no location: the report names only an address ({s.address}); a person must place it on the map "
                   "before it can be merged or routed")  # fmt: skip
        elif s.category is not None:
            why = (f"confidence {s.confidence:.2f} is below the triage threshold "
                   f"{self.triage_policy.threshold_for(s.category):.2f} for {s.category}")  # fmt: skip
        else:
            why = "no category of this city fits the report"
        extra: dict[str, Any] = {} if s.located else {"needs_location": True}
        if s.model_version is not None and s.method == "text_model":
            extra["model_version"] = s.model_version
        queued = event("triage_needed", s.new_incident_id, "engine", now, unit_id=self.pack.spec.fallback_unit,
                       guess=s.category, confidence=s.confidence, top=s.top, why=why, **extra)  # fmt: skip
        records: list[Record] = [(self.topics.incidents, s.new_incident_id, incident),
                                 (self.topics.feedback, s.new_incident_id, queued)]  # fmt: skip
        return Emission(s.ledger_key, records, Outcome.TRIAGE, s.origin)

    def cleared(self, reading: Reading, open_state: Any, incident_id: str | None, now: datetime) -> Emission:
        """A sensor back to normal: a ``sensor_clear`` event for the incident its alarm opened or joined."""
        source_id = sensor_source(reading.sensor_id, open_state.since)
        if incident_id is None:  # the alarm never reached the index (e.g. its dispatch failed)
            incident_id = sensor_incident(reading.sensor_id, open_state.since)
        clear = event("sensor_clear", incident_id, sensor_actor(reading.sensor_id), now, key=source_id,
                      value=reading.value, observed_at=iso(reading.observed_at))  # fmt: skip
        return Emission(f"clear:{source_id}", [(self.topics.feedback, incident_id, clear)], Outcome.CLEARED)

    def labelled(self, incident_id: str, category: str, by: str, item: dict[str, Any], now: datetime) -> Emission:
        """A person's triage decision as a labelled example for retraining: text and category together."""
        label = event("triaged", incident_id, f"person:{by}", now, key=category, category=category,
                      guess=item["guess"], text=item["text"])  # fmt: skip
        return Emission(f"triaged:{incident_id}", [(self.topics.feedback, incident_id, label)], Outcome.LABELLED)

    @staticmethod
    def triage_item(s: Sighted) -> dict[str, Any]:
        """What the triage queue keeps of an unsure report, for the person who decides."""
        return {"source_id": s.source_id, "channel": s.channel, "text": s.text, "lat": s.lat, "lon": s.lon,
                "address": s.address, "event_time": iso(s.event_time), "guess": s.category,
                "confidence": s.confidence, "top": s.top}  # fmt: skip
