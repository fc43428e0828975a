"""Applying lifecycle events to work orders: each event's effect on the order and its clocks, and what follows.

``apply(order, event, policy)`` is a pure function: the order before, one
event, the city's policy in; the order after and the follow-ups (re-dispatch,
close, merge) out. Time comes from the event (``event.at``), so replaying the
same events always gives the same orders and deadlines. Whether the table
allows an event is :func:`check` (:mod:`feedback.transitions`); the city's
:class:`Policy` and the choice of :func:`next_unit` after a rejection are in
:mod:`feedback.policy`; both are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from feedback.orders import (
    NOTICES,
    STAGES,
    LifecycleEvent,
    Rejection,
    State,
    Transition,
    WorkOrder,
    dispatch_clocks,
    sensor_of_source,
)
from feedback.policy import NextUnit, Policy, next_unit
from feedback.sla import StageClock
from feedback.times import parse_iso
from feedback.transitions import check, validate

__all__ = ["FollowUp", "NextUnit", "Policy", "Step", "apply", "check", "next_unit"]

MAX_HISTORY = 200


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
    return order.with_clock(stage, None if clock is None else clock.start(at, policy.calendar))


def _resume(order: WorkOrder, stage: str, at: datetime, policy: Policy) -> WorkOrder:
    clock = order.clocks.get(stage)
    return order if clock is None else order.with_clock(stage, clock.start(at, policy.calendar))


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
    return order.evolve(unit_id=event.unit_id or order.unit_id, task_id=event.task_id or order.task_id,
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
        order = _restart(order, "resolve", at, policy) if fresh else _resume(order, "resolve", at, policy)
    elif kind == "arbitrate":
        order = _restart(_assigned(order, event), "acknowledge", at, policy)
    elif kind == "assign":
        arbitrated = order.arbitrated or order.state is State.ARBITRATION
        rule = event.get("rule") or ("arbitrated" if order.state is State.ARBITRATION else "reassigned")
        order = _assigned(order, event).evolve(arbitrated=arbitrated, rule=rule)
        order = _resume(_restart(order, "acknowledge", at, policy), "resolve", at, policy)
    elif kind == "ack":
        order = _stop(order, ["acknowledge"], at, policy)
    elif kind == "wait":
        order = _pause(order, "resolve", at, policy)
    elif kind == "resume":
        order = _resume(order, "resolve", at, policy)
    elif kind == "reject":
        reason = event.get("reason") or event.get("reason_code")
        rejection = Rejection(order.unit_id, event.get("reason_code"), reason, at)
        order = order.evolve(rejections=order.rejections + (rejection,))
        order = _pause(_stop(order, ["acknowledge"], at, policy), "resolve", at, policy)
        then = (FollowUp("redispatch"),)
    elif kind == "recategorise":
        category = event.get("category")
        previous = order.category
        # the old category's clocks stop counting; the re-dispatch starts the new category's
        order = _pause(_stop(order, ["acknowledge"], at, policy), "resolve", at, policy)
        # a fresh routing: earlier rejections were about the old category (they stay in the history)
        order = order.evolve(category=category, sla=policy.slas.get(category), rejections=(), arbitrated=False)
        then = (FollowUp("reroute", previous),)
    elif kind == "resolve":
        resolution = {"note": event.get("note"), "media_url": event.get("media_url"), "by": event.actor,
                      "at": at.isoformat()}  # fmt: skip
        order = _stop(order.evolve(resolution=resolution), ["acknowledge", "resolve"], at, policy)
        order = _restart(order, "verify", at, policy)
    elif kind == "verify":
        order = _stop(order, STAGES, at, policy).evolve(verified_at=at, quiet_due=None)
        then = (FollowUp("close"),)
    elif kind == "close":
        order = order.evolve(closed_at=at)
    elif kind == "reopen":
        stopped = _stop(order, STAGES, at, policy)
        order = stopped.evolve(reopens=order.reopens + 1, closed_at=None, resolution=None, quiet_due=None)
        successor = event.get("successor")
        then = (FollowUp("merge_into", successor),) if successor else (FollowUp("dispatch_again"),)
    elif kind == "merge_order":
        order = _stop(order, STAGES, at, policy).evolve(merged_into=event.get("into"), quiet_due=None)
    elif kind == "cancel":
        order = _stop(order, STAGES, at, policy).evolve(quiet_due=None)
    return order.evolve(state=row.target), then


def _notice(order: WorkOrder | None, event: LifecycleEvent, policy: Policy) -> Step:
    if order is None:
        return Step(None, ignored=f"no work order for {event.incident_id}")
    kind = event.type
    if kind in ("sla_warning", "escalate"):
        validate(event)
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
        return Step(order.evolve(alarms=order.alarms | {sensor}, quiet_due=None))
    if kind == "sensor_clear":
        sensor = event.actor.split(":", 1)[1] if event.actor_kind == "sensor" else None
        alarms = order.alarms - {sensor} if sensor else order.alarms
        order = order.evolve(alarms=alarms)
        quiet_states = (State.DISPATCHED, State.ACKNOWLEDGED, State.IN_PROGRESS, State.WAITING, State.RESOLVED)
        if order.origin == "sensor" and not alarms and order.state in quiet_states:
            observed = _moment(event.get("observed_at")) or event.at
            order = order.evolve(quiet_due=observed + policy.sensor_quiet)
        return Step(order)
    return Step(order, ignored=f"{kind} is not a lifecycle event")


def _moment(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = parse_iso(value)
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
        updated = step.order.evolve(updated_at=max(step.order.updated_at, event.at))
        if event.type != "merged":  # repeat reports are counted, not listed
            updated = updated.evolve(history=_bounded(updated.history, _entry(event, order.state, order.state)))
        return replace(step, order=updated)
    row = check(order, event, policy)
    after, then = _effect(order, event, row, policy)
    before = None if order is None else order.state
    history = _bounded(after.history, _entry(event, before, after.state))
    return Step(after.evolve(updated_at=event.at, history=history), row, then)


def _bounded(history: tuple[Any, ...], entry: dict[str, Any]) -> tuple[Any, ...]:
    return (history + (entry,))[-MAX_HISTORY:]
