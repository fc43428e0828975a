"""SLA deadlines in calendar and working time: weekends, holidays, DST. Table-driven."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from feedback import BusinessCalendar, deadline_for, parse_span

AMS = ZoneInfo("Europe/Amsterdam")
CAL = BusinessCalendar(zone=AMS, holidays=frozenset({date(2026, 12, 25), date(2026, 12, 28)}))


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=AMS)


@pytest.mark.parametrize(
    ("start", "span", "clock", "expected"),
    [
        # calendar clock: hours are elapsed time (days are local days: test_sla_conventions.py)
        (local(2026, 11, 26, 9, 0), "4h", "calendar", local(2026, 11, 26, 13, 0)),
        (local(2026, 11, 26, 9, 0), "1d12h", "calendar", local(2026, 11, 27, 21, 0)),
        # 2026-10-25 03:00 CEST -> 02:00 CET: 24 elapsed hours end an hour "earlier" on the wall
        (local(2026, 10, 24, 12, 0), "24h", "calendar", local(2026, 10, 25, 11, 0)),
        # working clock inside one day
        (local(2026, 11, 26, 9, 0), "4h", "working", local(2026, 11, 26, 13, 0)),
        # spills over the evening into the next morning
        (local(2026, 11, 26, 16, 0), "4h", "working", local(2026, 11, 27, 10, 0)),
        # started before opening: the clock starts at 08:00
        (local(2026, 11, 26, 6, 30), "1h", "working", local(2026, 11, 26, 9, 0)),
        # Friday afternoon -> Monday (weekend skipped)
        (local(2026, 11, 27, 17, 0), "2h", "working", local(2026, 11, 30, 9, 0)),
        # reported on Saturday: starts Monday 08:00
        (local(2026, 11, 28, 11, 0), "30m", "working", local(2026, 11, 30, 8, 30)),
        # one working day = 10 working hours (08-18)
        (local(2026, 11, 26, 8, 0), "1d", "working", local(2026, 11, 26, 18, 0)),
        (local(2026, 11, 26, 13, 0), "1d", "working", local(2026, 11, 27, 13, 0)),
        # Christmas Eve evening: 25th (holiday), weekend, 28th (holiday) -> Tuesday 29th
        (local(2026, 12, 24, 18, 30), "4h", "working", local(2026, 12, 29, 12, 0)),
        # across the DST change: Friday 23 Oct 17:00 CEST + 1 working day = Monday 26 Oct 17:00 CET
        (local(2026, 10, 23, 17, 0), "1d", "working", local(2026, 10, 26, 17, 0)),
        # spring forward: Friday 27 Mar 2026 16:00 CET + 4h working = Monday 30 Mar 10:00 CEST
        (local(2026, 3, 27, 16, 0), "4h", "working", local(2026, 3, 30, 10, 0)),
    ],
)
def test_deadline_for(start: datetime, span: str, clock: str, expected: datetime):
    """Deadlines in calendar and working time across evenings, weekends, holidays and both DST changes."""
    assert deadline_for(start, span, clock, CAL) == expected


def test_deadline_keeps_the_callers_zone():
    """A deadline comes back in the time zone the start was given in."""
    start = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)  # 09:00 in Amsterdam
    result = deadline_for(start, "4h", "working", CAL)
    assert result.tzinfo is UTC
    assert result == datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"), [("4h", (0, 240)), ("1d", (1, 0)), ("1d4h30m", (1, 270)), ("90m", (0, 90))]
)
def test_parse_span(text: str, expected: tuple[float, float]):
    """Spans read as (days, minutes)."""
    assert parse_span(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "4x", "h"])
def test_parse_span_refuses_nonsense(text: str):
    """Anything that is not a span is refused."""
    with pytest.raises(ValueError):
        parse_span(text)


def test_working_clock_without_calendar_is_an_error():
    """Working time needs the city's calendar."""
    with pytest.raises(ValueError, match="business calendar"):
        deadline_for(local(2026, 11, 26, 9, 0), "4h", "working", None)


def test_naive_start_is_refused():
    """A start without a time zone is refused."""
    with pytest.raises(ValueError, match="timezone-aware"):
        CAL.add_working_minutes(datetime(2026, 11, 26, 9, 0), 60)


# ------------------------------------------------------------- elapsed time and stage clocks

from feedback import StageClock  # noqa: E402
from feedback.sla import add_minutes, local_days_later, minutes_between, span_minutes  # noqa: E402


@pytest.mark.parametrize(
    ("start", "end", "clock", "expected"),
    [
        # inside one working day
        (local(2026, 11, 26, 9, 0), local(2026, 11, 26, 13, 30), "working", 270),
        # evening and night do not count
        (local(2026, 11, 26, 17, 0), local(2026, 11, 27, 9, 0), "working", 120),
        # Friday 17:00 -> Monday 09:00: the weekend does not count
        (local(2026, 11, 27, 17, 0), local(2026, 11, 30, 9, 0), "working", 120),
        # Christmas Eve 17:00 -> Tuesday 29th 09:00: the 25th and 28th are holidays, the 26th-27th a weekend
        (local(2026, 12, 24, 17, 0), local(2026, 12, 29, 9, 0), "working", 120),
        # across the autumn DST change a working day is still 10 h; calendar time counts the extra hour
        (local(2026, 10, 23, 8, 0), local(2026, 10, 26, 18, 0), "working", 1200),
        (local(2026, 10, 24, 12, 0), local(2026, 10, 25, 12, 0), "calendar", 25 * 60),
        # spring forward: 23 elapsed hours between the two noons
        (local(2026, 3, 28, 12, 0), local(2026, 3, 29, 12, 0), "calendar", 23 * 60),
        # an end before the start is no time at all
        (local(2026, 11, 26, 13, 0), local(2026, 11, 26, 9, 0), "working", 0),
    ],
)
def test_minutes_between(start: datetime, end: datetime, clock: str, expected: float):
    """Elapsed minutes of a clock: working time skips nights, weekends, holidays; calendar time counts DST hours."""
    assert minutes_between(start, end, clock, CAL) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("start", "minutes", "clock"),
    [
        (local(2026, 11, 26, 9, 0), 270.0, "working"),
        (local(2026, 11, 27, 17, 30), 600.0, "working"),
        (local(2026, 12, 24, 16, 0), 900.0, "working"),
        (local(2026, 10, 24, 20, 0), 720.0, "calendar"),
    ],
)
def test_add_and_measure_are_inverse(start: datetime, minutes: float, clock: str):
    """Adding N minutes of a clock and measuring the span back gives N again (weekends, holidays, DST)."""
    assert minutes_between(start, add_minutes(start, minutes, clock, CAL), clock, CAL) == pytest.approx(minutes)


@pytest.mark.parametrize(
    ("span", "clock", "expected"),
    [
        ("4h", "calendar", 240),
        ("1d", "calendar", 1440),
        ("1d", "working", 600),
        ("1d4h", "working", 840),
        ("0.05m", "calendar", 0.05),
    ],  # fmt: skip
)
def test_span_minutes(span: str, clock: str, expected: float):
    """A working day is the city's working day (10 h here); a calendar day 24 h."""
    assert span_minutes(span, clock, CAL) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("events", "expected_due"),
    [
        # runs from Friday 16:00, paused over the weekend's reporter wait (Fri 17:00 -> Mon 10:00), resumed:
        # 1 h used, 9 left from Monday 10:00 -> Tuesday 09:00 (working day 08-18)
        (
            [
                ("start", local(2026, 11, 27, 16, 0)),
                ("pause", local(2026, 11, 27, 17, 0)),
                ("start", local(2026, 11, 30, 10, 0)),
            ],
            local(2026, 12, 1, 9, 0),
        ),
        # a pause across the DST change on a working clock: Friday 23 Oct 08:00 start, pause 13:00 (5 h used),
        # resume Monday 26 Oct 08:00 (after the clocks went back): 5 h left -> 13:00 CET
        (
            [
                ("start", local(2026, 10, 23, 8, 0)),
                ("pause", local(2026, 10, 23, 13, 0)),
                ("start", local(2026, 10, 26, 8, 0)),
            ],
            local(2026, 10, 26, 13, 0),
        ),
        # paused: no deadline while waiting
        ([("start", local(2026, 11, 26, 9, 0)), ("pause", local(2026, 11, 26, 10, 0))], None),
        # stopped clocks never restart
        (
            [
                ("start", local(2026, 11, 26, 9, 0)),
                ("stop", local(2026, 11, 26, 10, 0)),
                ("start", local(2026, 11, 26, 11, 0)),
            ],
            None,
        ),
    ],  # fmt: skip
)
def test_a_paused_working_clock_keeps_its_budget(events: list, expected_due: datetime | None):
    """A one-working-day budget: pauses do not use it, across weekends and a DST change."""
    clock = StageClock.fresh("1d", "working", CAL)
    for action, moment in events:
        clock = getattr(clock, action)(moment, CAL)
    assert clock.due(CAL) == expected_due
    assert StageClock.from_dict(clock.to_dict()) == clock


@pytest.mark.parametrize(
    ("used_share", "expected"),
    [(0.0, "green"), (0.74, "green"), (0.75, "yellow"), (0.99, "yellow"), (1.0, "red"), (1.5, "red")],  # fmt: skip
)
def test_lights(used_share: float, expected: str):
    """Yellow from 75 % of the budget used, red from 100 %."""
    start = local(2026, 11, 26, 9, 0)
    clock = StageClock.fresh("4h", "calendar", CAL).start(start, CAL)
    assert clock.level(add_minutes(start, 240 * used_share, "calendar", CAL), CAL) == expected


# ------------------------------------------------------------- refusals and zones, word for word (docs/TESTING.md)
NO_CALENDAR = "a working-time SLA needs the city's business calendar"
SHANGHAI = ZoneInfo("Asia/Shanghai")


@pytest.mark.parametrize(
    "call",
    [
        lambda: deadline_for(local(2026, 11, 26, 9, 0), "4h", "working", None),
        lambda: span_minutes("4h", "working", None),
        lambda: add_minutes(local(2026, 11, 26, 9, 0), 60, "working", None),
        lambda: minutes_between(local(2026, 11, 26, 9, 0), local(2026, 11, 26, 10, 0), "working", None),
    ],
    ids=["deadline_for", "span_minutes", "add_minutes", "minutes_between"],
)
def test_each_working_time_function_says_it_needs_the_calendar(call):
    with pytest.raises(ValueError) as refused:
        call()
    assert str(refused.value) == NO_CALENDAR


def test_an_unknown_clock_and_naive_times_are_refused_by_name():
    start, naive = local(2026, 11, 26, 9, 0), datetime(2026, 11, 26, 9, 0)
    for call in (lambda: deadline_for(start, "4h", "sundial", CAL), lambda: span_minutes("4h", "sundial", CAL)):
        with pytest.raises(ValueError) as refused:
            call()
        assert str(refused.value) == "clock must be 'calendar' or 'working', not 'sundial'"
    for call in (lambda: local_days_later(naive, 1, AMS), lambda: add_minutes(naive, 60, "calendar", CAL)):
        with pytest.raises(ValueError) as refused:
            call()
        assert str(refused.value) == "start must be timezone-aware"
    for args in ((naive, start), (start, naive)):  # either one naive
        with pytest.raises(ValueError) as refused:
            minutes_between(*args, "calendar", CAL)
        assert str(refused.value) == "times must be timezone-aware"


def test_no_time_passes_when_the_end_is_not_later_whatever_the_clock():
    start = local(2026, 11, 26, 9, 0)
    assert minutes_between(start, start, "working", None) == 0.0  # not even a calendar is needed to say so
    assert minutes_between(start, start.replace(hour=8), "working", None) == 0.0


def test_every_deadline_comes_back_in_the_zone_it_was_started_in():
    """Not the machine's zone, nor the city's: a caller in Shanghai reads a Shanghai time (here the machine may
    well run on UTC, so a function that forgot the start's zone would hand back UTC)."""
    start = datetime(2026, 11, 26, 17, 0, tzinfo=SHANGHAI)  # 10:00 in Amsterdam
    for result in (
        local_days_later(start, 1.5, AMS),
        add_minutes(start, 90, "calendar", CAL),
        deadline_for(start, "1d2h", "calendar", CAL),
    ):
        assert result.utcoffset() == timedelta(hours=8), result
    assert local_days_later(start, 1.5, AMS) == datetime(2026, 11, 28, 5, 0, tzinfo=SHANGHAI)
