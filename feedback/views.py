"""What people see of a work order: a unit's task, the ops centre's record, a reporter's Open311 status.

Pure functions of an order (and the city's calendar and unit names).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from feedback.orders import FINISHED, SlaSpec, State, WorkOrder, dispatch_clocks
from feedback.sla import BusinessCalendar
from feedback.times import iso_utc


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else iso_utc(moment)


def task_sla(order: WorkOrder, calendar: BusinessCalendar | None) -> dict[str, Any]:
    """The ``sla`` block of the task record of the order's current attempt: its running deadlines."""
    return {
        "clock": None if order.sla is None else order.sla.clock,
        "acknowledge_by": _iso(order.deadline("acknowledge", calendar)),
        "resolve_by": _iso(order.deadline("resolve", calendar)),
        "verify_within": None if order.sla is None else order.sla.verify,
    }


def dispatch_sla(sla: SlaSpec | None, at: datetime, calendar: BusinessCalendar | None) -> dict[str, Any]:
    """The ``sla`` block of a first task dispatched ``at``: the same clocks the new order starts with."""
    clocks = dispatch_clocks(sla, at, calendar)

    def due(stage: str) -> str | None:
        clock = clocks.get(stage)
        return None if clock is None else _iso(clock.due(calendar))

    return {
        "clock": None if sla is None else sla.clock,
        "acknowledge_by": due("acknowledge"),
        "resolve_by": due("resolve"),
        "verify_within": None if sla is None else sla.verify,
    }


def sla_view(order: WorkOrder, calendar: BusinessCalendar | None) -> dict[str, Any]:
    """Deadlines of the running clocks (None when a clock is paused, stopped or absent) and the light."""
    clocks = {}
    for stage, clock in order.clocks.items():
        clocks[stage] = {
            "due": _iso(clock.due(calendar)),
            "running": clock.running,
            "used_minutes": round(clock.used, 2),
            "budget_minutes": round(clock.budget, 2),
            "warned": clock.warned,
            "breached": clock.breached,
        }
    return {
        "clock": None if order.sla is None else order.sla.clock,
        "acknowledge_by": _iso(order.deadline("acknowledge", calendar)),
        "resolve_by": _iso(order.deadline("resolve", calendar)),
        "verify_by": _iso(order.deadline("verify", calendar)),
        "light": order.light(),
        "clocks": clocks,
    }


def board_view(order: WorkOrder, calendar: BusinessCalendar | None) -> dict[str, Any]:
    """An order as the ops centre's board shows it: where, what, whose, how it stands, and its deadlines."""
    return {
        **_task_fields(order),
        "kind": "order",
        "open": order.state not in FINISHED,
        "light": order.light(),
        "acknowledge_by": _iso(order.deadline("acknowledge", calendar)),
        "resolve_by": _iso(order.deadline("resolve", calendar)),
        "origin": order.origin,
        "rule": order.rule,
        "updated_at": _iso(order.updated_at),
    }


def _task_fields(order: WorkOrder) -> dict[str, Any]:
    """What every view of a task starts with: which task, whose, where, and how far along."""
    return {
        "task_id": order.task_id,
        "incident_id": order.incident_id,
        "unit_id": order.unit_id,
        "attempt": order.attempt,
        "state": order.state.value,
        "category": order.category,
        "lat": order.lat,
        "lon": order.lon,
        "address": order.address,
    }


def task_view(order: WorkOrder, calendar: BusinessCalendar | None, *, history: bool = False) -> dict[str, Any]:
    """The order as its unit (or the ops centre, with ``history``) sees it."""
    view: dict[str, Any] = {
        **_task_fields(order),
        "origin": order.origin,
        "rule": order.rule,
        "created_at": _iso(order.created_at),
        "updated_at": _iso(order.updated_at),
        "sla": sla_view(order, calendar),
        "rejections": [r.to_dict() for r in order.rejections],
        "arbitrated": order.arbitrated,
        "reopens": order.reopens,
        "resolution": None if order.resolution is None else dict(order.resolution),
        "verified_at": _iso(order.verified_at),
        "closed_at": _iso(order.closed_at),
        "merged_into": order.merged_into,
    }
    if history:
        view["history"] = [dict(entry) for entry in order.history]
    return view


def assignment_view(order: WorkOrder, calendar: BusinessCalendar | None) -> dict[str, Any]:
    """The short form a unit's push channel carries: enough to show the task and fetch the rest."""
    return {
        **_task_fields(order),
        "rule": order.rule,
        "acknowledge_by": _iso(order.deadline("acknowledge", calendar)),
        "resolve_by": _iso(order.deadline("resolve", calendar)),
    }


def _last(order: WorkOrder, kind: str) -> Mapping[str, Any]:
    for entry in reversed(order.history):
        if entry.get("type") == kind:
            return entry
    return {}


def open311_status(order: WorkOrder | None, unit_names: Mapping[str, str], calendar: BusinessCalendar | None) -> dict:
    """Open311 fields of a request whose report became (or joined) ``order``.

    ``order`` is the order the request finally belongs to (the caller follows
    ``merged_into``); None while the report is on its way or waits in triage.
    """
    if order is None:
        return {"status": "open", "status_notes": "Received; being routed to the responsible team.",
                "agency_responsible": None, "expected_datetime": None, "updated_datetime": None}  # fmt: skip
    unit = unit_names.get(order.unit_id, order.unit_id)
    state = order.state
    note: str
    if state is State.DISPATCHED:
        note = f"Assigned to {unit}."
    elif state is State.ACKNOWLEDGED:
        note = f"{unit} has taken the request."
    elif state is State.IN_PROGRESS:
        note = f"{unit} is working on it."
    elif state is State.WAITING:
        note = f"{unit} needs more information from you: {_last(order, 'wait').get('reason') or 'please get in touch'}."
    elif state in (State.REJECTED, State.ARBITRATION, State.RECATEGORISED):
        note = "Being reassigned to the responsible team."
    elif state is State.RESOLVED:
        note = f"{unit} reports it fixed; awaiting verification."
    elif state in (State.VERIFIED, State.CLOSED):
        how = (order.resolution or {}).get("note")
        note = "Fixed and verified." + (f" {how}" if how else "")
    elif state is State.REOPENED:
        note = f"Reopened: {_last(order, 'reopen').get('reason') or 'not fixed'}."
    elif state is State.CANCELLED:
        note = f"Closed without action: {_last(order, 'cancel').get('reason') or 'cancelled by the operations centre'}."
    else:  # merged: the caller should have followed it
        note = "Merged with another request about the same problem."
    return {
        "status": "closed" if state in (State.CLOSED, State.CANCELLED) else "open",
        "status_notes": note,
        "agency_responsible": unit,
        "expected_datetime": _iso(order.deadline("resolve", calendar)),
        "updated_datetime": _iso(order.updated_at),
    }
