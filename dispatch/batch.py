"""One batch of incidents through the dispatcher: decisions vectorised, explanations on demand.

Deciding is array work (locate, match rules, look up coverage, query the band);
only capacity, nearest-team choices and co-notification need a Python step per
incident, and only for the incidents they concern. Explanations are built when an
assignment's ``explanation`` is first read; what they need for the whole batch
(distances to edges, location keys) is computed then, once, vectorised.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely

from dispatch.assignment import Assignment
from dispatch.capacity import Capacity, Position, nearest_team
from dispatch.coverage import NONE
from dispatch.explain import AMBIGUOUS, BY_AREA, BY_RULE, BY_TEAM, FALLBACK, Decision
from dispatch.rules import ALL_OK, time_matches

if TYPE_CHECKING:
    from dispatch.assign import Dispatcher

KINDS = (BY_RULE, BY_TEAM, BY_AREA, AMBIGUOUS, FALLBACK)
K_RULE, K_TEAM, K_AREA, K_AMBIGUOUS, K_FALLBACK = range(5)


class Batch:
    """The state of one ``assign_batch`` call; assignments keep it alive until their explanations are built."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        category_idx: np.ndarray,
        lats: np.ndarray,
        lons: np.ndarray,
        confidences: Sequence[float | None] | None,
        sources: Sequence[str | None] | None,
        local: datetime | None,
    ) -> None:
        self.d = dispatcher
        self.n = len(category_idx)
        self.category_idx = category_idx
        self.lats, self.lons = lats, lons
        self.confidences = None if confidences is None else list(confidences)  # copies: explanations come later
        self.sources = None if sources is None else list(sources)
        self.local = local
        self.local_text = None if local is None else local.isoformat(timespec="minutes")
        points = shapely.points(lons, lats)
        self.located = {layer_id: layer.locate(points) for layer_id, layer in dispatcher.pack.layers.items()}
        self.states, self.decided_by = self._match_rules()
        self.first, self.covering = self._resolve_areas()
        self.points = points
        self._points_m: np.ndarray | None = None
        self.neighbours = self._neighbours()
        self.extras: dict[int, dict[str, Any]] = {}  # explanation parts from capacity and nearest-team choices
        self.co_notified: dict[int, tuple[str, ...]] = {}  # units to tell besides the assigned one
        self._edge_m: list[float | None] | None = None
        self._location_keys: list[Any] = []
        self._located_lists: dict[str, list[int]] = {}
        self._covering_keys: list[Any] = []
        self._rows: list[tuple[int, int, int, int]] = []
        self._state_keys: list[bytes] = []
        self._capacity_rows: list[tuple[str, int, int | None] | None] | None = None
        self._trace_cache: dict[Any, list[dict[str, Any]]] = {}

    # ------------------------------------------------------------ vectorised steps

    @property
    def points_m(self) -> np.ndarray:
        """The points on the pack's plane in metres (made when first needed)."""
        if self._points_m is None:
            self._points_m = self.d.pack.projection.points(self.lons, self.lats)
        return self._points_m

    def _match_rules(self) -> tuple[np.ndarray, np.ndarray]:
        rules = self.d.rules
        states = np.zeros((len(rules), self.n), dtype=np.uint8)
        decided_by = np.full(self.n, -1, dtype=np.int64)
        if not rules:
            return states, decided_by
        if self.sources is not None:
            lowered = [None if s is None else s.lower() for s in self.sources]
        else:
            lowered = [None] * self.n
        undecided = np.ones(self.n, dtype=bool)
        for rule, time_ok in zip(rules, time_matches(rules, self.local), strict=True):
            if rule.sources:
                source_ok = np.fromiter((s in rule.sources for s in lowered), dtype=bool, count=self.n)
            else:
                source_ok = np.ones(self.n, dtype=bool)
            state = rule.state(self.category_idx, self.located, source_ok, time_ok)
            states[rule.position] = state
            if rule.rule.decides:
                take = (state == ALL_OK) & undecided
                decided_by[take] = rule.position
                undecided &= ~take
        return states, decided_by

    def _resolve_areas(self) -> tuple[np.ndarray, np.ndarray]:
        first = np.full(self.n, NONE, dtype=np.int64)
        covering = np.zeros(self.n, dtype=np.int64)
        for c in np.unique(self.category_idx):
            rows = np.flatnonzero(self.category_idx == c)
            first[rows], covering[rows] = self.d.coverage[c].resolve(self.located, rows)
        return first, covering

    def _neighbours(self) -> dict[int, dict[str, float]]:
        """Per incident, units handling its category whose area is within the band but does not contain it.

        Vectorised for the usual case, where one unit holds each feature; features
        held by several units of a category are checked one by one.
        """
        band = self.d.pack.spec.boundary_band_m
        found: dict[int, dict[str, float]] = {}
        if band <= 0:
            return found
        for layer in self.d.band_layers:
            subset = self._near_an_edge(layer, band)
            if len(subset) == 0:
                continue
            located = self.located[layer]
            metric = self.d.pack.projection.points(self.lons[subset], self.lats[subset])
            rows, features, metres = self.d.boundaries.features_within(layer, metric, band, located[subset])
            rows = subset[rows]
            own = located[rows]
            categories = self.category_idx[rows]
            for c in np.unique(categories):
                coverage = self.d.coverage[c]
                sole = coverage.sole.get(layer)
                if sole is None:
                    continue
                pick = np.flatnonzero(categories == c)
                holder, own_holder = sole[features[pick]], sole[own[pick]]
                simple = (holder >= 0) & (own_holder != -2)
                hit = pick[simple & (holder != own_holder)]
                units = coverage.unit_ids[sole[features[hit]]]
                for row, unit_id, distance in zip(
                    rows[hit].tolist(), units.tolist(), metres[hit].tolist(), strict=True
                ):
                    _closest(found, row, unit_id, distance)
                for i in pick[~simple & ((holder == -2) | (holder >= 0))].tolist():
                    self._neighbours_one_by_one(
                        found, coverage, layer, int(rows[i]), int(features[i]), float(metres[i])
                    )
        return found

    def _near_an_edge(self, layer: str, band: float) -> np.ndarray:
        """Rows that may have a neighbour on ``layer``: not deep inside the area of the one unit
        that holds their feature for their category (deep: further than the band from its edge,
        so every feature within the band belongs to that same unit)."""
        located = self.located[layer]
        area = np.full(self.n, -1, dtype=np.int64)
        relevant = np.zeros(self.n, dtype=bool)
        for c in np.unique(self.category_idx):
            coverage = self.d.coverage[c]
            sole = coverage.sole.get(layer)
            if sole is None:
                continue  # no unit handles this category on this layer
            rows = np.flatnonzero(self.category_idx == c)
            relevant[rows] = True
            holder = sole[located[rows]]
            area[rows] = np.where(holder >= 0, coverage.area_ids[holder], -1)
        boundaries = self.d.boundaries
        whole = np.zeros(self.n, dtype=bool)
        for area_id in np.unique(area[area >= 0]).tolist():
            if boundaries.whole_layer(area_id):
                whole[area == area_id] = True
        deep = np.zeros(self.n, dtype=bool)
        known = np.flatnonzero((area >= 0) & ~whole)
        cores = boundaries.area_cores(band, area[known])
        deep[known] = shapely.contains(cores[area[known]], self.points[known])
        everywhere = np.flatnonzero(whole)  # the holder covers the whole layer: the point's own feature will do
        deep[everywhere] = shapely.contains(
            boundaries.feature_cores(layer, band)[located[everywhere]], self.points[everywhere]
        )
        return np.flatnonzero(relevant & ~deep)

    def _neighbours_one_by_one(
        self, found: dict[int, dict[str, float]], coverage: Any, layer: str, row: int, feature: int, distance: float
    ) -> None:
        for rank in coverage.by_feature[layer][feature]:
            handler = coverage.handlers[rank]
            if not handler.mask[self.located[handler.layer][row]]:  # its area does not contain the point
                _closest(found, row, handler.unit.id, distance)

    # ------------------------------------------------------------ decisions

    def decide(self, loads: Mapping[str, int] | None, positions: Mapping[str, Position] | None) -> list[Assignment]:
        d = self.d
        fallback = d.pack.spec.fallback_unit
        kinds = np.full(self.n, K_FALLBACK, dtype=np.int8)
        units = np.full(self.n, fallback, dtype=object)
        rule_ids = np.full(self.n, d.fallback_rule, dtype=object)
        for rule in d.rules:
            if not rule.rule.decides:
                continue
            rows = self.decided_by == rule.position
            kinds[rows] = K_RULE if rule.rule.assign is not None else K_TEAM
            units[rows] = rule.rule.assign or rule.rule.nearest_team_of
            rule_ids[rows] = rule.id
        by_area = (self.decided_by < 0) & (self.first != NONE)
        if d.rules_mode:
            ambiguous = by_area & (self.covering > 1)
            kinds[ambiguous] = K_AMBIGUOUS
            by_area &= ~ambiguous
        kinds[by_area] = K_AREA
        rule_ids[by_area] = d.area_rule
        for c in np.unique(self.category_idx[by_area]):
            rows = np.flatnonzero(by_area & (self.category_idx == c))
            units[rows] = d.coverage[c].unit_ids[self.first[rows]]
        self.kinds = kinds
        self.decided_units = units.tolist()
        final = list(self.decided_units)
        if loads is not None:
            self._with_capacity(final, loads, positions or {})
        else:
            for row in np.flatnonzero(kinds == K_TEAM).tolist():
                final[row] = self._team(row, {}, positions or {})
        self.final = final
        co_notify = self._co_notify(final)
        self.co_notified = co_notify
        explain = self.explain
        deferred = Assignment.deferred
        get = co_notify.get
        return [
            deferred(unit, rule, get(i, ()), explain, i)
            for i, (unit, rule) in enumerate(zip(final, rule_ids.tolist(), strict=True))
        ]

    def _with_capacity(self, final: list[str], loads: Mapping[str, int], positions: Mapping[str, Position]) -> None:
        """In batch order, so incidents of the same batch count towards each other's capacity."""
        capacity = Capacity(self.d.pack, loads)
        self._capacity_rows = [None] * self.n
        for row, kind in enumerate(self.kinds.tolist()):
            unit_id = final[row]
            if kind == K_TEAM:
                unit_id = self._team(row, capacity.live, positions)
            elif not capacity.room(unit_id):
                moved = capacity.overflow(unit_id)
                self.extras.setdefault(row, {})["overflow"] = moved
                unit_id = moved.unit_id
            final[row] = unit_id
            self._capacity_rows[row] = (unit_id, capacity.take(unit_id), capacity.capacity_of(unit_id))

    def _team(self, row: int, loads: Mapping[str, int], positions: Mapping[str, Position]) -> str:
        department = self.decided_units[row]
        choice = nearest_team(
            self.d.pack.teams_of(department), float(self.lats[row]), float(self.lons[row]), positions, loads
        )
        team: dict[str, Any] = {"department": department, "considered": list(choice.considered)}
        extra = self.extras.setdefault(row, {})
        if choice.unit_id is None:
            extra["why"] = f"no field team of {department} has a known position and spare capacity"
            extra["team"] = team
            return department
        team["chosen"] = choice.unit_id
        team["distance_m"] = choice.distance_m
        extra["team"] = team
        return choice.unit_id

    def _co_notify(self, final: list[str]) -> dict[int, tuple[str, ...]]:
        """Units to tell besides the assigned one: co-notify rules (in the order tried), the full unit a
        backup stood in for, and band neighbours (nearest first). The reasons are written on demand."""
        units_by_row: dict[int, list[str]] = {}
        for rule in self.d.rules:
            if not rule.rule.co_notify:
                continue
            hit = self.decided_by == rule.position if rule.rule.decides else self.states[rule.position] == ALL_OK
            units = rule.rule.co_notify
            for row in np.flatnonzero(hit).tolist():
                known = units_by_row.get(row)
                if known is None:
                    units_by_row[row] = list(units)
                else:
                    known.extend(u for u in units if u not in known)
        for row, extra in self.extras.items():
            moved = extra.get("overflow")
            if moved is not None and not moved.all_full:
                units_by_row.setdefault(row, []).append(self.decided_units[row])
        for row, near in self.neighbours.items():
            units_by_row.setdefault(row, []).extend(u for u, _ in sorted(near.items(), key=lambda item: item[1]))
        result = {}
        for row, units in units_by_row.items():
            unit_id = final[row]
            chosen = tuple(dict.fromkeys(u for u in units if u != unit_id))
            if chosen:
                result[row] = chosen
        return result

    def _notices(self, row: int, co_notify: tuple[str, ...]) -> list[dict[str, Any]]:
        """Why each co-notified unit is told (the first reason found, in the order of :meth:`_co_notify`)."""
        why: dict[str, dict[str, Any]] = {}
        for rule in self.d.rules:
            if not rule.rule.co_notify:
                continue
            if rule.rule.decides:
                matched = self.decided_by[row] == rule.position
            else:
                matched = self.states[rule.position, row] == ALL_OK
            if matched:
                for unit_id in rule.rule.co_notify:
                    why.setdefault(unit_id, {"unit": unit_id, "why": f"rule {rule.id} co-notifies it"})
        moved = self.extras.get(row, {}).get("overflow")
        if moved is not None and not moved.all_full:
            full = self.decided_units[row]
            why.setdefault(full, {"unit": full, "why": f"at capacity; backup {moved.unit_id} took it"})
        band = self.d.pack.spec.boundary_band_m
        for unit_id, metres in self.neighbours.get(row, {}).items():
            why.setdefault(
                unit_id,
                {
                    "unit": unit_id,
                    "why": f"its area is {metres:.1f} m away, within the {band:g} m boundary band",
                    "distance_m": round(metres, 1),
                },
            )
        return [why[unit_id] for unit_id in co_notify]

    # ------------------------------------------------------------ explanations

    def _batch_parts(self) -> None:
        """What explanations need for every incident, computed once, on the first explanation read.

        Everything is turned into Python lists here: indexing numpy arrays one element
        at a time costs more than building the explanation.
        """
        d = self.d
        area_ids = np.full(self.n, -1, dtype=np.int64)
        for rule in d.rules:
            if rule.area_id is not None:
                area_ids[self.decided_by == rule.position] = rule.area_id
        for c in np.unique(self.category_idx[self.kinds == K_AREA]):
            rows = np.flatnonzero((self.kinds == K_AREA) & (self.category_idx == c))
            area_ids[rows] = d.coverage[c].area_ids[self.first[rows]]
        edge = np.round(d.boundaries.distance_to_edge(area_ids, self.points_m), 1)
        self._edge_m = [None if e != e else e for e in edge.tolist()]  # NaN: no area decided
        self._located_lists = {layer: idx.tolist() for layer, idx in self.located.items()}
        self._location_keys = d.location_keys(self.located)
        self._covering_keys = [None] * self.n
        for c in np.unique(self.category_idx):
            rows = np.flatnonzero(self.category_idx == c)
            for row, key in zip(rows.tolist(), d.coverage[c].covering_keys(self.located, rows), strict=True):
                self._covering_keys[row] = key
        self._rows = list(
            zip(
                self.category_idx.tolist(),
                self.kinds.tolist(),
                self.decided_by.tolist(),
                self.first.tolist(),
                strict=True,
            )
        )
        if d.rules_mode:
            states = np.ascontiguousarray(self.states.T)
            self._state_keys = [row.tobytes() for row in states]

    def explain(self, row: int) -> dict[str, Any]:
        if self._edge_m is None:
            self._batch_parts()
        d = self.d
        explainer = d.explainer
        category, kind_index, decided_by, first = self._rows[row]
        coverage = d.coverage[category]
        kind = KINDS[kind_index]
        rule = d.rules[decided_by] if decided_by >= 0 else None
        unit_id = self.final[row] if kind == BY_TEAM else self.decided_units[row]
        rule_id = rule.id if rule is not None else (d.area_rule if kind == BY_AREA else d.fallback_rule)
        candidates_key = (coverage.code, kind, unit_id, rule_id, self._covering_keys[row])
        candidates = explainer.cached_candidates(candidates_key)
        if candidates is None or kind in (FALLBACK, AMBIGUOUS):
            located = {layer: values[row] for layer, values in self._located_lists.items()}
            decision = Decision(kind, unit_id, rule_id, first, rule)
            if candidates is None:
                candidates = explainer.candidates(candidates_key, coverage, decision, located)
        location_key = self._location_keys[row]
        hit = explainer.cached_features(location_key)
        if hit is None:
            located = {layer: values[row] for layer, values in self._located_lists.items()}
            hit = explainer.features(location_key, d.features_hit(located))
        explanation: dict[str, Any] = {
            "pack": d.pack.name,
            "pack_version": d.pack.version,
            "category": coverage.code,
            "rule": rule_id,
            "features": hit,
            "candidates": candidates,
            "boundary_m": self._edge_m[row],  # type: ignore[index]
            "confidence": None if self.confidences is None else self.confidences[row],
        }
        if self.sources is not None and self.sources[row] is not None:
            explanation["source"] = self.sources[row]
        if self.local_text is not None:
            explanation["local_time"] = self.local_text
        if d.rules_mode:
            trace_key = (category, self._state_keys[row], decided_by)
            trace = self._trace_cache.get(trace_key)
            if trace is None:
                states = self._state_keys[row]
                trace = self._trace_cache[trace_key] = explainer.rule_trace(d.rules, states, decided_by, self.local)
            explanation["rules"] = trace
        if kind in (FALLBACK, AMBIGUOUS):
            explanation["why"] = explainer.fallback_why(coverage.code, decision, coverage, located)
        extra = self.extras.get(row)
        if extra:
            moved = extra.get("overflow")
            if moved is not None:
                explanation["overflow"] = moved.text()
                explanation["candidates"] = _with_overflow(candidates, moved.responsible, self.final[row])
            for key in ("team", "why"):
                if key in extra:
                    explanation[key] = extra[key]
        if self._capacity_rows is not None:
            unit, load, limit = self._capacity_rows[row]  # type: ignore[misc]
            explanation["capacity"] = {"unit": unit, "load": load, "capacity": limit}
        co_notify = self.co_notified.get(row)
        if co_notify:
            explanation["co_notify"] = self._notices(row, co_notify)
        return explanation


def _closest(found: dict[int, dict[str, float]], row: int, unit_id: str, distance: float) -> None:
    units = found.setdefault(row, {})
    if distance < units.get(unit_id, np.inf):
        units[unit_id] = distance


def _with_overflow(candidates: list[dict[str, str]], full_unit: str, taken_by: str) -> list[dict[str, str]]:
    """A copy of the (shared, cached) candidate list that records an overflow."""
    result = []
    for entry in candidates:
        if entry["unit"] == full_unit and full_unit != taken_by:
            entry = {"unit": full_unit, "outcome": "lost", "why": f"at capacity; overflowed to backup {taken_by}"}
        elif entry["unit"] == taken_by and full_unit != taken_by:
            entry = {"unit": taken_by, "outcome": "chosen", "why": f"backup of {full_unit}, which is at capacity"}
        result.append(entry)
    if full_unit != taken_by and all(e["unit"] != taken_by for e in result):
        result.append({"unit": taken_by, "outcome": "chosen", "why": f"backup of {full_unit}, which is at capacity"})
    return result
