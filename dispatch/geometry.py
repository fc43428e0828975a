"""Metres from lon/lat degrees: a local projection fitted to one city.

Distances in the dispatcher (the boundary band, distance to the nearest
boundary, nearest field team) are computed on a plane: x = (lon - lon0) * kx,
y = (lat - lat0) * ky, where kx and ky are the WGS84 ellipsoid's metres per
degree of longitude and latitude at the city's centre latitude lat0 (prime
vertical and meridional radii of curvature). Near lat0 this is exact to first
order; away from it the east-west scale drifts by about tan(lat0) * (lat - lat0)
(in radians) and the north-south scale by far less. For New York (lat 40.5..40.9)
that is at most 0.32%: a 25 m band is right to within 8 cm. :attr:`max_scale_error`
gives the bound for a pack, and ``cityloop city lint`` warns when it passes 1%.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely

WGS84_A = 6_378_137.0
WGS84_F = 1 / 298.257223563
WGS84_E2 = WGS84_F * (2 - WGS84_F)
MEAN_EARTH_RADIUS_M = 6_371_008.8


def metres_per_degree(lat: float) -> tuple[float, float]:
    """(east-west, north-south) metres per degree at latitude ``lat`` on the WGS84 ellipsoid."""
    phi = math.radians(lat)
    w = 1 - WGS84_E2 * math.sin(phi) ** 2
    prime_vertical = WGS84_A / math.sqrt(w)
    meridional = WGS84_A * (1 - WGS84_E2) / w**1.5
    return prime_vertical * math.cos(phi) * math.pi / 180, meridional * math.pi / 180


@dataclass(frozen=True)
class LocalProjection:
    """A plane in metres around (lon0, lat0), good for one city's extent (see the module docstring)."""

    lon0: float
    lat0: float
    kx: float
    ky: float
    min_lat: float
    max_lat: float

    @classmethod
    def around(cls, min_lon: float, min_lat: float, max_lon: float, max_lat: float) -> LocalProjection:
        lat0 = (min_lat + max_lat) / 2
        kx, ky = metres_per_degree(lat0)
        return cls((min_lon + max_lon) / 2, lat0, kx, ky, min_lat, max_lat)

    @property
    def max_scale_error(self) -> float:
        """Largest relative error of a short distance anywhere between min_lat and max_lat."""
        worst = 0.0
        for lat in (self.min_lat, self.max_lat):
            true_kx, true_ky = metres_per_degree(max(-89.9, min(89.9, lat)))
            worst = max(worst, abs(self.kx / true_kx - 1), abs(self.ky / true_ky - 1))
        return worst

    def xy(self, lons: np.ndarray, lats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (np.asarray(lons, dtype=float) - self.lon0) * self.kx, (
            np.asarray(lats, dtype=float) - self.lat0
        ) * self.ky

    def points(self, lons: np.ndarray, lats: np.ndarray) -> np.ndarray:
        """Shapely points in metres."""
        x, y = self.xy(lons, lats)
        return shapely.points(x, y)

    def geometries(self, geometries: np.ndarray) -> np.ndarray:
        """Project an array of lon/lat geometries into metres."""
        offset = np.array([self.lon0, self.lat0])
        scale = np.array([self.kx, self.ky])
        return shapely.transform(geometries, lambda coords: (coords - offset) * scale)

    def to_lonlat(self, geometries: np.ndarray) -> np.ndarray:
        """Back from metres to lon/lat, for an array of geometries."""
        offset = np.array([self.lon0, self.lat0])
        scale = np.array([self.kx, self.ky])
        return shapely.transform(geometries, lambda coords: coords / scale + offset)

    def lonlat(self, x: float, y: float) -> tuple[float, float]:
        """Back from metres to (lon, lat)."""
        return self.lon0 + x / self.kx, self.lat0 + y / self.ky


def ground_distance_m(
    lat: float | np.ndarray, lon: float | np.ndarray, other_lat: np.ndarray, other_lon: np.ndarray
) -> np.ndarray:
    """Metres between points, equirectangular around the first point (broadcasts).

    Good to well under 0.5% for points a few tens of kilometres apart, which is
    what choosing the nearest field team in a city needs.
    """
    phi = np.radians(lat)
    dx = np.radians(np.asarray(other_lon) - lon) * np.cos(phi)
    dy = np.radians(np.asarray(other_lat) - lat)
    return MEAN_EARTH_RADIUS_M * np.hypot(dx, dy)


def boundary_pieces(geometry: shapely.Geometry, max_vertices: int = 32) -> list[shapely.Geometry]:
    """The boundary of a (multi)polygon as short line pieces, so an STRtree over them answers
    "how far to the edge" in logarithmic time instead of walking every vertex."""
    pieces: list[shapely.Geometry] = []
    boundary = shapely.boundary(geometry)
    lines = shapely.get_parts(boundary)
    for line in lines:
        coords = shapely.get_coordinates(line)
        for start in range(0, len(coords) - 1, max_vertices - 1):
            chunk = coords[start : start + max_vertices]
            if len(chunk) >= 2:
                pieces.append(shapely.linestrings(chunk))
    return pieces
