"""Small city packs built in tests, each shaped to show one behaviour.

"Twin town": two square districts side by side, west and east of longitude 5.0,
between latitudes 52.0 and 52.01 (about 685 m east-west, 1,112 m north-south
each), plus optional extra layers. Units, rules and categories are given per test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from shapely.geometry import box, mapping

from dispatch import CityPack, load_city_pack

BORDER_LON = 5.0
SOUTH, NORTH = 52.0, 52.01
WEST_EDGE, EAST_EDGE = 4.99, 5.01

TWIN_DISTRICTS = [
    ("W", box(WEST_EDGE, SOUTH, BORDER_LON, NORTH)),
    ("E", box(BORDER_LON, SOUTH, EAST_EDGE, NORTH)),
]

SLA = {"acknowledge": "1h", "resolve": "1d", "clock": "calendar"}


def category(code: str, group: str = "roads", sla: dict[str, Any] | None = SLA) -> dict[str, Any]:
    entry: dict[str, Any] = {"code": code, "name": code.title(), "group": group}
    if sla is not None:
        entry["sla"] = sla
    return entry


def unit(uid: str, area: tuple[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": uid, "name": uid.title(), **extra}
    if area is not None:
        entry["area"] = {"layer": area[0], "features": area[1]}
    return entry


def write_layer(path: Path, features: list[tuple[str, Any]], id_property: str = "fid") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    collection = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {id_property: fid}, "geometry": mapping(geom)} for fid, geom in features
        ],
    }
    path.write_text(json.dumps(collection))


def write_pack(
    root: Path,
    *,
    units: list[dict[str, Any]],
    categories: list[dict[str, Any]] | None = None,
    rules: list[dict[str, Any]] | None = None,
    layers: dict[str, list[tuple[str, Any]]] | None = None,
    **top: Any,
) -> Path:
    layers = layers if layers is not None else {"districts": TWIN_DISTRICTS}
    for layer_id, features in layers.items():
        write_layer(root / "layers" / f"{layer_id}.geojson", features)
    document: dict[str, Any] = {
        "name": "Twin Town",
        "timezone": "Europe/Amsterdam",
        "fallback_unit": "ops",
        "layers": [{"id": lid, "file": f"layers/{lid}.geojson", "id_property": "fid"} for lid in layers],
        "categories": categories if categories is not None else [category("pothole"), category("graffiti", "clean")],
        "units": [unit("ops", kind="ops_centre"), *units],
        **top,
    }
    if rules is not None:
        document["rules"] = rules
    (root / "city.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    return root


def make_pack(root: Path, **kwargs: Any) -> CityPack:
    return load_city_pack(write_pack(root, **kwargs))


def twin_roads(**extra: Any) -> list[dict[str, Any]]:
    """Two roads crews, one per district."""
    return [
        unit("roads-w", ("districts", ["W"]), groups=["roads"], **extra),
        unit("roads-e", ("districts", ["E"]), groups=["roads"], **extra),
    ]
