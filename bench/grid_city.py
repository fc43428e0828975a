"""A synthetic city pack for benchmarks: thousands of block polygons, teams owning sets of blocks.

A jittered grid of ``cols`` x ``rows`` blocks (each about 150 m x 110 m) in a
layer ``blocks``; blocks are grouped into districts of ``tile`` x ``tile`` blocks,
and every service group of the demo city has one field team per district whose
area lists that district's blocks. A coarse ``wards`` layer (4 x 3) carries
rules: night-time traffic work to the police department's nearest team, sensor
reports of water problems to the water department, a co-notify rule for water
main breaks. Deterministic for a given size.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import shapely
import yaml
from shapely.geometry import Polygon, box, mapping

from dispatch.demo_city import CATEGORIES

ORIGIN_LON, ORIGIN_LAT = 4.80, 52.30
CELL_LON, CELL_LAT = 0.0022, 0.001
GROUPS = sorted({c["group"] for c in CATEGORIES})


def bounds(cols: int, rows: int) -> tuple[float, float, float, float]:
    return ORIGIN_LON, ORIGIN_LAT, ORIGIN_LON + cols * CELL_LON, ORIGIN_LAT + rows * CELL_LAT


def _blocks(cols: int, rows: int, rng: random.Random) -> list[tuple[str, Polygon]]:
    def vertex(c: int, r: int) -> tuple[float, float]:
        dx = rng.uniform(-0.25, 0.25) * CELL_LON if 0 < c < cols else 0.0
        dy = rng.uniform(-0.25, 0.25) * CELL_LAT if 0 < r < rows else 0.0
        return ORIGIN_LON + c * CELL_LON + dx, ORIGIN_LAT + r * CELL_LAT + dy

    grid = {(c, r): vertex(c, r) for c in range(cols + 1) for r in range(rows + 1)}
    return [
        (f"b{r:03d}-{c:03d}", Polygon([grid[(c, r)], grid[(c + 1, r)], grid[(c + 1, r + 1)], grid[(c, r + 1)]]))
        for r in range(rows)
        for c in range(cols)
    ]


def _write_layer(path: Path, features: list[tuple[str, Any]]) -> None:
    collection = {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "properties": {"id": fid}, "geometry": mapping(shapely.set_precision(geom, 1e-7))}
            for fid, geom in features
        ],
    }
    path.write_text(json.dumps(collection), encoding="utf-8")


def write_grid_city(target: str | Path, cols: int = 50, rows: int = 42, tile: int = 10) -> Path:
    """Write the pack and return its directory; ``cols * rows`` block polygons."""
    root = Path(target)
    (root / "layers").mkdir(parents=True, exist_ok=True)
    rng = random.Random(cols * 1000 + rows)
    blocks = _blocks(cols, rows, rng)
    _write_layer(root / "layers" / "blocks.geojson", blocks)
    min_lon, min_lat, max_lon, max_lat = bounds(cols, rows)
    ward_w, ward_h = (max_lon - min_lon) / 4, (max_lat - min_lat) / 3
    wards = [
        (
            f"W{r}{c}",
            box(min_lon + c * ward_w, min_lat + r * ward_h, min_lon + (c + 1) * ward_w, min_lat + (r + 1) * ward_h),
        )
        for r in range(3)
        for c in range(4)
    ]
    _write_layer(root / "layers" / "wards.geojson", wards)
    districts: dict[tuple[int, int], list[str]] = {}
    for index, (block_id, _) in enumerate(blocks):
        r, c = divmod(index, cols)
        districts.setdefault((r // tile, c // tile), []).append(block_id)
    units: list[dict[str, Any]] = [{"id": "ops", "name": "Operations centre", "kind": "ops_centre"}]
    for group in GROUPS:
        units.append({"id": f"{group}-dept", "name": f"{group} department", "kind": "department"})
        keys = sorted(districts)
        for n, key in enumerate(keys):
            backup = keys[(n + 1) % len(keys)]
            units.append(
                {
                    "id": f"{group}-{key[0]}-{key[1]}",
                    "name": f"{group} team {key}",
                    "kind": "field_team",
                    "department": f"{group}-dept",
                    "groups": [group],
                    "area": {"layer": "blocks", "features": districts[key]},
                    "capacity": 50,
                    "backup": f"{group}-{backup[0]}-{backup[1]}",
                }
            )
    categories = [
        {
            "code": c["code"],
            "name": c["name"],
            "group": c["group"],
            "sla": {"acknowledge": c["sla"][0], "resolve": c["sla"][1], "clock": c["sla"][3]},
        }
        for c in CATEGORIES
    ]
    rules = [
        {
            "id": "night-traffic",
            "priority": 20,
            "match": {"groups": ["traffic"], "hours": {"start": "22:00", "end": "06:00"}},
            "nearest_team_of": "traffic-dept",
        },
        {
            "id": "sensor-water",
            "priority": 10,
            "match": {
                "groups": ["water"],
                "sources": ["sensor"],
                "area": {"layer": "wards", "features": ["W00", "W01"]},
            },
            "assign": "water-dept",
        },
        {"id": "burst-main", "priority": 5, "match": {"categories": ["water_main_break"]}, "co_notify": ["roads-dept"]},
    ]
    document = {
        "name": f"Grid City {cols}x{rows}",
        "version": "1",
        "timezone": "Europe/Amsterdam",
        "fallback_unit": "ops",
        "boundary_band_m": 25,
        "layers": [
            {"id": "blocks", "file": "layers/blocks.geojson", "id_property": "id"},
            {"id": "wards", "file": "layers/wards.geojson", "id_property": "id"},
        ],
        "categories": categories,
        "units": units,
        "rules": rules,
    }
    (root / "city.yaml").write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    return root
