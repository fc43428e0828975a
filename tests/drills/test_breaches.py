"""The SIGKILL drill's breach filter, fed with event dicts shaped like the SLA timer's (no broker, no worker)."""

from __future__ import annotations

from typing import Any

from tests.drills.breaches import emitted_twice, redelivered, timer_breaches

INCIDENT, TASK = "inc-0a1b2c", "tsk-0a1b2c-1"


def timer_event(event_id: str, kind: str, stage: str = "acknowledge", incident: str = INCIDENT, task: str = TASK,
                **fields: Any) -> dict[str, Any]:  # fmt: skip
    """An event with the fields streams/lifecycle.py's ``_timer_event`` writes."""
    level = {"sla_warning": "yellow", "escalate": "red"}.get(kind)
    return {"schema": 1, "event_id": event_id, "type": kind, "incident_id": incident, "task_id": task,
            "unit_id": "roads-west", "actor": "timer", "at": "2026-03-02T10:00:00Z", "stage": stage, "level": level,
            "due": "2026-03-02T10:00:00+00:00", "category": "pothole", "supervisor": "roads", **fields}  # fmt: skip


def test_an_escalate_emitted_twice_under_two_event_ids_is_flagged():
    events = [
        timer_event("evt-w1", "sla_warning"),
        timer_event("evt-e1", "escalate"),
        timer_event("evt-e2", "escalate"),  # the same breach again, under a new id
        timer_event("evt-r1", "escalate", stage="resolve"),
    ]
    twice = emitted_twice(timer_breaches(events))
    assert twice == {(INCIDENT, TASK, "acknowledge", "escalate"): {"evt-e1", "evt-e2"}}


def test_a_warning_emitted_twice_is_flagged_and_other_orders_tasks_and_stages_are_apart():
    events = [
        timer_event("evt-w1", "sla_warning"),
        timer_event("evt-w2", "sla_warning"),
        timer_event("evt-w3", "sla_warning", stage="resolve"),
        timer_event("evt-w4", "sla_warning", task="tsk-0a1b2c-2"),  # the next dispatch's clock
        timer_event("evt-w5", "sla_warning", incident="inc-ffff", task="tsk-ffff-1"),
        timer_event("evt-e1", "escalate"),  # the red of the same stage is another breach
    ]
    breaches = timer_breaches(events)
    assert len(breaches) == 5
    assert emitted_twice(breaches) == {(INCIDENT, TASK, "acknowledge", "sla_warning"): {"evt-w1", "evt-w2"}}


def test_the_same_event_id_again_is_redelivery_not_a_second_breach():
    again = timer_event("evt-e1", "escalate")
    events = [timer_event("evt-e1", "escalate"), timer_event("evt-w1", "sla_warning"), again]
    breaches = timer_breaches(events)
    assert not emitted_twice(breaches)
    assert redelivered(breaches) == 1
    assert breaches[(INCIDENT, TASK, "acknowledge", "escalate")] == ["evt-e1", "evt-e1"]


def test_events_of_other_types_are_ignored():
    """Lifecycle events (the sensor's timer verify too) and types that merely mention a breach count for nothing."""
    others = [
        timer_event(f"evt-{kind}-{n}", kind)
        for kind in ("dispatched", "ack", "verify", "close", "merged", "sla_breach", "breach", "escalated", "warning")
        for n in range(2)
    ]
    others.append({"type": "triage_decision", "incident_id": INCIDENT, "category": "pothole"})  # no event id at all
    assert timer_breaches(others) == {}
    assert timer_breaches([*others, timer_event("evt-e1", "escalate")]) == {
        (INCIDENT, TASK, "acknowledge", "escalate"): ["evt-e1"]
    }
