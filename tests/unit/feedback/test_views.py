"""What reporters and units see of an order: Open311 status by state, and the task view. Table-driven."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from feedback import State, apply
from feedback.views import open311_status, task_view
from tests.unit.feedback.test_lifecycle import CAL_POLICY, T0, U, ev, path_to, run

NAMES = {"roads-west": "Roads crew West", "ops-centre": "Operations Centre"}


@pytest.mark.parametrize(
    ("state", "status", "notes"),
    [
        (State.DISPATCHED, "open", "Assigned to Roads crew West."),
        (State.ACKNOWLEDGED, "open", "Roads crew West has taken the request."),
        (State.IN_PROGRESS, "open", "Roads crew West is working on it."),
        (State.WAITING, "open", "Roads crew West needs more information from you: please get in touch."),
        (State.REJECTED, "open", "Being reassigned to the responsible team."),
        (State.ARBITRATION, "open", "Being reassigned to the responsible team."),
        (State.RESOLVED, "open", "Roads crew West reports it fixed; awaiting verification."),
        (State.VERIFIED, "open", "Fixed and verified."),
        (State.CLOSED, "closed", "Fixed and verified."),
        (State.REOPENED, "open", "Reopened: not fixed."),
        (State.CANCELLED, "closed", "Closed without action: test."),
    ],
)
def test_open311_status_follows_the_order(state: State, status: str, notes: str):
    """Each order state reads as open or closed with a sentence a resident understands."""
    order = run(*path_to(state))
    view = open311_status(order, NAMES, CAL_POLICY.calendar)
    assert (view["status"], view["status_notes"]) == (status, notes)
    assert view["updated_datetime"] == order.updated_at.isoformat().replace("+00:00", "Z")


def test_expected_datetime_is_the_resolve_deadline_and_moves_with_a_pause():
    """expected_datetime is the running resolve deadline; while the unit waits on the reporter there is none."""
    order = run(*path_to(State.IN_PROGRESS))
    assert open311_status(order, NAMES, None)["expected_datetime"] == "2026-11-29T09:00:00Z"
    waiting = apply(order, ev("wait", U, T0 + timedelta(hours=1), reason="which lamp post?"), CAL_POLICY).order
    view = open311_status(waiting, NAMES, None)
    assert view["expected_datetime"] is None and view["status_notes"].endswith("which lamp post?.")
    resumed = apply(waiting, ev("resume", U, T0 + timedelta(hours=3)), CAL_POLICY).order
    assert open311_status(resumed, NAMES, None)["expected_datetime"] == "2026-11-29T11:00:00Z"


def test_no_order_yet_reads_as_received():
    """Before the worker has made an order the request is open and being routed."""
    assert open311_status(None, NAMES, None)["status_notes"].startswith("Received")


def test_task_view_shows_deadlines_light_and_history_on_request():
    """A unit's view carries the running deadlines and light; the ops view adds the history."""
    order = run(*path_to(State.ACKNOWLEDGED))
    view = task_view(order, CAL_POLICY.calendar)
    assert view["sla"]["acknowledge_by"] is None and view["sla"]["resolve_by"] == "2026-11-29T09:00:00Z"
    assert view["sla"]["light"] == "green" and "history" not in view
    full = task_view(order, CAL_POLICY.calendar, history=True)
    assert [h["type"] for h in full["history"]] == ["dispatched", "ack"]
    assert datetime.fromisoformat(full["created_at"].replace("Z", "+00:00")) == T0.astimezone(UTC)
