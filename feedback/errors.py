"""The closed loop's errors: one base, and a code per kind for dead letters and API answers."""

from __future__ import annotations


class FeedbackError(Exception):
    """Something the work-order lifecycle refuses; ``code`` is a short, fixed reason code."""

    code = "feedback_error"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class IllegalTransition(FeedbackError):
    """The event is not allowed in the order's state (or by this actor)."""

    code = "illegal_transition"


class NotAssigned(FeedbackError):
    """A unit acted on an order that is not assigned to it."""

    code = "not_assigned"


class UnknownOrder(FeedbackError):
    """The event names an incident that has no work order."""

    code = "unknown_order"


class InvalidEvent(FeedbackError):
    """The event lacks a field it needs, or a field has the wrong form."""

    code = "invalid_event"


class StaleEvent(FeedbackError):
    """The event was decided on an older state of the order (e.g. a reassignment to a past attempt)."""

    code = "stale_event"
