"""The closed loop: work orders, SLA clocks, escalation and verification.

Plain Python over plain data: no Kafka, no Faust, no imports from the other
domain packages. Redis access lives in :mod:`feedback.store` only.
"""

from feedback.errors import FeedbackError, IllegalTransition, InvalidEvent, NotAssigned, StaleEvent, UnknownOrder
from feedback.lifecycle import FollowUp, NextUnit, Policy, Step, apply, check, next_unit
from feedback.orders import (
    ACTIVE,
    FINISHED,
    NOTICES,
    REJECT_REASONS,
    TRANSITIONS,
    LifecycleEvent,
    SlaSpec,
    State,
    Transition,
    WorkOrder,
    allowed_events,
)
from feedback.sla import BusinessCalendar, SlaClock, StageClock, deadline_for, parse_span

__all__ = [
    "ACTIVE",
    "FINISHED",
    "NOTICES",
    "REJECT_REASONS",
    "TRANSITIONS",
    "BusinessCalendar",
    "FeedbackError",
    "FollowUp",
    "IllegalTransition",
    "InvalidEvent",
    "LifecycleEvent",
    "NextUnit",
    "NotAssigned",
    "Policy",
    "SlaClock",
    "SlaSpec",
    "StageClock",
    "StaleEvent",
    "State",
    "Step",
    "Transition",
    "UnknownOrder",
    "WorkOrder",
    "allowed_events",
    "apply",
    "check",
    "deadline_for",
    "next_unit",
    "parse_span",
]
