"""Applying lifecycle events to work orders: the table's checks, each event's effect, and what follows.

``apply(order, event, policy)`` is a pure function: the order before, one
event, the city's policy in; the order after and the follow-ups (re-dispatch,
close, merge) out. Time comes from the event (``event.at``), so replaying the
same events always gives the same orders and deadlines.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from feedback.errors import IllegalTransition, InvalidEvent, NotAssigned, StaleEvent, UnknownOrder
from feedback.orders import (
    EVENTS,
    NOTICES,
    REJECT_REASONS,
    STAGES,
    TABLE,
    LifecycleEvent,
    Rejection,
    SlaSpec,
    State,
    Transition,
    WorkOrder,
    allowed_events,
    dispatch_clocks,
    sensor_of_source,
)
from feedback.sla import BusinessCalendar, StageClock

MAX_HISTORY = 200
MAX_NOTE = 2000
MAX_URL = 2048


@dataclass(frozen=True)
class Policy:
    """What the lifecycle needs from the city: its calendar, SLA targets, ops centre and settings."""

    calendar: BusinessCalendar | None
    slas: Mapping[str, SlaSpec]
    fallback_unit: str
    max_rejections: int = 2
    sensor_quiet: timedelta = timedelta(minutes=30)
    sensor_reopen: timedelta = timedelta(hours=6)


@dataclass(frozen=True)
class FollowUp:
    """What the engine does next: ``redispatch`` (pick a new unit), ``dispatch_again`` (the same unit,
    after a reopening), ``reroute`` (route again under the new category; ``target`` is the old one),
    ``close`` (after verification) or ``merge_into`` (``target``)."""

    kind: str
    target: str | None = None


@dataclass(frozen=True)
class Step:
    """The result of applying one event."""

    order: WorkOrder | None
    transition: Transition | None = None
    then: tuple[FollowUp, ...] = ()
    ignored: str | None = None  # a notice that changed nothing, and why


# ----------------------------------------------------------------------- checks


def _need(event: LifecycleEvent, name: str, kind: type | tuple[type, ...] = str, limit: int = 256) -> Any:
    value = event.fields.get(name) if name not in ("task_id", "unit_id") else getattr(event, name)
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidEvent(f"a {event.type} event needs {name!r}")
    if not isinstance(value, kind) or isinstance(value, bool):
        raise InvalidEvent(f"{name!r} of a {event.type} event has the wrong type")
    if isinstance(value, str) and len(value) > limit:
        raise InvalidEvent(f"{name!r} is {len(value)} characters; the limit is {limit}")
    return value


def _optional_text(event: LifecycleEvent, name: str, limit: int) -> str | None:
    value = event.fields.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidEvent(f"{name!r} must be a string")
    if len(value) > limit:
        raise InvalidEvent(f"{name!r} is {len(value)} characters; the limit is {limit}")
    return value


def _validate(event: LifecycleEvent) -> None:
    """Fields each event type needs."""
    kind = event.type
    if kind in ("dispatched", "arbitrate", "assign"):
        _need(event, "unit_id")
        _need(event, "task_id")
        attempt = _need(event, "attempt", int)
        if attempt < 1:
            raise InvalidEvent("'attempt' must be at least 1")
    if kind == "reject":
        code = _need(event, "reason_code", limit=64)
        if code not in REJECT_REASONS:
            raise InvalidEvent(f"reason_code {code!r} is not one of {sorted(REJECT_REASONS)}")
        if code == "other":
            _need(event, "reason", limit=MAX_NOTE)
    if kind == "merge_order":
        _need(event, "into")
    if kind == "recategorise":
        _need(event, "category", limit=64)
        _need(event, "attempt", int)
    if kind in ("sla_warning", "escalate"):
        stage = _need(event, "stage", limit=32)
        if stage not in STAGES:
            raise InvalidEvent(f"stage {stage!r} is not one of {list(STAGES)}")
        _need(event, "due")
    for name in ("reason", "note"):
        _optional_text(event, name, MAX_NOTE)
    _optional_text(event, "media_url", MAX_URL)


def _not_arbitrated(order: WorkOrder, event: LifecycleEvent, policy: Policy) -> None:
    if order.arbitrated:
        raise IllegalTransition(
            f"order {order.incident_id} was assigned by the ops centre's arbitration; it cannot be rejected again"
        )


def _next_attempt(order: WorkOrder, event: LifecycleEvent, policy: Policy) -> None:
    if event.get("attempt") != order.attempt + 1:
        raise StaleEvent(
            f"the reassignment was made for attempt {event.get('attempt')}, but the order is at attempt "
            f"{order.attempt}; look again and retry"
        )
    if event.unit_id == order.unit_id and order.state is not State.ARBITRATION:
        raise IllegalTransition(f"order {order.incident_id} is already assigned to {order.unit_id}")


def _new_category(order: WorkOrder, event: LifecycleEvent, policy: Policy) -> None:
    if event.get("attempt") != order.attempt:
        raise StaleEvent(
            f"the category was changed on attempt {event.get('attempt')}, but the order is at attempt "
            f"{order.attempt}; look again and retry"
        )
    if event.get("category") == order.category:
        raise IllegalTransition(f"order {order.incident_id} is already in category {order.category}")


def _quiet_period(order: WorkOrder, event: LifecycleEvent, policy: Policy) -> None:
    if event.actor_kind != "sensor":
        return
    due = event.get("quiet_due")
    if order.quiet_due is None or due != order.quiet_due.isoformat():
        raise StaleEvent(f"the sensor re-alarmed or the quiet period changed; {order.incident_id} stays open")


def _reopen_window(order: WorkOrder, event: LifecycleEvent, policy: Policy) -> None:
    if event.actor_kind != "sensor" or order.state is State.RESOLVED:
        return
    if order.verified_at is None or event.at - order.verified_at > policy.sensor_reopen:
        raise IllegalTransition(
            f"a re-alarm more than {policy.sensor_reopen} after verification does not reopen {order.incident_id}"
        )


def _other_order(order: WorkOrder, event: LifecycleEvent, policy: Policy) -> None:
    if event.get("into") == order.incident_id:
        raise IllegalTransition("an order cannot be merged into itself")


GUARDS: dict[str, Callable[[WorkOrder, LifecycleEvent, Policy], None]] = {
    "not_arbitrated": _not_arbitrated,
    "next_attempt": _next_attempt,
    "new_category": _new_category,
    "quiet_period": _quiet_period,
    "reopen_window": _reopen_window,
    "other_order": _other_order,
}


def check(order: WorkOrder | None, event: LifecycleEvent, policy: Policy) -> Transition:
    """The table row that allows ``event`` on ``order``, or the error that refuses it."""
    if event.type not in EVENTS:
        raise InvalidEvent(f"{event.type!r} is not a lifecycle transition")
    _validate(event)
    state = None if order is None else order.state
    row = TABLE.get((state, event.type))
    if row is None:
        if order is None:
            raise UnknownOrder(f"incident {event.incident_id} has no work order (a dispatched event creates one)")
        allowed = ", ".join(allowed_events(order.state, event.actor_kind)) or "nothing"
        raise IllegalTransition(
            f"{event.type} is not allowed when order {order.incident_id} is {order.state.value}; allowed: {allowed}"
        )
    if event.actor_kind not in row.actors:
        raise IllegalTransition(f"{event.type} is for {' or '.join(sorted(row.actors))}, not {event.actor}")
    if order is not None and event.actor_kind == "unit":
        if event.actor != f"unit:{order.unit_id}":
            raise NotAssigned(f"order {order.incident_id} is assigned to {order.unit_id}, not {event.actor[5:]}")
        if event.task_id is not None and event.task_id != order.task_id:
            raise StaleEvent(f"task {event.task_id} was replaced by {order.task_id}")
    if order is not None and row.guard is not None:
        GUARDS[row.guard](order, event, policy)
    return row


# ---------------------------------------------------------------------- effects


def _clock(order: WorkOrder, stage: str, policy: Policy) -> StageClock | None:
    """A fresh clock for ``stage`` from the order's SLA, or None if the category has no target for it."""
    sla = order.sla
    if sla is None:
        return None
    span = {"acknowledge": sla.acknowledge, "resolve": sla.resolve, "verify": sla.verify}[stage]
    return None if span is None else StageClock.fresh(span, sla.clock, policy.calendar)


def _restart(order: WorkOrder, stage: str, at: datetime, policy: Policy) -> WorkOrder:
    clock = _clock(order, stage, policy)
    return order.with_clock(stage, None if clock is None else clock.start(at))


def _resume(order: WorkOrder, stage: str, at: datetime) -> WorkOrder:
    clock = order.clocks.get(stage)
    return order if clock is None else order.with_clock(stage, clock.start(at))


def _pause(order: WorkOrder, stage: str, at: datetime, policy: Policy) -> WorkOrder:
    clock = order.clocks.get(stage)
    return order if clock is None else order.with_clock(stage, clock.pause(at, policy.calendar))


def _stop(order: WorkOrder, stages: Sequence[str], at: datetime, policy: Policy) -> WorkOrder:
    for stage in stages:
        clock = order.clocks.get(stage)
        if clock is not None:
            order = order.with_clock(stage, clock.stop(at, policy.calendar))
    return order


def _create(event: LifecycleEvent, policy: Policy) -> WorkOrder:
    category = event.get("category")
    source_id = event.get("source_id")
    sensor = sensor_of_source(source_id) if event.get("origin") == "sensor" else None
    sla = policy.slas.get(category) if isinstance(category, str) else None
    clocks = dispatch_clocks(sla, event.at, policy.calendar)
    return WorkOrder(
        incident_id=event.incident_id,
        state=State.DISPATCHED,
        unit_id=event.unit_id or "",
        task_id=event.task_id or "",
        attempt=int(event.get("attempt", 1)),
        category=category,
        created_at=event.at,
        updated_at=event.at,
        lat=event.get("lat"),
        lon=event.get("lon"),
        address=event.get("address"),
        origin=event.get("origin") or "report",
        source_id=source_id,
        rule=event.get("rule"),
        sla=sla,
        clocks=clocks,
        sensor_id=sensor,
        alarms=frozenset({sensor}) if sensor else frozenset(),
    )


def _assigned(order: WorkOrder, event: LifecycleEvent) -> WorkOrder:
    return replace(order, unit_id=event.unit_id or order.unit_id, task_id=event.task_id or order.task_id,
                   attempt=int(event.get("attempt", order.attempt + 1)), rule=event.get("rule"))  # fmt: skip


def _effect(
    order: WorkOrder | None, event: LifecycleEvent, row: Transition, policy: Policy
) -> tuple[WorkOrder, tuple[FollowUp, ...]]:
    at = event.at
    kind = event.type
    if order is None:
        return _create(event, policy), ()
    then: tuple[FollowUp, ...] = ()
    if kind == "dispatched":
        # after a reopening or a change of category the resolve budget starts again; after a rejection it goes on
        fresh = order.state in (State.REOPENED, State.RECATEGORISED)
        order = _restart(_assigned(order, event), "acknowledge", at, policy)
        order = _restart(order, "resolve", at, policy) if fresh else _resume(order, "resolve", at)
    elif kind == "arbitrate":
        order = _restart(_assigned(order, event), "acknowledge", at, policy)
    elif kind == "assign":
        arbitrated = order.arbitrated or order.state is State.ARBITRATION
        rule = event.get("rule") or ("arbitrated" if order.state is State.ARBITRATION else "reassigned")
        order = replace(_assigned(order, event), arbitrated=arbitrated, rule=rule)
        order = _resume(_restart(order, "acknowledge", at, policy), "resolve", at)
    elif kind == "ack":
        order = _stop(order, ["acknowledge"], at, policy)
    elif kind == "wait":
        order = _pause(order, "resolve", at, policy)
    elif kind == "resume":
        order = _resume(order, "resolve", at)
    elif kind == "reject":
        reason = event.get("reason") or event.get("reason_code")
        rejection = Rejection(order.unit_id, event.get("reason_code"), reason, at)
        order = replace(order, rejections=order.rejections + (rejection,))
        order = _pause(_stop(order, ["acknowledge"], at, policy), "resolve", at, policy)
        then = (FollowUp("redispatch"),)
    elif kind == "recategorise":
        category = event.get("category")
        previous = order.category
        # the old category's clocks stop counting; the re-dispatch starts the new category's
        order = _pause(_stop(order, ["acknowledge"], at, policy), "resolve", at, policy)
        # a fresh routing: earlier rejections were about the old category (they stay in the history)
        order = replace(order, category=category, sla=policy.slas.get(category), rejections=(), arbitrated=False)
        then = (FollowUp("reroute", previous),)
    elif kind == "resolve":
        resolution = {"note": event.get("note"), "media_url": event.get("media_url"), "by": event.actor,
                      "at": at.isoformat()}  # fmt: skip
        order = _stop(replace(order, resolution=resolution), ["acknowledge", "resolve"], at, policy)
        order = _restart(order, "verify", at, policy)
    elif kind == "verify":
        order = replace(_stop(order, STAGES, at, policy), verified_at=at, quiet_due=None)
        then = (FollowUp("close"),)
    elif kind == "close":
        order = replace(order, closed_at=at)
    elif kind == "reopen":
        order = replace(_stop(order, STAGES, at, policy), reopens=order.reopens + 1, closed_at=None,
                        resolution=None, quiet_due=None)  # fmt: skip
        successor = event.get("successor")
        then = (FollowUp("merge_into", successor),) if successor else (FollowUp("dispatch_again"),)
    elif kind == "merge_order":
        order = replace(_stop(order, STAGES, at, policy), merged_into=event.get("into"), quiet_due=None)
    elif kind == "cancel":
        order = replace(_stop(order, STAGES, at, policy), quiet_due=None)
    return replace(order, state=row.target), then


def _notice(order: WorkOrder | None, event: LifecycleEvent, policy: Policy) -> Step:
    if order is None:
        return Step(None, ignored=f"no work order for {event.incident_id}")
    kind = event.type
    if kind in ("sla_warning", "escalate"):
        _validate(event)
        stage = event.get("stage")
        clock = order.clocks.get(stage)
        due = clock.due(policy.calendar) if clock is not None else None
        if clock is None or due is None or due.isoformat() != _same_zone(event.get("due"), due):
            return Step(order, ignored=f"the {stage} clock is no longer due at {event.get('due')}")
        if kind == "escalate":
            clock = replace(clock, warned=True, breached=True)
        else:
            clock = replace(clock, warned=True)
        return Step(order.with_clock(stage, clock))
    if kind == "merged":
        sensor = sensor_of_source(event.get("source_id"))
        if sensor is None:  # a repeat report: the incident index counts it; the order does not change
            return Step(order, ignored="a repeat report changes nothing on the order")
        # a re-alarm: whatever quiet period was running is over
        return Step(replace(order, alarms=order.alarms | {sensor}, quiet_due=None))
    if kind == "sensor_clear":
        sensor = event.actor.split(":", 1)[1] if event.actor_kind == "sensor" else None
        alarms = order.alarms - {sensor} if sensor else order.alarms
        order = replace(order, alarms=alarms)
        quiet_states = (State.DISPATCHED, State.ACKNOWLEDGED, State.IN_PROGRESS, State.WAITING, State.RESOLVED)
        if order.origin == "sensor" and not alarms and order.state in quiet_states:
            observed = _moment(event.get("observed_at")) or event.at
            order = replace(order, quiet_due=observed + policy.sensor_quiet)
        return Step(order)
    return Step(order, ignored=f"{kind} is not a lifecycle event")


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _same_zone(value: Any, reference: datetime) -> str | None:
    moment = _moment(value)
    return None if moment is None else moment.astimezone(reference.tzinfo).isoformat()


_HISTORY_FIELDS = ("reason_code", "reason", "note", "media_url", "into", "successor", "stage", "due", "supervisor",
                   "rule", "attempt", "category")  # fmt: skip


def _entry(event: LifecycleEvent, before: State | None, after: State | None) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "event_id": event.event_id,
        "type": event.type,
        "actor": event.actor,
        "at": event.at.isoformat(),
        "from": None if before is None else before.value,
        "to": None if after is None else after.value,
    }
    if event.unit_id:
        entry["unit_id"] = event.unit_id
    if event.task_id:
        entry["task_id"] = event.task_id
    for name in _HISTORY_FIELDS:
        if event.fields.get(name) is not None:
            entry[name] = event.fields[name]
    return entry


def apply(order: WorkOrder | None, event: LifecycleEvent, policy: Policy) -> Step:
    """Apply one event; raises a :class:`FeedbackError` when the table refuses it.

    Notices (``sla_warning``, ``escalate``, ``merged``, ``sensor_clear``)
    annotate the order and never change its state; one that no longer applies
    (a deadline that moved) is ignored, with the reason in ``Step.ignored``.
    """
    if event.type in NOTICES:
        step = _notice(order, event, policy)
        if step.order is None or step.ignored is not None:
            return step
        updated = replace(step.order, updated_at=max(step.order.updated_at, event.at))
        if event.type != "merged":  # repeat reports are counted, not listed
            updated = replace(updated, history=_bounded(updated.history, _entry(event, order.state, order.state)))
        return replace(step, order=updated)
    row = check(order, event, policy)
    after, then = _effect(order, event, row, policy)
    before = None if order is None else order.state
    history = _bounded(after.history, _entry(event, before, after.state))
    return Step(replace(after, updated_at=event.at, history=history), row, then)


def _bounded(history: tuple[Any, ...], entry: dict[str, Any]) -> tuple[Any, ...]:
    return (history + (entry,))[-MAX_HISTORY:]


# ------------------------------------------------------------------ re-dispatch


@dataclass(frozen=True)
class NextUnit:
    """Where an order goes after a rejection: ``event`` is ``dispatched`` or ``arbitrate``."""

    event: str
    unit_id: str
    rule: str
    why: str
    tried: tuple[str, ...] = field(default=())


def next_unit(order: WorkOrder, covering: Sequence[str], backup: str | None, policy: Policy) -> NextUnit:
    """Choose the unit for an order its unit just rejected.

    After ``max_rejections`` rejections the ops centre arbitrates. Before that:
    the next unit, in the pack's declared order, that handles the category and
    covers the point and has not rejected this order; else the rejecting
    unit's backup; else the ops centre.
    """
    tried = tuple(dict.fromkeys(r.unit_id for r in order.rejections))
    count = len(order.rejections)
    if count >= policy.max_rejections:
        why = f"rejected {count} times (limit {policy.max_rejections}): the ops centre arbitrates"
        return NextUnit("arbitrate", policy.fallback_unit, "arbitration", why, tried)
    for unit in covering:
        if unit not in tried and unit != policy.fallback_unit:
            why = f"next unit covering the point after {', '.join(tried)}"
            return NextUnit("dispatched", unit, "next-candidate", why, tried)
    if backup and backup not in tried:
        return NextUnit("dispatched", backup, "backup", f"backup of {order.unit_id}", tried)
    why = f"no other unit covers the point or backs up {order.unit_id}: the ops centre arbitrates"
    return NextUnit("arbitrate", policy.fallback_unit, "arbitration", why, tried)
