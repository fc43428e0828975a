"""Who covers a point for a category: the units that handle it and whose service area contains it.

For each category the units that handle it (its *handlers*, in declared order)
are turned into two lookup tables per layer, indexed by feature: the first
handler covering the feature, and how many do. Resolving a batch is then one
array gather per layer instead of a loop over units or polygons.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from dispatch.citypack import CityPack, Unit

NONE = np.iinfo(np.int32).max  # "no handler covers this feature"


@dataclass(frozen=True)
class Handler:
    """A unit that handles a category, with its service area as a feature mask."""

    rank: int  # position among the category's handlers (declared order)
    unit: Unit
    layer: str | None
    mask: np.ndarray | None  # bool per feature of ``layer`` plus a final False (outside); None: no area
    area_id: int | None

    def covers(self, located: dict[str, int]) -> bool:
        return self.layer is not None and bool(self.mask[located[self.layer]])  # type: ignore[index]

    def area_text(self) -> str:
        area = self.unit.area
        if area is None:
            return "no area"
        where = "every feature" if area.features == "*" else ",".join(area.features[:6])
        more = "" if area.features == "*" or len(area.features) <= 6 else f",+{len(area.features) - 6}"
        return f"area {area.layer}:{where}{more}"


@dataclass(frozen=True)
class Coverage:
    """The handlers of one category and their per-layer lookup tables."""

    code: str
    handlers: tuple[Handler, ...]
    first: dict[str, np.ndarray]  # layer -> lowest handler rank covering each feature (NONE), plus outside
    count: dict[str, np.ndarray]  # layer -> number of handlers covering each feature, plus outside
    by_feature: dict[str, list[tuple[int, ...]]]  # layer -> handler ranks whose area holds each feature
    unit_ids: np.ndarray  # object array: unit id per handler rank
    sole: dict[str, np.ndarray]  # layer -> the only handler holding each feature; -1: none, -2: several
    area_ids: np.ndarray  # int: Boundaries handle of each handler's area (-1: none), plus a final -1

    def resolve(self, located: dict[str, np.ndarray], rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(first covering handler rank or NONE, number covering) for the given rows."""
        first = np.full(len(rows), NONE, dtype=np.int64)
        count = np.zeros(len(rows), dtype=np.int64)
        for layer, table in self.first.items():
            features = located[layer][rows]
            np.minimum(first, table[features], out=first)
            count += self.count[layer][features]
        return first, count

    def covering(self, located: dict[str, int]) -> tuple[int, ...]:
        """Ranks of the handlers whose area contains a point, given its feature index per layer."""
        ranks: tuple[int, ...] = ()
        for layer, holders in self.by_feature.items():
            ranks += holders[located[layer]]
        return tuple(sorted(ranks)) if len(self.by_feature) > 1 else ranks

    def covering_keys(self, located: dict[str, np.ndarray], rows: np.ndarray) -> list[Any]:
        """A hashable stand-in for :meth:`covering` per row: the sole holder's rank when the category's
        handlers share one layer and hold each feature alone (the usual case), else the tuple itself."""
        if len(self.sole) == 1:
            layer, sole = next(iter(self.sole.items()))
            if not (sole == -2).any():
                return sole[located[layer][rows]].tolist()
        lists = {layer: located[layer][rows].tolist() for layer in self.by_feature}
        return [self.covering({layer: lists[layer][i] for layer in lists}) for i in range(len(rows))]

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(self.first)


def build_coverage(pack: CityPack, code: str, area_id: Callable[[str, list[str] | str], int]) -> Coverage:
    handlers: list[Handler] = []
    for unit in pack.spec.units:
        if not pack.handles(unit, code):
            continue
        rank = len(handlers)
        if unit.area is None:
            handlers.append(Handler(rank, unit, None, None, None))
            continue
        ids = pack.layers[unit.area.layer].feature_ids
        chosen = set(ids) if unit.area.features == "*" else set(unit.area.features)
        mask = np.array([f in chosen for f in ids] + [False], dtype=bool)
        handlers.append(Handler(rank, unit, unit.area.layer, mask, area_id(unit.area.layer, unit.area.features)))
    first: dict[str, np.ndarray] = {}
    count: dict[str, np.ndarray] = {}
    by_feature: dict[str, list[tuple[int, ...]]] = {}
    for handler in handlers:
        if handler.layer is None or handler.mask is None:
            continue
        size = len(handler.mask)
        layer_first = first.setdefault(handler.layer, np.full(size, NONE, dtype=np.int64))
        layer_count = count.setdefault(handler.layer, np.zeros(size, dtype=np.int64))
        # handlers come in rank order, so the first one to claim a feature keeps it
        unclaimed = handler.mask & (layer_first == NONE)
        layer_first[unclaimed] = handler.rank
        layer_count += handler.mask
    for layer, table in count.items():
        holders: list[list[int]] = [[] for _ in range(len(table))]
        for handler in handlers:
            if handler.layer == layer and handler.mask is not None:
                for feature in np.flatnonzero(handler.mask):
                    holders[feature].append(handler.rank)
        by_feature[layer] = [tuple(h) for h in holders]
    unit_ids = np.array([h.unit.id for h in handlers], dtype=object)
    sole = {layer: np.where(count[layer] == 1, first[layer], np.where(count[layer] == 0, -1, -2)) for layer in count}
    area_ids = np.array([-1 if h.area_id is None else h.area_id for h in handlers] + [-1], dtype=np.int64)
    return Coverage(code, tuple(handlers), first, count, by_feature, unit_ids, sole, area_ids)
