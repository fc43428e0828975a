"""Distances to jurisdiction edges, in metres: the boundary band and "how far to the edge".

Everything here is on the pack's local plane (:mod:`dispatch.geometry`). Edges are
indexed as short line pieces in STRtrees, so a query costs a tree descent and a
few short distance computations, not a walk along a coastline of 10,000 vertices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely

from dispatch.citypack import CityPack
from dispatch.geometry import boundary_pieces

_QUAD_SEGS = 8


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
        self._cores: dict[float, np.ndarray] = {}
        self._unions: dict[int, shapely.Geometry] = {}
        self._feature_cores: dict[tuple[str, float], np.ndarray] = {}

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
            edges = _edges(np.array([self._union_m(area_id)], dtype=object))
            self._area_edges[area_id] = edges
        return edges

    def area_cores(self, band_m: float, needed: np.ndarray) -> np.ndarray:
        """Areas shrunk by the band, in lon/lat and prepared, indexed by area handle (None where not built).

        A point inside an area's core is further than ``band_m`` from anything outside
        the area. Only the ``needed`` handles are built (once). The buffer's round
        corners are polygons inscribed in the true circle, so the shrinking distance is
        raised by the chord's shortfall (1/cos(pi/32) at 8 segments a quarter circle)
        plus 1 cm: a core must never be too large.
        """
        cores = self._cores.get(band_m)
        if cores is None or len(cores) < len(self._areas):
            grown = np.full(len(self._areas), None, dtype=object)
            if cores is not None:
                grown[: len(cores)] = cores
            cores = self._cores[band_m] = grown
        missing = [int(i) for i in np.unique(needed) if i >= 0 and cores[i] is None]
        if missing:
            distance = band_m / math.cos(math.pi / (4 * _QUAD_SEGS)) + 0.01
            shrunk = [shapely.buffer(self._union_m(i), -distance, quad_segs=_QUAD_SEGS) for i in missing]
            built = self.projection.to_lonlat(np.array(shrunk, dtype=object))
            shapely.prepare(built)
            cores[missing] = built
        return cores

    def whole_layer(self, area_id: int) -> bool:
        """Whether an area is every feature of its layer ("*")."""
        return self._areas[area_id][1] is None

    def feature_cores(self, layer_id: str, band_m: float) -> np.ndarray:
        """Each feature of a layer shrunk by the band (as :meth:`area_cores`), indexed by feature.

        For areas that are a whole layer: a point deep inside its own feature is deep
        inside the layer, and shrinking each feature is far cheaper than shrinking
        the union of a coastline city.
        """
        key = (layer_id, band_m)
        if key not in self._feature_cores:
            distance = band_m / math.cos(math.pi / (4 * _QUAD_SEGS)) + 0.01
            metric = self.projection.geometries(self.pack.layers[layer_id].geometries)
            cores = self.projection.to_lonlat(shapely.buffer(metric, -distance, quad_segs=_QUAD_SEGS))
            shapely.prepare(cores)
            self._feature_cores[key] = cores
        return self._feature_cores[key]

    def _union_m(self, area_id: int) -> shapely.Geometry:
        if area_id not in self._unions:
            layer_id, features = self._areas[area_id]
            layer = self.pack.layers[layer_id]
            if features is None:
                geometries = layer.geometries
            else:
                wanted = set(features)
                geometries = layer.geometries[[f in wanted for f in layer.feature_ids]]
            metric = self.projection.geometries(geometries)
            # one feature is its own union (and a unary union of a long coastline is not free)
            self._unions[area_id] = metric[0] if len(metric) == 1 else shapely.union_all(metric)
        return self._unions[area_id]

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
        self, layer_id: str, points_m: np.ndarray, band_m: float, own: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(point index, feature index, metres) for features other than ``own`` (each point's feature, or -1)
        whose edge is within ``band_m`` of the point. A feature may appear more than once for a point (one
        entry per nearby piece of its edge); keep the smallest distance.

        For a point outside a feature, the distance to its edge is the distance to the feature.
        """
        edges = self._layer(layer_id)
        point_idx, piece_idx = edges.tree.query(points_m, predicate="dwithin", distance=band_m)
        feature_idx = edges.owner[piece_idx]
        other = feature_idx != own[point_idx]
        point_idx, piece_idx, feature_idx = point_idx[other], piece_idx[other], feature_idx[other]
        distances = shapely.distance(points_m[point_idx], edges.pieces[piece_idx])
        return point_idx, feature_idx, distances
