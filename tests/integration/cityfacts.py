"""An independent, naive reading of a city pack: who should get a category at a point.

Written directly against city.yaml and the GeoJSON files, without the dispatch
package, so integration tests check the engine against a second implementation.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from shapely.geometry import Point, shape


class NaiveCity:
    def __init__(self, pack_dir: Path) -> None:
        self.doc = yaml.safe_load((pack_dir / "city.yaml").read_text())
        self.layers = {}
        for layer in self.doc["layers"]:
            collection = json.loads((pack_dir / layer["file"]).read_text())
            self.layers[layer["id"]] = {
                str(f["properties"][layer["id_property"]]): shape(f["geometry"]) for f in collection["features"]
            }
        self.groups = {c["code"]: c["group"] for c in self.doc["categories"]}

    def owner(self, category: str, lat: float, lon: float) -> str:
        point = Point(lon, lat)
        for unit in self.doc["units"]:
            handles = category in unit.get("categories", []) or self.groups[category] in unit.get("groups", [])
            if not handles or not unit.get("area"):
                continue
            layer = self.layers[unit["area"]["layer"]]
            ids = layer.keys() if unit["area"]["features"] == "*" else unit["area"]["features"]
            if any(layer[i].intersects(point) for i in ids):
                return unit["id"]
        return self.doc["fallback_unit"]
