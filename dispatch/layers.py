"""Jurisdiction layers: GeoJSON polygons (RFC 7946, WGS84 lon/lat) with an id per feature."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import shape

from dispatch.errors import InvalidCityPack

_WGS84_NAMES = {
    "urn:ogc:def:crs:OGC:1.3:CRS84",
    "urn:ogc:def:crs:OGC::CRS84",
    "urn:ogc:def:crs:EPSG::4326",
    "urn:ogc:def:crs:EPSG:4326",
    "EPSG:4326",
    "CRS84",
}


@dataclass(frozen=True)
class Layer:
    """One layer of jurisdiction polygons, indexed for point lookups."""

    id: str
    feature_ids: tuple[str, ...]
    names: tuple[str, ...]
    geometries: np.ndarray  # of shapely (Multi)Polygons, aligned with feature_ids
    tree: shapely.STRtree
    repaired: tuple[str, ...]  # ids of features whose invalid geometry was repaired

    def locate(self, points: np.ndarray) -> np.ndarray:
        """Index of the feature containing each point, or -1; ties go to the lowest index.

        ``points`` is an array of shapely Points. Points on a shared border count
        as inside both features; the lower index wins so the answer is stable.
        """
        result = np.full(len(points), -1, dtype=np.int64)
        if len(points) == 0:
            return result
        # Bounding boxes from the tree, then the exact test with the polygon (prepared at load) first:
        # GEOS then walks its edge index instead of every vertex of a 10,000-vertex coastline.
        point_idx, feature_idx = self.tree.query(points)
        inside = shapely.intersects(self.geometries[feature_idx], points[point_idx])
        point_idx, feature_idx = point_idx[inside], feature_idx[inside]
        if len(point_idx) == 0:
            return result
        # reverse so that, on assignment, the lowest feature index is written last
        order = np.lexsort((-feature_idx, point_idx))
        result[point_idx[order]] = feature_idx[order]
        return result


def load_layer(path: Path, layer_id: str, id_property: str, name_property: str | None) -> Layer:
    """Read a GeoJSON FeatureCollection of polygons; refuse what cannot be trusted."""
    file = str(path)
    if not path.is_file():
        raise InvalidCityPack(file, "-", f"layer {layer_id!r}: file not found")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidCityPack(file, "-", f"not valid GeoJSON: {exc}") from None
    if not isinstance(document, dict) or document.get("type") != "FeatureCollection":
        raise InvalidCityPack(file, "type", "must be a GeoJSON FeatureCollection")
    _check_crs(document, file)
    features = document.get("features")
    if not isinstance(features, list) or not features:
        raise InvalidCityPack(file, "features", "must be a non-empty list")
    ids: list[str] = []
    names: list[str] = []
    geometries: list[Any] = []
    repaired: list[str] = []
    for index, feature in enumerate(features):
        key = f"features.{index}"
        if not isinstance(feature, dict):
            raise InvalidCityPack(file, key, "must be a GeoJSON Feature object")
        props = feature.get("properties") or {}
        if id_property not in props or props[id_property] in (None, ""):
            raise InvalidCityPack(file, f"{key}.properties.{id_property}", "missing; every feature needs an id")
        feature_id = str(props[id_property])
        geometry = feature.get("geometry")
        if not isinstance(geometry, dict) or geometry.get("type") not in ("Polygon", "MultiPolygon"):
            kind = geometry.get("type") if isinstance(geometry, dict) else geometry
            raise InvalidCityPack(file, f"{key}.geometry", f"must be a Polygon or MultiPolygon, got {kind!r}")
        try:
            geom = shape(geometry)
        except (ValueError, TypeError, AttributeError, IndexError) as exc:
            raise InvalidCityPack(file, f"{key}.geometry", f"unreadable coordinates: {exc}") from None
        _check_lonlat(geom, file, f"{key}.geometry")
        if not geom.is_valid:
            reason = shapely.is_valid_reason(geom)
            fixed = shapely.make_valid(geom)
            fixed = _polygonal_part(fixed)
            if fixed is None or fixed.is_empty:
                raise InvalidCityPack(file, f"{key}.geometry", f"invalid polygon that cannot be repaired: {reason}")
            geom = fixed
            repaired.append(feature_id)
        ids.append(feature_id)
        names.append(str(props.get(name_property, feature_id)) if name_property else feature_id)
        geometries.append(geom)
    duplicates = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    if duplicates:
        raise InvalidCityPack(file, f"properties.{id_property}", f"duplicate ids {duplicates[:5]}")
    array = np.array(geometries, dtype=object)
    shapely.prepare(array)
    return Layer(
        id=layer_id,
        feature_ids=tuple(ids),
        names=tuple(names),
        geometries=array,
        tree=shapely.STRtree(array),
        repaired=tuple(repaired),
    )


def _check_crs(document: dict[str, Any], file: str) -> None:
    crs = document.get("crs")
    if crs is None:
        return  # RFC 7946: no crs member means WGS84 lon/lat
    name = (crs.get("properties") or {}).get("name") if isinstance(crs, dict) else None
    if name not in _WGS84_NAMES:
        raise InvalidCityPack(
            file,
            "crs",
            f"coordinate reference system {name!r} is not WGS84 lon/lat; "
            "reproject the layer to EPSG:4326 (e.g. ogr2ogr -t_srs EPSG:4326) as RFC 7946 requires",
        )


def _check_lonlat(geom: Any, file: str, key: str) -> None:
    minx, miny, maxx, maxy = geom.bounds
    if -90 <= minx and maxx <= 90 and -180 <= miny and maxy <= 180 and (miny < -90 or maxy > 90):
        raise InvalidCityPack(
            file,
            key,
            f"coordinates ({minx:.1f}, {miny:.1f})-({maxx:.1f}, {maxy:.1f}) have latitudes beyond 90 degrees that "
            "would be valid longitudes: latitude and longitude look swapped; GeoJSON positions are [longitude, "
            "latitude] (RFC 7946), swap them (e.g. ogr2ogr -s_srs '+proj=latlong +axis=neu' -t_srs EPSG:4326)",
        )
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise InvalidCityPack(
            file,
            key,
            f"coordinates ({minx:.1f}, {miny:.1f})-({maxx:.1f}, {maxy:.1f}) are not lon/lat degrees; "
            "the layer looks projected: reproject it to EPSG:4326",
        )


def _polygonal_part(geom: Any) -> Any:
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    if geom.geom_type == "GeometryCollection":
        parts = [g for g in geom.geoms if g.geom_type in ("Polygon", "MultiPolygon")]
        if parts:
            return shapely.union_all(parts)
    return None
