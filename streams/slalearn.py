"""Each category's resolve target learnt from the due dates a city's own system recorded (``city init --due-col``).

A 311 export that records, per request, the due date the city's system computed is the city's SLA table written
out row by row. For each category the candidates are the budgets its requests most often had, on a calendar clock
(elapsed days or hours) and on the pack's working clock (working days or hours of its calendar); the one whose
deadlines, computed by CityLoop's own clocks (``feedback.sla.deadline_for``), land less than ``TOLERANCE`` from the most
recorded due dates wins. What is measured is what production would do: the share of recorded due dates the written
pack reproduces.

This sits in ``streams`` because it joins the two domains: the pack's categories and calendar (``dispatch``) and
the closed loop's clocks (``feedback``), which do not import each other.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from feedback import BusinessCalendar
from feedback.sla import AT_CLOSE, deadline_for, span_minutes

TOLERANCE = timedelta(hours=1)
CANDIDATES = 3  # the most common budgets tried per clock and unit (days, hours)
_FORMATS = ("%m/%d/%Y %I:%M:%S %p", "%m/%d/%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M")


def parse_local(text: str, zone: ZoneInfo) -> datetime | None:
    """A timestamp as 311 exports write it (ISO with or without offset, or US "03/01/2011 02:27:57 PM"), in
    ``zone`` when it carries no offset; None when empty or unreadable."""
    text = text.strip()
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        moment = None
        for fmt in _FORMATS:
            try:
                moment = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        if moment is None:
            return None
    return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment


@dataclass(frozen=True)
class LearnedSla:
    """One category's learnt resolve target and how many of its recorded due dates it reproduces."""

    category: str
    span: str
    clock: str
    rows: int
    reproduced: int

    @property
    def share(self) -> float:
        return self.reproduced / self.rows if self.rows else 0.0


def _span(days: int = 0, hours: int = 0) -> str:
    return f"{days}d" if days else f"{hours}h"


def _candidates(values: Sequence[float], unit: float) -> list[str]:
    """The most common whole-day and whole-hour budgets among ``values`` (minutes), as spans."""
    days = Counter(round(v / unit) for v in values if v > 0 and round(v / unit) >= 1)
    hours = Counter(round(v / 60) for v in values if v > 0 and round(v / 60) >= 1)
    spans = [_span(days=d) for d, _ in days.most_common(CANDIDATES)]
    spans += [_span(hours=h) for h, _ in hours.most_common(CANDIDATES) if (h * 60) % unit]  # not whole days
    return list(dict.fromkeys(spans))


def _reproduced(pairs: Sequence[tuple[datetime, datetime]], span: str, clock: str, calendar: BusinessCalendar) -> int:
    return sum(abs(deadline_for(created, span, clock, calendar) - due) < TOLERANCE for created, due in pairs)


def learn_one(category: str, pairs: Sequence[tuple[datetime, datetime]], calendar: BusinessCalendar) -> LearnedSla:
    """The calendar or working budget that reproduces the most of ``pairs`` (created, due); ties: calendar."""
    elapsed = [(due - created).total_seconds() / 60 for created, due in pairs]
    working = [calendar.working_minutes_between(created, due) for created, due in pairs]
    best = LearnedSla(category, "1d", "calendar", len(pairs), -1)
    for clock, values, unit in (("calendar", elapsed, 24 * 60.0), ("working", working, calendar.day_minutes)):
        for span in _candidates(values, unit):
            hits = _reproduced(pairs, span, clock, calendar)
            if hits > best.reproduced:
                best = LearnedSla(category, span, clock, len(pairs), hits)
    return best if best.reproduced >= 0 else LearnedSla(category, "1d", "calendar", len(pairs), 0)


@dataclass
class SlaLearning:
    """Every category's learnt target, and the totals for the onboarding report."""

    learnt: dict[str, LearnedSla]
    rows: int  # requests with a usable created and due date
    unreadable: int  # requests with a due date that could not be read, or not after the created date
    calendar: BusinessCalendar  # the calendar the deadlines were computed on (its at_close rule included)
    # measured on the written pack (measure_on_pack): its categories' due dates, how many its targets reproduce,
    # and the due dates of categories the pack does not have (left out by --min-rows)
    pack_compared: int | None = None
    pack_within: int = 0
    not_in_pack: int = 0
    in_pack: frozenset[str] | None = None  # the learnt categories the pack has

    @property
    def reproduced(self) -> int:
        return sum(s.reproduced for s in self.learnt.values())

    @property
    def share(self) -> float:
        if self.pack_compared is not None:
            return self.pack_within / self.pack_compared if self.pack_compared else 0.0
        return self.reproduced / self.rows if self.rows else 0.0

    def line(self) -> str:
        used = [
            s for key, s in self.learnt.items() if s.reproduced > 0 and (self.in_pack is None or key in self.in_pack)
        ]
        clocks = Counter(s.clock for s in used)
        rows = self.rows if self.pack_compared is None else self.pack_compared
        return (
            f"SLA learnt from due dates for {len(used)} categories ({clocks['calendar']} calendar, "
            f"{clocks['working']} working clock): the pack reproduces {self.share:.1%} of {rows:,} recorded due "
            f"dates to within {TOLERANCE.total_seconds() / 3600:g} h"
            + (f" ({self.not_in_pack:,} more of categories not in the pack)" if self.not_in_pack else "")
            + (
                " (working deadlines at closing time move to the next opening)"
                if self.learnt and self.calendar.at_close == "next_opening" and clocks["working"]
                else ""
            )
            + (f" ({self.unreadable:,} unreadable or not after creation, left out)" if self.unreadable else "")
        )


def learn_slas(
    categories: Sequence[str], created: Sequence[str], due: Sequence[str], calendar: BusinessCalendar
) -> SlaLearning:
    """Per category (as the rows name it), the learnt resolve target; rows without a due date are skipped."""
    pairs: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    unreadable = 0
    for category, start, end in zip(categories, created, due, strict=True):
        if not category.strip() or not end.strip():
            continue
        opened, due_at = parse_local(start, calendar.zone), parse_local(end, calendar.zone)
        if opened is None or due_at is None or due_at <= opened:
            unreadable += 1
            continue
        pairs[" ".join(category.split()).casefold()].append((opened, due_at))
    learnt = {key: learn_one(key, rows, calendar) for key, rows in pairs.items()}
    return SlaLearning(learnt, sum(len(rows) for rows in pairs.values()), unreadable, calendar)


def measure_on_pack(
    learning: SlaLearning, pack: Any, categories: Sequence[str], created: Sequence[str], due: Sequence[str]
) -> None:
    """What the written pack does with the recorded due dates: each due-date row of one of its categories gets the
    deadline of that category's target as written (learnt, or the default where nothing was learnt)."""
    by_name = {" ".join(c.name.split()).casefold(): c for c in pack.spec.categories}
    compared = within = outside = 0
    for name, start, end in zip(categories, created, due, strict=True):
        if not name.strip() or not end.strip():
            continue
        opened, due_at = parse_local(start, learning.calendar.zone), parse_local(end, learning.calendar.zone)
        if opened is None or due_at is None or due_at <= opened:
            continue
        category = by_name.get(" ".join(name.split()).casefold())
        if category is None or category.sla is None:
            outside += 1
            continue
        compared += 1
        ours = deadline_for(opened, category.sla.resolve, category.sla.clock, learning.calendar)
        within += abs(ours - due_at) < TOLERANCE
    learning.pack_compared, learning.pack_within, learning.not_in_pack = compared, within, outside
    learning.in_pack = frozenset(by_name) & frozenset(learning.learnt)


def _minutes(span: str, clock: str, calendar: BusinessCalendar) -> float:
    return span_minutes(span, clock, calendar)


def apply_to_document(document: dict[str, Any], learning: SlaLearning, calendar: BusinessCalendar) -> int:
    """Write the learnt resolve targets into a parsed ``city.yaml``; the number of categories changed."""
    changed = 0
    for entry in document.get("categories", []):
        learnt = learning.learnt.get(" ".join(str(entry.get("name", "")).split()).casefold())
        if learnt is None or learnt.reproduced == 0:
            continue
        sla = dict(entry.get("sla") or {})
        sla["resolve"], sla["clock"] = learnt.span, learnt.clock
        acknowledge = sla.get("acknowledge")
        budget = _minutes(learnt.span, learnt.clock, calendar)
        if acknowledge and _minutes(acknowledge, learnt.clock, calendar) > budget:
            sla["acknowledge"] = learnt.span  # a default acknowledge target longer than the city's resolve target
        entry["sla"] = sla
        note = f"SLA learnt from {learnt.rows} due dates ({learnt.share:.0%} reproduced)."
        entry["description"] = f"{entry.get('description', '')} {note}".strip()
        changed += 1
    return changed


def check_columns(history: Any, created_col: str, due_col: str) -> None:
    """The due-date and creation columns must each be in the header of a file of the history: checked before
    anything is written, on the header rows alone."""
    from dispatch.history import require_columns

    require_columns(history.files, (("--due-col", due_col), ("--created-col", created_col)), history.encoding)


def learn_into_pack(onboarding: Any, history: Any, created_col: str, due_col: str, min_width_m: float) -> SlaLearning:
    """Learn each category's resolve target from ``due_col`` of the history, rewrite the new pack's city.yaml with it
    and lint it again (``onboarding`` is updated); the learning, for the report."""
    import yaml

    from dispatch import load_city_pack
    from dispatch.history import read_rows
    from dispatch.lint import lint_city_pack
    from streams.citypolicy import calendar_of

    # exports of several vintages: a file without the due-date column adds no due dates, but one must have it
    rows = read_rows(history.files, required=(history.category_col,), encoding=history.encoding)
    rows.require((("--due-col", due_col), ("--created-col", created_col)))
    columns = rows.column(history.category_col), rows.column(created_col), rows.column(due_col)
    # the city's convention for a working deadline at closing time is learnt too: the one that reproduces more
    tried = [learn_slas(*columns, replace(calendar_of(onboarding.pack), at_close=rule)) for rule in AT_CLOSE]
    learning = max(tried, key=lambda t: t.reproduced)  # ties: the first, "closing", the pack's default
    calendar = learning.calendar
    path = onboarding.pack.path / "city.yaml"
    header, _, body = path.read_text("utf-8").partition("\n")
    document = yaml.safe_load(body)
    apply_to_document(document, learning, calendar)
    if calendar.at_close != "closing":
        document.setdefault("calendar", {})["at_close"] = calendar.at_close
    path.write_text(header + "\n" + yaml.safe_dump(document, sort_keys=False, allow_unicode=True), "utf-8")
    onboarding.pack = load_city_pack(onboarding.pack.path)
    measure_on_pack(learning, onboarding.pack, *columns)
    onboarding.lint = lint_city_pack(onboarding.pack, min_width_m=min_width_m)
    return learning
