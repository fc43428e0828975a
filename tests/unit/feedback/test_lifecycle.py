"""The work-order lifecycle: the transition table, who may act, guards, follow-ups and re-dispatch. Table-driven."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from feedback import (
    FeedbackError,
    LifecycleEvent,
    Policy,
    SlaSpec,
    State,
    WorkOrder,
    allowed_events,
    apply,
    next_unit,
)
from feedback.orders import EVENTS, parse_timer_member

AMS = ZoneInfo("Europe/Amsterdam")
CAL_POLICY = Policy(
    calendar=__import__("feedback").BusinessCalendar(zone=AMS, holidays=frozenset({date(2026, 12, 25)})),
    slas={
        "pothole": SlaSpec("4h", "72h", "24h", "calendar"),
        "streetlight": SlaSpec("1d", "5d", "2d", "working"),
        "flooding": SlaSpec("30m", "6h", "12h", "calendar"),
    },
    fallback_unit="ops-centre",
    max_rejections=2,
    sensor_quiet=timedelta(minutes=30),
    sensor_reopen=timedelta(hours=6),
)
T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
_ids = itertools.count()


def ev(kind: str, actor: str, at: datetime = T0, *, task_id: str | None = None, unit_id: str | None = None,
       **fields: object) -> LifecycleEvent:  # fmt: skip
    return LifecycleEvent(f"evt-{next(_ids)}", kind, "inc-1", actor, at, task_id, unit_id, fields)


def dispatched(unit: str = "roads-west", at: datetime = T0, category: str = "pothole", **extra: object):
    return ev("dispatched", "engine", at, task_id="tsk-1-1", unit_id=unit, attempt=1, category=category,
              origin=extra.pop("origin", "report"), source_id=extra.pop("source_id", "report:r1"), **extra)  # fmt: skip


def run(*events: LifecycleEvent, policy: Policy = CAL_POLICY) -> WorkOrder:
    order = None
    for event in events:
        order = apply(order, event, policy).order
    assert order is not None
    return order


U = "unit:roads-west"
PATHS: dict[State, list[LifecycleEvent]] = {}


def path_to(state: State) -> list[LifecycleEvent]:
    """Events that bring a fresh pothole order (roads-west) to ``state``."""
    d = dispatched()
    steps = {
        State.DISPATCHED: [d],
        State.ACKNOWLEDGED: [d, ev("ack", U)],
        State.IN_PROGRESS: [d, ev("ack", U), ev("start", U)],
        State.WAITING: [d, ev("ack", U), ev("start", U), ev("wait", U)],
        State.REJECTED: [d, ev("reject", U, reason_code="outside_remit")],
        State.ARBITRATION: [d, ev("reject", U, reason_code="outside_remit"),
                            ev("arbitrate", "engine", task_id="tsk-1-2", unit_id="ops-centre", attempt=2)],
        State.RESOLVED: [d, ev("ack", U), ev("start", U), ev("resolve", U, note="filled")],
        State.VERIFIED: [d, ev("ack", U), ev("start", U), ev("resolve", U), ev("verify", "ops:ana")],
        State.CLOSED: [d, ev("ack", U), ev("start", U), ev("resolve", U), ev("verify", "ops:ana"),
                       ev("close", "engine")],
        State.REOPENED: [d, ev("ack", U), ev("start", U), ev("resolve", U), ev("reopen", "ops:ana")],
        State.RECATEGORISED: [d, ev("recategorise", "ops:ana", category="streetlight", attempt=1)],
        State.MERGED: [d, ev("merge_order", "ops:ana", into="inc-2")],
        State.CANCELLED: [d, ev("cancel", "ops:ana", reason="test")],
    }  # fmt: skip
    return steps[state]


#: what the table must allow, written out by hand: (state, event) pairs
ALLOWED = {
    (State.REJECTED, "dispatched"), (State.REOPENED, "dispatched"), (State.REJECTED, "arbitrate"),
    (State.RECATEGORISED, "dispatched"), (State.RECATEGORISED, "arbitrate"),
    *{(s, "recategorise") for s in (State.ARBITRATION, State.DISPATCHED, State.ACKNOWLEDGED, State.IN_PROGRESS,
                                    State.WAITING)},
    (State.DISPATCHED, "ack"), (State.ACKNOWLEDGED, "start"), (State.IN_PROGRESS, "wait"), (State.WAITING, "resume"),
    (State.DISPATCHED, "reject"), (State.ACKNOWLEDGED, "reject"), (State.IN_PROGRESS, "resolve"),
    (State.RESOLVED, "verify"), (State.VERIFIED, "close"),
    (State.RESOLVED, "reopen"), (State.VERIFIED, "reopen"), (State.CLOSED, "reopen"),
    *{(s, "verify") for s in (State.DISPATCHED, State.ACKNOWLEDGED, State.IN_PROGRESS, State.WAITING)},
    *{(s, "assign") for s in (State.ARBITRATION, State.DISPATCHED, State.ACKNOWLEDGED, State.IN_PROGRESS,
                              State.WAITING)},
    *{(s, e) for e in ("merge_order", "cancel") for s in (State.DISPATCHED, State.ACKNOWLEDGED, State.IN_PROGRESS,
                                                          State.WAITING, State.REJECTED, State.ARBITRATION,
                                                          State.RESOLVED, State.REOPENED, State.RECATEGORISED)},
}  # fmt: skip


def test_the_table_allows_exactly_the_documented_pairs():
    """Every (state, event) pair the table allows is in the hand-written list, and nothing else."""
    table = {(s, e) for s in State for e in EVENTS if e in allowed_events(s)}
    assert table == ALLOWED


@pytest.mark.parametrize(
    ("state", "kind", "actor", "fields", "expected"),
    [
        # the happy path, one step each
        (State.DISPATCHED, "ack", U, {}, State.ACKNOWLEDGED),
        (State.ACKNOWLEDGED, "start", U, {}, State.IN_PROGRESS),
        (State.IN_PROGRESS, "resolve", U, {"note": "filled"}, State.RESOLVED),
        (State.RESOLVED, "verify", "ops:ana", {}, State.VERIFIED),
        (State.VERIFIED, "close", "engine", {}, State.CLOSED),
        # waiting on the reporter and back
        (State.IN_PROGRESS, "wait", U, {"reason": "need the house number"}, State.WAITING),
        (State.WAITING, "resume", U, {}, State.IN_PROGRESS),
        # rejection, arbitration, reassignment
        (State.DISPATCHED, "reject", U, {"reason_code": "outside_remit"}, State.REJECTED),
        (State.ACKNOWLEDGED, "reject", U, {"reason_code": "wrong_location"}, State.REJECTED),
        (State.ARBITRATION, "assign", "ops:ana", {"attempt": 3}, State.DISPATCHED),
        (State.IN_PROGRESS, "assign", "ops:ana", {"attempt": 2, "unit": "roads-east"}, State.DISPATCHED),
        # reopen and the end states
        (State.RESOLVED, "reopen", "ops:ana", {"reason": "not fixed"}, State.REOPENED),
        (State.CLOSED, "reopen", "ops:ana", {"reason": "reporter says not fixed"}, State.REOPENED),
        (State.WAITING, "merge_order", "ops:ana", {"into": "inc-2"}, State.MERGED),
        (State.ARBITRATION, "cancel", "ops:ana", {"reason": "duplicate call"}, State.CANCELLED),
        # re-categorisation by the ops centre
        (State.IN_PROGRESS, "recategorise", "ops:ana", {"category": "flooding", "attempt": 1}, State.RECATEGORISED),
        (State.ARBITRATION, "recategorise", "ops:ana", {"category": "flooding", "attempt": 2}, State.RECATEGORISED),
        (State.DISPATCHED, "recategorise", "ops:ana", {"category": "flooding", "attempt": 2}, "stale_event"),
        (State.DISPATCHED, "recategorise", "ops:ana", {"category": "pothole", "attempt": 1}, "illegal_transition"),
        (State.DISPATCHED, "recategorise", U, {"category": "flooding", "attempt": 1}, "illegal_transition"),
        (State.DISPATCHED, "recategorise", "ops:ana", {"attempt": 1}, "invalid_event"),
        (State.RESOLVED, "recategorise", "ops:ana", {"category": "flooding", "attempt": 1}, "illegal_transition"),
        # refused: wrong state
        (State.DISPATCHED, "start", U, {}, "illegal_transition"),
        (State.DISPATCHED, "resolve", U, {}, "illegal_transition"),
        (State.IN_PROGRESS, "reject", U, {"reason_code": "outside_remit"}, "illegal_transition"),
        (State.CLOSED, "ack", U, {}, "illegal_transition"),
        (State.MERGED, "cancel", "ops:ana", {}, "illegal_transition"),
        (State.CANCELLED, "reopen", "ops:ana", {}, "illegal_transition"),
        (State.VERIFIED, "verify", "ops:ana", {}, "illegal_transition"),
        # refused: wrong actor
        (State.DISPATCHED, "ack", "unit:roads-east", {}, "not_assigned"),
        (State.DISPATCHED, "ack", "ops:ana", {}, "illegal_transition"),
        (State.RESOLVED, "verify", U, {}, "illegal_transition"),
        (State.IN_PROGRESS, "verify", "ops:ana", {}, "illegal_transition"),
        (State.VERIFIED, "close", "ops:ana", {}, "illegal_transition"),
        (State.DISPATCHED, "cancel", U, {}, "illegal_transition"),
        # refused: bad fields or guards
        (State.DISPATCHED, "reject", U, {"reason_code": "bored"}, "invalid_event"),
        (State.DISPATCHED, "reject", U, {"reason_code": "other"}, "invalid_event"),
        (State.DISPATCHED, "merge_order", "ops:ana", {"into": "inc-1"}, "illegal_transition"),
        (State.DISPATCHED, "assign", "ops:ana", {"attempt": 5, "unit": "roads-east"}, "stale_event"),
        (State.DISPATCHED, "assign", "ops:ana", {"attempt": 2}, "illegal_transition"),  # already its unit
        (State.DISPATCHED, "ack", U, {"task": "tsk-1-0"}, "stale_event"),
        (
            State.DISPATCHED,
            "dispatched",
            "engine",
            {"attempt": 1, "unit": "roads-west", "task": "tsk-1-1"},
            "illegal_transition",
        ),
    ],  # fmt: skip
)
def test_transitions(state: State, kind: str, actor: str, fields: dict, expected: State | str):
    """An event in a state moves the order to the expected state, or is refused with the expected code."""
    order = run(*path_to(state))
    assert order.state is state
    fields = dict(fields)
    unit = fields.pop("unit", "roads-west" if kind in ("assign", "dispatched") else None)
    task = fields.pop("task", f"tsk-1-{fields['attempt']}" if "attempt" in fields and kind != "recategorise" else None)
    event = ev(kind, actor, T0 + timedelta(minutes=5), task_id=task, unit_id=unit, **fields)
    if isinstance(expected, State):
        assert apply(order, event, CAL_POLICY).order.state is expected
    else:
        with pytest.raises(FeedbackError) as refused:
            apply(order, event, CAL_POLICY)
        assert refused.value.code == expected


def test_a_unit_event_without_an_order_is_refused_as_unknown():
    """Only a dispatched event creates an order; anything else for an unknown incident is refused."""
    with pytest.raises(FeedbackError) as refused:
        apply(None, ev("ack", U), CAL_POLICY)
    assert refused.value.code == "unknown_order"


def test_follow_ups():
    """A rejection asks for a re-dispatch, a verification for the close, a reopening for a new dispatch or a merge."""
    rejected = apply(run(dispatched()), ev("reject", U, reason_code="no_capacity"), CAL_POLICY)
    assert [f.kind for f in rejected.then] == ["redispatch"]
    verified = apply(run(*path_to(State.RESOLVED)), ev("verify", "ops:ana"), CAL_POLICY)
    assert [f.kind for f in verified.then] == ["close"]
    reopened = apply(run(*path_to(State.CLOSED)), ev("reopen", "ops:ana"), CAL_POLICY)
    assert [f.kind for f in reopened.then] == ["dispatch_again"]
    succeeded = apply(run(*path_to(State.CLOSED)), ev("reopen", "ops:ana", successor="inc-9"), CAL_POLICY)
    assert [(f.kind, f.target) for f in succeeded.then] == [("merge_into", "inc-9")]


def test_a_recategorised_order_is_routed_again_with_the_new_category_s_clocks():
    """Ops changes pothole -> flooding while roads-west works on it: the follow-up asks to route it again (naming
    the old category); the old clocks stop; the re-dispatch starts flooding's 30 min / 6 h budgets and forgets
    rejections made under the old category (they stay in the history)."""
    order = run(dispatched(), ev("reject", U, at(5), reason_code="wrong_category"),
                ev("dispatched", "engine", at(6), task_id="tsk-1-2", unit_id="roads-east", attempt=2),
                ev("ack", "unit:roads-east", at(10)), ev("start", "unit:roads-east", at(20)))  # fmt: skip
    step = apply(order, ev("recategorise", "ops:ana", at(30), category="flooding", attempt=2, reason="a burst main"),
                 CAL_POLICY)  # fmt: skip
    assert [(f.kind, f.target) for f in step.then] == [("reroute", "pothole")]
    moved = step.order
    assert (moved.state, moved.category, moved.sla) == (State.RECATEGORISED, "flooding", CAL_POLICY.slas["flooding"])
    assert moved.rejections == () and moved.holder is None
    assert not any(clock.running for clock in moved.clocks.values()), "no deadline fires while it is re-routed"
    again = apply(moved, ev("dispatched", "engine", at(31), task_id="tsk-1-3", unit_id="water-west", attempt=3),
                  CAL_POLICY).order  # fmt: skip
    assert (again.state, again.unit_id, again.attempt) == (State.DISPATCHED, "water-west", 3)
    assert again.deadline("acknowledge", CAL_POLICY.calendar) == at(31) + timedelta(minutes=30)
    assert again.deadline("resolve", CAL_POLICY.calendar) == at(31) + timedelta(hours=6)
    assert [(h["type"], h.get("category")) for h in again.history][-2:] == [("recategorise", "flooding"),
                                                                             ("dispatched", None)]  # fmt: skip
    assert [h["actor"] for h in again.history if h["type"] == "reject"] == [U]


def test_an_arbitrated_order_cannot_be_rejected_again():
    """The ops centre's arbitration is final: the unit it assigns may not reject."""
    order = run(*path_to(State.ARBITRATION))
    order = apply(order, ev("assign", "ops:ana", task_id="tsk-1-3", unit_id="roads-east", attempt=3), CAL_POLICY).order
    assert order.state is State.DISPATCHED and order.arbitrated and order.unit_id == "roads-east"
    with pytest.raises(FeedbackError) as refused:
        apply(order, ev("reject", "unit:roads-east", reason_code="outside_remit"), CAL_POLICY)
    assert refused.value.code == "illegal_transition"


@pytest.mark.parametrize(
    ("rejections", "covering", "backup", "expected"),
    [
        # first rejection: the next covering unit in declared order
        (["roads-west"], ["roads-west", "roads-east"], "roads-north", ("dispatched", "roads-east", "next-candidate")),
        # nobody else covers the point: the rejecting unit's backup
        (["roads-west"], ["roads-west"], "roads-east", ("dispatched", "roads-east", "backup")),
        # nobody else and no backup: arbitration
        (["roads-west"], ["roads-west"], None, ("arbitrate", "ops-centre", "arbitration")),
        # the backup already rejected: arbitration
        (["roads-west"], ["roads-west"], "roads-west", ("arbitrate", "ops-centre", "arbitration")),
        # the limit (2) reached: arbitration even though a unit is left
        (
            ["roads-west", "roads-east"],
            ["roads-west", "roads-east", "roads-x"],
            None,
            ("arbitrate", "ops-centre", "arbitration"),
        ),
        # the ops centre is never a candidate for re-dispatch
        (["roads-west"], ["roads-west", "ops-centre"], None, ("arbitrate", "ops-centre", "arbitration")),
    ],  # fmt: skip
)
def test_next_unit(rejections: list[str], covering: list[str], backup: str | None, expected: tuple):
    """Re-dispatch picks the next covering unit, then the backup, then the ops centre; N rejections = arbitration."""
    order = run(dispatched(unit=rejections[0]))
    for number, unit in enumerate(rejections, start=1):
        order = apply(order, ev("reject", f"unit:{unit}", reason_code="outside_remit"), CAL_POLICY).order
        if number < len(rejections):
            order = apply(order, ev("dispatched", "engine", task_id=f"tsk-1-{number + 1}",
                                    unit_id=rejections[number], attempt=number + 1), CAL_POLICY).order  # fmt: skip
    choice = next_unit(order, covering, backup, CAL_POLICY)
    assert (choice.event, choice.unit_id, choice.rule) == expected


def test_applying_a_whole_path_records_history_in_order():
    """The history lists every transition with actor, time and from/to states."""
    order = run(*path_to(State.CLOSED))
    assert [(h["type"], h["from"], h["to"]) for h in order.history] == [
        ("dispatched", None, "dispatched"),
        ("ack", "dispatched", "acknowledged"),
        ("start", "acknowledged", "in_progress"),
        ("resolve", "in_progress", "resolved"),
        ("verify", "resolved", "verified"),
        ("close", "verified", "closed"),
    ]
    assert order.to_dict() == WorkOrder.from_dict(order.to_dict()).to_dict()


# ------------------------------------------------------------------ SLA clocks


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_pauses_while_waiting_on_the_reporter_move_the_resolve_deadline():
    """Two hours waiting on the reporter push the 72 h resolve deadline back by two hours; ack stops at ack."""
    order = run(dispatched(), ev("ack", U, at(10)), ev("start", U, at(20)), ev("wait", U, at(60)),
                ev("resume", U, at(180)))  # fmt: skip
    assert order.deadline("resolve", CAL_POLICY.calendar) == T0 + timedelta(hours=72, minutes=120)
    assert order.deadline("acknowledge", CAL_POLICY.calendar) is None
    assert order.clocks["acknowledge"].used == pytest.approx(10)


def test_a_rejection_pauses_the_resolve_clock_until_the_next_unit_has_it():
    """Returned orders do not use the resolve budget; the next unit gets a fresh acknowledge budget."""
    order = run(dispatched(), ev("reject", U, at(30), reason_code="outside_remit"),
                ev("dispatched", "engine", at(90), task_id="tsk-1-2", unit_id="roads-east", attempt=2))  # fmt: skip
    assert order.deadline("resolve", CAL_POLICY.calendar) == T0 + timedelta(hours=72, minutes=60)
    assert order.deadline("acknowledge", CAL_POLICY.calendar) == at(90) + timedelta(hours=4)


def test_a_reopened_order_gets_fresh_clocks():
    """After 'not fixed' the same unit gets a new task with a new acknowledge and resolve budget."""
    order = run(*path_to(State.REOPENED))
    order = apply(order, ev("dispatched", "engine", at(600), task_id="tsk-1-2", unit_id="roads-west", attempt=2),
                  CAL_POLICY).order  # fmt: skip
    assert order.state is State.DISPATCHED and order.attempt == 2 and order.reopens == 1
    assert order.deadline("resolve", CAL_POLICY.calendar) == at(600) + timedelta(hours=72)


@pytest.mark.parametrize(
    ("category", "start", "checks"),
    [
        # calendar clock: 4 h to acknowledge -> yellow at 3 h, red at 4 h
        ("pothole", T0, [(at(179), "green"), (at(180), "yellow"), (at(239), "yellow"), (at(240), "red")]),
        # working clock, Friday 17:00 Amsterdam, 1 working day (10 h): one hour on Friday, then yellow after
        # 6.5 more = Monday 14:30 (13:30 UTC), red at Monday 17:00 (the weekend does not count)
        (
            "streetlight",
            datetime(2026, 11, 27, 16, 0, tzinfo=UTC),
            [
                (datetime(2026, 11, 30, 13, 29, tzinfo=UTC), "green"),
                (datetime(2026, 11, 30, 13, 30, tzinfo=UTC), "yellow"),
                (datetime(2026, 11, 30, 16, 0, tzinfo=UTC), "red"),
            ],
        ),
        # Christmas Eve 17:00: the 25th is a holiday, then the weekend: red on Monday 28th at 17:00
        (
            "streetlight",
            datetime(2026, 12, 24, 16, 0, tzinfo=UTC),
            [
                (datetime(2026, 12, 26, 12, 0, tzinfo=UTC), "green"),
                (datetime(2026, 12, 28, 15, 59, tzinfo=UTC), "yellow"),
                (datetime(2026, 12, 28, 16, 0, tzinfo=UTC), "red"),
            ],
        ),
    ],  # fmt: skip
)
def test_yellow_at_three_quarters_red_at_the_deadline(category: str, start: datetime, checks: list):
    """The acknowledge light turns yellow at 75 % of the budget and red when it is used up, in the clock's time."""
    clock = run(dispatched(at=start, category=category)).clocks["acknowledge"]
    for moment, expected in checks:
        assert clock.level(moment, CAL_POLICY.calendar) == expected, moment


def test_timers_list_yellow_and_red_deadlines_until_they_fire():
    """A running clock has a yellow and a red timer; once warned only the red; once breached none."""
    order = run(dispatched())
    members = {parse_timer_member(m)[1:3]: due for m, due in order.timers(CAL_POLICY.calendar).items()}
    assert members[("acknowledge", "yellow")] == at(180) and members[("acknowledge", "red")] == at(240)
    assert members[("resolve", "red")] == T0 + timedelta(hours=72)
    red = order.deadline("acknowledge", CAL_POLICY.calendar)
    warned = apply(order, ev("sla_warning", "timer", at(180), stage="acknowledge", due=red.isoformat()), CAL_POLICY)
    assert warned.order.light() == "yellow"
    assert ("acknowledge", "yellow") not in {parse_timer_member(m)[1:3] for m in warned.order.timers(None)}
    breached = apply(warned.order, ev("escalate", "timer", at(240), stage="acknowledge", due=red.isoformat()),
                     CAL_POLICY)  # fmt: skip
    assert breached.order.light() == "red"
    assert not any(m.split("|")[1] == "acknowledge" for m in breached.order.timers(CAL_POLICY.calendar))
    late = apply(breached.order, ev("ack", U, at(250)), CAL_POLICY).order
    assert late.light() == "green", "a stopped clock is off the board"


def test_a_breach_for_a_deadline_that_moved_is_ignored():
    """An escalation computed for an old deadline (the unit acknowledged meanwhile) changes nothing."""
    order = run(dispatched(), ev("ack", U, at(5)))
    step = apply(order, ev("escalate", "timer", at(240), stage="acknowledge", due=at(240).isoformat()), CAL_POLICY)
    assert step.ignored and step.order.light() == "green"


# --------------------------------------------------------------- sensor closure


def sensor_dispatch() -> LifecycleEvent:
    return dispatched(category="flooding", origin="sensor", source_id="sensor:wl-9:1795000000.0")


def test_a_sensor_incident_is_verified_after_a_quiet_period():
    """sensor_clear starts a quiet period; the sensor's verify for that period verifies and asks to close."""
    cleared = run(sensor_dispatch(), ev("sensor_clear", "sensor:wl-9", at(50), observed_at=at(45).isoformat()))
    assert cleared.quiet_due == at(75)
    assert any(m.startswith("inc-1|sensor|verify|") for m in cleared.timers(None))
    step = apply(cleared, ev("verify", "sensor:wl-9", at(75), quiet_due=at(75).isoformat()), CAL_POLICY)
    assert step.order.state is State.VERIFIED and [f.kind for f in step.then] == ["close"]


def test_a_re_alarm_during_the_quiet_period_cancels_the_verification():
    """A re-alarm that merges into the incident clears the quiet period; a late verify is refused as stale."""
    cleared = run(sensor_dispatch(), ev("sensor_clear", "sensor:wl-9", at(50)))
    realarm = apply(cleared, ev("merged", "engine", at(60), source_id="sensor:wl-9:1795003600.0"), CAL_POLICY).order
    assert realarm.quiet_due is None and realarm.alarms == {"wl-9"}
    with pytest.raises(FeedbackError) as refused:
        apply(realarm, ev("verify", "sensor:wl-9", at(80), quiet_due=at(80).isoformat()), CAL_POLICY)
    assert refused.value.code == "stale_event"


@pytest.mark.parametrize(("hours", "expected"), [(5, State.REOPENED), (7, "illegal_transition")])
def test_a_re_alarm_reopens_only_within_the_window(hours: int, expected: State | str):
    """A sensor re-alarm within 6 h of verification reopens the closed order; later it is a new incident."""
    cleared = run(sensor_dispatch(), ev("sensor_clear", "sensor:wl-9", at(50)))
    closed = run(sensor_dispatch(), ev("sensor_clear", "sensor:wl-9", at(50)),
                 ev("verify", "sensor:wl-9", at(80), quiet_due=cleared.quiet_due.isoformat()),
                 ev("close", "engine", at(80)))  # fmt: skip
    assert closed.state is State.CLOSED
    event = ev("reopen", "sensor:wl-9", at(80 + hours * 60), successor="inc-2")
    if isinstance(expected, State):
        assert apply(closed, event, CAL_POLICY).order.state is expected
    else:
        with pytest.raises(FeedbackError) as refused:
            apply(closed, event, CAL_POLICY)
        assert refused.value.code == expected
