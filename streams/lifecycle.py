"""The closed loop in the worker: work orders from feedback events, and their follow-ups.

The worker's batch consumer hands batches of ``<prefix>.feedback`` records to
:meth:`Lifecycle.process`. Each lifecycle event is applied to its order by the
pure core (:func:`feedback.apply`); what must follow (re-dispatch after a
rejection, arbitration, the close after a verification, a new task after a
reopening) is built here, applied to the order once and emitted, so the
feedback stream holds every transition and a redelivered follow-up changes
nothing (orders remember the event ids applied to them).

Order of effects, for at-least-once delivery: the follow-up records are stored
in the ledger under the causing event's id first, then the orders are written
(compare-and-set, with their indexes and timers), then the records are sent
and marked sent. A crash anywhere in between is repaired by the redelivery:
the event is found applied and its stored follow-ups are sent again with the
same ids.

A refused event (illegal in the order's state, by the wrong unit, malformed)
never stops the stream: it is dead-lettered with stage ``lifecycle`` and the
reason code, and recorded on the order so the API can answer the caller.

The SLA timer, which emits the deadlines' events, is streams/timer.py.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from classifiers.merge import MergePolicy
from classifiers.store import IncidentIndex
from dispatch import CityPack, Dispatcher
from dispatch.reroute import reroute
from feedback import FINISHED, NOTICES, FeedbackError, FollowUp, LifecycleEvent, Policy, WorkOrder
from feedback import apply as apply_event
from feedback.lifecycle import next_unit
from feedback.orders import ACTIVE, EVENTS
from feedback.store import Change, RedisOrderStore
from feedback.views import task_sla
from streams import metrics
from streams.citypolicy import sla_owner
from streams.ids import iso_utc, sensor_actor, sensor_of_source, task_id_for
from streams.logs import bound, record_position
from streams.outcomes import Envelope, event
from streams.pipeline.batch import BatchResult, DeadLetter, Emission, Outcome, Record, dead_lettered
from streams.pipeline.build import co_notices, task_record
from streams.pipeline.emit import Emitter, count
from streams.records import Rejected, parse_object
from streams.topics import Topics

log = logging.getLogger(__name__)

LIFECYCLE_TYPES = EVENTS | NOTICES
UnitLoads = Callable[[], Awaitable[tuple[Any, Any]]]


@dataclass(frozen=True)
class NewTask:
    """A follow-up that hands the order to a unit: its task is built from the order once the follow-up is applied."""

    why: str
    explanation: dict[str, Any] | None = None
    co_notify: tuple[str, ...] = ()


@dataclass
class _Batch:
    orders: dict[str, WorkOrder | None]
    before: dict[str, WorkOrder | None]
    applied_ids: dict[str, list[str]] = field(default_factory=dict)
    out: list[Emission] = field(default_factory=list)
    refusals: list[tuple[str, str, str, str]] = field(default_factory=list)
    sources: dict[str, list[str]] = field(default_factory=dict)  # of orders a verification may close
    holds: list[tuple[str, str, str]] = field(default_factory=list)  # units' open tasks: (+ or -, unit, task)
    recategorised: list[tuple[str, str]] = field(default_factory=list)  # (incident, new category)
    joined: dict[str, list[str]] = field(default_factory=dict)  # sources whose merged notices were applied


class Lifecycle:
    """Applies feedback events to work orders, for one city pack."""

    def __init__(
        self,
        pack: CityPack,
        dispatcher: Dispatcher,
        policy: Policy,
        orders: RedisOrderStore,
        incidents: IncidentIndex,
        emitter: Emitter,
        topics: Topics,
        *,
        units: Any = None,
        unit_loads: UnitLoads | None = None,
        merge_policy: MergePolicy | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.pack = pack
        self.dispatcher = dispatcher
        self.policy = policy
        self.orders = orders
        self.incidents = incidents
        self.emit = emitter
        self.topics = topics
        self.units = units  # the units' open-task counters (dispatch.store.AsyncUnitStore)
        self.unit_loads = unit_loads  # loads and field teams' positions, as the engine's dispatch reads them
        self.merge_policy = merge_policy or MergePolicy()
        self.clock = clock

    # ---------------------------------------------------------------- events

    async def process(self, envelopes: Sequence[Envelope]) -> BatchResult:
        now = self.clock()
        result = BatchResult(consumed=len(envelopes))
        parsed: list[tuple[Envelope, LifecycleEvent]] = []
        out: list[Emission] = []
        for envelope in envelopes:
            try:
                record = parse_object(envelope.value)
            except Rejected:
                continue  # the engine dead-letters feedback records that are not JSON objects
            if record.get("type") not in LIFECYCLE_TYPES:
                continue
            try:
                parsed.append((envelope, LifecycleEvent.from_record(record)))
            except FeedbackError as exc:
                out.append(self._dead_letter(exc, envelope, now))
        if not parsed and not out:
            return result
        ids = [e.incident_id for _, e in parsed]
        loaded = await self.orders.load(ids)
        pairs = [(e.incident_id, e.event_id) for _, e in parsed]
        done = await self.orders.applied(pairs)
        sensors = await self._sensor_orders([e for _, e in parsed])
        batch = _Batch(orders=dict(loaded), before=dict(loaded), out=out)
        closing = list(dict.fromkeys(e.incident_id for _, e in parsed if e.type == "verify"))
        if closing:  # a verification is followed by the close, which lists every source: one round trip for all
            listed = await self.incidents.source_ids_many(closing)
            batch.sources = dict(zip(closing, listed, strict=True))
        seen: set[str] = set()
        for (envelope, lifecycle_event), was_applied in zip(parsed, done, strict=True):
            if was_applied or lifecycle_event.event_id in seen:
                # applied before: send again whatever its follow-ups were, if they were not confirmed
                batch.out.append(Emission(f"life:{lifecycle_event.event_id}", [], Outcome.LIFECYCLE))
                continue
            seen.add(lifecycle_event.event_id)
            with event_ids(envelope, lifecycle_event):  # the lines about this event carry its order's ids
                await self._apply(batch, envelope, lifecycle_event, sensors, now)
        await self._commit(batch, result)
        return result

    async def _sensor_orders(self, events: list[LifecycleEvent]) -> dict[str, str]:
        sensors = [
            sensor
            for e in events
            if e.type == "dispatched" and e.get("origin") == "sensor"
            for sensor in [sensor_of_source(e.get("source_id"))]
            if sensor
        ]
        if not sensors:
            return {}
        return await self.orders.sensor_order(sensors)

    async def _apply(
        self, batch: _Batch, envelope: Envelope, e: LifecycleEvent, sensors: dict[str, str], now: datetime
    ) -> None:
        incident = e.incident_id
        if e.type == "merged" and str(e.get("source_id")).startswith("report:"):  # its reporter follows this order
            batch.joined.setdefault(incident, []).append(e.get("source_id"))  # (the order ignores a repeat report)
        before = _hold(batch.orders.get(incident))
        try:
            step = apply_event(batch.orders.get(incident), e, self.policy)
        except FeedbackError as exc:
            log.info("refused %s %s for %s: %s", e.type, e.event_id, incident, exc.reason)
            metrics.tally(metrics.LIFECYCLE_REFUSED, exc.code)
            batch.refusals.append((incident, e.event_id, exc.code, exc.reason))
            batch.out.append(self._dead_letter(exc, envelope, now))
            return
        if step.order is None or step.ignored:
            log.debug("ignored %s %s: %s", e.type, e.event_id, step.ignored)
            return
        metrics.tally(metrics.ORDER_EVENTS, e.type)
        order = step.order
        for stage, outcome in sla_outcomes(batch.orders.get(incident), order, e.type):
            metrics.tally(metrics.SLA_OUTCOMES, *sla_owner(self.pack, order.unit_id), stage, outcome)
        if e.type in ("ack", "resolve"):  # how long units take, for dashboards and SLA reviews
            taken = max(0.0, (e.at - order.created_at).total_seconds())
            histogram = metrics.TIME_TO_ACKNOWLEDGE if e.type == "ack" else metrics.TIME_TO_RESOLVE
            metrics.child(histogram, order.category or "-").observe(taken)
        records: list[Record] = []
        applied = [e.event_id]
        queue = list(step.then)
        while queue:
            follow = queue.pop(0)
            built = await self._follow_up(order, e, follow, batch.sources)
            if built is None:
                continue
            follow_event, new_task = built
            try:
                follow_step = apply_event(order, LifecycleEvent.from_record(follow_event), self.policy)
            except FeedbackError:
                log.exception("the follow-up %s of %s was refused; the order stays %s", follow.kind, e.event_id,
                              order.state.value)  # fmt: skip
                continue
            assert follow_step.order is not None
            order = follow_step.order
            metrics.tally(metrics.ORDER_EVENTS, follow_event["type"])
            applied.append(follow_event["event_id"])
            records.append((self.topics.feedback, incident, follow_event))
            if new_task is not None:  # the task carries the deadlines of the order as the follow-up left it
                records += self._task(order, e, new_task)
            queue.extend(follow_step.then)
        if e.type == "recategorise":  # later reports of the new category should join this incident
            batch.recategorised.append((incident, order.category or ""))
        if e.type == "assign":  # the ops centre chose the unit: its task goes out like any other
            records += self._task(order, e, NewTask(e.get("reason") or f"assigned by {e.actor}"))
        if e.type == "dispatched" and order.sensor_id and sensors.get(order.sensor_id) not in (None, incident):
            records.append(self._realarm(order, sensors[order.sensor_id], e))
        batch.orders[incident] = order
        after = _hold(order)
        if before != after:  # a unit's load: its orders still in its hands (written with the batch)
            if before is not None:
                batch.holds.append(("-", *before))
            if after is not None:
                batch.holds.append(("+", *after))
        batch.applied_ids.setdefault(incident, []).extend(applied)
        if records:
            batch.out.append(Emission(f"life:{e.event_id}", records, Outcome.LIFECYCLE))

    def _realarm(self, order: WorkOrder, earlier: str, cause: LifecycleEvent) -> Record:
        """The sensor of a new alarm incident had an alarm verified lately: reopen that one into this one."""
        reopen = event("reopen", earlier, sensor_actor(order.sensor_id), cause.at, key=cause.event_id,
                       successor=order.incident_id,
                       reason=f"sensor {order.sensor_id} alarmed again; continued as {order.incident_id}")  # fmt: skip
        return (self.topics.feedback, earlier, _stamped(reopen, cause.at))

    async def _follow_up(
        self, order: WorkOrder, cause: LifecycleEvent, follow: FollowUp, known: dict[str, list[str]] | None = None
    ) -> tuple[dict[str, Any], NewTask | None] | None:
        at = cause.at
        incident = order.incident_id
        if follow.kind == "close":
            sources = (known or {}).get(incident)
            if sources is None:
                sources = await self.incidents.source_ids(incident)
            record = event("close", incident, "engine", at, key=cause.event_id, task_id=order.task_id,
                           unit_id=order.unit_id, source_ids=sources)  # fmt: skip
            return _stamped(record, at), None
        if follow.kind == "merge_into":
            record = event("merge_order", incident, "engine", at, key=cause.event_id, task_id=order.task_id,
                           unit_id=order.unit_id, into=follow.target, reason="continued as a new incident")  # fmt: skip
            return _stamped(record, at), None
        if follow.kind == "dispatch_again":
            return self._dispatch(order, cause, "dispatched", order.unit_id, "reopened", "reopened: back to its unit")
        if follow.kind == "redispatch":
            covering, backup = self._candidates(order)
            choice = next_unit(order, covering, backup, self.policy)
            return self._dispatch(order, cause, choice.event, choice.unit_id, choice.rule, choice.why)
        if follow.kind == "reroute":
            return await self._reroute(order, cause, follow.target)
        log.warning("unknown follow-up %s of %s", follow.kind, cause.event_id)
        return None

    async def _reroute(
        self, order: WorkOrder, cause: LifecycleEvent, old_category: str | None
    ) -> tuple[dict[str, Any], NewTask]:
        """Route the order again under its new category: the task goes to whichever unit that names, attempt + 1.

        Loads and positions are read as for a first dispatch, so capacity and
        nearest-team rules apply; the order's own task does not count against
        the unit that holds it. The old unit's inbox gets a withdrawal and the
        new one's an assignment when the order is saved (feedback.store).
        """
        new_category = order.category or ""
        loads, positions = await self.unit_loads() if self.unit_loads is not None else (None, None)
        try:
            if order.lat is None or order.lon is None or self.pack.category(new_category) is None:
                raise ValueError("the order has no location or its new category is not in the pack")
            moved = reroute(self.dispatcher, old_category=old_category or "-", old_unit=order.unit_id,
                            new_category=new_category, lat=order.lat, lon=order.lon, source=order.origin,
                            now=cause.at, loads=loads, positions=positions or None)  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - a re-route that cannot be computed goes to the ops centre
            log.exception("re-routing %s to %s failed; the ops centre arbitrates", order.incident_id, new_category)
            why = f"category changed to {new_category}, but it could not be routed ({exc}): the ops centre decides"
            return self._dispatch(order, cause, "arbitrate", self.policy.fallback_unit, "arbitration", why)
        assignment = moved.assignment
        return self._dispatch(order, cause, "dispatched", assignment.unit_id, assignment.rule, moved.why,
                              explanation=assignment.explanation, co_notify=assignment.co_notify)  # fmt: skip

    def _candidates(self, order: WorkOrder) -> tuple[list[str], str | None]:
        """Units that handle the category and cover the point, in declared order, and the rejecting unit's backup."""
        unit = self.pack.unit(order.unit_id)
        backup = unit.backup if unit is not None else None
        if order.category is None or self.pack.category(order.category) is None or order.lat is None:
            return [], backup
        try:
            return self.dispatcher.covering_units(order.category, order.lat, order.lon or 0.0), backup
        except Exception:  # noqa: BLE001 - no candidates is a safe answer: the ops centre arbitrates
            log.exception("dispatch failed while re-dispatching %s", order.incident_id)
            return [], backup

    def _dispatch(
        self,
        order: WorkOrder,
        cause: LifecycleEvent,
        kind: str,
        unit_id: str,
        rule: str,
        why: str,
        *,
        explanation: dict[str, Any] | None = None,
        co_notify: tuple[str, ...] = (),
    ) -> tuple[dict[str, Any], NewTask]:
        attempt = order.attempt + 1
        record = event(kind, order.incident_id, "engine", cause.at, key=cause.event_id,
                       task_id=task_id_for(order.incident_id, attempt), unit_id=unit_id, attempt=attempt,
                       category=order.category, lat=order.lat, lon=order.lon, address=order.address,
                       origin=order.origin, source_id=order.source_id, rule=rule, why=why)  # fmt: skip
        return _stamped(record, cause.at), NewTask(why, explanation, co_notify)

    def _task(self, order: WorkOrder, cause: LifecycleEvent, new: NewTask) -> list[Record]:
        """The task of the order's current attempt, and notices to the units it names (as for a first task)."""
        explanation = {**(new.explanation or {}), "pack": self.pack.name, "pack_version": self.pack.version,
                       "why": new.why, "cause": cause.type, "decided_by": cause.actor,
                       "rejected_by": [r.unit_id for r in order.rejections]}  # fmt: skip
        task = task_record(
            task_id=order.task_id, incident_id=order.incident_id, unit_id=order.unit_id, attempt=order.attempt,
            category=order.category, lat=order.lat, lon=order.lon, address=order.address,
            dispatched_at=cause.at.astimezone(UTC), sla=task_sla(order, self.policy.calendar), rule=order.rule,
            explanation=explanation, co_notify=new.co_notify,
        )  # fmt: skip
        metrics.tally(metrics.ASSIGNMENTS, order.unit_id, order.rule or "-")
        notices = co_notices(self.topics, order.incident_id, order.task_id, order.unit_id, order.category,
                             new.co_notify, cause.at, key=f"{cause.event_id}:")  # fmt: skip
        return [(self.topics.tasks, order.incident_id, task),
                *((topic, key, _stamped(record, cause.at)) for topic, key, record in notices)]  # fmt: skip

    def _dead_letter(self, exc: FeedbackError, envelope: Envelope, now: datetime) -> Emission:
        return dead_lettered(DeadLetter("lifecycle", exc.code, exc.reason), envelope, now, self.topics.deadletter)

    async def _commit(self, batch: _Batch, result: BatchResult) -> None:
        claims = await self.emit.claim(batch.out)
        changes = [
            Change(batch.before.get(incident), order, tuple(batch.applied_ids.get(incident, ())))
            for incident, order in batch.orders.items()
            if order is not None and incident in batch.applied_ids
        ]
        await self.orders.save(changes)
        if batch.joined:  # reporters of merged reports are told the order's steps (one round trip, repeatable)
            await self.orders.record_reports(batch.joined)
        if self.units is not None and batch.holds:
            units, holds = self.units, batch.holds
            await units.apply_holds(holds)
        for refusal in batch.refusals:
            await self.orders.refuse(*refusal)
        if batch.recategorised:
            moves = [(i, c, self.merge_policy.rule_for(c).family) for i, c in batch.recategorised]
            await self.incidents.recategorise(moves)
        finished = [c.after.incident_id for c in changes if c.after.state in FINISHED]
        if finished:  # nothing merges into them any more (idempotent)
            await self.incidents.close_many(finished)
        sent, skipped = await self.emit.send(batch.out, claims)
        count(result, sent, skipped, self.topics.tasks)
        result.accepted = len(changes)
        metrics.flush()


# The stages an event completes: a unit's acknowledgement, its resolution, the ops centre's verification. Other
# events that stop a clock (reject, recategorise, cancel, merge, reopen) end it without meeting it.
COMPLETES = {
    "ack": ("acknowledge",),
    "resolve": ("acknowledge", "resolve"),
    "verify": ("acknowledge", "resolve", "verify"),
}


def sla_outcomes(before: WorkOrder | None, after: WorkOrder, event_type: str) -> list[tuple[str, str]]:
    """(stage, ``met`` or ``breached``) for each SLA stage this event decided.

    ``breached``: the timer's ``escalate`` was applied to a clock not breached before. ``met``: a completing event
    stopped a running or paused clock that never breached. The order's clocks remember both, and the log's order
    decides which comes first, so each stage of a task ends in at most one outcome, counted once (a redelivered
    event is found applied and ignored).
    """
    if before is None:
        return []
    decided = []
    for stage, now in after.clocks.items():
        was = before.clocks.get(stage)
        if was is None:
            continue
        if now.breached and not was.breached:
            decided.append((stage, "breached"))
        elif stage in COMPLETES.get(event_type, ()) and was.stopped is None and now.stopped is not None:
            if not now.breached:
                decided.append((stage, "met"))
    return decided


def _hold(order: WorkOrder | None) -> tuple[str, str] | None:
    """(unit, task) while the order is in a unit's hands, else None."""
    return (order.unit_id, order.task_id) if order is not None and order.state in ACTIVE else None


def _stamped(record: dict[str, Any], at: datetime) -> dict[str, Any]:
    """Keep the full precision of the causing time (``event`` writes it as given)."""
    record["at"] = iso_utc(at)
    return record


def event_ids(envelope: Envelope, e: LifecycleEvent) -> Any:
    """Bind a lifecycle event's ids (its incident, task, unit and own id, and where it was read) for its log lines."""
    return bound(incident_id=e.incident_id, event_id=e.event_id, task_id=e.task_id, unit_id=e.unit_id,
                 record=record_position(envelope.topic, envelope.partition, envelope.offset))  # fmt: skip
