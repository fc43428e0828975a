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
from datetime import datetime
from typing import Any

import numpy as np
import shapely

from dispatch.assignment import Assignment
from dispatch.batch import Batch
from dispatch.boundaries import Boundaries
from dispatch.capacity import Position
from dispatch.citypack import CityPack
from dispatch.coverage import build_coverage
from dispatch.errors import DispatchError, NoResponsibleUnit
from dispatch.explain import Explainer
from dispatch.rules import compile_rules

FIRST_COVERING_UNIT = "first-covering-unit"
SERVICE_AREA = "service-area"
FALLBACK_RULE = "fallback"

__all__ = ["Assignment", "Dispatcher", "FALLBACK_RULE", "FIRST_COVERING_UNIT", "SERVICE_AREA"]


class Dispatcher:
    """Assigns incidents to units of one city pack; vectorised over batches."""

    def __init__(self, pack: CityPack) -> None:
        self.pack = pack
        spec = pack.spec
        self.boundaries = Boundaries(pack)
        self.codes = [c.code for c in spec.categories]
        self.category_index = {code: i for i, code in enumerate(self.codes)}
        self.coverage = [build_coverage(pack, code, self.boundaries.area_id) for code in self.codes]
        self.rules = compile_rules(pack, self.category_index, self.boundaries.area_id)
        self.rules_mode = bool(spec.rules)
        self.area_rule = SERVICE_AREA if self.rules_mode else FIRST_COVERING_UNIT
        self.fallback_rule = FALLBACK_RULE
        self.band_layers = sorted({layer for cov in self.coverage for layer in cov.layers})
        self.explainer = Explainer(spec.fallback_unit)
        self._layer_ids = list(pack.layers)
        self._layer_sizes = [len(pack.layers[layer].feature_ids) + 1 for layer in self._layer_ids]

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

    def covering_units(self, category: str, lat: float, lon: float) -> list[str]:
        """Units that handle ``category`` and cover the point, in declared order, the one a rule names included.

        Whom a task rejected by its unit may go to next (feedback.next_unit).
        """
        candidates = self.assign(category, lat, lon).explanation["candidates"]
        return [entry["unit"] for entry in candidates if entry["outcome"] in ("chosen", "lost")]

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

        ``confidences`` are the classifier's, recorded in the explanations.
        ``sources`` are the channels, for rules that match on source; ``now``
        (timezone-aware) is the time for rules that match on time of day; ``loads``
        (open tasks per unit) turns on overflow to backups, and the batch's own
        assignments count towards it; ``positions`` ((lat, lon) per field team)
        serve the nearest-team rule action.
        """
        if len(categories) == 0:
            return []
        category_idx = self._category_indices(categories)
        batch = Batch(
            self,
            category_idx,
            np.asarray(lats, dtype=float),
            np.asarray(lons, dtype=float),
            confidences,
            sources,
            self._local(now),
        )
        return batch.decide(loads, positions)

    # ---------------------------------------------------------------- helpers for batches

    def features_hit(self, located: dict[str, int]) -> dict[str, str | None]:
        layers = self.pack.layers
        return {
            layer_id: (layers[layer_id].feature_ids[idx] if idx >= 0 else None) for layer_id, idx in located.items()
        }

    def location_keys(self, located: dict[str, np.ndarray]) -> list[Any]:
        """One hashable key per point for "which feature in every layer" (mixed radix when it fits)."""
        if float(np.prod(np.array(self._layer_sizes, dtype=float))) < 2**62:
            key = np.zeros(len(next(iter(located.values()))), dtype=np.int64)
            for layer, size in zip(self._layer_ids, self._layer_sizes, strict=True):
                key = key * size + (located[layer] % size)
            return key.tolist()
        return list(zip(*(located[layer].tolist() for layer in self._layer_ids), strict=True))

    def _category_indices(self, categories: Sequence[str]) -> np.ndarray:
        try:
            return np.fromiter((self.category_index[c] for c in categories), dtype=np.int64, count=len(categories))
        except KeyError as exc:
            raise NoResponsibleUnit(f"category {exc.args[0]!r} is not in city pack {self.pack.name!r}") from None

    def _local(self, now: datetime | None) -> datetime | None:
        if now is None:
            return None
        if now.tzinfo is None or now.utcoffset() is None:
            raise DispatchError("now must be timezone-aware (rules match on the city's local time)")
        return now.astimezone(self.pack.zone)
