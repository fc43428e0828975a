"""What the Kafka log says Redis should hold: the open incidents' merge index and the work orders, folded from records.

Redis is the worker's working memory, the log its record: every incident is on
``<prefix>.incidents`` (its whole state, latest last), every task on
``<prefix>.tasks``, and every lifecycle transition on ``<prefix>.feedback``
(the ``dispatched`` event an order is made from, each ``merged`` repeat report,
each follow-up the lifecycle applied). When Redis loses its data, folding
those records again gives back what repeat reports and lifecycle actions need:

* the **merge index**: each incident's place, category, first and last
  sighting, words (``merge_tokens`` on its ``dispatched`` event) and sources,
  and which source opened it; an incident whose order is finished is closed;
* the **work orders**, by applying each feedback event with the domain's own
  :func:`feedback.apply` (the transition table), in log order, each event id
  once, as the worker's lifecycle did. Follow-ups (a re-dispatch after a
  rejection, the close after a verification) are events of their own in the
  log, so they are applied as read, never computed again.

Pure: records in, a :class:`LogState` out; reading the log and writing Redis
are streams/rebuild.py. Events on one incident share its key, hence its
partition, hence their order; topics may be read in any interleaving.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from classifiers.merge import MergePolicy
from feedback import ACTIVE, FINISHED, NOTICES, FeedbackError, LifecycleEvent, Policy, WorkOrder
from feedback import apply as apply_event
from feedback.orders import EVENTS
from feedback.times import parse_iso
from streams.ids import indexed_method
from streams.topics import Topics

LIFECYCLE_TYPES = EVENTS | NOTICES


@dataclass(frozen=True)
class IndexEntry:
    """One incident as the merge index keeps it (classifiers/store.py's ``ns:inc:<id>`` hash and its sets)."""

    incident_id: str
    lat: float
    lon: float
    category: str
    family: str
    first: float
    last: float
    tokens: str
    count: int
    origin: str
    confidence: float
    classified_by: str
    sources: tuple[str, ...]
    open: bool  # in the family's GEO index: repeat reports may join it
    closed: bool  # its order is finished: nothing merges into it any more


@dataclass
class LogState:
    """The fold of the incidents, tasks and feedback topics."""

    topics: Topics
    policy: Policy
    records: int = 0
    unreadable: int = 0
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)  # the latest record of each incident
    sources: dict[str, tuple[str, bool]] = field(default_factory=dict)  # source id -> (incident, opened it)
    tokens: dict[str, str] = field(default_factory=dict)  # incident -> its opener's merge words
    orders: dict[str, WorkOrder] = field(default_factory=dict)
    applied: dict[str, list[str]] = field(default_factory=dict)  # incident -> event ids applied, in order
    refused: int = 0  # events the table refused (as the worker did: they changed nothing)
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # task id -> its record
    joined: dict[str, list[str]] = field(default_factory=dict)  # incident -> reports whose merged notices applied
    _seen: dict[str, set[str]] = field(default_factory=dict)

    def add(self, topic: str, value: bytes | None) -> None:
        """Fold one record of ``topic`` (records of other topics, and ones that are not JSON objects, are skipped)."""
        self.records += 1
        try:
            record = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            record = None
        if not isinstance(record, dict) or not isinstance(record.get("incident_id"), str):
            self.unreadable += 1
            return
        if topic == self.topics.incidents:
            self._incident(record)
        elif topic == self.topics.tasks:
            if isinstance(record.get("task_id"), str):
                self.tasks[record["task_id"]] = record
        elif topic == self.topics.feedback:
            self._feedback(record)

    def _incident(self, record: dict[str, Any]) -> None:
        incident_id = record["incident_id"]
        self.incidents[incident_id] = record
        listed = [s for s in record.get("source_ids") or [] if isinstance(s, str)]
        for source in listed:
            self.sources.setdefault(source, (incident_id, False))
        if record.get("opened_at") and listed:  # the record of an incident that opened lists only its opener
            self.sources[listed[0]] = (incident_id, True)

    def _feedback(self, record: dict[str, Any]) -> None:
        kind, incident_id = record.get("type"), record["incident_id"]
        source = record.get("source_id")
        if kind == "dispatched" and record.get("attempt") == 1 and isinstance(source, str):
            self.sources[source] = (incident_id, True)
            if isinstance(record.get("merge_tokens"), str):
                self.tokens[incident_id] = record["merge_tokens"]
        elif kind == "merged" and isinstance(source, str) and self.sources.get(source) != (incident_id, True):
            self.sources[source] = (incident_id, False)
        if kind not in LIFECYCLE_TYPES:
            return
        try:
            event = LifecycleEvent.from_record(record)
        except FeedbackError:
            return  # the worker dead-lettered it
        seen = self._seen.setdefault(incident_id, set())
        if event.event_id in seen:  # delivered twice: applied once, as the order's event-id set made it live
            return
        try:
            step = apply_event(self.orders.get(incident_id), event, self.policy)
        except FeedbackError:
            self.refused += 1
            return
        if step.order is None or step.ignored:
            return
        seen.add(event.event_id)
        self.orders[incident_id] = step.order
        self.applied.setdefault(incident_id, []).append(event.event_id)
        if kind == "merged" and isinstance(source, str) and source.startswith("report:"):
            self.joined.setdefault(incident_id, []).append(source)

    # ------------------------------------------------------------------ views

    def open_orders(self) -> list[WorkOrder]:
        """Orders not finished (what units and the ops centre still act on)."""
        return [o for o in self.orders.values() if o.state not in FINISHED]

    def holds(self) -> list[tuple[str, str]]:
        """(unit, task) of every order in a unit's hands: the units' loads, as dispatch counts them."""
        return [(o.unit_id, o.task_id) for o in self.orders.values() if o.state in ACTIVE]

    def open_tasks(self) -> list[dict[str, Any]]:
        """The task records of the open orders, every attempt (the board keeps why each went where)."""
        open_ids = {o.incident_id for o in self.open_orders()}
        return [t for t in self.tasks.values() if t["incident_id"] in open_ids]

    def index(self, merge_policy: MergePolicy, grace_s: float) -> tuple[list[IndexEntry], dict[str, float]]:
        """The merge index's incidents and each family's watermark (the latest sighting it has seen).

        An incident is open to repeats unless its order finished or its last sighting fell more than its window
        (plus the grace for late reports) behind its family's watermark, as the merge script would expire it.
        Incidents waiting in triage were never in the index.
        """
        by_incident: dict[str, list[str]] = {}
        for source, (incident_id, _) in self.sources.items():
            by_incident.setdefault(incident_id, []).append(source)
        drafts: list[tuple[dict[str, Any], str, str, float, float]] = []
        watermarks: dict[str, float] = {}
        for incident_id, record in self.incidents.items():
            if record.get("status") != "open" or record.get("lat") is None or record.get("lon") is None:
                continue
            order = self.orders.get(incident_id)
            category = (order.category if order is not None else None) or record.get("category")
            if not isinstance(category, str):
                continue
            family = merge_policy.rule_for(category).family
            first, last = _epoch(record.get("first_seen")), _epoch(record.get("last_seen"))
            if first is None or last is None:
                continue
            watermarks[family] = max(watermarks.get(family, last), last)
            drafts.append((record, category, family, first, last))
        entries = []
        for record, category, family, first, last in drafts:
            incident_id = record["incident_id"]
            order = self.orders.get(incident_id)
            closed = order is not None and order.state in FINISHED
            window = merge_policy.rule_for(category).window_s
            fresh = last >= watermarks[family] - window - grace_s
            entries.append(IndexEntry(
                incident_id=incident_id, lat=float(record["lat"]), lon=float(record["lon"]), category=category,
                family=family, first=first, last=last, tokens=self.tokens.get(incident_id, ""),
                count=int(record.get("source_count") or 1), origin=str(record.get("origin") or "report"),
                confidence=float(record.get("confidence") or 1.0),
                classified_by=indexed_method(str(record.get("classified_by") or "service_code"),
                                             record.get("model_version")),
                sources=tuple(sorted(by_incident.get(incident_id, []))), open=fresh and not closed, closed=closed,
            ))  # fmt: skip
        return entries, watermarks

    def ledger_keys(self) -> list[str]:
        """The emission ledger's keys of every report and alarm the log shows an outcome of (streams/pipeline)."""
        keys = []
        for source in self.sources:
            if source.startswith("report:"):
                keys.append(source)
            elif source.startswith("sensor:"):
                keys.append(f"alarm:{source}")
        return keys

    def opened_flags(self) -> dict[str, str]:
        """``ns:src:<source>`` values: ``<incident>|1`` for the source that opened it, ``|0`` for one that joined."""
        return {source: f"{incident_id}|{1 if opened else 0}" for source, (incident_id, opened) in self.sources.items()}


def _epoch(value: Any) -> float | None:
    """An ISO 8601 time of a record as epoch seconds (None when absent or unreadable)."""
    if not isinstance(value, str):
        return None
    try:
        return parse_iso(value).timestamp()
    except ValueError:
        return None
