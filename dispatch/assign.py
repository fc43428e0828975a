"""Assignment: which unit is responsible for an incident at a point, and why.

The order of decision, for each incident:

1. **Rules**, when the pack declares them, highest priority first (ties: declared
   order). The first rule whose conditions all hold decides: it assigns a unit,
   or the nearest field team of a department that has spare capacity (the
   department itself when no team has a known position and room). Rules that only
   ``co_notify`` never decide; they add units to tell.
2. **Service areas**: the unit that handles the category (directly or through its
   group) and whose area contains the point. In a pack without rules the first
   such unit in declared order wins (rule ``first-covering-unit``, CityLoop's
   original behaviour). In a pack with rules precedence is explicit, so when
   several units cover a point and no rule settled it, the incident goes to the
   fallback unit for a person to decide, rather than to whichever was declared
   first (``cityloop city lint`` reports such overlaps).
3. **Fallback**: the pack's ops centre.

Then capacity: with ``loads`` given, a unit at capacity overflows along its
backup chain. Units whose area for the category lies within the pack's
boundary band of the point (but does not contain it) are co-notified. The
function is pure: loads, positions and ``now`` are parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import shapely

from dispatch.boundaries import Boundaries
from dispatch.capacity import Position, nearest_team, overflow
from dispatch.citypack import CityPack
from dispatch.coverage import NONE, Coverage, build_coverage
from dispatch.errors import DispatchError, NoResponsibleUnit
from dispatch.explain import AMBIGUOUS, BY_AREA, BY_RULE, BY_TEAM, FALLBACK, Decision, Explainer
from dispatch.rules import ALL_OK, compile_rules, time_matches

FIRST_COVERING_UNIT = "first-covering-unit"
SERVICE_AREA = "service-area"
FALLBACK_RULE = "fallback"


@dataclass(frozen=True, slots=True)
class Assignment:
    """The unit chosen for one incident, with the reasons and the other units to tell."""

    unit_id: str
    rule: str
    explanation: dict[str, Any] = field(hash=False, compare=False)
    co_notify: tuple[str, ...] = ()


class Dispatcher:
    """Assigns incidents to units of one city pack; vectorised over batches."""

    def __init__(self, pack: CityPack) -> None:
        self.pack = pack
        spec = pack.spec
        self.boundaries = Boundaries(pack)
        self._codes = [c.code for c in spec.categories]
        self._category_index = {code: i for i, code in enumerate(self._codes)}
        self._coverage = [build_coverage(pack, code, self.boundaries.area_id) for code in self._codes]
        self._rules = compile_rules(pack, self._category_index, self.boundaries.area_id)
        self._rules_mode = bool(spec.rules)
        self._area_rule = SERVICE_AREA if self._rules_mode else FIRST_COVERING_UNIT
        self._layer_ids = list(pack.layers)
        self._layer_sizes = [len(pack.layers[layer].feature_ids) + 1 for layer in self._layer_ids]
        self._band_layers = sorted({layer for cov in self._coverage for layer in cov.layers})
        self._explainer = Explainer(pack.name, pack.version, spec.fallback_unit, self._rules_mode)

    # ------------------------------------------------------------------ public

    def locate(self, lats: np.ndarray, lons: np.ndarray) -> dict[str, np.ndarray]:
        """Feature index per point for every layer (-1 where a point is outside the layer)."""
        points = shapely.points(np.asarray(lons, dtype=float), np.asarray(lats, dtype=float))
        return {layer_id: layer.locate(points) for layer_id, layer in self.pack.layers.items()}

    def assign(
        self,
        category: str,
        lat: float,
        lon: float,
        confidence: float | None = None,
        *,
        source: str | None = None,
        now: datetime | None = None,
        loads: Mapping[str, int] | None = None,
        positions: Mapping[str, Position] | None = None,
    ) -> Assignment:
        """Assign one incident (see :meth:`assign_batch`)."""
        return self.assign_batch(
            [category],
            np.array([lat]),
            np.array([lon]),
            None if confidence is None else [confidence],
            sources=[source],
            now=now,
            loads=loads,
            positions=positions,
        )[0]

    def assign_batch(
        self,
        categories: Sequence[str],
        lats: np.ndarray,
        lons: np.ndarray,
        confidences: Sequence[float | None] | None = None,
        *,
        sources: Sequence[str | None] | None = None,
        now: datetime | None = None,
        loads: Mapping[str, int] | None = None,
        positions: Mapping[str, Position] | None = None,
    ) -> list[Assignment]:
        """Assign each (category, point); ``categories`` must be codes of this pack.

        ``sources`` are the channels for rules that match on source; ``now`` (timezone
        aware) is the time for rules that match on time of day; ``loads`` (open tasks
        per unit) turns on overflow to backups, and assignments within the batch
        count towards it; ``positions`` ((lat, lon) per field team) serve the
        nearest-team rule action.
        """
        count = len(categories)
        if count == 0:
            return []
        lats = np.asarray(lats, dtype=float)
        lons = np.asarray(lons, dtype=float)
        category_idx = self._category_indices(categories)
        local = self._local(now)
        points = shapely.points(lons, lats)
        located = {layer_id: layer.locate(points) for layer_id, layer in self.pack.layers.items()}
        states, decided_by = self._match_rules(category_idx, located, sources, local, count)
        first, covering = self._resolve_areas(category_idx, located, count)
        points_m = self.pack.projection.points(lons, lats)
        neighbours = self._neighbours(category_idx, located, points_m)
        edge_m = self._edge_distances(decided_by, first, covering, category_idx, points_m)
        location_keys = self._location_keys(located)
        live = dict(loads) if loads is not None else None
        state_rows = np.ascontiguousarray(states.T) if self._rules_mode else None
        trace_cache: dict[Any, list[dict[str, Any]]] = {}
        located_lists = {layer: idx.tolist() for layer, idx in located.items()}
        result = []
        for i in range(count):
            row_located = {layer: located_lists[layer][i] for layer in self._layer_ids}
            result.append(
                self._finish(
                    i,
                    self._coverage[category_idx[i]],
                    row_located,
                    location_keys[i],
                    int(decided_by[i]),
                    int(first[i]),
                    int(covering[i]),
                    None if state_rows is None else state_rows[i].tobytes(),
                    trace_cache,
                    float(lats[i]),
                    float(lons[i]),
                    None if confidences is None else confidences[i],
                    None if sources is None else sources[i],
                    local,
                    live,
                    positions,
                    neighbours.get(i),
                    float(edge_m[i]),
                )
            )
        return result

    # ---------------------------------------------------------------- batch steps

    def _category_indices(self, categories: Sequence[str]) -> np.ndarray:
        try:
            return np.fromiter((self._category_index[c] for c in categories), dtype=np.int64, count=len(categories))
        except KeyError as exc:
            raise NoResponsibleUnit(f"category {exc.args[0]!r} is not in city pack {self.pack.name!r}") from None

    def _local(self, now: datetime | None) -> datetime | None:
        if now is None:
            return None
        if now.tzinfo is None or now.utcoffset() is None:
            raise DispatchError("now must be timezone-aware (rules match on the city's local time)")
        return now.astimezone(self.pack.zone)

    def _match_rules(
        self,
        category_idx: np.ndarray,
        located: dict[str, np.ndarray],
        sources: Sequence[str | None] | None,
        local: datetime | None,
        count: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        states = np.zeros((len(self._rules), count), dtype=np.uint8)
        decided_by = np.full(count, -1, dtype=np.int64)
        if not self._rules:
            return states, decided_by
        lowered = [None if s is None else s.lower() for s in sources] if sources is not None else [None] * count
        undecided = np.ones(count, dtype=bool)
        for rule, time_ok in zip(self._rules, time_matches(self._rules, local), strict=True):
            if rule.sources:
                source_ok = np.fromiter((s in rule.sources for s in lowered), dtype=bool, count=count)
            else:
                source_ok = np.ones(count, dtype=bool)
            state = rule.state(category_idx, located, source_ok, time_ok)
            states[rule.position] = state
            if rule.rule.decides:
                take = (state == ALL_OK) & undecided
                decided_by[take] = rule.position
                undecided &= ~take
        return states, decided_by

    def _resolve_areas(
        self, category_idx: np.ndarray, located: dict[str, np.ndarray], count: int
    ) -> tuple[np.ndarray, np.ndarray]:
        first = np.full(count, NONE, dtype=np.int64)
        covering = np.zeros(count, dtype=np.int64)
        for c in np.unique(category_idx):
            rows = np.flatnonzero(category_idx == c)
            first[rows], covering[rows] = self._coverage[c].resolve(located, rows)
        return first, covering

    def _neighbours(
        self, category_idx: np.ndarray, located: dict[str, np.ndarray], points_m: np.ndarray
    ) -> dict[int, dict[str, float]]:
        """Per incident, units handling its category whose area is within the band but does not contain it."""
        band = self.pack.spec.boundary_band_m
        found: dict[int, dict[str, float]] = {}
        if band <= 0:
            return found
        for layer in self._band_layers:
            rows, features, metres = self.boundaries.features_within(layer, points_m, band)
            for row, feature, distance in zip(rows.tolist(), features.tolist(), metres.tolist(), strict=True):
                coverage = self._coverage[category_idx[row]]
                holders = coverage.by_feature.get(layer)
                if not holders:
                    continue
                for rank in holders[feature]:
                    handler = coverage.handlers[rank]
                    if handler.mask[located[handler.layer][row]]:  # type: ignore[index]
                        continue  # its area contains the point: not a neighbour
                    units = found.setdefault(row, {})
                    unit_id = handler.unit.id
                    if distance < units.get(unit_id, np.inf):
                        units[unit_id] = distance
        return found

    def _edge_distances(
        self,
        decided_by: np.ndarray,
        first: np.ndarray,
        covering: np.ndarray,
        category_idx: np.ndarray,
        points_m: np.ndarray,
    ) -> np.ndarray:
        """Metres to the edge of the area that decided each incident (NaN when no area decided)."""
        area_ids = np.full(len(decided_by), -1, dtype=np.int64)
        for rule in self._rules:
            if rule.area_id is not None:
                area_ids[decided_by == rule.position] = rule.area_id
        by_area = (decided_by < 0) & (first != NONE)
        if self._rules_mode:
            by_area &= covering == 1
        for row in np.flatnonzero(by_area):
            handler = self._coverage[category_idx[row]].handlers[first[row]]
            area_ids[row] = -1 if handler.area_id is None else handler.area_id
        return self.boundaries.distance_to_edge(area_ids, points_m)

    def _location_keys(self, located: dict[str, np.ndarray]) -> list[Any]:
        """One hashable key per point for "which feature in every layer" (mixed radix when it fits)."""
        if float(np.prod(np.array(self._layer_sizes, dtype=float))) < 2**62:
            key = np.zeros(len(next(iter(located.values()))), dtype=np.int64)
            for layer, size in zip(self._layer_ids, self._layer_sizes, strict=True):
                key = key * size + (located[layer] % size)
            return key.tolist()
        return list(zip(*(located[layer].tolist() for layer in self._layer_ids), strict=True))

    # ---------------------------------------------------------------- per incident

    def _decide(self, coverage: Coverage, decided_by: int, first: int, covering: int) -> Decision:
        if decided_by >= 0:
            rule = self._rules[decided_by]
            kind = BY_RULE if rule.rule.assign is not None else BY_TEAM
            unit_id = rule.rule.assign or rule.rule.nearest_team_of or ""
            return Decision(kind, unit_id, rule.id, -1, rule)
        fallback = self.pack.spec.fallback_unit
        if first == NONE:
            return Decision(FALLBACK, fallback, FALLBACK_RULE, -1)
        if self._rules_mode and covering > 1:
            return Decision(AMBIGUOUS, fallback, FALLBACK_RULE, first)
        return Decision(BY_AREA, coverage.handlers[first].unit.id, self._area_rule, first)

    def _finish(
        self,
        row: int,
        coverage: Coverage,
        located: dict[str, int],
        location_key: Any,
        decided_by: int,
        first: int,
        covering: int,
        states: bytes | None,
        trace_cache: dict[Any, list[dict[str, Any]]],
        lat: float,
        lon: float,
        confidence: float | None,
        source: str | None,
        local: datetime | None,
        live: dict[str, int] | None,
        positions: Mapping[str, Position] | None,
        neighbours: dict[str, float] | None,
        edge_m: float,
    ) -> Assignment:
        decision = self._decide(coverage, decided_by, first, covering)
        explainer = self._explainer
        hit = explainer.features(location_key, lambda: self._features_hit(located))
        explanation: dict[str, Any] = {
            "pack": self.pack.name,
            "pack_version": self.pack.version,
            "category": coverage.code,
            "rule": decision.rule_id,
            "features": hit,
            "candidates": explainer.candidates(coverage, decision, located),
            "boundary_m": None if edge_m != edge_m else round(edge_m, 1),  # NaN: no area decided
            "confidence": confidence,
        }
        if source is not None:
            explanation["source"] = source
        if local is not None:
            explanation["local_time"] = local.isoformat(timespec="minutes")
        if states is not None:
            trace_key = (coverage.code, states, decided_by)
            trace = trace_cache.get(trace_key)
            if trace is None:
                trace = trace_cache[trace_key] = explainer.rule_trace(self._rules, states, decided_by, local)
            explanation["rules"] = trace
        if decision.kind in (FALLBACK, AMBIGUOUS):
            explanation["why"] = explainer.fallback_why(coverage.code, decision, coverage, located)
        unit_id = decision.unit_id
        notify: dict[str, dict[str, Any]] = {}
        if decision.kind == BY_TEAM:
            unit_id = self._nearest_team(decision, lat, lon, live or {}, positions or {}, explanation)
        elif live is not None:
            moved = overflow(self.pack, unit_id, live)
            if moved.full:
                explanation["overflow"] = moved.text()
                explanation["candidates"] = _with_overflow(explanation["candidates"], unit_id, moved.unit_id)
                if not moved.all_full:
                    notify[unit_id] = {"unit": unit_id, "why": f"at capacity; backup {moved.unit_id} took it"}
            unit_id = moved.unit_id
        if live is not None:
            unit = self.pack.unit(unit_id)
            explanation["capacity"] = {
                "unit": unit_id,
                "load": live.get(unit_id, 0),
                "capacity": None if unit is None else unit.capacity,
            }
            live[unit_id] = live.get(unit_id, 0) + 1
        self._co_notify(decision, states, neighbours, notify)
        notify.pop(unit_id, None)
        if notify:
            explanation["co_notify"] = list(notify.values())
        return Assignment(unit_id, decision.rule_id, explanation, tuple(notify))

    def _features_hit(self, located: dict[str, int]) -> dict[str, str | None]:
        layers = self.pack.layers
        return {
            layer_id: (layers[layer_id].feature_ids[idx] if idx >= 0 else None) for layer_id, idx in located.items()
        }

    def _nearest_team(
        self,
        decision: Decision,
        lat: float,
        lon: float,
        loads: Mapping[str, int],
        positions: Mapping[str, Position],
        explanation: dict[str, Any],
    ) -> str:
        department = decision.unit_id
        choice = nearest_team(self.pack.teams_of(department), lat, lon, positions, loads)
        explanation["team"] = {"department": department, "considered": list(choice.considered)}
        if choice.unit_id is None:
            explanation["why"] = f"no field team of {department} has a known position and spare capacity"
            return department
        explanation["team"]["chosen"] = choice.unit_id
        explanation["team"]["distance_m"] = choice.distance_m
        return choice.unit_id

    def _co_notify(
        self,
        decision: Decision,
        states: bytes | None,
        neighbours: dict[str, float] | None,
        notify: dict[str, dict[str, Any]],
    ) -> None:
        if decision.rule is not None:
            for unit_id in decision.rule.rule.co_notify:
                notify.setdefault(unit_id, {"unit": unit_id, "why": f"rule {decision.rule_id} co-notifies it"})
        if states is not None:
            for rule in self._rules:
                if not rule.rule.decides and states[rule.position] == ALL_OK:
                    for unit_id in rule.rule.co_notify:
                        notify.setdefault(unit_id, {"unit": unit_id, "why": f"rule {rule.id} co-notifies it"})
        if neighbours:
            band = self.pack.spec.boundary_band_m
            for unit_id, metres in sorted(neighbours.items(), key=lambda item: item[1]):
                notify.setdefault(
                    unit_id,
                    {
                        "unit": unit_id,
                        "why": f"its area is {metres:.1f} m away, within the {band:g} m boundary band",
                        "distance_m": round(metres, 1),
                    },
                )


def _with_overflow(candidates: list[dict[str, str]], full_unit: str, taken_by: str) -> list[dict[str, str]]:
    """A copy of the (shared, cached) candidate list that records an overflow."""
    result = []
    for entry in candidates:
        if entry["unit"] == full_unit and full_unit != taken_by:
            entry = {"unit": full_unit, "outcome": "lost", "why": f"at capacity; overflowed to backup {taken_by}"}
        elif entry["unit"] == taken_by:
            entry = {"unit": taken_by, "outcome": "chosen", "why": f"backup of {full_unit}, which is at capacity"}
        result.append(entry)
    if full_unit != taken_by and all(e["unit"] != taken_by for e in result):
        result.append({"unit": taken_by, "outcome": "chosen", "why": f"backup of {full_unit}, which is at capacity"})
    return result
