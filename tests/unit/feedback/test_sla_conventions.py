"""The conventions cities compute due dates with: calendar days are local days (DST), a deadline at closing time
stays or moves to the next opening, and a category may have no SLA at all."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from feedback import BusinessCalendar, LifecycleEvent, Policy, SlaSpec, StageClock, apply, deadline_for
from feedback.orders import parse_timer_member
from feedback.views import dispatch_sla, sla_view, task_sla

NY = ZoneInfo("America/New_York")  # 2026: clocks go forward 8 March 02:00, back 1 November 02:00
AMS = ZoneInfo("Europe/Amsterdam")  # 2026: forward 29 March 02:00, back 25 October 03:00
NY_CAL = BusinessCalendar(zone=NY, start=time(8, 30), end=time(17, 0))
AMS_CAL = BusinessCalendar(zone=AMS)


def ny(*args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=NY, fold=fold)


def ams(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMS)


def hours(a: datetime, b: datetime) -> float:
    return (b.astimezone(UTC) - a.astimezone(UTC)).total_seconds() / 3600


# ------------------------------------------------------------------ calendar days are the city's local days


@pytest.mark.parametrize(
    ("start", "span", "calendar", "expected", "elapsed_h"),
    [
        # US spring forward: Saturday 10:00 EST + 1d = Sunday 10:00 EDT, 23 hours later
        (ny(2026, 3, 7, 10, 0), "1d", NY_CAL, ny(2026, 3, 8, 10, 0), 23),
        # US fall back: Saturday 10:00 EDT + 1d = Sunday 10:00 EST, 25 hours later
        (ny(2026, 10, 31, 10, 0), "1d", NY_CAL, ny(2026, 11, 1, 10, 0), 25),
        # several days across the change, and days then hours: same clock time, then elapsed hours
        (ny(2026, 3, 6, 16, 0), "3d", NY_CAL, ny(2026, 3, 9, 16, 0), 71),
        (ny(2026, 10, 31, 10, 0), "1d4h", NY_CAL, ny(2026, 11, 1, 14, 0), 29),
        # hours alone stay elapsed time: 24h over the fall-back night end at 09:00 on the wall
        (ny(2026, 10, 31, 10, 0), "24h", NY_CAL, ny(2026, 11, 1, 9, 0), 24),
        # a fraction of a day is elapsed time after the whole days
        (ny(2026, 3, 7, 10, 0), "1.5d", NY_CAL, ny(2026, 3, 8, 22, 0), 35),
        # Europe: Amsterdam's spring forward and fall back
        (ams(2026, 3, 28, 12, 0), "1d", AMS_CAL, ams(2026, 3, 29, 12, 0), 23),
        (ams(2026, 10, 24, 12, 0), "2d", AMS_CAL, ams(2026, 10, 26, 12, 0), 49),
        # no change in between: a day is 24 hours, as before
        (ams(2026, 11, 26, 9, 0), "1d", AMS_CAL, ams(2026, 11, 27, 9, 0), 24),
    ],
)
def test_calendar_days_are_the_same_local_time_days_later(start, span, calendar, expected, elapsed_h):
    """A calendar ``Nd`` ends at the same local clock time N days later in the city, as cities count due dates."""
    due = deadline_for(start, span, "calendar", calendar)
    assert due == expected and hours(start, due) == pytest.approx(elapsed_h)
    assert due.utcoffset() == expected.utcoffset(), "the wall time is right, not only the instant"


def test_calendar_days_follow_the_citys_zone_whatever_zone_the_start_is_given_in():
    """A start in UTC still counts New York's days; the answer comes back in UTC. Without a calendar, the start's
    own zone decides (a UTC start then means 24-hour days)."""
    start = datetime(2026, 3, 7, 15, 0, tzinfo=UTC)  # 10:00 EST
    due = deadline_for(start, "1d", "calendar", NY_CAL)
    assert due == datetime(2026, 3, 8, 14, 0, tzinfo=UTC) and due.tzinfo is UTC
    assert deadline_for(start, "1d", "calendar", None) == datetime(2026, 3, 8, 15, 0, tzinfo=UTC)
    assert deadline_for(ny(2026, 3, 7, 10, 0), "1d", "calendar", None) == ny(2026, 3, 8, 10, 0)


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        # 02:30 does not exist on 8 March (02:00 -> 03:00): it moves forward by the gap, to 03:30 EDT
        (ny(2026, 3, 7, 2, 30), ny(2026, 3, 8, 3, 30)),
        # 01:30 happens twice on 1 November: the first one (EDT)
        (ny(2026, 10, 31, 1, 30), datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),
        # from the second 01:30 (EST), one day later is an ordinary 01:30
        (ny(2026, 11, 1, 1, 30, fold=1), ny(2026, 11, 2, 1, 30)),
    ],
)
def test_a_local_time_skipped_or_repeated_by_dst(start: datetime, expected: datetime):
    """Skipped local times move forward, repeated ones are their first occurrence (zoneinfo's fold=0)."""
    # compared in UTC: Python's == between zones is False for any time in a fold (PEP 495)
    assert deadline_for(start, "1d", "calendar", NY_CAL).astimezone(UTC) == expected.astimezone(UTC)


def test_hours_from_the_second_of_two_equal_wall_times_are_not_read_back_an_hour():
    """A start at the repeated 01:30 (EST) plus 1h is 02:30 EST: zero days do not re-read the wall time."""
    start = ny(2026, 11, 1, 1, 30, fold=1)
    assert deadline_for(start, "1h", "calendar", NY_CAL) == start + timedelta(hours=1)
    assert hours(start, deadline_for(start, "1h", "calendar", NY_CAL)) == 1


# ------------------------------------------------------------------ the stage clock agrees with deadline_for


@pytest.mark.parametrize(
    ("start", "budget"),
    [(ny(2026, 3, 7, 10, 0), 23 * 60), (ny(2026, 10, 31, 10, 0), 25 * 60), (ams(2026, 3, 28, 12, 0), 23 * 60)],
)
def test_a_stage_clock_is_due_and_red_at_the_local_deadline(start: datetime, budget: float):
    """Never paused: due at the wall-clock deadline, red exactly then and not a minute before or an hour after."""
    calendar = NY_CAL if start.tzinfo is NY else AMS_CAL
    clock = StageClock.fresh("1d", "calendar", calendar)
    assert clock.budget == 24 * 60, "nominal until it starts"
    clock = clock.start(start, calendar)
    deadline = deadline_for(start, "1d", "calendar", calendar)
    assert clock.budget == budget and clock.due(calendar) == deadline
    assert clock.level(deadline - timedelta(minutes=1), calendar) == "yellow"
    assert clock.level(deadline, calendar) == "red"
    assert clock.due(calendar, share=0.75) == start.astimezone(UTC) + timedelta(minutes=0.75 * budget)
    assert StageClock.from_dict(clock.to_dict()) == clock


def test_a_paused_calendar_clock_keeps_the_budget_its_start_fixed():
    """Started Saturday 10:00 EST with 1d (23 h to Sunday 10:00 EDT), paused at 12:00 with 2 h used, resumed Monday
    09:00 EDT: the 21 h left run to Tuesday 06:00 EDT; the pause does not re-read the wall clock."""
    clock = StageClock.fresh("1d", "calendar", NY_CAL).start(ny(2026, 3, 7, 10, 0), NY_CAL)
    clock = clock.pause(ny(2026, 3, 7, 12, 0), NY_CAL)
    assert clock.due(NY_CAL) is None and clock.used == 120
    clock = clock.start(ny(2026, 3, 9, 9, 0), NY_CAL)
    assert clock.budget == 23 * 60 and clock.due(NY_CAL) == ny(2026, 3, 10, 6, 0)
    assert clock.level(ny(2026, 3, 10, 5, 59), NY_CAL) == "yellow"
    assert clock.level(ny(2026, 3, 10, 6, 0), NY_CAL) == "red"
    # a fresh clock saved before it starts keeps its day part to fix
    unstarted = StageClock.fresh("2d4h", "calendar", NY_CAL)
    assert StageClock.from_dict(unstarted.to_dict()) == unstarted and unstarted.wall_days == 2


NY_POLICY = Policy(calendar=NY_CAL, slas={"pothole": SlaSpec("4h", "1d", "2d", "calendar"),
                                          "sidewalk": SlaSpec("4h", "1d", None, "working")},
                   fallback_unit="ops-centre")  # fmt: skip


def event(kind: str, at: datetime, **fields: object) -> LifecycleEvent:
    task = {"task_id": "tsk-1-1", "unit_id": "roads"}
    return LifecycleEvent(f"evt-{kind}-{at.isoformat()}", kind, "inc-1", "engine", at, **task, fields=fields)


def test_the_timer_fires_a_calendar_days_breach_at_the_local_deadline():
    """Through the lifecycle: the order's red timer for a 1d resolve over the fall-back night is Sunday 10:00 EST,
    and the escalation computed for it is accepted."""
    start = ny(2026, 10, 31, 10, 0).astimezone(UTC)
    order = apply(None, event("dispatched", start, category="pothole", attempt=1), NY_POLICY).order
    timers = {parse_timer_member(m)[1:3]: due for m, due in order.timers(NY_CAL).items()}
    assert timers[("resolve", "red")] == ny(2026, 11, 1, 10, 0)
    assert dispatch_sla(NY_POLICY.slas["pothole"], start, NY_CAL)["resolve_by"] == "2026-11-01T15:00:00Z"
    due = order.deadline("resolve", NY_CAL)
    step = apply(order, event("escalate", due, stage="resolve", due=due.isoformat()), NY_POLICY)
    assert step.ignored is None and step.order.light() == "red"


# ------------------------------------------------------------------ a deadline exactly at closing time

NEXT = replace(NY_CAL, at_close="next_opening")
TUESDAY_0707 = ny(2026, 3, 3, 7, 7)


@pytest.mark.parametrize(
    ("calendar", "start", "span", "expected"),
    [
        # the city's example: opened Tuesday 07:07, one working day of 08:30-17:00
        (NY_CAL, TUESDAY_0707, "1d", ny(2026, 3, 3, 17, 0)),
        (NEXT, TUESDAY_0707, "1d", ny(2026, 3, 4, 8, 30)),
        # Friday: the next opening is Monday's
        (NEXT, ny(2026, 3, 6, 12, 0), "5h", ny(2026, 3, 9, 8, 30)),
        # not exactly at closing: both rules agree
        (NEXT, TUESDAY_0707, "8h", ny(2026, 3, 3, 16, 30)),
        (NEXT, ny(2026, 3, 3, 16, 0), "2h", ny(2026, 3, 4, 9, 30)),
    ],
)
def test_a_deadline_exactly_at_closing_time(calendar, start, span, expected):
    """``closing`` keeps a deadline at the end of the working day; ``next_opening`` moves it to the next opening."""
    assert deadline_for(start, span, "working", calendar) == expected


def test_next_opening_turns_a_clock_red_at_the_opening_not_at_closing():
    """The light and the timer agree with the deadline: red at Wednesday 08:30, not Tuesday 17:00."""
    clock = StageClock.fresh("1d", "working", NEXT).start(TUESDAY_0707, NEXT)
    assert clock.due(NEXT) == ny(2026, 3, 4, 8, 30)
    assert clock.level(ny(2026, 3, 3, 17, 0), NEXT) == "yellow"
    assert clock.level(ny(2026, 3, 4, 8, 29), NEXT) == "yellow"
    assert clock.level(ny(2026, 3, 4, 8, 30), NEXT) == "red"
    closing = StageClock.fresh("1d", "working", NY_CAL).start(TUESDAY_0707, NY_CAL)
    assert closing.level(ny(2026, 3, 3, 17, 0), NY_CAL) == "red"


def test_an_unknown_at_close_rule_is_refused():
    with pytest.raises(ValueError, match="at_close must be 'closing' or 'next_opening', not 'noon'"):
        BusinessCalendar(zone=NY, at_close="noon")


# ------------------------------------------------------------------ a category without SLA


def test_a_category_without_sla_has_no_clock_no_deadline_and_no_timer():
    """Report-only: no clocks, no deadlines in the task or the views, nothing for the timer, through its life."""
    start = ny(2026, 3, 3, 10, 0)
    order = apply(None, event("dispatched", start, category="report-only", attempt=1), NY_POLICY).order
    assert order.sla is None and dict(order.clocks) == {} and order.timers(NY_CAL) == {}
    assert task_sla(order, NY_CAL) == {"clock": None, "acknowledge_by": None, "resolve_by": None,
                                       "verify_within": None}  # fmt: skip
    assert dispatch_sla(None, start, NY_CAL)["resolve_by"] is None
    assert sla_view(order, NY_CAL)["light"] == "green"
    unit = replace(event("ack", start + timedelta(days=9)), actor="unit:roads")
    order = apply(order, unit, NY_POLICY).order
    resolved = apply(order, replace(unit, event_id="r", type="start"), NY_POLICY).order
    resolved = apply(resolved, replace(unit, event_id="s", type="resolve", fields={"note": "seen"}), NY_POLICY).order
    assert resolved.state.value == "resolved" and dict(resolved.clocks) == {} and resolved.timers(NY_CAL) == {}
    late = apply(order, event("escalate", start + timedelta(days=30), stage="resolve", due=start.isoformat()),
                 NY_POLICY)  # fmt: skip
    assert late.ignored and late.order.light() == "green", "an escalation for a clock it never had changes nothing"
