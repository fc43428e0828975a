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
* **category-without-sla** (error);
* warnings: a backup that handles none of its unit's categories, repaired polygons,
  features of one layer that overlap, a pack so large that distances on its local
  plane are off by more than 1%.

Areas are compared on the pack's local plane in metres; pieces smaller than
``min_area_m2`` or nowhere wider than ``min_width_m`` are digitising slivers and are
ignored (two layers drawn from different sources rarely share edges exactly).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import shapely

from dispatch.citypack import CityPack, Rule, TimeWindow
from dispatch.rules import WEEKDAYS

DEFAULT_MIN_AREA_M2 = 100.0
DEFAULT_MIN_WIDTH_M = 2.0
_MINUTES = 7 * 24 * 60

AreaKey = tuple[str, tuple[str, ...] | None]  # (layer, features or None for every feature)


@dataclass(frozen=True)
class Finding:
    severity: str  # "error" or "warning"
    code: str
    where: str  # key in city.yaml (or a layer file)
    message: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class LintReport:
    pack: str
    version: str
    findings: list[Finding]

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def codes(self) -> set[str]:
        return {f.code for f in self.findings}

    def as_dict(self) -> dict[str, Any]:
        return {
            "pack": self.pack,
            "version": self.version,
            "ok": self.ok,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "findings": [asdict(f) for f in self.findings],
        }

    def text(self) -> str:
        lines = [f"{self.pack} {self.version}: {len(self.errors)} error(s), {len(self.warnings)} warning(s)"]
        for finding in self.findings:
            lines.append(f"{finding.severity:>7} {finding.code} at {finding.where}: {finding.message}")
        return "\n".join(lines)


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


class _Linter:
    def __init__(self, pack: CityPack, min_area_m2: float, min_width_m: float) -> None:
        self.pack = pack
        self.min_area = min_area_m2
        self.min_width = min_width_m
        self.projection = pack.projection
        self.findings: list[Finding] = []
        self._areas: dict[AreaKey, Any] = {}
        self._unions: dict[frozenset[AreaKey], Any] = {}
        self.codes = [c.code for c in pack.spec.categories]

    # ------------------------------------------------------------- geometry

    def area(self, layer_id: str, features: list[str] | str) -> Any:
        key: AreaKey = (layer_id, None if features == "*" else tuple(sorted(features)))
        if key not in self._areas:
            layer = self.pack.layers[layer_id]
            geometries = layer.geometries
            if key[1] is not None:
                wanted = set(key[1])
                geometries = geometries[[f in wanted for f in layer.feature_ids]]
            metric = self.projection.geometries(geometries)
            self._areas[key] = metric[0] if len(metric) == 1 else shapely.union_all(metric)
        return self._areas[key]

    @staticmethod
    def key(layer_id: str, features: list[str] | str) -> AreaKey:
        return (layer_id, None if features == "*" else tuple(sorted(features)))

    def union(self, keys: frozenset[AreaKey]) -> Any:
        if keys not in self._unions:
            self._unions[keys] = shapely.union_all([self._areas[k] for k in keys]) if keys else shapely.Polygon()
        return self._unions[keys]

    @cached_property
    def city(self) -> Any:
        """The boundary layer's union, or every layer's: where some unit should take every category."""
        spec = self.pack.spec
        layers = [spec.boundary] if spec.boundary else list(self.pack.layers)
        return shapely.union_all([self.area(layer, "*") for layer in layers])

    def where(self, geometry: Any) -> dict[str, Any]:
        """Size and a point inside a region, in terms a person can look up."""
        biggest = max(shapely.get_parts(geometry), key=lambda g: g.area)
        inside = biggest.representative_point()
        lon, lat = self.projection.lonlat(inside.x, inside.y)
        return {"area_m2": round(float(geometry.area), 1), "lat": round(lat, 6), "lon": round(lon, 6)}

    def significant(self, geometry: Any) -> bool:
        """Bigger than ``min_area`` and wider than ``min_width`` somewhere: not a digitising sliver."""
        if geometry is None or geometry.is_empty or geometry.area < self.min_area:
            return False
        return not shapely.buffer(geometry, -self.min_width / 2, quad_segs=2).is_empty

    # ------------------------------------------------------------- rules

    def handles_rule(self, rule: Rule, code: str) -> bool:
        match = rule.match
        if not match.categories and not match.groups:
            return True
        category = self.pack.category(code)
        return code in match.categories or (category is not None and category.group in match.groups)

    def rule_region(self, rule: Rule) -> Any:
        area = rule.match.area
        return self.city if area is None else self.area(area.layer, area.features)

    @staticmethod
    def unconditional(rule: Rule) -> bool:
        return rule.decides and not rule.match.sources and rule.match.hours is None

    def settled_region(self, code: str) -> Any:
        """Where some unconditional rule decides category ``code`` (before any service area counts)."""
        regions = [
            self.rule_region(rule)
            for _, rule in self.pack.ordered_rules
            if self.unconditional(rule) and self.handles_rule(rule, code)
        ]
        return shapely.union_all(regions) if regions else None

    # ------------------------------------------------------------- checks

    def run(self) -> list[Finding]:
        self.check_sla()
        self.check_units()
        self.check_coverage()
        self.check_rules()
        self.check_backups()
        self.check_layers()
        return self.findings

    def add(self, severity: str, code: str, where: str, message: str, **details: Any) -> None:
        self.findings.append(Finding(severity, code, where, message, details))

    def check_sla(self) -> None:
        for index, category in enumerate(self.pack.spec.categories):
            if category.sla is None:
                self.add(
                    "error",
                    "category-without-sla",
                    f"categories.{index}",
                    f"category {category.code!r} has no SLA: tasks get no acknowledge/resolve deadlines",
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

    def check_coverage(self) -> None:
        handlers_of = {}
        for code in self.codes:
            handlers_of[code] = [u for u in self.pack.spec.units if self.pack.handles(u, code) and u.area is not None]
            for unit in handlers_of[code]:
                self.area(unit.area.layer, unit.area.features)  # type: ignore[union-attr]
        shared_areas = self.overlapping_areas()
        overlaps: dict[tuple[str, str], list[str]] = {}
        overlap_where: dict[tuple[str, str], dict[str, Any]] = {}
        gaps: dict[Any, tuple[list[str], Any]] = {}
        for code in self.codes:
            by_area: dict[AreaKey, list[str]] = {}
            for unit in handlers_of[code]:
                by_area.setdefault(self.key(unit.area.layer, unit.area.features), []).append(unit.id)  # type: ignore[union-attr]
            settled = self.settled_region(code)
            pairs = [(key, key, self._areas[key]) for key, units in by_area.items() if len(units) > 1]
            pairs += [(a, b, shared) for (a, b), shared in shared_areas.items() if a in by_area and b in by_area]
            for first_key, second_key, shared in pairs:
                if settled is not None:
                    shared = shapely.difference(shared, settled)
                if not self.significant(shared):
                    continue
                for first in by_area[first_key]:
                    for second in by_area[second_key]:
                        if first < second or (first_key != second_key and first != second):
                            pair = (min(first, second), max(first, second))
                            overlaps.setdefault(pair, []).append(code)
                            overlap_where.setdefault(pair, self.where(shared))
            covered = frozenset(by_area)
            rules = tuple(
                rule.id
                for _, rule in self.pack.ordered_rules
                if self.unconditional(rule) and self.handles_rule(rule, code)
            )
            if (covered, rules) not in gaps:
                if self.covers_boundary_layer(covered):
                    gap = shapely.Polygon()  # every feature of the city's own layer is someone's: no geometry needed
                else:
                    coverage = self.union(covered)
                    if settled is not None:
                        coverage = shapely.union(coverage, settled)
                    gap = shapely.difference(self.city, coverage)
                gaps[(covered, rules)] = ([], gap)
            gaps[(covered, rules)][0].append(code)
        for (first, second), codes in overlaps.items():
            self.add(
                "error",
                "overlap",
                "units",
                f"units {first!r} and {second!r} both cover an area for {_some(codes)} and no rule gives one "
                f"precedence; add a rule (match the overlap, assign one) or trim an area",
                units=[first, second],
                categories=codes,
                **overlap_where[(first, second)],
            )
        merged: dict[bytes, tuple[list[str], Any]] = {}
        for codes, gap in gaps.values():
            if self.significant(gap):
                shape_key = shapely.to_wkb(shapely.normalize(shapely.set_precision(gap, 0.01)))
                merged.setdefault(shape_key, ([], gap))[0].extend(codes)
        for codes, gap in merged.values():
            self.add(
                "error",
                "gap",
                "units",
                f"no unit takes {_some(codes)} in part of the city ({gap.area:,.0f} m²); "
                f"the fallback unit {self.pack.spec.fallback_unit!r} would get everything there",
                categories=codes,
                **self.where(gap),
            )

    def covers_boundary_layer(self, covered: frozenset[AreaKey]) -> bool:
        """Whether areas on the declared boundary layer together list all of its features."""
        boundary = self.pack.spec.boundary
        if boundary is None:
            return False
        listed: set[str] = set()
        for layer, features in covered:
            if layer == boundary:
                if features is None:
                    return True
                listed.update(features)
        return listed >= set(self.pack.layers[boundary].feature_ids)

    def overlapping_areas(self) -> dict[tuple[AreaKey, AreaKey], Any]:
        """Pairs of distinct areas whose interiors overlap by more than a sliver, with the overlap."""
        keys = list(self._areas)
        geometries = np.array([self._areas[k] for k in keys], dtype=object)
        left, right = shapely.STRtree(geometries).query(geometries, predicate="intersects")
        keep = left < right
        left, right = left[keep], right[keep]
        touching = shapely.touches(geometries[left], geometries[right])
        result = {}
        for i, j in zip(left[~touching].tolist(), right[~touching].tolist(), strict=True):
            shared = shapely.intersection(geometries[i], geometries[j])
            if self.significant(shared):
                result[(keys[i], keys[j])] = shared
        return result

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
                    f"rule {rule.id!r} never decides {_some(shadowed)}: {', '.join(sorted(by))} match those first",
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

    def check_overlapping_features(self, layer: Any) -> None:
        """Features of one layer should not overlap: a point in both is located in the first only."""
        metric = self.projection.geometries(layer.geometries)
        left, right = shapely.STRtree(metric).query(metric, predicate="intersects")
        keep = left < right
        left, right = left[keep], right[keep]
        if len(left) == 0:
            return
        interior = ~shapely.touches(metric[left], metric[right])
        pairs = []
        for i, j in zip(left[interior].tolist(), right[interior].tolist(), strict=True):
            if self.significant(shapely.intersection(metric[i], metric[j])):
                pairs.append((layer.feature_ids[i], layer.feature_ids[j]))
        if pairs:
            shown = ", ".join(f"{a}/{b}" for a, b in pairs[:6])
            self.add(
                "warning",
                "overlapping-features",
                f"layers.{layer.id}",
                f"{len(pairs)} pair(s) of features overlap ({shown}); a point in both is located in the first, "
                "so units of the second never hear of it: split the layer or fix the polygons",
                layer=layer.id,
                pairs=[list(p) for p in pairs],
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
                    f"backup {backup.id!r} of {unit.id!r} handles none of its categories ({_some(handled)})",
                    unit=unit.id,
                    backup=backup.id,
                )

    def check_layers(self) -> None:
        for layer in self.pack.layers.values():
            self.check_overlapping_features(layer)
            if layer.repaired:
                self.add(
                    "warning",
                    "repaired-polygons",
                    f"layers.{layer.id}",
                    f"invalid polygons were repaired on load: {', '.join(layer.repaired[:10])}; check the source",
                    layer=layer.id,
                    features=list(layer.repaired),
                )
        error = self.projection.max_scale_error
        if error > 0.01:
            self.add(
                "warning",
                "large-extent",
                "layers",
                f"the pack spans latitudes {self.projection.min_lat:.2f}..{self.projection.max_lat:.2f}: distances "
                f"(boundary band) are off by up to {error:.1%}; split it into one pack per city",
            )


def _sources_cover(earlier: list[str], later: list[str]) -> bool:
    """Whether every source the later rule matches is matched by the earlier one."""
    if not earlier:
        return True
    if not later:
        return False
    return {s.lower() for s in later} <= {s.lower() for s in earlier}


def _some(codes: list[str], shown: int = 6) -> str:
    more = f" and {len(codes) - shown} more" if len(codes) > shown else ""
    return ", ".join(codes[:shown]) + more


def lint_city_pack(
    pack: CityPack, *, min_area_m2: float = DEFAULT_MIN_AREA_M2, min_width_m: float = DEFAULT_MIN_WIDTH_M
) -> LintReport:
    """Check a loaded pack for routing defects (see the module docstring)."""
    findings = _Linter(pack, min_area_m2, min_width_m).run()
    order = {"error": 0, "warning": 1}
    findings.sort(key=lambda f: order.get(f.severity, 2))
    return LintReport(pack.name, pack.version, findings)
