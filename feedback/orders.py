"""Work orders: their states, the table of allowed transitions, and the order as plain data.

One work order per incident, keyed by the incident id. Its current task is an
*attempt*: re-dispatch after a rejection, an arbitration, a reassignment or a
reopening each make a new task (attempt + 1) for a unit.

The lifecycle (after the 12345 work-order flow: dispatch, sign for, handle,
report back, verify, close; see docs/CONTRACT.md)::

    dispatched -> acknowledged -> in_progress -> resolved -> verified -> closed
                                  in_progress <-> waiting (on the reporter; clocks paused)
    dispatched | acknowledged -> rejected -> dispatched (next unit, attempt + 1)
    any active state -> recategorised -> dispatched (the unit the new category routes to, attempt + 1)
                                          -> arbitration (the ops centre, after N rejections) -> dispatched
    resolved | verified | closed -> reopened -> dispatched (the same unit, attempt + 1)
    any open state -> merged (into another order) | cancelled

``TRANSITIONS`` is the whole rule set as data: (event type, from states, to
state, who may send it, guard). Anything not in it is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any

from feedback.errors import InvalidEvent
from feedback.sla import BusinessCalendar, StageClock
from feedback.times import parse_iso


class State(StrEnum):
    DISPATCHED = "dispatched"
    ACKNOWLEDGED = "acknowledged"
    IN_PROGRESS = "in_progress"
    WAITING = "waiting"
    REJECTED = "rejected"
    ARBITRATION = "arbitration"
    RESOLVED = "resolved"
    VERIFIED = "verified"
    CLOSED = "closed"
    REOPENED = "reopened"
    RECATEGORISED = "recategorised"
    MERGED = "merged"
    CANCELLED = "cancelled"


S = State
#: states in which a unit holds the order and has something to do
ACTIVE = frozenset({S.DISPATCHED, S.ACKNOWLEDGED, S.IN_PROGRESS, S.WAITING, S.ARBITRATION})
#: states an order can leave only by being reopened (closed) or never (merged, cancelled)
FINISHED = frozenset({S.CLOSED, S.MERGED, S.CANCELLED})
#: states from which an order may still be merged or cancelled
OPEN = frozenset(set(State) - FINISHED - {S.VERIFIED})

STAGES = ("acknowledge", "resolve", "verify")


@dataclass(frozen=True)
class Transition:
    """One row of the table: ``event`` moves an order from any of ``sources`` to ``target``.

    ``actors`` are the kinds of actor that may send it: ``engine``, ``unit``
    (only the unit the order is assigned to), ``ops`` (a person at the ops
    centre), ``sensor``. ``guard`` names an extra condition (see transitions.GUARDS).
    """

    event: str
    sources: frozenset[State | None]
    target: State
    actors: frozenset[str]
    guard: str | None = None


def _row(
    event: str, sources: set[State | None], target: State, actors: set[str], guard: str | None = None
) -> Transition:
    return Transition(event, frozenset(sources), target, frozenset(actors), guard)


TRANSITIONS: tuple[Transition, ...] = (
    _row("dispatched", {None}, S.DISPATCHED, {"engine"}),
    _row("dispatched", {S.REJECTED, S.REOPENED, S.RECATEGORISED}, S.DISPATCHED, {"engine"}),
    _row("arbitrate", {S.REJECTED, S.RECATEGORISED}, S.ARBITRATION, {"engine"}),
    _row(
        "assign",
        {S.ARBITRATION, S.DISPATCHED, S.ACKNOWLEDGED, S.IN_PROGRESS, S.WAITING},
        S.DISPATCHED,
        {"ops"},
        "next_attempt",
    ),  # fmt: skip
    _row("recategorise", set(ACTIVE), S.RECATEGORISED, {"ops"}, "new_category"),
    _row("ack", {S.DISPATCHED}, S.ACKNOWLEDGED, {"unit"}),
    _row("start", {S.ACKNOWLEDGED}, S.IN_PROGRESS, {"unit"}),
    _row("wait", {S.IN_PROGRESS}, S.WAITING, {"unit"}),
    _row("resume", {S.WAITING}, S.IN_PROGRESS, {"unit"}),
    _row("reject", {S.DISPATCHED, S.ACKNOWLEDGED}, S.REJECTED, {"unit"}, "not_arbitrated"),
    _row("resolve", {S.IN_PROGRESS}, S.RESOLVED, {"unit"}),
    _row("verify", {S.RESOLVED}, S.VERIFIED, {"ops", "sensor"}, "quiet_period"),
    _row("verify", {S.DISPATCHED, S.ACKNOWLEDGED, S.IN_PROGRESS, S.WAITING}, S.VERIFIED, {"sensor"}, "quiet_period"),
    _row("close", {S.VERIFIED}, S.CLOSED, {"engine"}),
    _row("reopen", {S.RESOLVED, S.VERIFIED, S.CLOSED}, S.REOPENED, {"ops", "sensor"}, "reopen_window"),
    _row("merge_order", set(OPEN), S.MERGED, {"ops", "engine"}, "other_order"),
    _row("cancel", set(OPEN), S.CANCELLED, {"ops"}),
)

#: (state, event) -> row; built from TRANSITIONS
TABLE: dict[tuple[State | None, str], Transition] = {
    (source, row.event): row for row in TRANSITIONS for source in row.sources
}
EVENTS = frozenset(row.event for row in TRANSITIONS)
#: events that annotate an order without changing its state
NOTICES = frozenset({"sla_warning", "escalate", "merged", "sensor_clear"})
REJECT_REASONS = frozenset(
    {
        "outside_remit",
        "wrong_location",
        "wrong_category",
        "duplicate",
        "insufficient_information",
        "no_capacity",
        "other",
    }  # fmt: skip
)


def allowed_events(state: State | None, actor_kind: str | None = None) -> list[str]:
    """The events the table allows in ``state`` (to ``actor_kind``, if given), sorted."""
    return sorted(
        {row.event for row in TRANSITIONS if state in row.sources and (actor_kind is None or actor_kind in row.actors)}
    )


@dataclass(frozen=True)
class SlaSpec:
    """A category's SLA targets (from the city pack)."""

    acknowledge: str
    resolve: str
    verify: str | None = None
    clock: str = "calendar"


def dispatch_clocks(sla: SlaSpec | None, at: datetime, calendar: BusinessCalendar | None) -> dict[str, StageClock]:
    """The clocks a dispatch starts: acknowledge and resolve run from it (none without a target)."""
    if sla is None:
        return {}
    return {
        stage: StageClock.fresh(span, sla.clock, calendar).start(at, calendar)
        for stage, span in (("acknowledge", sla.acknowledge), ("resolve", sla.resolve))
    }


def sensor_of_source(source_id: object) -> str | None:
    """``sensor:<id>:<opened at>`` -> ``<id>`` (an alarm's source id); None for any other source."""
    if not isinstance(source_id, str) or not source_id.startswith("sensor:"):
        return None
    return source_id[len("sensor:") :].rsplit(":", 1)[0]


@dataclass(frozen=True)
class Rejection:
    unit_id: str
    reason_code: str
    reason: str
    at: datetime

    def to_dict(self) -> dict[str, str]:
        return {"unit_id": self.unit_id, "reason_code": self.reason_code, "reason": self.reason,
                "at": self.at.isoformat()}  # fmt: skip


@dataclass(frozen=True)
class LifecycleEvent:
    """An event on the feedback stream, as the lifecycle reads it."""

    event_id: str
    type: str
    incident_id: str
    actor: str
    at: datetime
    task_id: str | None = None
    unit_id: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)

    @property
    def actor_kind(self) -> str:
        return self.actor.split(":", 1)[0]

    def get(self, name: str, default: Any = None) -> Any:
        return self.fields.get(name, default)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> LifecycleEvent:
        """Read a feedback record; a missing or malformed common field is an :class:`InvalidEvent`."""
        values: dict[str, str] = {}
        for name in ("event_id", "type", "incident_id", "actor", "at"):
            value = record.get(name)
            if not isinstance(value, str) or not value.strip() or len(value) > 256:
                raise InvalidEvent(f"a lifecycle event needs a non-empty string {name!r} (at most 256 characters)")
            values[name] = value
        try:
            at = parse_iso(values["at"])
        except ValueError:
            raise InvalidEvent(f"'at' is not an ISO 8601 time: {values['at']!r}") from None
        if at.tzinfo is None:
            raise InvalidEvent("'at' needs a UTC offset")
        for name in ("task_id", "unit_id"):
            if record.get(name) is not None and not isinstance(record.get(name), str):
                raise InvalidEvent(f"{name!r} must be a string")
        common = {"schema", "event_id", "type", "incident_id", "actor", "at", "task_id", "unit_id"}
        return cls(
            event_id=values["event_id"],
            type=values["type"],
            incident_id=values["incident_id"],
            actor=values["actor"],
            at=at,
            task_id=record.get("task_id"),
            unit_id=record.get("unit_id"),
            fields={k: v for k, v in record.items() if k not in common},
        )


def timer_member(incident_id: str, stage: str, level: str, due: datetime) -> str:
    """The timer's key for one deadline: order, stage, level and the deadline (ms) itself."""
    return f"{incident_id}|{stage}|{level}|{int(round(due.timestamp() * 1000))}"


def parse_timer_member(member: str) -> tuple[str, str, str, int]:
    incident_id, stage, level, due_ms = member.rsplit("|", 3)
    return incident_id, stage, level, int(due_ms)


@dataclass(frozen=True)
class WorkOrder:
    """The state of one incident's work order."""

    incident_id: str
    state: State
    unit_id: str
    task_id: str
    attempt: int
    category: str | None
    created_at: datetime
    updated_at: datetime
    lat: float | None = None
    lon: float | None = None
    address: str | None = None
    origin: str = "report"
    source_id: str | None = None
    rule: str | None = None
    sla: SlaSpec | None = None
    clocks: Mapping[str, StageClock] = field(default_factory=dict)
    rejections: tuple[Rejection, ...] = ()
    arbitrated: bool = False
    reopens: int = 0
    resolution: Mapping[str, Any] | None = None
    verified_at: datetime | None = None
    closed_at: datetime | None = None
    merged_into: str | None = None
    sensor_id: str | None = None
    alarms: frozenset[str] = frozenset()
    quiet_due: datetime | None = None
    history: tuple[Mapping[str, Any], ...] = ()
    version: int = 0

    # ------------------------------------------------------------ derived views

    @property
    def holder(self) -> str | None:
        """The unit that has something to do on this order now, if any."""
        return self.unit_id if self.state in ACTIVE else None

    def light(self) -> str:
        """The order's SLA light from the clock events applied so far: green, yellow or red."""
        level = "green"
        for clock in self.clocks.values():
            if clock.running and clock.breached:
                return "red"
            if clock.running and clock.warned:
                level = "yellow"
        return level

    def deadline(self, stage: str, calendar: BusinessCalendar | None) -> datetime | None:
        clock = self.clocks.get(stage)
        return None if clock is None else clock.due(calendar)

    def timers(self, calendar: BusinessCalendar | None) -> dict[str, datetime]:
        """Every deadline the timer must watch for this order: member -> when it is due."""
        result: dict[str, datetime] = {}
        for stage, clock in self.clocks.items():
            if not clock.running:
                continue
            red = clock.due(calendar)
            if red is None:
                continue
            if not clock.warned and not clock.breached:
                yellow = clock.due(calendar, share=0.75)
                if yellow is not None:
                    result[timer_member(self.incident_id, stage, "yellow", red)] = yellow
            if not clock.breached:
                result[timer_member(self.incident_id, stage, "red", red)] = red
        if self.quiet_due is not None:
            result[timer_member(self.incident_id, "sensor", "verify", self.quiet_due)] = self.quiet_due
        return result

    def with_clock(self, stage: str, clock: StageClock | None) -> WorkOrder:
        clocks = dict(self.clocks)
        if clock is None:
            clocks.pop(stage, None)
        else:
            clocks[stage] = clock
        return self.evolve(clocks=clocks)

    def evolve(self, **changes: Any) -> WorkOrder:
        """A copy with ``changes``: :func:`dataclasses.replace`, without calling ``__init__`` field by field.

        An order is copied several times per event; ``replace`` on this many fields cost about a tenth of the
        lifecycle's time. The fields are checked by name all the same.
        """
        unknown = changes.keys() - ORDER_FIELDS
        if unknown:
            raise TypeError(f"WorkOrder has no field {', '.join(sorted(unknown))}")
        new = object.__new__(WorkOrder)
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    # ------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        def moment(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "incident_id": self.incident_id,
            "state": self.state.value,
            "unit_id": self.unit_id,
            "task_id": self.task_id,
            "attempt": self.attempt,
            "category": self.category,
            "created_at": moment(self.created_at),
            "updated_at": moment(self.updated_at),
            "lat": self.lat,
            "lon": self.lon,
            "address": self.address,
            "origin": self.origin,
            "source_id": self.source_id,
            "rule": self.rule,
            "sla": None
            if self.sla is None
            else {
                "acknowledge": self.sla.acknowledge,
                "resolve": self.sla.resolve,
                "verify": self.sla.verify,
                "clock": self.sla.clock,
            },  # fmt: skip
            "clocks": {stage: clock.to_dict() for stage, clock in self.clocks.items()},
            "rejections": [r.to_dict() for r in self.rejections],
            "arbitrated": self.arbitrated,
            "reopens": self.reopens,
            "resolution": None if self.resolution is None else dict(self.resolution),
            "verified_at": moment(self.verified_at),
            "closed_at": moment(self.closed_at),
            "merged_into": self.merged_into,
            "sensor_id": self.sensor_id,
            "alarms": sorted(self.alarms),
            "quiet_due": moment(self.quiet_due),
            "history": [dict(h) for h in self.history],
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkOrder:
        def moment(value: Any) -> datetime | None:
            return None if value is None else datetime.fromisoformat(value)

        sla = data.get("sla")
        created = moment(data["created_at"])
        updated = moment(data["updated_at"])
        assert created is not None and updated is not None
        return cls(
            incident_id=data["incident_id"],
            state=State(data["state"]),
            unit_id=data["unit_id"],
            task_id=data["task_id"],
            attempt=int(data["attempt"]),
            category=data.get("category"),
            created_at=created,
            updated_at=updated,
            lat=data.get("lat"),
            lon=data.get("lon"),
            address=data.get("address"),
            origin=data.get("origin", "report"),
            source_id=data.get("source_id"),
            rule=data.get("rule"),
            sla=None
            if sla is None
            else SlaSpec(
                sla["acknowledge"], sla["resolve"], sla.get("verify"), sla.get("clock", "calendar")
            ),  # fmt: skip
            clocks={stage: StageClock.from_dict(c) for stage, c in (data.get("clocks") or {}).items()},
            rejections=tuple(
                Rejection(r["unit_id"], r["reason_code"], r["reason"], datetime.fromisoformat(r["at"]))
                for r in data.get("rejections", [])
            ),
            arbitrated=bool(data.get("arbitrated", False)),
            reopens=int(data.get("reopens", 0)),
            resolution=data.get("resolution"),
            verified_at=moment(data.get("verified_at")),
            closed_at=moment(data.get("closed_at")),
            merged_into=data.get("merged_into"),
            sensor_id=data.get("sensor_id"),
            alarms=frozenset(data.get("alarms", [])),
            quiet_due=moment(data.get("quiet_due")),
            history=tuple(data.get("history", [])),
            version=int(data.get("version", 0)),
        )


ORDER_FIELDS = frozenset(f.name for f in fields(WorkOrder))
