"""The SLA timer's events on the feedback stream, as the drills count them.

The timer (streams/lifecycle.py, ``Lifecycle.fire_due``) emits, per work order and SLA stage (``acknowledge``,
``resolve``, ``verify``), one ``sla_warning`` (level yellow, 75% of the budget used) and one ``escalate`` (level red,
the budget used up): the order's stage clock remembers both (``warned``, ``breached``), so each fires once per clock
however often it pauses. A clock belongs to one dispatch of the order: a new dispatch has a new task id (attempt + 1).
So one breach is (incident, task, stage, type); its event id is derived from the order, stage, level and deadline.

The same event id twice is at-least-once redelivery (consumers dedupe by event_id); a second event id for the same
breach is the breach emitted twice. The timer's third kind, the sensor's ``verify`` after a quiet period, is a
lifecycle transition, not an SLA breach, and is not counted here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

TIMER_BREACH_TYPES = ("sla_warning", "escalate")

Breach = tuple[str, str, str, str]  # (incident id, task id, stage, type)


def timer_breaches(events: Iterable[dict[str, Any]]) -> dict[Breach, list[str]]:
    """Each SLA breach the timer emitted -> the event ids emitted for it, in stream order (repeats kept).

    Events of any other type are ignored.
    """
    seen: dict[Breach, list[str]] = defaultdict(list)
    for event in events:
        kind = event.get("type")
        if kind in TIMER_BREACH_TYPES:
            seen[(event.get("incident_id"), event.get("task_id"), event.get("stage"), kind)].append(event["event_id"])
    return dict(seen)


def emitted_twice(breaches: dict[Breach, list[str]]) -> dict[Breach, set[str]]:
    """The breaches emitted under more than one event id (a repeat of the same id is only redelivery)."""
    return {breach: set(ids) for breach, ids in breaches.items() if len(set(ids)) > 1}


def redelivered(breaches: dict[Breach, list[str]]) -> int:
    """Records that repeat an event id already seen (at-least-once redelivery, deduped by consumers)."""
    return sum(len(ids) - len(set(ids)) for ids in breaches.values())
