"""Checks ``city init`` runs on a city's layers against its historical requests, before anything is written.

Two traps of real open data that nothing else catches:

* **Swapped axes.** A layer written as [latitude, longitude] loads (every value is a valid
  degree when the city is within 90 degrees of Greenwich) and every incident then falls
  outside every area and goes to the ops centre. The requests' own points tell: when far
  more of them fall in the layer's bounds with the axes exchanged than as given, the layer
  (or the CSV's coordinate columns) has them swapped.
* **Placeholder points.** Geocoders put requests they could not place at one default
  coordinate (a city hall, a borough centroid): thousands of requests at one point, all
  voting for one district. Such a point is found by its share and left out of the district
  votes and the agreement figure.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from dispatch.errors import InvalidCityPack
from dispatch.layers import Layer

MIN_POINTS = 20  # fewer geolocated requests say nothing about a layer's axes
PLACEHOLDER_SHARE = 0.01  # a single coordinate holding this share of the geolocated requests...
PLACEHOLDER_MIN = 20  # ...and at least this many of them is a placeholder, not a place


def _bounds(layer: Layer) -> tuple[float, float, float, float]:
    boxes = np.array([g.bounds for g in layer.geometries])
    return float(boxes[:, 0].min()), float(boxes[:, 1].min()), float(boxes[:, 2].max()), float(boxes[:, 3].max())


def _share_in(xs: np.ndarray, ys: np.ndarray, box: tuple[float, float, float, float]) -> float:
    minx, miny, maxx, maxy = box
    return float(np.mean((xs >= minx) & (xs <= maxx) & (ys >= miny) & (ys <= maxy)))


def check_axes(layer: Layer, file: str, lats: np.ndarray, lons: np.ndarray) -> None:
    """Refuse ``layer`` when the requests fall in its bounds only with latitude and longitude exchanged."""
    located = np.isfinite(lats) & np.isfinite(lons)
    if int(located.sum()) < MIN_POINTS:
        return
    lats, lons = lats[located], lons[located]
    box = _bounds(layer)
    as_given = _share_in(lons, lats, box)
    exchanged = _share_in(lats, lons, box)
    if exchanged >= 0.2 and exchanged > 10 * max(as_given, 0.01):
        minx, miny, maxx, maxy = box
        raise InvalidCityPack(
            file,
            "features",
            f"layer {layer.id!r} and the requests disagree by a latitude/longitude swap: {exchanged:.0%} of "
            f"{len(lats):,} geolocated requests fall in its bounds ({minx:.3f}, {miny:.3f})-({maxx:.3f}, {maxy:.3f}) "
            f"with the axes exchanged, {as_given:.0%} as given. GeoJSON positions are [longitude, latitude] "
            "(RFC 7946): swap the layer's coordinates, or check that the CSV's latitude and longitude columns "
            "are not exchanged",
        )


@dataclass(frozen=True)
class Placeholders:
    """Coordinates that hold an outsized share of the requests, and which rows sit on them."""

    points: list[tuple[float, float, int]]  # (lat, lon, requests), most first
    rows: np.ndarray  # bool per row: on a placeholder point

    def note(self, located: int) -> str | None:
        if not self.points:
            return None
        listed = ", ".join(f"({lat:.6f}, {lon:.6f}): {n:,}" for lat, lon, n in self.points[:5])
        held = sum(n for _, _, n in self.points)
        return (
            f"left out {held:,} of {located:,} geolocated requests at {len(self.points)} placeholder point(s) "
            f"(one coordinate holding at least {PLACEHOLDER_SHARE:.0%} of them; a geocoder's default, not a "
            f"place): {listed}"
        )


def placeholder_points(lats: np.ndarray, lons: np.ndarray) -> Placeholders:
    """Coordinates (to 6 decimals, about 0.1 m) holding at least ``PLACEHOLDER_SHARE`` and ``PLACEHOLDER_MIN``
    of the geolocated requests."""
    located = np.isfinite(lats) & np.isfinite(lons)
    keys = [(round(float(a), 6), round(float(o), 6)) for a, o in zip(lats[located], lons[located], strict=True)]
    counts = Counter(keys)
    floor = max(PLACEHOLDER_MIN, PLACEHOLDER_SHARE * len(keys))
    points = [(lat, lon, n) for (lat, lon), n in counts.most_common() if n >= floor]
    flagged = {(lat, lon) for lat, lon, _ in points}
    rows = np.zeros(len(lats), dtype=bool)
    if flagged:
        where = np.flatnonzero(located)
        rows[where] = [key in flagged for key in keys]
    return Placeholders(points, rows)
