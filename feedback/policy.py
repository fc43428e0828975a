"""The city's side of the lifecycle: its :class:`Policy`, and who gets an order after a rejection.

A policy is what the work-order lifecycle needs from a city pack (business
calendar, SLA targets, the ops centre, how many rejections before it
arbitrates, the sensors' quiet and reopen periods). :func:`next_unit` uses it to
choose where a rejected order goes: the next unit that covers the point, the
rejecting unit's backup, or the ops centre.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from feedback.orders import SlaSpec, WorkOrder
from feedback.sla import BusinessCalendar


@dataclass(frozen=True)
class Policy:
    """What the lifecycle needs from the city: its calendar, SLA targets, ops centre and settings."""

    calendar: BusinessCalendar | None
    slas: Mapping[str, SlaSpec]
    fallback_unit: str
    max_rejections: int = 2
    sensor_quiet: timedelta = timedelta(minutes=30)
    sensor_reopen: timedelta = timedelta(hours=6)


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
