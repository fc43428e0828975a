"""Assignment: which unit is responsible for an incident at a point, and why.

Today's rule set is the declared order of units: among the units that handle the
incident's category (directly or through its group) and whose service area
contains the point, the first declared wins; when none covers the point the
pack's fallback unit (the ops centre) takes it. Every assignment carries an
explanation a person can check.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely

from dispatch.citypack import CityPack, Unit
from dispatch.errors import NoResponsibleUnit


@dataclass(frozen=True, slots=True)
class Assignment:
    """The unit chosen for one incident, with the reasons."""

    unit_id: str
    rule: str
    explanation: dict[str, Any] = field(hash=False, compare=False)


@dataclass(frozen=True)
class _Candidate:
    unit: Unit
    layer_id: str | None
    mask: np.ndarray | None  # bool per feature of layer_id; None = every feature


class Dispatcher:
    """Assigns incidents to units of one city pack; vectorised over batches."""

    def __init__(self, pack: CityPack) -> None:
        self.pack = pack
        self._candidates = {c.code: self._candidates_for(c.code, c.group) for c in pack.spec.categories}

    def _candidates_for(self, code: str, group: str) -> list[_Candidate]:
        result = []
        for unit in self.pack.spec.units:
            if code not in unit.categories and group not in unit.groups:
                continue
            if unit.area is None:
                result.append(_Candidate(unit, None, np.zeros(0, dtype=bool)))
                continue
            layer = self.pack.layers[unit.area.layer]
            if unit.area.features == "*":
                result.append(_Candidate(unit, layer.id, None))
            else:
                wanted = set(unit.area.features)
                mask = np.array([f in wanted for f in layer.feature_ids], dtype=bool)
                result.append(_Candidate(unit, layer.id, mask))
        return result

    def locate(self, lats: np.ndarray, lons: np.ndarray) -> dict[str, np.ndarray]:
        """Feature index per point for every layer (-1 where a point is outside the layer)."""
        points = shapely.points(np.asarray(lons, dtype=float), np.asarray(lats, dtype=float))
        return {layer_id: layer.locate(points) for layer_id, layer in self.pack.layers.items()}

    def assign_batch(
        self,
        categories: list[str],
        lats: np.ndarray,
        lons: np.ndarray,
        confidences: list[float] | None = None,
    ) -> list[Assignment]:
        """Assign each (category, point); ``categories`` must be codes of this pack."""
        count = len(categories)
        located = self.locate(lats, lons)
        chosen: list[int] = [-1] * count  # index into the category's candidate list
        by_category: dict[str, list[int]] = {}
        for i, code in enumerate(categories):
            by_category.setdefault(code, []).append(i)
        for code, rows in by_category.items():
            candidates = self._candidates.get(code)
            if candidates is None:
                raise NoResponsibleUnit(f"category {code!r} is not in city pack {self.pack.name!r}")
            rows_arr = np.asarray(rows)
            open_rows = np.ones(len(rows), dtype=bool)
            for c_index, candidate in enumerate(candidates):
                covers = self._covers(candidate, located, rows_arr)
                take = covers & open_rows
                for r in rows_arr[take]:
                    chosen[r] = c_index
                open_rows &= ~take
                if not open_rows.any():
                    break
        return [
            self._explain(
                categories[i],
                chosen[i],
                {layer: int(idx[i]) for layer, idx in located.items()},
                None if confidences is None else confidences[i],
            )
            for i in range(count)
        ]

    def assign(self, category: str, lat: float, lon: float, confidence: float | None = None) -> Assignment:
        """Assign one incident (see :meth:`assign_batch`)."""
        conf = None if confidence is None else [confidence]
        return self.assign_batch([category], np.array([lat]), np.array([lon]), conf)[0]

    @staticmethod
    def _covers(candidate: _Candidate, located: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
        if candidate.layer_id is None:
            return np.zeros(len(rows), dtype=bool)
        features = located[candidate.layer_id][rows]
        inside = features >= 0
        if candidate.mask is None:
            return inside
        result = np.zeros(len(rows), dtype=bool)
        result[inside] = candidate.mask[features[inside]]
        return result

    def _explain(self, code: str, chosen: int, features: dict[str, int], confidence: float | None) -> Assignment:
        hit = {
            layer_id: (self.pack.layers[layer_id].feature_ids[idx] if idx >= 0 else None)
            for layer_id, idx in features.items()
        }
        considered = []
        for c_index, candidate in enumerate(self._candidates[code]):
            unit = candidate.unit
            if c_index == chosen:
                outcome, why = "chosen", f"handles {code}; {self._area_text(candidate, hit)} contains the point"
            elif candidate.layer_id is None:
                outcome, why = "skipped", "unit has no service area"
            elif chosen >= 0 and c_index > chosen and self._point_in(candidate, features):
                outcome, why = (
                    "lost",
                    f"also covers the point but is declared after {self._candidates[code][chosen].unit.id}",
                )
            else:
                outcome, why = "skipped", f"{self._area_text(candidate, hit)} does not contain the point"
            considered.append({"unit": unit.id, "outcome": outcome, "why": why})
        explanation: dict[str, Any] = {
            "pack": self.pack.name,
            "pack_version": self.pack.version,
            "category": code,
            "features": hit,
            "candidates": considered,
            "confidence": confidence,
        }
        if chosen >= 0:
            unit_id = self._candidates[code][chosen].unit.id
            explanation["rule"] = "first-covering-unit"
            return Assignment(unit_id, "first-covering-unit", explanation)
        fallback = self.pack.spec.fallback_unit
        explanation["rule"] = "fallback"
        explanation["why"] = f"no unit that handles {code} covers this point; sent to {fallback}"
        return Assignment(fallback, "fallback", explanation)

    @staticmethod
    def _point_in(candidate: _Candidate, features: dict[str, int]) -> bool:
        if candidate.layer_id is None:
            return False
        idx = features[candidate.layer_id]
        if idx < 0:
            return False
        return True if candidate.mask is None else bool(candidate.mask[idx])

    @staticmethod
    def _area_text(candidate: _Candidate, hit: dict[str, str | None]) -> str:
        area = candidate.unit.area
        if area is None:
            return "no area"
        where = "every feature" if area.features == "*" else ",".join(area.features[:6])
        return f"area {area.layer}:{where} (point in {hit.get(area.layer) or 'none'})"
