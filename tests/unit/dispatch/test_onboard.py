"""`cityloop city init` builds a sound pack from GeoJSON layers and a mapping, given or learned from history."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from dispatch import Dispatcher, DispatchError, InvalidCityPack
from dispatch.onboard import HistorySource, LayerSource, choose_id_property, init_city_pack, slug
from streams.cli import main
from tests.unit.dispatch.packs import TWIN_DISTRICTS, write_layer

WEST = (52.005, 4.995)
EAST = (52.005, 5.005)


@pytest.mark.parametrize(
    ("properties", "expected"),
    [
        ([{"BoroCD": 311, "Shape_Leng": 1.5}, {"BoroCD": 312, "Shape_Leng": 2.5}], "BoroCD"),
        # OBJECTID and areas are unique by accident; the code is unique by meaning
        (
            [
                {"OBJECTID": 1, "NTACode": "BK88", "Shape__Area": 5.0},
                {"OBJECTID": 2, "NTACode": "BK99", "Shape__Area": 6.0},
            ],
            "NTACode",
        ),  # noqa: E501
        # GEOCODE repeats (0 for parks), so the name is the only usable id
        ([{"GEOCODE": 0, "GEONAME": "Park A"}, {"GEOCODE": 0, "GEONAME": "Park B"}], "GEONAME"),
        ([{"name": "x", "ward_id": "7"}, {"name": "y", "ward_id": "8"}], "ward_id"),
        ([{"kind": "a", "label": ""}, {"kind": "b", "label": "B"}], "kind"),  # empty values disqualify
    ],
)
def test_the_id_property_is_unique_non_empty_and_looks_like_an_id(properties, expected):
    """The chosen property is the one a person would pick; the reason says why."""
    chosen, reason = choose_id_property(properties)
    assert chosen == expected
    assert "unique and non-empty" in reason


def test_no_usable_id_property_is_an_error():
    """When no property is unique on every feature, init asks for one instead of guessing."""
    with pytest.raises(DispatchError, match="no property is unique"):
        choose_id_property([{"a": 1}, {"a": 1}])


@pytest.mark.parametrize(
    ("text", "name", "path", "prop"),
    [
        ("wards=data/wards.geojson", "wards", "data/wards.geojson", None),
        ("Wards=data/wards.geojson:WARD_ID", "wards", "data/wards.geojson", "WARD_ID"),
        ("cd=/abs/path/cd.json:BoroCD", "cd", "/abs/path/cd.json", "BoroCD"),
    ],
)
def test_layer_option_parsing(text, name, path, prop):
    """--layer NAME=FILE[:ID_PROPERTY], with the id property optional and paths kept whole."""
    source = LayerSource.parse(text)
    assert (source.name, str(source.path), source.id_property) == (name, path, prop)


def test_slugs_are_valid_codes():
    """Names from the data become codes city.yaml accepts."""
    assert slug("Noise - Residential") == "noise-residential"
    assert slug("HEAT/HOT WATER") == "heat-hot-water"
    assert slug("!!!") == "x"


@pytest.fixture
def districts_file(tmp_path):
    path = tmp_path / "src" / "districts.geojson"
    write_layer(path, TWIN_DISTRICTS, id_property="district_code")
    return path


def test_init_from_a_mapping_csv(tmp_path, districts_file):
    """category,unit rows become categories and department units covering the city; lint is clean."""
    mapping = tmp_path / "mapping.csv"
    mapping.write_text("category,unit,unit_name\nPothole,Roads,Roads Department\nGraffiti,Cleansing,\n")
    onboarding = init_city_pack(
        tmp_path / "pack", [LayerSource("districts", districts_file)], name="Twin", mapping_csv=mapping
    )
    pack = onboarding.pack
    assert onboarding.layers[0].id_property == "district_code"
    assert [c.code for c in pack.spec.categories] == ["pothole", "graffiti", "other"]
    assert pack.unit("roads").name == "Roads Department"
    assert onboarding.lint.findings == [], onboarding.lint.text()
    assert Dispatcher(pack).assign("graffiti", *WEST).unit_id == "cleansing"
    assert Dispatcher(pack).assign("other", *EAST).unit_id == "ops-centre"


def write_history(tmp_path):
    """Two exports of one system with different header spellings, like NYC 311 across the years."""
    old = tmp_path / "old.csv"
    old.write_text(
        "Complaint Type,Descriptor,Agency,Community Board,Latitude,Longitude\n"
        + "Pothole,Deep,DOT,01 WEST,52.004,4.994\n" * 4
        + "Pothole,Deep,NYPD,01 WEST,52.004,4.994\n"
        + "Noise,Loud Music,NYPD,02 EAST,52.006,5.006\n" * 3
        + "Noise,Loud Music,NYPD,Unspecified,,\n"
        + ",,DOT,01 WEST,52.004,4.994\n"
    )
    new = tmp_path / "new.csv"
    new.write_text(
        "complaint_type,descriptor,agency,community_board,latitude,longitude\n"
        + "POTHOLE,Shallow,DOT,01 WEST,52.003,4.996\n"
        + "Street Light Condition,Out,DOT,02 EAST,52.006,5.004\n" * 3
        + "Noise,Loud Talking,NYPD,02 EAST,52.007,5.007\n"
    )
    return [old, new]


def test_init_learns_routes_and_districts_from_history(tmp_path, districts_file):
    """Majority agency per category (case-insensitive), '01 WEST' -> W from where requests lie, a team per district."""
    history = HistorySource(
        tuple(write_history(tmp_path)),
        category_col="complaint type",
        agency_col="AGENCY",
        descriptor_col="Descriptor",
        district_col="Community Board",
        district_layer="districts",
    )
    onboarding = init_city_pack(
        tmp_path / "pack",
        [LayerSource("districts", districts_file)],
        name="Twin",
        timezone="Europe/Amsterdam",
        history=history,
    )
    routes = {category: (unit, support, share) for category, unit, support, share in onboarding.routes}
    assert routes["Pothole"] == ("DOT", 6, pytest.approx(5 / 6))
    assert routes["Noise"] == ("NYPD", 5, 1.0)
    assert onboarding.mapping.majority_agency == "DOT"  # 8 of the 14 rows with both columns
    assert onboarding.mapping.rows_used == 14
    assert onboarding.mapping.rows_skipped == 1
    assert onboarding.districts.to_feature == {"01 WEST": "W", "02 EAST": "E"}
    assert onboarding.districts.unmatched == {"Unspecified": 1}
    pack = onboarding.pack
    assert pack.category("pothole").keywords == ["Deep", "Shallow"]
    assert {u.id for u in pack.teams_of("dot")} == {"dot-w", "dot-e"}
    assert onboarding.lint.ok, onboarding.lint.text()
    dispatcher = Dispatcher(pack)
    assert dispatcher.assign("pothole", *WEST).unit_id == "dot-w"
    assert dispatcher.assign("noise", *EAST).unit_id == "nypd-e"


def test_init_refuses_a_layer_in_another_crs_naming_the_source(tmp_path):
    """A projected layer is refused before anything is written."""
    path = tmp_path / "rd.geojson"
    document = {
        "type": "FeatureCollection",
        "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::28992"}},
        "features": [{"type": "Feature", "properties": {"id": "a"}, "geometry": None}],
    }
    path.write_text(json.dumps(document))
    mapping = tmp_path / "m.csv"
    mapping.write_text("category,unit\nPothole,Roads\n")
    with pytest.raises(InvalidCityPack) as caught:
        init_city_pack(tmp_path / "pack", [LayerSource("rd", path)], name="X", mapping_csv=mapping)
    assert caught.value.file == str(path) and caught.value.key == "crs"
    assert not (tmp_path / "pack").exists()


def test_init_refuses_topojson_with_advice(tmp_path):
    """TopoJSON is refused with advice to convert it, rather than misread."""
    path = tmp_path / "fire.topo.json"
    path.write_text(json.dumps({"type": "Topology", "objects": {}, "arcs": []}))
    with pytest.raises(InvalidCityPack, match="TopoJSON"):
        init_city_pack(tmp_path / "p", [LayerSource("fire", path)], name="X", mapping_csv=path)


def test_cli_init_reports_choices_mapping_and_lint(tmp_path, districts_file):
    """The command prints the id property it chose, what it learned, and the lint result."""
    files = write_history(tmp_path)
    out = tmp_path / "pack"
    args = ["city", "init", str(out), "--layer", f"districts={districts_file}", "--name", "Twin"]
    args += ["--from-311", str(files[0]), "--from-311", str(files[1])]
    args += ["--category-col", "Complaint Type", "--agency-col", "Agency"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "id district_code (unique and non-empty on all 2 features; looks like an id)" in result.output
    assert "learned 3 categories from 14 requests (1 without category or agency)" in result.output
    assert "most frequent agency: DOT" in result.output
    assert "0 error(s)" in result.output
    route = CliRunner().invoke(main, ["route", str(out), "--lat", "52.005", "--lon", "4.995", "--category", "pothole"])
    assert route.exit_code == 0 and "-> dot" in route.output


def test_cli_init_needs_a_mapping_source(tmp_path, districts_file):
    """Without --mapping or --from-311 the command stops with a usage error."""
    result = CliRunner().invoke(main, ["city", "init", str(tmp_path / "p"), "--layer", f"d={districts_file}"])
    assert result.exit_code != 0 and "either a mapping CSV or historical requests" in result.output
