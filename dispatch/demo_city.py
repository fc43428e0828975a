"""Lindenhaven, the demo city: generated here so the demo runs anywhere with no downloaded data.

A fictional city of twelve districts on a jittered grid, two drainage basins
split by a winding river, fifteen service categories, field teams with
service areas, and static thresholds for four sensor kinds. Generation is
deterministic: the same code always writes the same pack (and pack version).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import shapely
import yaml
from shapely.geometry import LineString, Polygon, mapping
from shapely.ops import split

NAME = "Lindenhaven"
ORIGIN_LON, ORIGIN_LAT = 5.05, 51.98  # south-west corner
COLS, ROWS = 4, 3
CELL_LON, CELL_LAT = 0.03, 0.02  # ~2.1 km x 2.2 km per district

DISTRICT_NAMES = [
    "Havenkwartier",
    "Lindenhof",
    "Oude Markt",
    "Molenwijk",
    "Rietveld",
    "Stadspark",
    "Brugzicht",
    "Kanaalzijde",
    "Noorderhout",
    "Schepenbuurt",
    "Vlietdorp",
    "Torenveld",
]

CATEGORIES: list[dict[str, Any]] = [
    {"code": "pothole", "name": "Pothole", "group": "roads", "sla": ("4h", "72h", "24h", "calendar")},
    {"code": "broken_sidewalk", "name": "Broken sidewalk", "group": "roads", "sla": ("1d", "10d", "2d", "working")},
    {"code": "traffic_signal", "name": "Traffic signal fault", "group": "roads", "sla": ("1h", "8h", "4h", "calendar")},
    {"code": "streetlight", "name": "Streetlight out", "group": "lighting", "sla": ("1d", "5d", "2d", "working")},
    {"code": "litter", "name": "Litter or exposed garbage", "group": "cleansing", "sla": ("2h", "1d", "1d", "working")},
    {"code": "illegal_dumping", "name": "Illegal dumping", "group": "cleansing", "sla": ("4h", "2d", "1d", "working")},
    {"code": "graffiti", "name": "Graffiti", "group": "cleansing", "sla": ("1d", "48h", "1d", "calendar")},
    {
        "code": "flooding",
        "name": "Flooding or ponding water",
        "group": "water",
        "sla": ("30m", "6h", "12h", "calendar"),
    },
    {"code": "water_main_break", "name": "Burst water main", "group": "water", "sla": ("15m", "8h", "12h", "calendar")},
    {"code": "blocked_drain", "name": "Blocked drain", "group": "water", "sla": ("4h", "2d", "1d", "working")},
    {"code": "noise", "name": "Noise", "group": "environment", "sla": ("1h", "1d", "1d", "calendar")},
    {"code": "air_quality", "name": "Air quality", "group": "environment", "sla": ("1h", "1d", "1d", "calendar")},
    {"code": "fallen_tree", "name": "Fallen tree or branch", "group": "parks", "sla": ("2h", "1d", "1d", "calendar")},
    {
        "code": "abandoned_vehicle",
        "name": "Abandoned vehicle",
        "group": "traffic",
        "sla": ("1d", "7d", "2d", "working"),
    },
    {"code": "illegal_parking", "name": "Illegal parking", "group": "traffic", "sla": ("1h", "4h", "1d", "calendar")},
]


def _districts(rng: random.Random) -> list[tuple[str, str, Polygon]]:
    # Interior grid vertices are jittered; shared by neighbours so there are no gaps or overlaps.
    def vertex(col: int, row: int) -> tuple[float, float]:
        jitter_lon = rng.uniform(-0.2, 0.2) * CELL_LON if 0 < col < COLS else 0.0
        jitter_lat = rng.uniform(-0.2, 0.2) * CELL_LAT if 0 < row < ROWS else 0.0
        return (ORIGIN_LON + col * CELL_LON + jitter_lon, ORIGIN_LAT + row * CELL_LAT + jitter_lat)

    grid = {(c, r): vertex(c, r) for c in range(COLS + 1) for r in range(ROWS + 1)}
    result = []
    for row in range(ROWS):
        for col in range(COLS):
            ring = [grid[(col, row)], grid[(col + 1, row)], grid[(col + 1, row + 1)], grid[(col, row + 1)]]
            index = row * COLS + col
            result.append((f"D{index + 1:02d}", DISTRICT_NAMES[index], Polygon(ring)))
    return result


def _basins(outline: Polygon, rng: random.Random) -> list[tuple[str, str, Any]]:
    # A winding river from south to north splits the city into a west and an east basin.
    lats = [ORIGIN_LAT - 0.01 + i * (ROWS * CELL_LAT + 0.02) / 8 for i in range(9)]
    mid = ORIGIN_LON + COLS * CELL_LON / 2
    river = LineString([(mid + rng.uniform(-0.4, 0.4) * CELL_LON, lat) for lat in lats])
    parts = sorted(split(outline, river).geoms, key=lambda g: g.centroid.x)
    west, east = parts[0], shapely.union_all(parts[1:])
    return [("west", "West basin", west), ("east", "East basin", east)]


def _feature_collection(rows: list[tuple[str, str, Any]], id_property: str) -> dict[str, Any]:
    features = []
    for feature_id, name, geom in rows:
        geometry = mapping(shapely.set_precision(geom, 1e-7))
        features.append(
            {"type": "Feature", "properties": {id_property: feature_id, "name": name}, "geometry": geometry}
        )
    return {"type": "FeatureCollection", "features": features}


def _ids(
    districts: list[tuple[str, str, Polygon]], cols: set[int] | None = None, rows: set[int] | None = None
) -> list[str]:
    chosen = []
    for index, (feature_id, _, _) in enumerate(districts):
        row, col = divmod(index, COLS)
        if (cols is None or col in cols) and (rows is None or row in rows):
            chosen.append(feature_id)
    return chosen


def city_document(districts: list[tuple[str, str, Polygon]]) -> dict[str, Any]:
    """The ``city.yaml`` content of the demo city."""
    west, east = {0, 1}, {2, 3}

    def team(
        uid: str, name: str, groups: list[str], layer: str, features: Any, backup: str | None, dept: str
    ) -> dict[str, Any]:
        unit: dict[str, Any] = {
            "id": uid,
            "name": name,
            "kind": "field_team",
            "department": dept,
            "groups": groups,
            "area": {"layer": layer, "features": features},
            "capacity": 40,
        }
        if backup:
            unit["backup"] = backup
        return unit

    units: list[dict[str, Any]] = [
        {"id": "ops-centre", "name": "Lindenhaven Operations Centre", "kind": "ops_centre"},
        {"id": "public-works", "name": "Public Works Department", "kind": "department"},
        {"id": "water-board", "name": "Water Board", "kind": "department"},
        {"id": "environment-dept", "name": "Environment Department", "kind": "department"},
        {"id": "city-police", "name": "City Police, Traffic Division", "kind": "department"},
        team(
            "roads-west",
            "Roads crew West",
            ["roads"],
            "districts",
            _ids(districts, cols=west),
            "roads-east",
            "public-works",
        ),
        team(
            "roads-east",
            "Roads crew East",
            ["roads"],
            "districts",
            _ids(districts, cols=east),
            "roads-west",
            "public-works",
        ),
        team("lighting", "Street lighting crew", ["lighting"], "districts", "*", None, "public-works"),
        team(
            "cleansing-south",
            "Cleansing team South",
            ["cleansing"],
            "districts",
            _ids(districts, rows={0}),
            "cleansing-central",
            "public-works",
        ),
        team(
            "cleansing-central",
            "Cleansing team Central",
            ["cleansing"],
            "districts",
            _ids(districts, rows={1}),
            "cleansing-north",
            "public-works",
        ),
        team(
            "cleansing-north",
            "Cleansing team North",
            ["cleansing"],
            "districts",
            _ids(districts, rows={2}),
            "cleansing-central",
            "public-works",
        ),
        team("water-west", "Water crew West", ["water"], "basins", ["west"], "water-east", "water-board"),
        team("water-east", "Water crew East", ["water"], "basins", ["east"], "water-west", "water-board"),
        team("environment", "Environmental inspectors", ["environment"], "districts", "*", None, "environment-dept"),
        team("parks", "Parks and trees crew", ["parks"], "districts", "*", None, "public-works"),
        team(
            "traffic-west",
            "Traffic enforcement West",
            ["traffic"],
            "districts",
            _ids(districts, cols=west),
            "traffic-east",
            "city-police",
        ),
        team(
            "traffic-east",
            "Traffic enforcement East",
            ["traffic"],
            "districts",
            _ids(districts, cols=east),
            "traffic-west",
            "city-police",
        ),
    ]
    categories = []
    for cat in CATEGORIES:
        ack, resolve, verify, clock = cat["sla"]
        categories.append(
            {
                "code": cat["code"],
                "name": cat["name"],
                "group": cat["group"],
                "sla": {"acknowledge": ack, "resolve": resolve, "verify": verify, "clock": clock},
            }
        )
    return {
        "name": NAME,
        "version": "2026.11.1",
        "timezone": "Europe/Amsterdam",
        "calendar": {
            "working_hours": {"start": "08:00", "end": "18:00", "days": ["mon", "tue", "wed", "thu", "fri"]},
            "holidays": ["2026-12-25", "2026-12-26", "2027-01-01", "2027-04-27"],
        },
        "boundary_band_m": 25,
        "fallback_unit": "ops-centre",
        "layers": [
            {
                "id": "districts",
                "file": "layers/districts.geojson",
                "id_property": "district_id",
                "name_property": "name",
            },
            {"id": "basins", "file": "layers/basins.geojson", "id_property": "basin_id", "name_property": "name"},
        ],
        "categories": categories,
        "units": units,
        "sensor_kinds": {
            "water_level": {"category": "flooding", "unit": "cm", "direction": "above", "open_at": 30, "close_at": 20},
            "noise_level": {"category": "noise", "unit": "dBA", "direction": "above", "open_at": 85, "close_at": 75},
            "pm25": {
                "category": "air_quality",
                "unit": "ug/m3",
                "detector": "both",  # the health limit, and anything far from the sensor's usual day
                "direction": "above",
                "open_at": 75,
                "close_at": 50,
            },
            "water_pressure": {
                "category": "water_main_break",
                "unit": "bar",
                "direction": "below",
                "open_at": 1.5,
                "close_at": 2.5,
            },
        },
    }


def write_demo_city(target: str | Path) -> Path:
    """Write the demo city pack into ``target`` (created if needed) and return its path."""
    root = Path(target)
    (root / "layers").mkdir(parents=True, exist_ok=True)
    rng = random.Random(20261126)
    districts = _districts(rng)
    outline = shapely.union_all([geom for _, _, geom in districts])
    basins = _basins(outline, rng)
    (root / "layers" / "districts.geojson").write_text(
        json.dumps(_feature_collection(districts, "district_id"), indent=1), encoding="utf-8"
    )
    (root / "layers" / "basins.geojson").write_text(
        json.dumps(_feature_collection(basins, "basin_id"), indent=1), encoding="utf-8"
    )
    header = f"# {NAME}: the generated CityLoop demo city. Regenerate with `cityloop city demo`.\n"
    body = yaml.safe_dump(city_document(districts), sort_keys=False, allow_unicode=True)
    (root / "city.yaml").write_text(header + body, encoding="utf-8")
    return root


def bounds() -> tuple[float, float, float, float]:
    """(min_lon, min_lat, max_lon, max_lat) of the demo city."""
    return (ORIGIN_LON, ORIGIN_LAT, ORIGIN_LON + COLS * CELL_LON, ORIGIN_LAT + ROWS * CELL_LAT)
