"""A unit's own system's status as lifecycle events: the one way both the callback route and the poller make them.

:func:`connector_event` is the event the units API would write for the unit (actor ``unit:<unit_id>``, ``by``
``connector:<unit_id>``), its id made from the system's key, so the same status reported twice is one event.
:func:`catch_up` is what a polled system needs: it reports where a request *is* (resolved), not each step that led
there, so the events that take the order from its state to that one (ack, start, resolve) are made in order, each
checked by the lifecycle table on the order as the ones before it leave it (:class:`FeedbackError` when the table
refuses). Pure: the order, the policy and the time are parameters.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from feedback import LifecycleEvent, Policy, State, WorkOrder, apply
from streams.outcomes import event

#: the unit actions that lead from an order's state to where a system says the task is
PATHS: dict[str, dict[State, tuple[str, ...]]] = {
    "ack": {State.DISPATCHED: ("ack",)},
    "resolve": {
        State.DISPATCHED: ("ack", "start", "resolve"),
        State.ACKNOWLEDGED: ("start", "resolve"),
        State.IN_PROGRESS: ("resolve",),
        State.WAITING: ("resume", "resolve"),
    },
    "reject": {State.DISPATCHED: ("reject",), State.ACKNOWLEDGED: ("reject",)},
}
#: states in which the order already is where a system says (nothing to write)
REACHED: dict[str, frozenset[State]] = {
    "ack": frozenset(
        {State.ACKNOWLEDGED, State.IN_PROGRESS, State.WAITING, State.RESOLVED, State.VERIFIED, State.CLOSED}
    ),  # fmt: skip
    "resolve": frozenset({State.RESOLVED, State.VERIFIED, State.CLOSED}),
    "reject": frozenset({State.REJECTED}),
}


def connector_event(
    unit_id: str, order: WorkOrder, kind: str, key: str, now: datetime, fields: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """The event a unit's system's status ``kind`` makes on the unit's ``order``; ``key`` is the system's."""
    return event(kind, order.incident_id, f"unit:{unit_id}", now, task_id=order.task_id, unit_id=unit_id,
                 key=f"connector:{unit_id}:{key}", by=f"connector:{unit_id}", **extra,
                 **{k: v for k, v in fields.items() if v is not None})  # fmt: skip


def catch_up(
    unit_id: str, order: WorkOrder, target: str, key: str, fields: dict[str, Any], now: datetime, policy: Policy
) -> list[dict[str, Any]]:
    """The events, in order, that bring ``order`` to ``target`` (``ack``, ``resolve``, ``reject``); none when it is
    there already. ``fields`` go on the last; the steps before it carry no note of their own."""
    if order.state in REACHED.get(target, frozenset()):
        return []
    steps = PATHS.get(target, {}).get(order.state, (target,))  # not on a path: the table will say why not
    records = []
    current = order
    for index, kind in enumerate(steps):
        last = index == len(steps) - 1
        record = connector_event(unit_id, current, kind, key, now, fields if last else {})
        current = apply(current, LifecycleEvent.from_record(record), policy).order  # type: ignore[assignment]
        records.append(record)
    return records
