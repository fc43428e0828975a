"""Whether the work-order table allows an event: the fields each event needs, the guards, and :func:`check`.

:func:`check` finds the row of the transition table (:mod:`feedback.orders`)
for the order's state and the event, and refuses what the row does not allow:
an actor of the wrong kind, a unit acting on another unit's order, a stale
task, or a guard's extra condition (``GUARDS``, named by the table's rows).
:func:`validate` checks the fields each event type needs, with their limits.
Each refusal is a :class:`feedback.errors.FeedbackError` that says why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from feedback.errors import IllegalTransition, InvalidEvent, NotAssigned, StaleEvent, UnknownOrder
from feedback.orders import (
    EVENTS,
    REJECT_REASONS,
    STAGES,
    TABLE,
    LifecycleEvent,
    State,
    Transition,
    WorkOrder,
    allowed_events,
)
from feedback.policy import Policy

MAX_NOTE = 2000
MAX_URL = 2048


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


def validate(event: LifecycleEvent) -> None:
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
    validate(event)
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
