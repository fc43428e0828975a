"""City packs load when sound and fail with file, key and problem when not."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from dispatch import InvalidCityPack, load_city_pack
from dispatch.demo_city import write_demo_city


def edit_city(pack_dir: Path, change) -> None:  # type: ignore[no-untyped-def]
    path = pack_dir / "city.yaml"
    document = yaml.safe_load(path.read_text())
    change(document)
    path.write_text(yaml.safe_dump(document))


@pytest.fixture
def pack_dir(demo_dir: Path, tmp_path: Path) -> Path:
    target = tmp_path / "pack"
    shutil.copytree(demo_dir, target)
    return target


def test_demo_city_loads_with_all_layers(demo_pack):
    """The generated demo city is a sound pack: 12 districts, 2 basins, nothing repaired."""
    assert demo_pack.name == "Lindenhaven"
    assert len(demo_pack.layers["districts"].feature_ids) == 12
    assert len(demo_pack.layers["basins"].feature_ids) == 2
    assert all(not layer.repaired for layer in demo_pack.layers.values())


def test_demo_city_generation_is_deterministic(tmp_path, demo_pack):
    """Generating twice gives the same pack version (content hash)."""
    again = load_city_pack(write_demo_city(tmp_path / "again"))
    assert again.version == demo_pack.version


def test_missing_city_yaml_names_the_file(tmp_path):
    """A directory without city.yaml is refused naming the missing file."""
    with pytest.raises(InvalidCityPack) as caught:
        load_city_pack(tmp_path)
    assert "city.yaml" in str(caught.value)


@pytest.mark.parametrize(
    ("change", "key", "words"),
    [
        (lambda d: d.update(fallback_unit="nobody"), "fallback_unit", "'nobody' is not defined"),
        (lambda d: d["units"][5].update(groups=["roadz"]), "units.5.groups", "unknown category group 'roadz'"),
        (lambda d: d["units"][5].update(backup="ghost"), "units.5.backup", "unknown unit 'ghost'"),
        (lambda d: d["units"][5]["area"].update(layer="wards"), "units.5.area.layer", "unknown layer 'wards'"),
        (lambda d: d["units"][5]["area"].update(features=["D01", "D99"]), "units.5.area.features", "D99"),
        (lambda d: d["categories"][0]["sla"].update(resolve="soon"), "categories.0.sla.resolve", "duration"),
        (lambda d: d.update(timezone="Mars/Olympus"), "timezone", "unknown time zone"),
        (lambda d: d["calendar"].update(at_close="noon"), "calendar.at_close", "'closing' or 'next_opening'"),
        (lambda d: d["categories"].append(dict(d["categories"][0])), "categories.15", "duplicate category code"),
        (lambda d: d["sensor_kinds"]["water_level"].update(close_at=40), "sensor_kinds.water_level", "close_at"),
        (lambda d: d.update(colour="blue"), "colour", "Extra inputs are not permitted"),
    ],
)
def test_broken_city_yaml_is_refused_with_key_and_problem(pack_dir, change, key, words):
    """The error names city.yaml, the key path and what is wrong with it."""
    edit_city(pack_dir, change)
    with pytest.raises(InvalidCityPack) as caught:
        load_city_pack(pack_dir)
    assert caught.value.file.endswith("city.yaml")
    assert caught.value.key.startswith(key)
    assert words in caught.value.problem


def write_layer(pack_dir: Path, document: dict) -> None:
    (pack_dir / "layers" / "basins.geojson").write_text(json.dumps(document))


def test_a_layer_in_another_crs_is_refused(pack_dir):
    """RFC 7946 is WGS84 lon/lat; a named projected CRS is refused with advice."""
    layer = json.loads((pack_dir / "layers" / "basins.geojson").read_text())
    layer["crs"] = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::28992"}}
    write_layer(pack_dir, layer)
    with pytest.raises(InvalidCityPack) as caught:
        load_city_pack(pack_dir)
    assert caught.value.key == "crs"
    assert "EPSG::28992" in caught.value.problem and "reproject" in caught.value.problem


def test_projected_coordinates_without_a_crs_are_refused(pack_dir):
    """Metres passed off as degrees are caught by their range."""
    layer = json.loads((pack_dir / "layers" / "basins.geojson").read_text())
    ring = [[155000, 463000], [156000, 463000], [156000, 464000], [155000, 463000]]
    layer["features"][0]["geometry"] = {"type": "Polygon", "coordinates": [ring]}
    write_layer(pack_dir, layer)
    with pytest.raises(InvalidCityPack) as caught:
        load_city_pack(pack_dir)
    assert "looks projected" in caught.value.problem


def test_a_self_intersecting_polygon_is_repaired_and_reported(pack_dir):
    """A bow-tie polygon is made valid; the feature is listed as repaired."""
    layer = json.loads((pack_dir / "layers" / "basins.geojson").read_text())
    bow_tie = [[5.0, 51.9], [5.1, 52.0], [5.1, 51.9], [5.0, 52.0], [5.0, 51.9]]
    layer["features"][0]["geometry"] = {"type": "Polygon", "coordinates": [bow_tie]}
    write_layer(pack_dir, layer)
    pack = load_city_pack(pack_dir)
    assert pack.layers["basins"].repaired == ("west",)
    assert pack.layers["basins"].geometries[0].is_valid


@pytest.mark.parametrize(
    ("geometry", "words"),
    [
        ({"type": "Point", "coordinates": [5.0, 52.0]}, "must be a Polygon or MultiPolygon"),
        ({"type": "Polygon", "coordinates": [[[5.0, 52.0]]]}, "unreadable coordinates"),
        (None, "must be a Polygon or MultiPolygon"),
    ],
)
def test_unusable_geometries_are_refused(pack_dir, geometry, words):
    """Points, unreadable rings and null geometries are refused, naming the feature's geometry key."""
    layer = json.loads((pack_dir / "layers" / "basins.geojson").read_text())
    layer["features"][0]["geometry"] = geometry
    write_layer(pack_dir, layer)
    with pytest.raises(InvalidCityPack) as caught:
        load_city_pack(pack_dir)
    assert caught.value.key == "features.0.geometry"
    assert words in caught.value.problem


def test_a_feature_without_its_id_is_refused(pack_dir):
    """Every feature needs its id property; the key names the feature and the property."""
    layer = json.loads((pack_dir / "layers" / "basins.geojson").read_text())
    del layer["features"][1]["properties"]["basin_id"]
    write_layer(pack_dir, layer)
    with pytest.raises(InvalidCityPack) as caught:
        load_city_pack(pack_dir)
    assert caught.value.key == "features.1.properties.basin_id"


def test_a_layer_that_is_not_json_is_refused(pack_dir):
    """A layer file that is not JSON is refused as invalid GeoJSON."""
    (pack_dir / "layers" / "basins.geojson").write_text("{oops")
    with pytest.raises(InvalidCityPack) as caught:
        load_city_pack(pack_dir)
    assert "not valid GeoJSON" in caught.value.problem


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ({"category": "noise", "detector": "threshold", "open_at": 80}, "needs open_at and close_at"),
        ({"category": "noise", "detector": "both", "direction": "both", "open_at": 80, "close_at": 70},
         "direction 'above' or 'below'"),
        ({"category": "noise", "detector": "adaptive", "direction": "sideways"}, "'above', 'below' or 'both'"),
    ],
)  # fmt: skip
def test_sensor_kinds_are_checked(pack_dir, kind, words):
    """A detector without the limits it needs, or with a direction it cannot use, is refused."""
    edit_city(pack_dir, lambda d: d["sensor_kinds"].update(new_kind=kind))
    with pytest.raises(InvalidCityPack) as caught:
        load_city_pack(pack_dir)
    assert caught.value.key.startswith("sensor_kinds.new_kind")
    assert words in caught.value.problem


def test_an_adaptive_sensor_kind_needs_no_limits(pack_dir):
    kind = {"category": "noise", "detector": "adaptive", "direction": "both", "adaptive": {"k_open": 5.0}}
    edit_city(pack_dir, lambda d: d["sensor_kinds"].update(hum=kind))
    pack = load_city_pack(pack_dir)
    assert pack.spec.sensor_kinds["hum"].adaptive == {"k_open": 5.0}


def test_a_polygon_that_cannot_be_repaired_is_refused(pack_dir):
    """A ring with no area (all points on a line) has no polygonal repair: refused, naming the feature."""
    layer = json.loads((pack_dir / "layers" / "basins.geojson").read_text())
    flat = [[5.0, 51.5], [5.5, 52.0], [6.0, 52.5], [5.0, 51.5]]
    layer["features"][1]["geometry"] = {"type": "Polygon", "coordinates": [flat]}
    write_layer(pack_dir, layer)
    with pytest.raises(InvalidCityPack) as caught:
        load_city_pack(pack_dir)
    assert caught.value.file.endswith("basins.geojson")
    assert caught.value.key == "features.1.geometry"
    assert "cannot be repaired" in caught.value.problem


RULE = {"id": "r1", "match": {"categories": ["pothole"]}, "assign": "roads-west"}


@pytest.mark.parametrize(
    ("rule", "key", "words"),
    [
        ({**RULE, "assign": "ghost"}, "rules.0.assign", "unknown unit 'ghost'"),
        ({**RULE, "match": {"categories": ["potholes"]}}, "rules.0.match.categories", "unknown category"),
        ({**RULE, "match": {"groups": ["road"]}}, "rules.0.match.groups", "unknown category group"),
        ({**RULE, "match": {"area": {"layer": "wards"}}}, "rules.0.match.area.layer", "unknown layer"),
        (
            {**RULE, "match": {"area": {"layer": "basins", "features": ["north"]}}},
            "rules.0.match.area.features",
            "north",
        ),
        ({"id": "r1", "match": {}}, "rules.0", "needs an action"),
        ({**RULE, "nearest_team_of": "public-works"}, "rules.0", "not both"),
        ({"id": "r1", "nearest_team_of": "roads-west"}, "rules.0.nearest_team_of", "not a department"),
        ({"id": "r1", "nearest_team_of": "ops-centre"}, "rules.0.nearest_team_of", "not a department"),
        ({**RULE, "co_notify": ["nobody"]}, "rules.0.co_notify", "unknown unit 'nobody'"),
        ({**RULE, "match": {"hours": {"start": "08:00", "end": "08:00"}}}, "rules.0.match.hours", "equal"),
        ({**RULE, "match": {"hours": {"start": "25:00", "end": "08:00"}}}, "rules.0.match.hours.start", "time"),
    ],
)
def test_broken_rules_are_refused_with_key_and_problem(pack_dir, rule, key, words):
    """Rules are checked on load like the rest of city.yaml."""
    edit_city(pack_dir, lambda d: d.update(rules=[rule]))
    with pytest.raises(InvalidCityPack) as caught:
        load_city_pack(pack_dir)
    assert caught.value.key.startswith(key)
    assert words in caught.value.problem


def test_duplicate_rule_ids_and_unknown_boundary_layer_are_refused(pack_dir):
    """Rule ids are unique and the boundary must be one of the pack's layers."""
    edit_city(pack_dir, lambda d: d.update(rules=[RULE, RULE]))
    with pytest.raises(InvalidCityPack, match="duplicate rule id 'r1'"):
        load_city_pack(pack_dir)
    edit_city(pack_dir, lambda d: d.update(rules=[], boundary="outline"))
    with pytest.raises(InvalidCityPack, match="boundary: unknown layer 'outline'"):
        load_city_pack(pack_dir)
