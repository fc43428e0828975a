"""SLA deadlines in calendar and working time: weekends, holidays, DST. Table-driven."""

from __future__ import annotations

from datetime import UTC, date, datetime
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
        # calendar clock: plain elapsed time, DST included
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
    assert deadline_for(start, span, clock, CAL) == expected


def test_deadline_keeps_the_callers_zone():
    start = datetime(2026, 11, 26, 8, 0, tzinfo=UTC)  # 09:00 in Amsterdam
    result = deadline_for(start, "4h", "working", CAL)
    assert result.tzinfo is UTC
    assert result == datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"), [("4h", (0, 240)), ("1d", (1, 0)), ("1d4h30m", (1, 270)), ("90m", (0, 90))]
)
def test_parse_span(text: str, expected: tuple[float, float]):
    assert parse_span(text) == expected


@pytest.mark.parametrize("text", ["", "soon", "4x", "h"])
def test_parse_span_refuses_nonsense(text: str):
    with pytest.raises(ValueError):
        parse_span(text)


def test_working_clock_without_calendar_is_an_error():
    with pytest.raises(ValueError, match="business calendar"):
        deadline_for(local(2026, 11, 26, 9, 0), "4h", "working", None)


def test_naive_start_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        CAL.add_working_minutes(datetime(2026, 11, 26, 9, 0), 60)
