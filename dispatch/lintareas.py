"""The geometric half of ``cityloop city lint``: service areas that overlap, and parts of the city no one takes.

:class:`AreaLinter` holds a pack's areas on its local plane in metres (each
area and each union computed once), tells a digitising sliver from a real
region, and finds where rules decide by themselves. Its checks add the
**overlap** and **gap** errors of service areas, and the warnings about the
layers: features of one layer that overlap, repaired polygons, a pack too
large for its local plane. The rule and unit checks build on it in
:mod:`dispatch.lint`.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
import shapely

from dispatch.citypack import CityPack, Rule
from dispatch.lintreport import Finding, some

AreaKey = tuple[str, tuple[str, ...] | None]  # (layer, features or None for every feature)


class AreaLinter:
    """A pack's areas on its local plane, its rules' regions, and the checks on them, into ``findings``."""

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
        """Size, widest extent and a point inside a region, in terms a person can look up.

        The width and the point are the widest part's (the diameter of the largest circle that fits in it): that
        is the part that made the region significant, not necessarily the largest in area (a long 4 m strip can
        outweigh a 15 m square that is the real overlap)."""
        parts = [p for p in shapely.get_parts(geometry) if p.area > 0]
        circles = [shapely.maximum_inscribed_circle(p, tolerance=0.5) for p in parts]
        widest = max(range(len(parts)), key=lambda i: circles[i].length)
        width = 2 * circles[widest].length
        inside = parts[widest].representative_point()
        lon, lat = self.projection.lonlat(inside.x, inside.y)
        return {"area_m2": round(float(geometry.area), 1), "lat": round(lat, 6), "lon": round(lon, 6),
                "width_m": round(float(width), 1)}  # fmt: skip

    def said(self, where: dict[str, Any]) -> str:
        """``where`` in words, with what to do if it is only a sliver."""
        return (
            f"{where['area_m2']:,.0f} m², up to {where['width_m']:,.0f} m wide, around ({where['lat']:.5f}, "
            f"{where['lon']:.5f})"
        )

    def sliver_advice(self, where: dict[str, Any]) -> str:
        if where["width_m"] <= 5 * self.min_width:
            return (f"; if it is only a digitising difference between layers, raise --min-width above "
                    f"{where['width_m']:.0f} m (now {self.min_width:g} m) or fix the polygons")  # fmt: skip
        return ""

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

    def add(self, severity: str, code: str, where: str, message: str, **details: Any) -> None:
        self.findings.append(Finding(severity, code, where, message, details))

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
            where = overlap_where[(first, second)]
            self.add(
                "error",
                "overlap",
                "units",
                f"units {first!r} and {second!r} both cover {self.said(where)} for {some(codes)} and no rule gives "
                f"one precedence; add a rule (match the overlap, assign one) or trim an area"
                f"{self.sliver_advice(where)}",
                units=[first, second],
                categories=codes,
                **where,
            )
        merged: dict[bytes, tuple[list[str], Any]] = {}
        for codes, gap in gaps.values():
            if self.significant(gap):
                shape_key = shapely.to_wkb(shapely.normalize(shapely.set_precision(gap, 0.01)))
                merged.setdefault(shape_key, ([], gap))[0].extend(codes)
        for codes, gap in merged.values():
            where = self.where(gap)
            self.add(
                "error",
                "gap",
                "units",
                f"no unit takes {some(codes)} in part of the city ({self.said(where)}); "
                f"the fallback unit {self.pack.spec.fallback_unit!r} would get everything there"
                f"{self.sliver_advice(where)}",
                categories=codes,
                **where,
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

    def check_overlapping_features(self, layer: Any) -> None:
        """Features of one layer should not overlap: a point in both is located in the first only."""
        metric = self.projection.geometries(layer.geometries)
        left, right = shapely.STRtree(metric).query(metric, predicate="intersects")
        keep = left < right
        left, right = left[keep], right[keep]
        if len(left) == 0:
            return
        interior = ~shapely.touches(metric[left], metric[right])
        pairs, places = [], []
        for i, j in zip(left[interior].tolist(), right[interior].tolist(), strict=True):
            shared = shapely.intersection(metric[i], metric[j])
            if self.significant(shared):
                pairs.append((layer.feature_ids[i], layer.feature_ids[j]))
                places.append(self.where(shared))
        if pairs:
            shown = ", ".join(f"{a}/{b} ({self.said(w)})" for (a, b), w in zip(pairs[:4], places, strict=False))
            self.add(
                "warning",
                "overlapping-features",
                f"layers.{layer.id}",
                f"{len(pairs)} pair(s) of features overlap ({shown}); a point in both is located in the first, "
                "so units of the second never hear of it: split the layer or fix the polygons",
                layer=layer.id,
                pairs=[list(p) for p in pairs],
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
