"""The closed loop in the worker: work orders from feedback events, follow-ups, and the SLA timer.

The worker's batch consumer hands batches of ``<prefix>.feedback`` records to
:meth:`Lifecycle.process`. Each lifecycle event is applied to its order by the
pure core (:func:`feedback.apply`); what must follow (re-dispatch after a
rejection, arbitration, the close after a verification, a new task after a
reopening) is built here, applied to the order at once and emitted, so the
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

The timer pops due deadlines from Redis (see :class:`feedback.store.RedisOrderStore`)
and emits ``sla_warning`` (yellow, 75% of a budget), ``escalate`` (red, to the
supervisor unit) and the sensor's ``verify`` after a quiet period, each with an
id derived from order, stage and deadline, through the ledger, so a restart
repeats nothing and loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from classifiers.merge import MergePolicy
from classifiers.store import IncidentIndex
from dispatch import CityPack, Dispatcher
from dispatch.reroute import reroute
from feedback import FINISHED, NOTICES, FeedbackError, FollowUp, LifecycleEvent, Policy, SlaSpec, WorkOrder
from feedback import apply as apply_event
from feedback.lifecycle import next_unit
from feedback.orders import ACTIVE, EVENTS, parse_timer_member
from feedback.store import Change, RedisOrderStore
from feedback.views import sla_view
from streams import metrics
from streams.engine import BatchResult, Sink
from streams.outcomes import Envelope, dead_letter, event, iso, task_id_for
from streams.records import Rejected, parse_object
from streams.sinks import delivered
from streams.state import RESEND, SENT, Ledger, with_retry
from streams.topics import CONTRACT_VERSION, Topics

log = logging.getLogger(__name__)

LIFECYCLE_TYPES = EVENTS | NOTICES
Record = tuple[str, str, dict[str, Any]]


def policy_for(pack: CityPack, calendar: Any, settings: Any) -> Policy:
    """The lifecycle policy of a city pack under the deployment's settings."""
    slas = {
        c.code: SlaSpec(c.sla.acknowledge, c.sla.resolve, c.sla.verify, c.sla.clock)
        for c in pack.spec.categories
        if c.sla is not None
    }
    return Policy(
        calendar=calendar,
        slas=slas,
        fallback_unit=pack.spec.fallback_unit,
        max_rejections=settings.max_rejections,
        sensor_quiet=timedelta(seconds=settings.sensor_quiet_s),
        sensor_reopen=timedelta(seconds=settings.sensor_reopen_s),
    )


def supervisor_of(pack: CityPack, unit_id: str, stage: str) -> str:
    """Who an overdue order escalates to: the unit's department, else the ops centre (verification: the ops centre)."""
    unit = pack.unit(unit_id)
    if stage == "verify" or unit is None or not unit.department:
        return pack.spec.fallback_unit
    return unit.department


def incident_of_task(task_id: str) -> str | None:
    """``tsk-<digest>-<attempt>`` -> ``inc-<digest>`` (the inverse of :func:`streams.outcomes.task_id_for`)."""
    head, sep, attempt = task_id.rpartition("-")
    if not sep or not attempt.isdigit() or not head.startswith("tsk-"):
        return None
    return "inc-" + head[len("tsk-") :]


@dataclass
class _Out:
    """Records to emit under one ledger key."""

    key: str
    records: list[Record]
    kind: str = "lifecycle"


@dataclass
class _Batch:
    orders: dict[str, WorkOrder | None]
    before: dict[str, WorkOrder | None]
    applied_ids: dict[str, list[str]] = field(default_factory=dict)
    out: list[_Out] = field(default_factory=list)
    refusals: list[tuple[str, str, str, str]] = field(default_factory=list)
    sources: dict[str, list[str]] = field(default_factory=dict)  # of orders a verification may close
    holds: list[tuple[str, str, str]] = field(default_factory=list)  # units' open tasks: (+ or -, unit, task)
    recategorised: list[tuple[str, str]] = field(default_factory=list)  # (incident, new category)


class Lifecycle:
    """Applies feedback events to work orders and runs the SLA timer, for one city pack."""

    def __init__(
        self,
        pack: CityPack,
        dispatcher: Dispatcher,
        policy: Policy,
        orders: RedisOrderStore,
        incidents: IncidentIndex,
        ledger: Ledger,
        sink: Sink,
        topics: Topics,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        timer_lease: timedelta = timedelta(seconds=10),
    ) -> None:
        self.pack = pack
        self.dispatcher = dispatcher
        self.policy = policy
        self.orders = orders
        self.incidents = incidents
        self.ledger = ledger
        self.sink = sink
        self.topics = topics
        self.clock = clock
        self.timer_lease = timer_lease
        self.units: Any = None  # the units' open-task counters (dispatch's store), set by build_lifecycle
        self.merge_policy = MergePolicy()  # the engine's, set by build_lifecycle
        # the units' loads and field teams' positions as dispatch reads them (the engine's), set by build_lifecycle
        self.unit_state: Callable[[], Awaitable[tuple[Any, Any]]] | None = None

    # ---------------------------------------------------------------- events

    async def process(self, envelopes: Sequence[Envelope]) -> BatchResult:
        now = self.clock()
        result = BatchResult(consumed=len(envelopes))
        parsed: list[tuple[Envelope, LifecycleEvent]] = []
        out: list[_Out] = []
        for envelope in envelopes:
            try:
                record = parse_object(envelope.value)
            except Rejected:
                continue  # the engine's feedback agent dead-letters records that are not JSON objects
            if record.get("type") not in LIFECYCLE_TYPES:
                continue
            try:
                parsed.append((envelope, LifecycleEvent.from_record(record)))
            except FeedbackError as exc:
                out.append(self._dead_letter(exc, envelope, now))
        if not parsed and not out:
            return result
        ids = [e.incident_id for _, e in parsed]
        loaded = await with_retry("orders_load", lambda: self.orders.load(ids))
        pairs = [(e.incident_id, e.event_id) for _, e in parsed]
        done = await with_retry("orders_applied", lambda: self.orders.applied(pairs))
        sensors = await self._sensor_orders([e for _, e in parsed])
        batch = _Batch(orders=dict(loaded), before=dict(loaded), out=out)
        closing = list(dict.fromkeys(e.incident_id for _, e in parsed if e.type == "verify"))
        if closing:  # a verification is followed by the close, which lists every source: one round trip for all
            listed = await with_retry("incident_sources", lambda: self.incidents.source_ids_many(closing))
            batch.sources = dict(zip(closing, listed, strict=True))
        seen: set[str] = set()
        for (envelope, lifecycle_event), was_applied in zip(parsed, done, strict=True):
            if was_applied or lifecycle_event.event_id in seen:
                # applied before: send again whatever its follow-ups were, if they were not confirmed
                batch.out.append(_Out(f"life:{lifecycle_event.event_id}", [], "redelivered"))
                continue
            seen.add(lifecycle_event.event_id)
            await self._apply(batch, envelope, lifecycle_event, sensors, now)
        await self._commit(batch, result)
        return result

    async def _sensor_orders(self, events: list[LifecycleEvent]) -> dict[str, str]:
        sensors = []
        for e in events:
            if e.type == "dispatched" and e.get("origin") == "sensor":
                sensor = _sensor_id(e.get("source_id"))
                if sensor:
                    sensors.append(sensor)
        if not sensors:
            return {}
        return await with_retry("sensor_orders", lambda: self.orders.sensor_order(sensors))

    async def _apply(
        self, batch: _Batch, envelope: Envelope, e: LifecycleEvent, sensors: dict[str, str], now: datetime
    ) -> None:
        incident = e.incident_id
        before = _hold(batch.orders.get(incident))
        try:
            step = apply_event(batch.orders.get(incident), e, self.policy)
        except FeedbackError as exc:
            log.info("refused %s %s for %s: %s", e.type, e.event_id, incident, exc.reason)
            metrics.LIFECYCLE_REFUSED.labels(exc.code).inc()
            batch.refusals.append((incident, e.event_id, exc.code, exc.reason))
            batch.out.append(self._dead_letter(exc, envelope, now))
            return
        if step.order is None or step.ignored:
            log.debug("ignored %s %s: %s", e.type, e.event_id, step.ignored)
            return
        metrics.ORDER_EVENTS.labels(e.type).inc()
        order = step.order
        if e.type in ("ack", "resolve"):  # how long units take, for dashboards and SLA reviews
            taken = max(0.0, (e.at - order.created_at).total_seconds())
            histogram = metrics.TIME_TO_ACKNOWLEDGE if e.type == "ack" else metrics.TIME_TO_RESOLVE
            histogram.labels(order.category or "-").observe(taken)
        records: list[Record] = []
        applied = [e.event_id]
        queue = list(step.then)
        while queue:
            follow = queue.pop(0)
            built = await self._follow_up(order, e, follow, batch.sources)
            if built is None:
                continue
            follow_event, extra = built
            try:
                follow_step = apply_event(order, LifecycleEvent.from_record(follow_event), self.policy)
            except FeedbackError:
                log.exception("the follow-up %s of %s was refused; the order stays %s", follow.kind, e.event_id,
                              order.state.value)  # fmt: skip
                continue
            assert follow_step.order is not None
            order = follow_step.order
            metrics.ORDER_EVENTS.labels(follow_event["type"]).inc()
            applied.append(follow_event["event_id"])
            records.append((self.topics.feedback, incident, follow_event))
            records.extend(extra)
            queue.extend(follow_step.then)
        if e.type == "recategorise":  # later reports of the new category should join this incident
            batch.recategorised.append((incident, order.category or ""))
        if e.type == "assign":  # the ops centre chose the unit: its task goes out like any other
            records.append(self._task(order, e, e.get("reason") or f"assigned by {e.actor}"))
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
            batch.out.append(_Out(f"life:{e.event_id}", records))

    def _realarm(self, order: WorkOrder, earlier: str, cause: LifecycleEvent) -> Record:
        """The sensor of a new alarm incident had an alarm verified lately: reopen that one into this one."""
        reopen = event("reopen", earlier, f"sensor:{order.sensor_id}", cause.at, key=cause.event_id,
                       successor=order.incident_id,
                       reason=f"sensor {order.sensor_id} alarmed again; continued as {order.incident_id}")  # fmt: skip
        return (self.topics.feedback, earlier, _stamped(reopen, cause.at))

    async def _follow_up(
        self, order: WorkOrder, cause: LifecycleEvent, follow: FollowUp, known: dict[str, list[str]] | None = None
    ) -> tuple[dict[str, Any], list[Record]] | None:
        at = cause.at
        incident = order.incident_id
        if follow.kind == "close":
            sources = (known or {}).get(incident)
            if sources is None:
                sources = await with_retry("incident_sources", lambda: self.incidents.source_ids(incident))
            record = event("close", incident, "engine", at, key=cause.event_id, task_id=order.task_id,
                           unit_id=order.unit_id, source_ids=sources)  # fmt: skip
            return _stamped(record, at), []
        if follow.kind == "merge_into":
            record = event("merge_order", incident, "engine", at, key=cause.event_id, task_id=order.task_id,
                           unit_id=order.unit_id, into=follow.target, reason="continued as a new incident")  # fmt: skip
            return _stamped(record, at), []
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
    ) -> tuple[dict[str, Any], list[Record]]:
        """Route the order again under its new category: the task goes to whichever unit that names, attempt + 1.

        Loads and positions are read as for a first dispatch, so capacity and
        nearest-team rules apply; the order's own task does not count against
        the unit that holds it. The old unit's inbox gets a withdrawal and the
        new one's an assignment when the order is saved (feedback.store).
        """
        new_category = order.category or ""
        loads, positions = await self.unit_state() if self.unit_state is not None else (None, None)
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
        why = assignment.explanation["recategorised"]["why"]
        return self._dispatch(order, cause, "dispatched", assignment.unit_id, assignment.rule, why,
                              explanation=assignment.explanation, co_notify=assignment.co_notify)  # fmt: skip

    def _candidates(self, order: WorkOrder) -> tuple[list[str], str | None]:
        """Units that handle the category and cover the point, in declared order, and the rejecting unit's backup."""
        unit = self.pack.unit(order.unit_id)
        backup = unit.backup if unit is not None else None
        if order.category is None or self.pack.category(order.category) is None or order.lat is None:
            return [], backup
        try:
            assignment = self.dispatcher.assign(order.category, order.lat, order.lon or 0.0)
        except Exception:  # noqa: BLE001 - no candidates is a safe answer: the ops centre arbitrates
            log.exception("dispatch failed while re-dispatching %s", order.incident_id)
            return [], backup
        covering = [c["unit"] for c in assignment.explanation["candidates"] if c["outcome"] in ("chosen", "lost")]
        return covering, backup

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
    ) -> tuple[dict[str, Any], list[Record]]:
        attempt = order.attempt + 1
        task_id = task_id_for(order.incident_id, attempt)
        record = event(kind, order.incident_id, "engine", cause.at, key=cause.event_id, task_id=task_id,
                       unit_id=unit_id, attempt=attempt, category=order.category, lat=order.lat, lon=order.lon,
                       address=order.address, origin=order.origin, source_id=order.source_id, rule=rule,
                       why=why)  # fmt: skip
        record = _stamped(record, cause.at)
        # the task carries the deadlines the new unit has: those of the order once this event is applied
        preview = apply_event(order, LifecycleEvent.from_record(record), self.policy).order
        assert preview is not None
        records = [self._task(preview, cause, why, explanation, co_notify)]
        for other in co_notify:  # as for a first dispatch: near a boundary, the neighbour hears of it
            notice = event("co_notified", order.incident_id, "engine", cause.at, key=f"{cause.event_id}:{other}",
                           task_id=task_id, unit_id=other, owner=unit_id, category=order.category)  # fmt: skip
            records.append((self.topics.feedback, order.incident_id, _stamped(notice, cause.at)))
        return record, records

    def _task(
        self,
        order: WorkOrder,
        cause: LifecycleEvent,
        why: str,
        detail: dict[str, Any] | None = None,
        co_notify: tuple[str, ...] = (),
    ) -> Record:
        """The task record of an order's current attempt (same fields as the engine's first task)."""
        sla = sla_view(order, self.policy.calendar)
        explanation = {**(detail or {}), "pack": self.pack.name, "pack_version": self.pack.version, "why": why,
                       "cause": cause.type, "decided_by": cause.actor,
                       "rejected_by": [r.unit_id for r in order.rejections]}  # fmt: skip
        task = {
            "schema": CONTRACT_VERSION,
            "task_id": order.task_id,
            "incident_id": order.incident_id,
            "unit_id": order.unit_id,
            "attempt": order.attempt,
            "category": order.category,
            "lat": order.lat,
            "lon": order.lon,
            "address": order.address,
            "dispatched_at": iso(cause.at.astimezone(UTC)),
            "sla": {
                "clock": sla["clock"],
                "acknowledge_by": sla["acknowledge_by"],
                "resolve_by": sla["resolve_by"],
                "verify_within": order.sla.verify if order.sla else None,
            },  # fmt: skip
            "reason": {"rule": order.rule, "explanation": explanation},
            "co_notify": list(co_notify),
        }
        metrics.ASSIGNMENTS.labels(order.unit_id, order.rule or "-").inc()
        return (self.topics.tasks, order.incident_id, task)

    def _dead_letter(self, exc: FeedbackError, envelope: Envelope, now: datetime) -> _Out:
        record = dead_letter("lifecycle", exc.code, exc.reason, envelope, now)
        key = record["deadletter_id"]
        return _Out(f"dlq:{key}", [(self.topics.deadletter, key, record)], f"deadletter:{exc.code}")

    async def _commit(self, batch: _Batch, result: BatchResult) -> None:
        claims = await self.ledger.claim([(o.key, {"records": o.records}) for o in batch.out]) if batch.out else []
        changes = [
            Change(batch.before.get(incident), order, tuple(batch.applied_ids.get(incident, ())))
            for incident, order in batch.orders.items()
            if order is not None and incident in batch.applied_ids
        ]
        await self.orders.save(changes)
        if self.units is not None and batch.holds:
            units, holds = self.units, batch.holds
            await with_retry("unit_holds", lambda: units.apply_holds(holds))
        for refusal in batch.refusals:
            await with_retry("order_refuse", lambda r=refusal: self.orders.refuse(*r))
        if batch.recategorised:
            moves = [(i, c, self.merge_policy.rule_for(c).family) for i, c in batch.recategorised]
            await with_retry("incident_recategorise", lambda: self.incidents.recategorise(moves))
        finished = [c.after.incident_id for c in changes if c.after.state in FINISHED]
        if finished:  # nothing merges into them any more (idempotent)
            await with_retry("incident_close", lambda: self.incidents.close_many(finished))
        sent = await self._send(batch.out, claims)
        result.duplicates += len(batch.out) - len(sent)
        for item, records in sent:
            result.emitted += len(records)
            result.tasks += sum(topic == self.topics.tasks for topic, _, _ in records)
            result.dead_lettered += item.kind.startswith("deadletter")
        result.accepted += len(changes)

    async def _send(self, out: list[_Out], claims: list[Any]) -> list[tuple[_Out, list[Any]]]:
        """Send every outcome the ledger has not seen acknowledged (a stored one as stored), then confirm them.

        Returns each outcome sent with the records that went out.
        """
        sent = [(item, claim.payload["records"] if claim.status == RESEND else item.records)
                for item, claim in zip(out, claims, strict=True) if claim.status != SENT]  # fmt: skip
        encoded = [record for _, records in sent for record in _encoded(records)]
        if encoded:
            await self.sink.send_all(encoded)
        confirmed = [claim.key for claim in claims if claim.status != SENT]
        await delivered(self.sink, lambda: self.ledger.confirm(confirmed))
        return sent

    # ----------------------------------------------------------------- timer

    async def fire_due(self, limit: int = 500) -> int:
        """Emit every deadline that is due; returns how many events were sent."""
        now = self.clock()
        now_ms = int(now.timestamp() * 1000)
        lease_ms = int(self.timer_lease.total_seconds() * 1000)
        members = await with_retry("timers_pop", lambda: self.orders.pop_due(now_ms, limit, lease_ms))
        if not members:
            return 0
        parsed = [(m, *parse_timer_member(m)) for m in members]
        orders = await with_retry("orders_load", lambda: self.orders.load([p[1] for p in parsed]))
        out: list[_Out] = []
        stale: list[str] = []
        for member, incident, stage, level, _due_ms in parsed:
            order = orders.get(incident)
            when = None if order is None else order.timers(self.policy.calendar).get(member)
            if order is None or when is None:
                stale.append(member)  # the clock stopped or moved since this deadline was set
                continue
            record = self._timer_event(order, member, stage, level, when)
            out.append(_Out(f"timer:{member}", [(self.topics.feedback, incident, record)]))
        sent = 0
        if out:
            claims = await self.ledger.claim([(o.key, {"records": o.records}) for o in out])
            emitted = await self._send(out, claims)
            sent = sum(len(records) for _, records in emitted)
            acked = self.clock()
            for _, records in emitted:
                for _, _, record in records:
                    stage = record.get("stage") or "sensor"
                    metrics.TIMER_EVENTS.labels(record["type"], stage).inc()
                    if record["type"] in ("sla_warning", "escalate"):  # once per order, stage and deadline
                        category = record.get("category") or "-"
                        metrics.SLA_WARNINGS.labels(category, stage, record["level"]).inc()
                        if record["type"] == "escalate":
                            metrics.SLA_BREACHES.labels(category, stage).inc()
                    due = datetime.fromisoformat(record["at"].replace("Z", "+00:00"))
                    metrics.TIMER_LAG.observe(max(0.0, (acked - due).total_seconds()))
        # marked fired once the events are out: a round whose transaction does not commit is popped again
        await delivered(self.sink, lambda: with_retry("timers_fired", lambda: self.orders.fired(members)))
        return sent

    def _timer_event(self, order: WorkOrder, member: str, stage: str, level: str, when: datetime) -> dict[str, Any]:
        incident = order.incident_id
        if stage == "sensor":
            assert order.quiet_due is not None
            quiet = int(self.policy.sensor_quiet.total_seconds())
            record = event("verify", incident, f"sensor:{order.sensor_id}", when, key=member, task_id=order.task_id,
                           unit_id=order.unit_id, quiet_due=order.quiet_due.isoformat(),
                           reason=f"readings normal for {quiet} s with no re-alarm")  # fmt: skip
            return _stamped(record, when)
        clock = order.clocks[stage]
        due = clock.due(self.policy.calendar)
        assert due is not None
        kind = "sla_warning" if level == "yellow" else "escalate"
        record = event(kind, incident, "timer", when, key=member, task_id=order.task_id, unit_id=order.unit_id,
                       stage=stage, level=level, due=due.isoformat(), category=order.category,
                       supervisor=supervisor_of(self.pack, order.unit_id, stage))  # fmt: skip
        return _stamped(record, when)


def _hold(order: WorkOrder | None) -> tuple[str, str] | None:
    """(unit, task) while the order is in a unit's hands, else None."""
    return (order.unit_id, order.task_id) if order is not None and order.state in ACTIVE else None


def _encoded(records: Sequence[Record] | list[Any]) -> list[tuple[str, bytes, bytes]]:
    return [(topic, key.encode("utf-8"), orjson.dumps(record)) for topic, key, record in records]


def _stamped(record: dict[str, Any], at: datetime) -> dict[str, Any]:
    """Keep the full precision of the causing time (``event`` writes it as given)."""
    record["at"] = iso(at.astimezone(UTC))
    return record


def _sensor_id(source_id: Any) -> str | None:
    if not isinstance(source_id, str) or not source_id.startswith("sensor:"):
        return None
    return source_id[len("sensor:") :].rsplit(":", 1)[0]


def build_lifecycle(engine: Any, redis_client: Any, settings: Any) -> Lifecycle:
    """The worker's lifecycle, sharing the engine's pack, dispatcher, calendar, ledger, index and sink."""
    store = RedisOrderStore(
        redis_client,
        settings.redis_namespace,
        engine.calendar,
        event_ttl_s=settings.dedup_ttl_s,
        retention_s=settings.order_retention_s,
        sensor_reopen_s=int(settings.sensor_reopen_s),
    )
    lifecycle = Lifecycle(
        engine.pack,
        engine.dispatcher,
        policy_for(engine.pack, engine.calendar, settings),
        store,
        engine.incidents,
        engine.ledger,
        engine.sink,
        engine.topics,
        timer_lease=timedelta(seconds=settings.timer_lease_s),
    )
    lifecycle.units = engine.units
    lifecycle.unit_state = engine.unit_state
    lifecycle.merge_policy = engine.merge_policy
    return lifecycle


async def fire_safely(lifecycle: Lifecycle) -> None:
    """One timer tick; a failure is logged and the next tick tries again (popped deadlines keep their lease)."""
    try:
        while await lifecycle.fire_due() > 0:
            pass
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - the timer must keep ticking; leases hand unfinished deadlines on
        log.exception("the SLA timer failed; retrying at the next tick")
