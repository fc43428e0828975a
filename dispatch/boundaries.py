"""Distances to jurisdiction edges, in metres: the boundary band and "how far to the edge".

Everything here is on the pack's local plane (:mod:`dispatch.geometry`). Edges are
indexed as short line pieces in STRtrees, so a query costs a tree descent and a
few short distance computations, not a walk along a coastline of 10,000 vertices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from dispatch.citypack import CityPack
from dispatch.geometry import boundary_pieces


@dataclass(frozen=True)
class _Edges:
    pieces: np.ndarray  # LineStrings in metres
    owner: np.ndarray  # int: the feature (or area) each piece belongs to
    tree: shapely.STRtree


def _edges(geometries: np.ndarray) -> _Edges:
    pieces: list[shapely.Geometry] = []
    owner: list[int] = []
    for index, geometry in enumerate(geometries):
        parts = boundary_pieces(geometry)
        pieces.extend(parts)
        owner.extend([index] * len(parts))
    array = np.array(pieces, dtype=object)
    return _Edges(array, np.array(owner, dtype=np.int64), shapely.STRtree(array))


class Boundaries:
    """Edges of every layer's features and of every distinct service or rule area, in metres."""

    def __init__(self, pack: CityPack) -> None:
        self.pack = pack
        self.projection = pack.projection
        self._layer_edges: dict[str, _Edges] = {}
        self._area_keys: dict[tuple[str, tuple[str, ...] | None], int] = {}
        self._areas: list[tuple[str, tuple[str, ...] | None]] = []
        self._area_edges: list[_Edges | None] = []

    def area_id(self, layer_id: str, features: list[str] | str) -> int:
        """A handle on the union of ``features`` of ``layer_id`` ("*": all); equal areas share one handle."""
        key = (layer_id, None if features == "*" else tuple(sorted(features)))
        if key not in self._area_keys:
            self._area_keys[key] = len(self._areas)
            self._areas.append(key)
            self._area_edges.append(None)  # built on first use: many areas are never asked about
        return self._area_keys[key]

    def _area(self, area_id: int) -> _Edges:
        edges = self._area_edges[area_id]
        if edges is None:
            layer_id, features = self._areas[area_id]
            layer = self.pack.layers[layer_id]
            if features is None:
                geometries = layer.geometries
            else:
                wanted = set(features)
                geometries = layer.geometries[[f in wanted for f in layer.feature_ids]]
            union = shapely.union_all(self.projection.geometries(geometries))
            edges = _edges(np.array([union], dtype=object))
            self._area_edges[area_id] = edges
        return edges

    def _layer(self, layer_id: str) -> _Edges:
        if layer_id not in self._layer_edges:
            layer = self.pack.layers[layer_id]
            self._layer_edges[layer_id] = _edges(self.projection.geometries(layer.geometries))
        return self._layer_edges[layer_id]

    def distance_to_edge(self, area_ids: np.ndarray, points_m: np.ndarray) -> np.ndarray:
        """Metres from each point to the edge of its area (``area_ids``; -1 gives NaN)."""
        result = np.full(len(points_m), np.nan)
        for area_id in np.unique(area_ids):
            if area_id < 0:
                continue
            rows = np.flatnonzero(area_ids == area_id)
            edges = self._area(int(area_id))
            hits, distances = edges.tree.query_nearest(points_m[rows], return_distance=True, all_matches=False)
            result[rows[hits[0]]] = distances
        return result

    def features_within(
        self, layer_id: str, points_m: np.ndarray, band_m: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(point index, feature index, metres) for every feature whose edge is within ``band_m`` of a point.

        For a point outside a feature, the distance to its edge is the distance to
        the feature; for a point inside, it is how far in the point lies.
        """
        edges = self._layer(layer_id)
        pairs = edges.tree.query(points_m, predicate="dwithin", distance=band_m)
        if pairs.shape[1] == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0)
        point_idx, piece_idx = pairs
        distances = shapely.distance(points_m[point_idx], edges.pieces[piece_idx])
        feature_idx = edges.owner[piece_idx]
        # keep the closest piece per (point, feature)
        order = np.lexsort((distances, feature_idx, point_idx))
        point_idx, feature_idx, distances = point_idx[order], feature_idx[order], distances[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = (point_idx[1:] != point_idx[:-1]) | (feature_idx[1:] != feature_idx[:-1])
        return point_idx[first], feature_idx[first], distances[first]
