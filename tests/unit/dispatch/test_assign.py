"""Assignment picks the unit whose service area contains the point, and explains it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from shapely.geometry import Point, shape

from dispatch import Dispatcher


@pytest.fixture(scope="module")
def dispatcher(demo_pack):
    return Dispatcher(demo_pack)


def district_polygons(demo_dir):
    layer = json.loads((demo_dir / "layers" / "districts.geojson").read_text())
    return {f["properties"]["district_id"]: shape(f["geometry"]) for f in layer["features"]}


def test_each_district_centre_goes_to_the_roads_crew_owning_it(dispatcher, demo_pack, demo_dir):
    """Against a direct point-in-polygon lookup: the crew whose area lists the district wins."""
    owners = {}
    for unit in demo_pack.spec.units:
        if "roads" in unit.groups and unit.area is not None:
            for feature in unit.area.features:
                owners[feature] = unit.id
    for district, polygon in district_polygons(demo_dir).items():
        centre = polygon.representative_point()
        assignment = dispatcher.assign("pothole", centre.y, centre.x, 0.9)
        assert assignment.unit_id == owners[district]
        assert assignment.explanation["features"]["districts"] == district
        assert assignment.explanation["confidence"] == 0.9


def test_outside_every_area_goes_to_the_fallback_with_the_reason(dispatcher):
    assignment = dispatcher.assign("pothole", 48.0, 2.0)
    assert assignment.unit_id == "ops-centre"
    assert assignment.rule == "fallback"
    assert "no unit that handles pothole covers this point" in assignment.explanation["why"]
    assert {c["outcome"] for c in assignment.explanation["candidates"]} == {"skipped"}


def test_explanation_names_every_candidate_and_why_it_lost(dispatcher, demo_dir):
    polygon = district_polygons(demo_dir)["D01"]
    centre = polygon.representative_point()
    assignment = dispatcher.assign("litter", centre.y, centre.x)
    outcomes = {c["unit"]: c["outcome"] for c in assignment.explanation["candidates"]}
    assert outcomes == {"cleansing-south": "chosen", "cleansing-central": "skipped", "cleansing-north": "skipped"}
    assert assignment.explanation["pack_version"].startswith("2026.11.1+")


def test_batch_assignment_equals_one_by_one(dispatcher):
    """The vectorised path and the single path agree on random points and categories."""
    rng = np.random.default_rng(7)
    lats = rng.uniform(51.97, 52.05, 300)
    lons = rng.uniform(5.04, 5.18, 300)
    codes = [c.code for c in dispatcher.pack.spec.categories]
    categories = [codes[i % len(codes)] for i in range(300)]
    batch = dispatcher.assign_batch(categories, lats, lons)
    single = [dispatcher.assign(c, la, lo) for c, la, lo in zip(categories, lats, lons, strict=True)]
    assert [a.unit_id for a in batch] == [a.unit_id for a in single]
    assert {a.rule for a in batch} == {"first-covering-unit", "fallback"}


def test_water_goes_by_drainage_basin_not_district(dispatcher, demo_dir):
    layer = json.loads((demo_dir / "layers" / "basins.geojson").read_text())
    for feature in layer["features"]:
        point: Point = shape(feature["geometry"]).representative_point()
        unit = dispatcher.assign("flooding", point.y, point.x).unit_id
        assert unit == f"water-{feature['properties']['basin_id']}"
