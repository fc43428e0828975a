"""SLA deadlines in calendar time or in a city's working time.

Pure functions of their inputs: the start time is a parameter, never read from
the clock. Working time follows the city's own wall clock (time zone, working
hours, working days, holidays), so daylight-saving changes shift nothing that a
person in the city would not expect.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

_SPAN_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*$")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def parse_span(text: str) -> tuple[float, float]:
    """``"1d4h30m"`` -> (days, minutes): (1.0, 270.0)."""
    match = _SPAN_RE.match(text)
    if not match or not any(match.groups()):
        raise ValueError(f"expected a duration like '4h', '90m' or '1d12h', got {text!r}")
    days, hours, minutes = (float(g) if g else 0.0 for g in match.groups())
    return days, hours * 60 + minutes


@dataclass(frozen=True)
class BusinessCalendar:
    """When a city works: a time zone, daily working hours, working days and holidays."""

    zone: ZoneInfo
    start: time = time(8, 0)
    end: time = time(18, 0)
    days: frozenset[str] = frozenset(("mon", "tue", "wed", "thu", "fri"))
    holidays: frozenset[date] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise ValueError("working hours must start before they end")

    @property
    def day_minutes(self) -> float:
        return (datetime.combine(date.min, self.end) - datetime.combine(date.min, self.start)).total_seconds() / 60

    def is_working_day(self, day: date) -> bool:
        return _WEEKDAYS[day.weekday()] in self.days and day not in self.holidays

    def add_working_minutes(self, start: datetime, minutes: float) -> datetime:
        """The moment when ``minutes`` of working time have passed after ``start``."""
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        if not any(day in _WEEKDAYS for day in self.days):
            raise ValueError("the calendar has no working days")
        local = start.astimezone(self.zone)
        remaining = timedelta(minutes=minutes)
        day = local.date()
        for _ in range(3700):  # ten years of days: a calendar with no working time left fails loudly
            if self.is_working_day(day):
                opens = datetime.combine(day, self.start, tzinfo=self.zone)
                closes = datetime.combine(day, self.end, tzinfo=self.zone)
                begin = max(opens, local)
                if begin < closes:
                    available = closes - begin
                    if remaining <= available:
                        return (begin + remaining).astimezone(start.tzinfo)
                    remaining -= available
            day += timedelta(days=1)
        raise ValueError("no working time within ten years; check the calendar's holidays")


@dataclass(frozen=True)
class SlaClock:
    """One SLA target: a span and whether it runs on calendar or working time."""

    span: str
    clock: str = "calendar"

    def deadline(self, start: datetime, calendar: BusinessCalendar | None) -> datetime:
        return deadline_for(start, self.span, self.clock, calendar)


def deadline_for(start: datetime, span: str, clock: str, calendar: BusinessCalendar | None) -> datetime:
    """When an SLA that starts at ``start`` runs out.

    On a calendar clock ``1d`` is 24 hours. On a working clock ``1d`` is one
    working day (the length of the city's working day) and ``4h`` four working
    hours.
    """
    days, minutes = parse_span(span)
    if clock == "calendar":
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        # elapsed time, not wall-clock time: go through UTC so a DST change counts
        elapsed = start.astimezone(UTC) + timedelta(days=days, minutes=minutes)
        return elapsed.astimezone(start.tzinfo)
    if clock != "working":
        raise ValueError(f"clock must be 'calendar' or 'working', not {clock!r}")
    if calendar is None:
        raise ValueError("a working-time SLA needs the city's business calendar")
    return calendar.add_working_minutes(start, days * calendar.day_minutes + minutes)
