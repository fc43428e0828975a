"""``cityloop city lint``: what is wrong with a city pack that loads.

Loading checks that a pack is well formed; lint checks that it routes well:

* **overlap** (error): two units handle a category and their areas overlap, and no
  unconditional rule settles who takes that overlap (at run time such points go to
  the fallback unit in a pack with rules, or to the first declared unit without);
  also two rules of equal priority that can match the same incident and act differently;
* **gap** (error): part of the city where no unit, and no unconditional rule, takes
  a category (the fallback unit would get everything there). The city is the
  ``boundary`` layer if the pack declares one, else the union of every layer;
* **shadowed-rule** (error): a rule that can never decide, because rules tried
  before it match everything it matches (warning when only some of its categories are);
* **unit-without-area** (error): a field team or a unit that handles categories,
  has no service area and is no rule's target, so it can never get work;
* **category-without-sla** (note): a report-only category, which is allowed: its
  tasks get no deadlines, no SLA clock runs, nothing escalates or breaches. A note,
  so a pack that means it lints clean and one that forgot an SLA still shows where;
* warnings: a backup that handles none of its unit's categories, repaired polygons,
  features of one layer that overlap, a pack so large that distances on its local
  plane are off by more than 1%.

Areas are compared on the pack's local plane in metres; pieces smaller than
``min_area_m2`` or nowhere wider than ``min_width_m`` are digitising slivers and are
ignored (two layers drawn from different sources rarely share edges exactly).
"""

from __future__ import annotations

import numpy as np
import shapely

from dispatch.citypack import CityPack, Rule, TimeWindow
from dispatch.lintareas import AreaLinter
from dispatch.lintreport import Finding, LintReport, some
from dispatch.rules import WEEKDAYS

__all__ = ["DEFAULT_MIN_AREA_M2", "DEFAULT_MIN_WIDTH_M", "Finding", "LintReport", "lint_city_pack"]

DEFAULT_MIN_AREA_M2 = 100.0
# Two layers drawn by different departments disagree along shared borders by a few metres: a real council-district
# layer gave 70 overlap errors from such slivers (up to about 6,000 m² each, strips along borders kilometres long).
# A strip nowhere wider than 10 m is a digitising difference, not a service area: no street is that narrow.
DEFAULT_MIN_WIDTH_M = 10.0
_MINUTES = 7 * 24 * 60


def _week_minutes(window: TimeWindow | None) -> np.ndarray:
    """The minutes of a week a window covers (all of them for no window)."""
    minutes = np.zeros(_MINUTES, dtype=bool)
    if window is None:
        minutes[:] = True
        return minutes
    start = window.start.hour * 60 + window.start.minute
    end = window.end.hour * 60 + window.end.minute
    for day in window.days or WEEKDAYS:
        base = WEEKDAYS.index(day) * 1440
        if start < end:
            minutes[base + start : base + end] = True
        else:
            minutes[base + start : base + 1440] = True
            tail = (base + 1440) % _MINUTES
            minutes[tail : tail + end] = True
    return minutes


class _Linter(AreaLinter):
    """The checks of the module docstring: the geometric ones of :class:`AreaLinter`, and the rules' and units'."""

    def run(self) -> list[Finding]:
        self.check_sla()
        self.check_units()
        self.check_coverage()
        self.check_rules()
        self.check_backups()
        self.check_layers()
        return self.findings

    def check_sla(self) -> None:
        for index, category in enumerate(self.pack.spec.categories):
            if category.sla is None:
                self.add(
                    "note",
                    "category-without-sla",
                    f"categories.{index}",
                    f"category {category.code!r} has no SLA: report-only, its tasks get no deadlines and never "
                    "escalate; add an 'sla' if it should have one",
                    category=category.code,
                )

    def rule_targets(self) -> set[str]:
        targets: set[str] = set()
        for rule in self.pack.spec.rules:
            if rule.assign is not None:
                targets.add(rule.assign)
            if rule.nearest_team_of is not None:
                targets.update(t.id for t in self.pack.teams_of(rule.nearest_team_of))
                targets.add(rule.nearest_team_of)
        return targets

    def check_units(self) -> None:
        targets = self.rule_targets()
        for index, unit in enumerate(self.pack.spec.units):
            handled = [c for c in self.codes if self.pack.handles(unit, c)]
            needs_area = unit.kind == "field_team" or bool(handled)
            if unit.area is None and needs_area and unit.id not in targets and unit.id != self.pack.spec.fallback_unit:
                what = f"handles {', '.join(handled[:5])}" if handled else "is a field team"
                self.add(
                    "error",
                    "unit-without-area",
                    f"units.{index}",
                    f"unit {unit.id!r} {what} but has no service area and no rule assigns it: it never gets work",
                    unit=unit.id,
                )

    def check_rules(self) -> None:
        ordered = [rule for _, rule in self.pack.ordered_rules if rule.decides]
        index_of = {rule.id: i for i, rule in enumerate(self.pack.spec.rules)}
        minutes = {rule.id: _week_minutes(rule.match.hours) for rule in ordered}
        for position, rule in enumerate(ordered):
            earlier = ordered[:position]
            shadowed: list[str] = []
            by: set[str] = set()
            for code in self.codes:
                if not self.handles_rule(rule, code):
                    continue
                covering = [
                    s
                    for s in earlier
                    if self.handles_rule(s, code)
                    and _sources_cover(s.match.sources, rule.match.sources)
                    and not (minutes[rule.id] & ~minutes[s.id]).any()
                ]
                if not covering:
                    continue
                left = shapely.difference(
                    self.rule_region(rule), shapely.union_all([self.rule_region(s) for s in covering])
                )
                if not self.significant(left):
                    shadowed.append(code)
                    by.update(s.id for s in covering)
            handled = [c for c in self.codes if self.handles_rule(rule, c)]
            where = f"rules.{index_of[rule.id]}"
            if shadowed and len(shadowed) == len(handled):
                self.add(
                    "error",
                    "shadowed-rule",
                    where,
                    f"rule {rule.id!r} never decides: {', '.join(sorted(by))} (tried before it) match everything it "
                    "matches; raise its priority or narrow the earlier rules",
                    rule=rule.id,
                    shadowed_by=sorted(by),
                )
            elif shadowed:
                self.add(
                    "warning",
                    "shadowed-rule",
                    where,
                    f"rule {rule.id!r} never decides {some(shadowed)}: {', '.join(sorted(by))} match those first",
                    rule=rule.id,
                    categories=shadowed,
                    shadowed_by=sorted(by),
                )
            for other in earlier:
                if other.priority == rule.priority and self.ambiguous(other, rule, minutes):
                    self.add(
                        "error",
                        "overlap",
                        where,
                        f"rules {other.id!r} and {rule.id!r} have the same priority ({rule.priority}), can match the "
                        "same incident and act differently; only their order in city.yaml decides: give one a "
                        "higher priority",
                        rules=[other.id, rule.id],
                    )

    def ambiguous(self, first: Rule, second: Rule, minutes: dict[str, np.ndarray]) -> bool:
        if (first.assign, first.nearest_team_of) == (second.assign, second.nearest_team_of):
            return False
        if not any(self.handles_rule(first, c) and self.handles_rule(second, c) for c in self.codes):
            return False
        a, b = set(first.match.sources), set(second.match.sources)
        if a and b and not a & b:
            return False
        if not (minutes[first.id] & minutes[second.id]).any():
            return False
        return self.significant(shapely.intersection(self.rule_region(first), self.rule_region(second)))

    def check_backups(self) -> None:
        for index, unit in enumerate(self.pack.spec.units):
            if unit.backup is None:
                continue
            backup = self.pack.unit(unit.backup)
            handled = [c for c in self.codes if self.pack.handles(unit, c)]
            if backup is not None and handled and not any(self.pack.handles(backup, c) for c in handled):
                self.add(
                    "warning",
                    "backup-mismatch",
                    f"units.{index}.backup",
                    f"backup {backup.id!r} of {unit.id!r} handles none of its categories ({some(handled)})",
                    unit=unit.id,
                    backup=backup.id,
                )


def _sources_cover(earlier: list[str], later: list[str]) -> bool:
    """Whether every source the later rule matches is matched by the earlier one."""
    if not earlier:
        return True
    if not later:
        return False
    return {s.lower() for s in later} <= {s.lower() for s in earlier}


def lint_city_pack(
    pack: CityPack, *, min_area_m2: float = DEFAULT_MIN_AREA_M2, min_width_m: float = DEFAULT_MIN_WIDTH_M
) -> LintReport:
    """Check a loaded pack for routing defects (see the module docstring)."""
    findings = _Linter(pack, min_area_m2, min_width_m).run()
    order = {"error": 0, "warning": 1, "note": 2}
    findings.sort(key=lambda f: order.get(f.severity, 2))
    return LintReport(pack.name, pack.version, findings)
