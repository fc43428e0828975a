"""The boundary band: near another unit's area, assign normally and co-notify the neighbour."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely

from dispatch import Dispatcher
from dispatch.geometry import LocalProjection, metres_per_degree
from tests.unit.dispatch.packs import BORDER_LON, make_pack, twin_roads, unit

LAT = 52.005


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance on the mean sphere: an independent check of the dispatcher's metres."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6_371_008.8 * math.asin(math.sqrt(a))


def lon_at(metres_west_of_border: float) -> float:
    kx, _ = metres_per_degree(LAT)
    return BORDER_LON - metres_west_of_border / kx


@pytest.fixture
def dispatcher(tmp_path):
    return Dispatcher(make_pack(tmp_path, units=twin_roads(), boundary_band_m=25))


@pytest.mark.parametrize(
    ("metres", "notified"),
    [(1.0, True), (10.0, True), (24.0, True), (26.0, False), (200.0, False)],
)
def test_points_within_the_band_co_notify_the_neighbour(dispatcher, metres, notified):
    """West of the border by ``metres``: roads-w is assigned; roads-e is told only within 25 m."""
    assignment = dispatcher.assign("pothole", LAT, lon_at(metres))
    assert assignment.unit_id == "roads-w"
    assert assignment.co_notify == (("roads-e",) if notified else ())
    if notified:
        (entry,) = assignment.explanation["co_notify"]
        assert entry["unit"] == "roads-e" and "boundary band" in entry["why"]
        assert entry["distance_m"] == pytest.approx(metres, abs=0.1)


def test_distances_agree_with_the_great_circle(dispatcher):
    """Band distance and distance to the edge match haversine to within 0.5% (sphere vs ellipsoid)."""
    for metres in (3.0, 12.5, 20.0):
        lon = lon_at(metres)
        expected = haversine_m(LAT, lon, LAT, BORDER_LON)
        assignment = dispatcher.assign("pothole", LAT, lon)
        assert assignment.explanation["co_notify"][0]["distance_m"] == pytest.approx(expected, rel=0.005, abs=0.1)
        assert assignment.explanation["boundary_m"] == pytest.approx(expected, rel=0.005, abs=0.1)


def test_the_band_only_counts_units_of_the_same_category(tmp_path):
    """A graffiti team across the border is not told about a pothole."""
    units = [*twin_roads(), unit("clean-e", ("districts", ["E"]), groups=["clean"])]
    dispatcher = Dispatcher(make_pack(tmp_path, units=units))
    pothole = dispatcher.assign("pothole", LAT, lon_at(5))
    graffiti = dispatcher.assign("graffiti", LAT, lon_at(5))
    assert pothole.co_notify == ("roads-e",)
    assert (graffiti.unit_id, graffiti.co_notify) == ("ops", ("clean-e",))  # outside clean-e, 5 m from it


def test_a_point_just_outside_the_city_goes_to_the_fallback_and_tells_the_nearby_unit(dispatcher):
    """10 m beyond the western city edge: nobody covers it, roads-w hears about it."""
    kx, _ = metres_per_degree(LAT)
    assignment = dispatcher.assign("pothole", LAT, 4.99 - 10 / kx)
    assert (assignment.unit_id, assignment.rule) == ("ops", "fallback")
    assert assignment.co_notify == ("roads-w",)


def test_batch_and_single_agree_on_co_notification(dispatcher):
    """The vectorised band query gives the same neighbours as one point at a time."""
    rng = np.random.default_rng(3)
    lats = rng.uniform(52.0, 52.01, 400)
    lons = BORDER_LON + rng.uniform(-0.0006, 0.0006, 400)  # within ~40 m of the border
    batch = dispatcher.assign_batch(["pothole"] * 400, lats, lons)
    single = [dispatcher.assign("pothole", la, lo) for la, lo in zip(lats, lons, strict=True)]
    assert [a.co_notify for a in batch] == [a.co_notify for a in single]
    assert 0 < sum(bool(a.co_notify) for a in batch) < 400


def test_local_projection_error_bound_is_small_for_a_city():
    """New York's extent: the plane's scale error stays under 0.35% (documented in dispatch.geometry)."""
    plane = LocalProjection.around(-74.26, 40.49, -73.70, 40.92)
    assert plane.max_scale_error < 0.0035
    x, _ = plane.xy(np.array([-73.70]), np.array([40.92]))
    lon, _ = plane.lonlat(float(x[0]), 0.0)
    assert lon == pytest.approx(-73.70)


def test_band_matches_a_brute_force_check_on_the_demo_city(demo_pack):
    """Near the jittered district and winding basin borders, co-notified units are exactly the units handling the
    category whose whole area (in metres) is within the band of the point without containing it."""
    dispatcher = Dispatcher(demo_pack)
    plane = demo_pack.projection
    band = demo_pack.spec.boundary_band_m
    areas = {}
    for u in demo_pack.spec.units:
        if u.area is not None:
            layer = demo_pack.layers[u.area.layer]
            chosen = [g for f, g in zip(layer.feature_ids, layer.geometries, strict=True)
                      if u.area.features == "*" or f in u.area.features]  # fmt: skip
            areas[u.id] = shapely.union_all(plane.geometries(np.array(chosen, dtype=object)))
    edges = shapely.union_all([shapely.boundary(a) for a in areas.values()])
    rng = np.random.default_rng(11)
    min_lon, min_lat, max_lon, max_lat = demo_pack.bounds
    lats = rng.uniform(min_lat - 0.001, max_lat + 0.001, 20_000)
    lons = rng.uniform(min_lon - 0.001, max_lon + 0.001, 20_000)
    near = shapely.distance(plane.points(lons, lats), edges) < 2 * band
    lats, lons = lats[near][:600], lons[near][:600]
    codes = [c.code for c in demo_pack.spec.categories]
    categories = [codes[i % len(codes)] for i in range(len(lats))]
    batch = dispatcher.assign_batch(categories, lats, lons)
    checked = 0
    for code, lat, lon, assignment in zip(categories, lats, lons, batch, strict=True):
        point = plane.points(np.array([lon]), np.array([lat]))[0]
        expected = {
            unit_id
            for unit_id, area in areas.items()
            if demo_pack.handles(demo_pack.unit(unit_id), code)
            and unit_id != assignment.unit_id
            and not area.covers(point)
            and area.distance(point) <= band
        }
        assert set(assignment.co_notify) == expected, (code, lat, lon)
        checked += bool(expected)
    assert len(lats) == 600 and checked > 100
