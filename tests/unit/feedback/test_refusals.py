"""Every refusal of the work-order table, word for word: the crew's app, the board and the dead letters show these
messages, so each names the field, the limit or the state it is about. Limits are checked at the limit and one past
it. Written so that the mutants mutmut makes of feedback/transitions.py are killed (docs/TESTING.md)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from feedback import FeedbackError, LifecycleEvent, State, apply
from feedback.transitions import check, validate
from tests.unit.feedback.test_lifecycle import CAL_POLICY, T0, U, at, ev, path_to, run, sensor_dispatch

GIVE = {"task_id": "tsk-1-2", "unit_id": "roads-east", "attempt": 2}  # what dispatched/arbitrate/assign carry
DUE = {"stage": "acknowledge", "due": T0.isoformat()}
STAGES = "['acknowledge', 'resolve', 'verify']"
REASONS = (
    "['duplicate', 'insufficient_information', 'no_capacity', 'other', 'outside_remit', 'wrong_category', "
    "'wrong_location']"
)


def event(kind: str, actor: str = "engine", **fields: object) -> LifecycleEvent:
    task, unit = fields.pop("task_id", None), fields.pop("unit_id", None)
    return ev(kind, actor, task_id=task, unit_id=unit, **fields)  # type: ignore[arg-type]


def refused(kind: str, **fields: object) -> str:
    with pytest.raises(FeedbackError) as caught:
        validate(event(kind, **fields))
    assert caught.value.code == "invalid_event"
    return str(caught.value)


@pytest.mark.parametrize("kind", ["dispatched", "arbitrate", "assign"])
def test_an_assignment_needs_a_unit_a_task_and_an_attempt_of_at_least_one(kind: str):
    assert refused(kind, **{**GIVE, "unit_id": None}) == f"a {kind} event needs 'unit_id'"
    assert refused(kind, **{**GIVE, "unit_id": " \t"}) == f"a {kind} event needs 'unit_id'"  # blank is missing
    assert refused(kind, **{**GIVE, "task_id": None}) == f"a {kind} event needs 'task_id'"
    assert refused(kind, **{**GIVE, "attempt": None}) == f"a {kind} event needs 'attempt'"
    assert refused(kind, **{**GIVE, "attempt": "2"}) == f"'attempt' of a {kind} event has the wrong type"
    assert refused(kind, **{**GIVE, "attempt": True}) == f"'attempt' of a {kind} event has the wrong type"
    assert refused(kind, **{**GIVE, "attempt": 0}) == "'attempt' must be at least 1"
    validate(event(kind, **{**GIVE, "attempt": 1}))
    validate(event(kind, **{**GIVE, "unit_id": "u" * 256}))
    assert refused(kind, **{**GIVE, "unit_id": "u" * 257}) == "'unit_id' is 257 characters; the limit is 256"


def test_a_rejection_needs_a_listed_reason_code_and_other_needs_words():
    assert refused("reject") == "a reject event needs 'reason_code'"
    assert refused("reject", reason_code="r" * 65) == "'reason_code' is 65 characters; the limit is 64"
    assert refused("reject", reason_code="r" * 64) == f"reason_code {'r' * 64!r} is not one of {REASONS}"
    assert refused("reject", reason_code="other") == "a reject event needs 'reason'"
    validate(event("reject", reason_code="other", reason="w" * 2000))
    assert refused("reject", reason_code="other", reason="w" * 2001) == "'reason' is 2001 characters; the limit is 2000"
    validate(event("reject", reason_code="duplicate"))


def test_merging_recategorising_and_clock_notices_need_their_fields():
    assert refused("merge_order") == "a merge_order event needs 'into'"
    assert refused("recategorise", attempt=1) == "a recategorise event needs 'category'"
    assert refused("recategorise", category="c" * 65, attempt=1) == "'category' is 65 characters; the limit is 64"
    assert refused("recategorise", category="streetlight") == "a recategorise event needs 'attempt'"
    validate(event("recategorise", category="c" * 64, attempt=1))
    for kind in ("sla_warning", "escalate"):
        assert refused(kind, due=T0.isoformat()) == f"a {kind} event needs 'stage'"
        assert refused(kind, **{**DUE, "stage": "s" * 33}) == "'stage' is 33 characters; the limit is 32"
        assert refused(kind, **{**DUE, "stage": "s" * 32}) == f"stage {'s' * 32!r} is not one of {STAGES}"
        assert refused(kind, stage="resolve") == f"a {kind} event needs 'due'"
        validate(event(kind, **DUE))


@pytest.mark.parametrize(("name", "limit"), [("reason", 2000), ("note", 2000), ("media_url", 2048)])
def test_free_text_on_any_event_is_a_string_within_its_limit(name: str, limit: int):
    validate(event("ack", U, **{name: "x" * limit}))
    assert refused("ack", **{name: "x" * (limit + 1)}) == f"{name!r} is {limit + 1} characters; the limit is {limit}"
    assert refused("ack", **{name: 42}) == f"{name!r} must be a string"


def refusal(order_events: list[LifecycleEvent], refused_event: LifecycleEvent) -> tuple[str, str]:
    order = run(*order_events) if order_events else None
    with pytest.raises(FeedbackError) as caught:
        apply(order, refused_event, CAL_POLICY)
    return caught.value.code, str(caught.value)


def test_what_the_table_refuses_says_what_is_allowed_and_to_whom():
    resolved = path_to(State.RESOLVED)
    assert refusal([], event("teleport")) == ("invalid_event", "'teleport' is not a lifecycle transition")
    assert refusal([], event("ack", U)) == (
        "unknown_order",
        "incident inc-1 has no work order (a dispatched event creates one)",
    )
    assert refusal(resolved, event("ack", U)) == (
        "illegal_transition",
        "ack is not allowed when order inc-1 is resolved; allowed: nothing",  # a unit has nothing left to do
    )
    assert refusal(resolved, event("start", "ops:ana")) == (
        "illegal_transition",
        "start is not allowed when order inc-1 is resolved; allowed: cancel, merge_order, reopen, verify",
    )
    assert refusal(path_to(State.CLOSED), event("cancel", "ops:ana")) == (
        "illegal_transition",
        "cancel is not allowed when order inc-1 is closed; allowed: reopen",  # what ops may still do
    )
    assert refusal(resolved, event("verify", U)) == (
        "illegal_transition",
        "verify is for ops or sensor, not unit:roads-west",
    )
    assert refusal(path_to(State.DISPATCHED), event("ack", "unit:roads-east")) == (
        "not_assigned",
        "order inc-1 is assigned to roads-west, not roads-east",
    )
    assert refusal(path_to(State.DISPATCHED), event("ack", U, task_id="tsk-0-9")) == (
        "stale_event",
        "task tsk-0-9 was replaced by tsk-1-1",
    )


def test_each_guard_says_why():
    arbitrated = [
        *path_to(State.ARBITRATION),
        event("assign", "ops:ana", task_id="tsk-1-3", unit_id="roads-east", attempt=3),
    ]
    assert refusal(arbitrated, event("reject", "unit:roads-east", reason_code="no_capacity")) == (
        "illegal_transition",
        "order inc-1 was assigned by the ops centre's arbitration; it cannot be rejected again",
    )
    dispatched = path_to(State.DISPATCHED)
    assert refusal(dispatched, event("assign", "ops:ana", task_id="tsk-1-5", unit_id="roads-east", attempt=5)) == (
        "stale_event",
        "the reassignment was made for attempt 5, but the order is at attempt 1; look again and retry",
    )
    assert refusal(dispatched, event("assign", "ops:ana", task_id="tsk-1-2", unit_id="roads-west", attempt=2)) == (
        "illegal_transition",
        "order inc-1 is already assigned to roads-west",
    )
    assert refusal(dispatched, event("recategorise", "ops:ana", category="streetlight", attempt=3)) == (
        "stale_event",
        "the category was changed on attempt 3, but the order is at attempt 1; look again and retry",
    )
    assert refusal(dispatched, event("recategorise", "ops:ana", category="pothole", attempt=1)) == (
        "illegal_transition",
        "order inc-1 is already in category pothole",
    )
    assert refusal(dispatched, event("merge_order", "ops:ana", into="inc-1")) == (
        "illegal_transition",
        "an order cannot be merged into itself",
    )
    cleared = [sensor_dispatch(), ev("sensor_clear", "sensor:wl-9", at(50))]
    assert refusal(cleared, ev("verify", "sensor:wl-9", at(80), quiet_due=at(99).isoformat())) == (
        "stale_event",
        "the sensor re-alarmed or the quiet period changed; inc-1 stays open",
    )


def test_only_a_sensor_s_reopen_has_a_window_and_its_edge_is_inside():
    verified = run(*path_to(State.VERIFIED))
    long_after = verified.verified_at + timedelta(days=30)
    reopened = apply(verified, ev("reopen", "ops:ana", long_after, successor="inc-2"), CAL_POLICY).order
    assert reopened.state is State.REOPENED  # a person may reopen whenever the city says so
    edge = verified.verified_at + CAL_POLICY.sensor_reopen
    assert apply(verified, ev("reopen", "sensor:wl-9", edge), CAL_POLICY).order.state is State.REOPENED
    late = edge + timedelta(seconds=1)
    with pytest.raises(FeedbackError) as caught:
        apply(verified, ev("reopen", "sensor:wl-9", late), CAL_POLICY)
    assert str(caught.value) == "a re-alarm more than 6:00:00 after verification does not reopen inc-1"


def test_check_returns_the_row_that_allows_the_event():
    row = check(run(*path_to(State.DISPATCHED)), ev("ack", U, T0 + timedelta(minutes=1)), CAL_POLICY)
    assert (row.event, row.target, row.actors) == ("ack", State.ACKNOWLEDGED, frozenset({"unit"}))
