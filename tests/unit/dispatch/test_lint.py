"""`cityloop city lint` finds each routing defect in a pack built to contain it, and nothing in clean packs."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from shapely.geometry import box

from dispatch.lint import lint_city_pack
from streams.cli import main
from tests.unit.dispatch.packs import TWIN_DISTRICTS, category, make_pack, twin_roads, unit, write_pack


def lint(tmp_path, **kwargs):
    return lint_city_pack(make_pack(tmp_path, **kwargs))


def clean_units():
    return [*twin_roads(), unit("clean", ("districts", "*"), groups=["clean"])]


def test_the_demo_city_lints_clean(demo_pack):
    """The generated demo city has no errors and no warnings."""
    report = lint_city_pack(demo_pack)
    assert report.findings == [], report.text()


def test_a_clean_twin_town(tmp_path):
    """Two roads crews splitting the city and one cleansing team everywhere: no findings at all."""
    report = lint(tmp_path, units=clean_units())
    assert report.ok and report.findings == []


def test_overlap_without_precedence(tmp_path):
    """Two roads units both cover W; the finding names them, the category and a point in the overlap."""
    units = [*clean_units(), unit("roads-all", ("districts", ["W", "E"]), groups=["roads"])]
    report = lint(tmp_path, units=units)
    (finding,) = [f for f in report.errors if f.code == "overlap"][:1]
    overlaps = {tuple(f.details["units"]) for f in report.errors if f.code == "overlap"}
    assert overlaps == {("roads-all", "roads-w"), ("roads-all", "roads-e")}
    assert finding.details["categories"] == ["pothole"]
    assert finding.details["area_m2"] > 700_000
    assert 52.0 < finding.details["lat"] < 52.01


def test_an_unconditional_rule_settles_an_overlap(tmp_path):
    """The same overlap with a rule that says who takes roads work there is clean."""
    units = [*clean_units(), unit("roads-all", ("districts", ["W", "E"]), groups=["roads"])]
    rules = [{"id": "roads-to-all", "match": {"groups": ["roads"]}, "assign": "roads-all"}]
    report = lint(tmp_path, units=units, rules=rules)
    assert "overlap" not in report.codes(), report.text()


def test_a_time_limited_rule_does_not_settle_an_overlap(tmp_path):
    """At other hours the overlap is still unsettled."""
    units = [*clean_units(), unit("roads-all", ("districts", ["W", "E"]), groups=["roads"])]
    rules = [
        {
            "id": "nights",
            "match": {"groups": ["roads"], "hours": {"start": "22:00", "end": "06:00"}},
            "assign": "roads-all",
        }
    ]
    assert "overlap" in lint(tmp_path, units=units, rules=rules).codes()


def test_rules_of_equal_priority_that_can_clash(tmp_path):
    """Same priority, same incidents, different units: only the file order would decide."""
    rules = [
        {"id": "a", "priority": 3, "match": {"categories": ["pothole"]}, "assign": "roads-w"},
        {"id": "b", "priority": 3, "match": {"groups": ["roads"], "sources": ["app"]}, "assign": "roads-e"},
    ]
    report = lint(tmp_path, units=clean_units(), rules=rules)
    clash = [f for f in report.errors if f.code == "overlap"]
    assert [f.details["rules"] for f in clash] == [["a", "b"]]


def test_gap(tmp_path):
    """Nobody takes graffiti in E: a gap, located in E, with its size."""
    units = [*twin_roads(), unit("clean-w", ("districts", ["W"]), groups=["clean"])]
    report = lint(tmp_path, units=units)
    (gap,) = [f for f in report.errors if f.code == "gap"]
    assert gap.details["categories"] == ["graffiti"]
    assert gap.details["lon"] > 5.0 and gap.details["area_m2"] == pytest.approx(762_000, rel=0.02)


def test_gap_against_a_declared_boundary_layer(tmp_path):
    """The city is the boundary layer: a city outline larger than the districts leaves a gap for every category."""
    layers = {"districts": TWIN_DISTRICTS, "city": [("all", box(4.98, 52.0, 5.01, 52.01))]}
    report = lint(tmp_path, units=clean_units(), layers=layers, boundary="city")
    gaps = [f for f in report.errors if f.code == "gap"]
    assert len(gaps) == 1 and sorted(gaps[0].details["categories"]) == ["graffiti", "pothole"]
    assert gaps[0].details["lon"] < 4.99


def test_slivers_below_the_minimum_area_are_not_gaps(tmp_path):
    """A 1 m wide strip of city outside the districts is digitising noise, not a gap."""
    layers = {"districts": TWIN_DISTRICTS, "city": [("all", box(4.99 - 0.000015, 52.0, 5.01, 52.01))]}
    report = lint(tmp_path, units=clean_units(), layers=layers, boundary="city")
    assert "gap" not in report.codes(), report.text()


def test_shadowed_rule(tmp_path):
    """A rule for potholes in W after a rule for all roads work everywhere can never decide."""
    rules = [
        {"id": "all-roads", "priority": 5, "match": {"groups": ["roads"]}, "assign": "roads-e"},
        {
            "id": "potholes-west",
            "priority": 1,
            "match": {"categories": ["pothole"], "area": {"layer": "districts", "features": ["W"]}},
            "assign": "roads-w",
        },
    ]
    report = lint(tmp_path, units=clean_units(), rules=rules)
    (finding,) = [f for f in report.findings if f.code == "shadowed-rule"]
    assert finding.severity == "error" and finding.where == "rules.1"
    assert finding.details["shadowed_by"] == ["all-roads"]


def test_a_rule_shadowed_by_two_earlier_rules_together(tmp_path):
    """W and E rules together cover the whole city, so a later city-wide rule is shadowed."""
    rules = [
        {"id": "w", "priority": 3, "match": {"area": {"layer": "districts", "features": ["W"]}}, "assign": "roads-w"},
        {"id": "e", "priority": 2, "match": {"area": {"layer": "districts", "features": ["E"]}}, "assign": "roads-e"},
        {"id": "all", "priority": 1, "match": {}, "assign": "clean"},
    ]
    report = lint(tmp_path, units=clean_units(), rules=rules)
    shadowed = [f for f in report.errors if f.code == "shadowed-rule"]
    assert [f.details["rule"] for f in shadowed] == ["all"]
    assert shadowed[0].details["shadowed_by"] == ["e", "w"]


@pytest.mark.parametrize(
    "later",
    [
        {"id": "later", "priority": 1, "match": {"categories": ["pothole"]}, "assign": "roads-w"},  # sources: any
        {"id": "later", "priority": 1, "match": {"hours": {"start": "06:00", "end": "23:00"}}, "assign": "roads-w"},
        {"id": "later", "priority": 1, "match": {"sources": ["phone"]}, "assign": "roads-w"},
    ],
)
def test_a_narrower_earlier_rule_does_not_shadow(tmp_path, later):
    """An earlier rule limited to app reports at night leaves other sources and hours to the later rule."""
    earlier = {
        "id": "app-nights",
        "priority": 5,
        "match": {"sources": ["app"], "hours": {"start": "22:00", "end": "06:00"}},
        "assign": "roads-e",
    }
    report = lint(tmp_path, units=clean_units(), rules=[earlier, later])
    assert "shadowed-rule" not in report.codes(), report.text()


def test_partly_shadowed_rule_is_a_warning(tmp_path):
    """A rule shadowed for some of its categories only is a warning naming those categories."""
    rules = [
        {"id": "potholes", "priority": 5, "match": {"categories": ["pothole"]}, "assign": "roads-e"},
        {"id": "everything", "priority": 1, "match": {}, "assign": "clean"},
    ]
    report = lint(tmp_path, units=clean_units(), rules=rules)
    (finding,) = [f for f in report.findings if f.code == "shadowed-rule"]
    assert finding.severity == "warning" and finding.details["categories"] == ["pothole"]


def test_unit_without_area(tmp_path):
    """A field team with categories and no area can never be chosen; a rule target or a department is fine."""
    units = [
        *clean_units(),
        unit("lost-crew", kind="field_team", groups=["roads"]),
        unit("rule-crew", kind="field_team", groups=["roads"]),
        unit("works", kind="department"),
    ]
    rules = [{"id": "nights", "match": {"hours": {"start": "22:00", "end": "06:00"}}, "assign": "rule-crew"}]
    report = lint(tmp_path, units=units, rules=rules)
    without = [f.details["unit"] for f in report.errors if f.code == "unit-without-area"]
    assert without == ["lost-crew"]


def test_a_category_without_sla_is_a_note_not_an_error(tmp_path):
    """A report-only category (no SLA) is allowed: lint notes it at its place in city.yaml and stays ok."""
    categories = [category("pothole"), category("graffiti", "clean", sla=None)]
    report = lint(tmp_path, units=clean_units(), categories=categories)
    assert report.ok and report.errors == [] and report.warnings == []
    (finding,) = report.notes
    assert (finding.severity, finding.code, finding.where, finding.details["category"]) == (
        "note",
        "category-without-sla",
        "categories.1",
        "graffiti",
    )
    assert "report-only" in finding.message


def test_backup_that_handles_nothing_of_its_unit_is_a_warning(tmp_path):
    """A backup that could not do the unit's work is flagged, without failing the lint."""
    units = [
        unit("roads-w", ("districts", ["W"]), groups=["roads"], backup="clean"),
        unit("roads-e", ("districts", ["E"]), groups=["roads"]),
        unit("clean", ("districts", "*"), groups=["clean"]),
    ]
    report = lint(tmp_path, units=units)
    assert report.ok and [f.code for f in report.warnings] == ["backup-mismatch"]


def test_cli_lint_exit_codes_and_json(tmp_path, demo_dir):
    """Errors exit 1 with human-readable lines; --json gives the same findings as data; notes alone and a clean
    pack exit 0."""
    overlapping = [*twin_roads(), unit("roads-all", ("districts", ["W", "E"]), groups=["roads"])]
    broken = write_pack(tmp_path / "broken", units=overlapping, categories=[category("pothole")])
    runner = CliRunner()
    text = runner.invoke(main, ["city", "lint", str(broken)])
    assert text.exit_code == 1
    assert "error overlap at units:" in text.output
    as_json = runner.invoke(main, ["city", "lint", str(broken), "--json"])
    document = json.loads(as_json.output)
    assert as_json.exit_code == 1 and document["ok"] is False and document["errors"] == 2
    assert document["findings"][0]["code"] == "overlap"
    report_only = write_pack(tmp_path / "report-only", units=twin_roads(), categories=[category("pothole", sla=None)])
    noted = runner.invoke(main, ["city", "lint", str(report_only)])
    assert noted.exit_code == 0, noted.output
    assert "0 error(s), 0 warning(s), 1 note(s)" in noted.output
    assert "note category-without-sla at categories.0" in noted.output
    as_json = runner.invoke(main, ["city", "lint", str(report_only), "--json"])
    document = json.loads(as_json.output)
    assert as_json.exit_code == 0 and document["ok"] is True and (document["errors"], document["notes"]) == (0, 1)
    clean = runner.invoke(main, ["city", "lint", str(demo_dir)])
    assert clean.exit_code == 0 and "0 error(s), 0 warning(s)" in clean.output


def test_overlapping_features_of_one_layer_are_a_warning(tmp_path):
    """Two features of one layer that overlap: a point in both is located in the first only, so lint says so."""
    layers = {"districts": [*TWIN_DISTRICTS, ("X", box(4.995, 52.0, 5.005, 52.01))]}
    units = [*clean_units(), unit("x-team", ("districts", ["X"]), groups=["clean"])]
    report = lint(tmp_path, units=units, layers=layers)
    warning = next(f for f in report.warnings if f.code == "overlapping-features")
    assert warning.details["pairs"] == [["W", "X"], ["E", "X"]]
