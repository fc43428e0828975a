"""SLA deadlines in calendar time or in a city's working time.

Pure functions of their inputs: the start time is a parameter, never read from
the clock. Both clocks follow the city's own wall clock, because that is how
cities compute their due dates, and so what they publish and audit against:

* **Calendar clock.** The days of a span are days of the city's calendar: ``2d``
  from Saturday 10:00 is Monday 10:00 local time, whether the clocks changed in
  between or not (so 47, 48 or 49 hours). The hours and minutes of a span, and a
  fraction of a day, are elapsed time, added after the days: ``1d4h`` is the same
  clock time tomorrow, then four hours more. The zone is the business calendar's
  (the city's); without a calendar, the start's own ``tzinfo``.
* **Working clock.** Working hours, working days and holidays, in the city's zone;
  ``1d`` is one working day of the calendar's length. A deadline that lands exactly
  at closing time stays there (``at_close="closing"``) or moves to the next
  opening (``"next_opening"``), as the city's calendar says.

A :class:`StageClock` keeps its budget in minutes because it pauses and resumes.
For a calendar clock the day part is fixed when the clock first starts: the
budget becomes the elapsed minutes from that moment to the same local time N
days later (1380 for ``1d`` over a spring-forward night, 1500 over a fall-back
one). So a clock that never pauses is due exactly at :func:`deadline_for` of its
start; one that pauses carries that elapsed budget and owes, after a resume,
what it had left (a pause never re-reads the wall clock, so a pause across a DST
change neither gains nor loses the hour the start already counted). ``due``,
``level`` and the timer's deadlines all read that one budget, so a breach fires
neither an hour early nor late. A clock restarted afresh (a reopening, a new
category) fixes its day part again at its new start.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from zoneinfo import ZoneInfo

_SPAN_RE = re.compile(r"^\s*(?:(\d+(?:\.\d+)?)\s*d)?\s*(?:(\d+(?:\.\d+)?)\s*h)?\s*(?:(\d+(?:\.\d+)?)\s*m)?\s*$")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: where a working-time deadline that lands exactly at closing time goes: it stays, or moves to the next opening
AT_CLOSE = ("closing", "next_opening")


@functools.lru_cache(maxsize=1024)
def parse_span(text: str) -> tuple[float, float]:
    """``"1d4h30m"`` -> (days, minutes): (1.0, 270.0)."""
    match = _SPAN_RE.match(text)
    if not match or not any(match.groups()):
        raise ValueError(f"expected a duration like '4h', '90m' or '1d12h', got {text!r}")
    days, hours, minutes = (float(g) if g else 0.0 for g in match.groups())
    return days, hours * 60 + minutes


@dataclass(frozen=True)
class BusinessCalendar:
    """When a city works: a time zone, daily working hours, working days and holidays.

    ``at_close`` is the city's convention for a working-time deadline that falls
    exactly at the end of a working day: ``"closing"`` keeps it there (opened
    Tuesday 07:07 with one working day of 08:30-17:00: due Tuesday 17:00),
    ``"next_opening"`` moves it to the next working moment (Wednesday 08:30), as
    many cities' systems do. Both have the same working minutes in between; only
    the instant the deadline is reported and escalated differs.
    """

    zone: ZoneInfo
    start: time = time(8, 0)
    end: time = time(18, 0)
    days: frozenset[str] = frozenset(("mon", "tue", "wed", "thu", "fri"))
    holidays: frozenset[date] = field(default_factory=frozenset)
    at_close: str = "closing"

    def __post_init__(self) -> None:
        if not self.start < self.end:
            raise ValueError("working hours must start before they end")
        if self.at_close not in AT_CLOSE:
            raise ValueError(f"at_close must be 'closing' or 'next_opening', not {self.at_close!r}")

    @property
    def day_minutes(self) -> float:
        return (datetime.combine(date.min, self.end) - datetime.combine(date.min, self.start)).total_seconds() / 60

    def is_working_day(self, day: date) -> bool:
        return _WEEKDAYS[day.weekday()] in self.days and day not in self.holidays

    def add_working_minutes(self, start: datetime, minutes: float) -> datetime:
        """The moment when ``minutes`` of working time have passed after ``start``."""
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        # remembered: a batch dispatches many orders at one moment, and every view recomputes their deadlines
        return _add_working_minutes(self, start, start.tzinfo, minutes)

    def _add_working_minutes(self, start: datetime, minutes: float) -> datetime:
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
                    # exactly at closing: stays, or (next_opening) goes on with nothing left to the next opening
                    if remaining < available or (remaining == available and self.at_close == "closing"):
                        return (begin + remaining).astimezone(start.tzinfo)
                    remaining -= available
            day += timedelta(days=1)
        raise ValueError("no working time within ten years; check the calendar's holidays")

    def working_minutes_between(self, start: datetime, end: datetime) -> float:
        """Working minutes from ``start`` to ``end``: the overlap with each working day's hours."""
        local_start, local_end = start.astimezone(self.zone), end.astimezone(self.zone)
        day, last = local_start.date(), local_end.date()
        if (last - day).days > 3700:
            raise ValueError("spans of more than ten years are not measured in working time")
        total = 0.0
        while day <= last:
            if self.is_working_day(day):
                opens = datetime.combine(day, self.start, tzinfo=self.zone)
                closes = datetime.combine(day, self.end, tzinfo=self.zone)
                begin, finish = max(opens, local_start), min(closes, local_end)
                if begin < finish:
                    total += (finish - begin).total_seconds() / 60
            day += timedelta(days=1)
        return total


@functools.lru_cache(maxsize=8192)
def _add_working_minutes(calendar: BusinessCalendar, start: datetime, zone: object, minutes: float) -> datetime:
    # ``zone`` is in the key because equal instants in different zones hash alike but answer in their own zone
    return calendar._add_working_minutes(start, minutes)


@dataclass(frozen=True)
class SlaClock:
    """One SLA target: a span and whether it runs on calendar or working time."""

    span: str
    clock: str = "calendar"

    def deadline(self, start: datetime, calendar: BusinessCalendar | None) -> datetime:
        return deadline_for(start, self.span, self.clock, calendar)


def local_days_later(start: datetime, days: float, zone: tzinfo | None) -> datetime:
    """``start`` moved on by ``days`` of the wall clock in ``zone``: whole days move the local date and keep the
    local clock time; a fraction of a day is elapsed time (``1.5d`` is tomorrow's same time, then 12 hours).

    The local time N days later may occur twice or not at all. Twice (the hour the clocks go back): its first
    occurrence (``fold=0``), the first moment the wall clock shows it. Not at all (the hour the clocks skip): it is
    read with the offset from before the change, as ``zoneinfo`` does for ``fold=0``, so it moves forward by the
    length of the gap: 02:30 on a night the clocks jump from 02:00 to 03:00 becomes 03:30. A deadline is never put
    before the time the city would name. The answer is in ``start``'s zone.
    """
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    whole = math.floor(days)
    moved = start
    if whole:  # zero days must not re-read the start's wall time (it may be the second 01:30 of a fall-back night)
        local = start.astimezone(zone).replace(tzinfo=None) + timedelta(days=whole)
        moved = local.replace(tzinfo=zone, fold=0)
    # elapsed time goes through UTC: two times of one ZoneInfo would add as wall clocks
    return (moved.astimezone(UTC) + timedelta(days=days - whole)).astimezone(start.tzinfo)


def _zone_of(calendar: BusinessCalendar | None, start: datetime) -> tzinfo | None:
    """The wall clock calendar days are counted on: the city's, else the start's own."""
    return calendar.zone if calendar is not None else start.tzinfo


def deadline_for(start: datetime, span: str, clock: str, calendar: BusinessCalendar | None) -> datetime:
    """When an SLA that starts at ``start`` runs out.

    On a calendar clock ``1d`` is the same local clock time the next day in
    the city's zone (23 or 25 hours across a DST change), and ``4h`` four
    elapsed hours (see :func:`local_days_later`). On a working clock ``1d`` is
    one working day (the length of the city's working day) and ``4h`` four
    working hours.
    """
    days, minutes = parse_span(span)
    if clock == "calendar":
        moved = local_days_later(start, days, _zone_of(calendar, start))
        return (moved.astimezone(UTC) + timedelta(minutes=minutes)).astimezone(start.tzinfo)
    if clock != "working":
        raise ValueError(f"clock must be 'calendar' or 'working', not {clock!r}")
    if calendar is None:
        raise ValueError("a working-time SLA needs the city's business calendar")
    return calendar.add_working_minutes(start, days * calendar.day_minutes + minutes)


def span_minutes(span: str, clock: str, calendar: BusinessCalendar | None) -> float:
    """The nominal budget of an SLA span in minutes of its clock (a working day is the city's working day).

    A calendar day counts 1440 minutes here; a :class:`StageClock` replaces that with the day's real length once it
    knows when it starts.
    """
    days, minutes = parse_span(span)
    if clock == "calendar":
        return days * 24 * 60 + minutes
    if clock != "working":
        raise ValueError(f"clock must be 'calendar' or 'working', not {clock!r}")
    if calendar is None:
        raise ValueError("a working-time SLA needs the city's business calendar")
    return days * calendar.day_minutes + minutes


def add_minutes(start: datetime, minutes: float, clock: str, calendar: BusinessCalendar | None) -> datetime:
    """The moment ``minutes`` of the clock have passed after ``start``."""
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware")
    if clock == "calendar":
        return (start.astimezone(UTC) + timedelta(minutes=minutes)).astimezone(start.tzinfo)
    if calendar is None:
        raise ValueError("a working-time SLA needs the city's business calendar")
    return calendar.add_working_minutes(start, minutes)


def minutes_between(start: datetime, end: datetime, clock: str, calendar: BusinessCalendar | None) -> float:
    """Minutes of the clock that pass from ``start`` to ``end`` (0 when ``end`` is not later)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("times must be timezone-aware")
    if end.astimezone(UTC) <= start.astimezone(UTC):
        return 0.0
    if clock == "calendar":
        # in UTC: two times in the same ZoneInfo subtract as wall clocks, which would lose a DST hour
        return (end.astimezone(UTC) - start.astimezone(UTC)).total_seconds() / 60
    if calendar is None:
        raise ValueError("a working-time SLA needs the city's business calendar")
    return calendar.working_minutes_between(start, end)


YELLOW_AT = 0.75  # share of the budget used when an order turns yellow


@dataclass(frozen=True)
class StageClock:
    """The clock of one SLA stage (acknowledge, resolve or verify) of one work order.

    A budget of minutes on a calendar or working clock that runs, pauses (while
    the order waits on the reporter or is returned) and stops. ``used`` counts
    the minutes of earlier running spells; ``since`` is when the current spell
    began (None while paused or stopped). ``warned``/``breached`` say whether
    the yellow and red events of this clock have been applied, so each fires
    once per clock, however often it pauses.

    ``wall_days`` is the day part of a calendar span not yet fixed in minutes:
    until the first start, ``budget`` counts those days as 1440 minutes each;
    the first start replaces that with their real length on the city's wall
    clock from that moment (see the module docstring), and sets it to 0.
    """

    budget: float
    clock: str = "calendar"
    used: float = 0.0
    since: datetime | None = None
    stopped: datetime | None = None
    warned: bool = False
    breached: bool = False
    wall_days: float = 0.0

    @classmethod
    def fresh(cls, span: str, clock: str, calendar: BusinessCalendar | None) -> StageClock:
        days = parse_span(span)[0] if clock == "calendar" else 0.0
        return cls(budget=span_minutes(span, clock, calendar), clock=clock, wall_days=days)

    @property
    def running(self) -> bool:
        return self.since is not None

    def start(self, now: datetime, calendar: BusinessCalendar | None) -> StageClock:
        """Run from ``now`` (a running or stopped clock is left as it is); the first start fixes the day part."""
        if self.running or self.stopped is not None:
            return self
        if not self.wall_days:
            return replace(self, since=now)
        days_end = local_days_later(now, self.wall_days, _zone_of(calendar, now))
        elapsed = minutes_between(now, days_end, "calendar", None)
        return replace(self, since=now, budget=self.budget - self.wall_days * 24 * 60 + elapsed, wall_days=0.0)

    def pause(self, now: datetime, calendar: BusinessCalendar | None) -> StageClock:
        if self.since is None:
            return self
        return replace(self, used=self.used_at(now, calendar), since=None)

    def stop(self, now: datetime, calendar: BusinessCalendar | None) -> StageClock:
        if self.stopped is not None:
            return self
        return replace(self.pause(now, calendar), stopped=now)

    def used_at(self, now: datetime, calendar: BusinessCalendar | None) -> float:
        if self.since is None:
            return self.used
        return self.used + minutes_between(self.since, now, self.clock, calendar)

    def due(self, calendar: BusinessCalendar | None, share: float = 1.0) -> datetime | None:
        """When ``share`` of the budget will have been used, if the clock keeps running (None unless running)."""
        if self.since is None:
            return None
        remaining = self.budget * share - self.used
        if remaining <= 0:
            return self.since
        return add_minutes(self.since, remaining, self.clock, calendar)

    def level(self, now: datetime, calendar: BusinessCalendar | None) -> str:
        """``green``, ``yellow`` (at least 75% used) or ``red`` (budget used up) at ``now``.

        A running clock is judged by its deadlines, the instants the timer fires at: on a working clock with
        ``at_close="next_opening"`` a budget used up exactly at closing is red only from the next opening. A paused
        or stopped clock by the minutes it used.
        """
        if self.since is not None and now >= self.since:
            red, yellow = self.due(calendar), self.due(calendar, share=YELLOW_AT)
            assert red is not None and yellow is not None
            return "red" if now >= red else "yellow" if now >= yellow else "green"
        used = self.used_at(now, calendar)
        if used >= self.budget:
            return "red"
        if used >= self.budget * YELLOW_AT:
            return "yellow"
        return "green"

    def to_dict(self) -> dict[str, object]:
        return {
            "budget": self.budget,
            "clock": self.clock,
            "used": self.used,
            "since": None if self.since is None else self.since.isoformat(),
            "stopped": None if self.stopped is None else self.stopped.isoformat(),
            "warned": self.warned,
            "breached": self.breached,
            **({"wall_days": self.wall_days} if self.wall_days else {}),  # a started clock has none: as before
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> StageClock:
        def moment(value: object) -> datetime | None:
            return None if value is None else datetime.fromisoformat(str(value))

        return cls(
            budget=float(data["budget"]),  # type: ignore[arg-type]
            clock=str(data.get("clock", "calendar")),
            used=float(data.get("used", 0.0)),  # type: ignore[arg-type]
            since=moment(data.get("since")),
            stopped=moment(data.get("stopped")),
            warned=bool(data.get("warned", False)),
            breached=bool(data.get("breached", False)),
            wall_days=float(data.get("wall_days", 0.0)),  # type: ignore[arg-type]
        )
