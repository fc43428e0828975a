"""New York City from open data: a pack built with `city init`, 311 history replayed through the dispatcher.

The pack is built here from ../shared/data/nyc/boundaries (never copied into the
repo): simplified boroughs, full-resolution community districts and police
precincts; category -> agency is learned from the extracts before 2026, with one
field team per agency and community district. Every extract row with coordinates
is then dispatched, and the borough, community district and precinct the
dispatcher found are compared with the values 311 recorded, next to an
independent naive lookup (a loop over the polygons with shapely ``contains``).
Agency is evaluated on the 2026 extracts only (a time split), against always
answering the most frequent agency of the training years.

Run with ``-s`` to see the figures.
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import shapely
from shapely.geometry import shape

from dispatch import Dispatcher
from dispatch.onboard import HistorySource, LayerSource, init_city_pack
from tests.shareddata import needs

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "nyc"
BOUNDARIES = DATA / "boundaries"
REQUESTS = DATA / "311"
LAYERS = {  # layer: (file, id property)
    "boroughs": ("nycehs_simplified_borough.geo.json", "BoroCode"),
    "districts": ("dcp2013_community_districts.geojson", "BoroCD"),
    "precincts": ("dcp2013_police_precincts.geojson", "Precinct"),
}
BOROUGH_CODES = {"MANHATTAN": "1", "BRONX": "2", "BROOKLYN": "3", "QUEENS": "4", "STATEN ISLAND": "5"}

pytestmark = needs(BOUNDARIES, REQUESTS)


def header(name: str) -> str:
    """'Community Board' and 'community_board' are the same column in different vintages."""
    return re.sub(r"[^a-z0-9]+", "_", name.strip().lower()).strip("_")


def recorded_borough(row: dict[str, str]) -> str | None:
    return BOROUGH_CODES.get(row.get("borough", "").strip().upper())


def recorded_district(row: dict[str, str]) -> str | None:
    """'04 BRONX' -> '204' (borough code * 100 + board number); 'Unspecified' and '0 ...' -> None."""
    match = re.fullmatch(
        r"(\d{1,2}) (MANHATTAN|BRONX|BROOKLYN|QUEENS|STATEN ISLAND)", row.get("community_board", "").strip()
    )
    if not match or int(match.group(1)) == 0:
        return None
    return str(int(BOROUGH_CODES[match.group(2)]) * 100 + int(match.group(1)))


def recorded_precinct(row: dict[str, str]) -> str | None:
    """'Precinct 61' -> '61' (only the 2019 extract records precincts)."""
    match = re.fullmatch(r"Precinct (\d+)", row.get("police_precinct", "").strip())
    return match.group(1) if match else None


def read_requests() -> list[dict[str, str]]:
    """Every row of every extract that has usable coordinates, with its file name."""
    rows = []
    for path in sorted(REQUESTS.glob("*.csv")):
        with path.open(newline="", encoding="utf-8") as handle:
            for raw in csv.DictReader(handle):
                row = {header(k): (v or "") for k, v in raw.items() if k}
                try:
                    lat, lon = float(row["latitude"]), float(row["longitude"])
                except (KeyError, ValueError):
                    continue
                if 40.0 < lat < 41.5 and -75.0 < lon < -73.0:
                    row.update(file=path.name, lat=str(lat), lon=str(lon))
                    rows.append(row)
    return rows


def naive_lookup(file: str, id_property: str, lats: np.ndarray, lons: np.ndarray) -> list[str | None]:
    """For each polygon in file order, mark the points it contains that no earlier polygon took."""
    collection = json.loads((BOUNDARIES / file).read_text())
    points = shapely.points(lons, lats)
    found = np.full(len(points), None, dtype=object)
    for feature in collection["features"]:
        polygon = shape(feature["geometry"])
        inside = shapely.contains(polygon, points) & (found == None)  # noqa: E711 - elementwise on an object array
        found[inside] = str(feature["properties"][id_property])
    return found.tolist()


def agreement(found: list[str | None], recorded: list[str | None]) -> tuple[float, int]:
    pairs = [(f, r) for f, r in zip(found, recorded, strict=True) if r is not None]
    return sum(f == r for f, r in pairs) / len(pairs), len(pairs)


@pytest.fixture(scope="module")
def nyc(tmp_path_factory):
    training = sorted(p for p in REQUESTS.glob("*.csv") if "2026" not in p.name)
    layers = [LayerSource(name, BOUNDARIES / file, prop) for name, (file, prop) in LAYERS.items()]
    history = HistorySource(
        tuple(training),
        category_col="Complaint Type",
        agency_col="Agency",
        descriptor_col="Descriptor",
        district_col="Community Board",
        district_layer="districts",
    )
    started = time.perf_counter()
    onboarding = init_city_pack(
        tmp_path_factory.mktemp("nyc") / "pack",
        layers,
        name="New York City",
        timezone="America/New_York",
        boundary="districts",
        history=history,
    )
    return onboarding, training, time.perf_counter() - started


def test_nyc_replay_agrees_with_recorded_districts_and_agencies(nyc):
    """Dispatcher >= naive point-in-polygon on borough / district / precinct; agency beats the majority baseline."""
    onboarding, training, build_s = nyc
    pack = onboarding.pack
    assert onboarding.lint.ok, onboarding.lint.text()
    rows = read_requests()
    lats = np.array([float(r["lat"]) for r in rows])
    lons = np.array([float(r["lon"]) for r in rows])
    by_name = {" ".join(c.name.split()).casefold(): c.code for c in pack.spec.categories}
    categories = [by_name.get(" ".join(r.get("complaint_type", "").split()).casefold(), "other") for r in rows]

    dispatcher = Dispatcher(pack)
    started = time.perf_counter()
    assignments = dispatcher.assign_batch(categories, lats, lons)
    explanations = [a.explanation for a in assignments]
    dispatch_s = time.perf_counter() - started
    started = time.perf_counter()
    again = [a.explanation for a in dispatcher.assign_batch(categories, lats, lons)]
    warm_s = time.perf_counter() - started
    assert [e["features"] for e in again] == [e["features"] for e in explanations]
    started = time.perf_counter()
    naive = {layer: naive_lookup(file, prop, lats, lons) for layer, (file, prop) in LAYERS.items()}
    naive_s = time.perf_counter() - started

    recorded = {
        "boroughs": [recorded_borough(r) for r in rows],
        "districts": [recorded_district(r) for r in rows],
        "precincts": [recorded_precinct(r) for r in rows],
    }
    print(f"\nNYC pack: {len(pack.spec.categories)} categories, {len(pack.spec.units)} units, built in {build_s:.1f} s")
    print(
        f"replayed {len(rows)} requests with coordinates: dispatcher with explanations {dispatch_s:.2f} s "
        f"(first batch, indexes built on the way; again: {warm_s:.2f} s), naive lookup {naive_s:.2f} s"
    )
    print(f"{'level':<10} {'rows':>6} {'dispatcher':>11} {'naive':>8}")
    for layer, values in recorded.items():
        found = [e["features"][layer] for e in explanations]
        ours, count = agreement(found, values)
        theirs, _ = agreement(naive[layer], values)
        print(f"{layer:<10} {count:>6} {ours:>11.2%} {theirs:>8.2%}")
        assert ours >= theirs, layer
        assert ours >= 0.97, layer  # SOURCE.txt: the polygons agree with 311's own districts 97-99.9% of the time
        assert count > 900

    training_agencies = Counter()
    for path in training:
        with path.open(newline="", encoding="utf-8") as handle:
            for raw in csv.DictReader(handle):
                agency = {header(k): v for k, v in raw.items() if k}.get("agency", "").strip()
                if agency:
                    training_agencies[agency] += 1
    majority = training_agencies.most_common(1)[0][0]
    test_rows = [i for i, r in enumerate(rows) if "2026" in r["file"]]

    def agency_of(unit_id: str) -> str:
        unit = pack.unit(unit_id)
        department = pack.unit(unit.department) if unit.department else unit
        return department.name  # `city init` names each department after the agency in the data

    truth = [rows[i]["agency"].strip() for i in test_rows]
    predicted = [agency_of(assignments[i].unit_id) for i in test_rows]
    accuracy = sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(test_rows)
    baseline = sum(t == majority for t in truth) / len(test_rows)
    known = sum(categories[i] != "other" for i in test_rows) / len(test_rows)
    print(
        f"agency on {len(test_rows)} requests of 2026 (learned from {sum(training_agencies.values())} of 2011-2024): "
        f"dispatcher {accuracy:.2%}, majority baseline ({majority}) {baseline:.2%}; "
        f"categories known to the pack {known:.1%}"
    )
    assert accuracy > baseline + 0.10
    near = sum(bool(a.co_notify) for a in assignments)
    print(f"co-notified a neighbouring district team (within {pack.spec.boundary_band_m:g} m): {near} requests")
    assert 0 < near < len(rows) * 0.2
