"""`cityloop route PACK`: the decision and its explanation, from the command line."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from streams.cli import main
from tests.unit.dispatch.packs import unit, write_pack

WEST = ["--lat", "52.005", "--lon", "4.995"]


@pytest.fixture
def pack_dir(tmp_path):
    units = [
        unit("roads-w", ("districts", ["W"]), groups=["roads"], capacity=1, backup="roads-e"),
        unit("roads-e", ("districts", ["E"]), groups=["roads"], capacity=1),
        unit("works", kind="department"),
        unit("crew-a", kind="field_team", department="works"),
    ]
    rules = [
        {
            "id": "nights",
            "match": {"categories": ["graffiti"], "hours": {"start": "22:00", "end": "06:00"}},
            "nearest_team_of": "works",
        },  # fmt: skip
    ]
    return write_pack(tmp_path / "pack", units=units, rules=rules)


def route(*args: str):
    return CliRunner().invoke(main, ["route", *args])


def test_route_takes_the_pack_as_a_positional_argument_and_prints_json(pack_dir):
    """--json gives the unit, the rule, the co-notified units and the whole explanation."""
    result = route(str(pack_dir), *WEST, "--category", "pothole", "--confidence", "0.8", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert (document["unit"], document["rule"], document["co_notify"]) == ("roads-w", "service-area", [])
    assert document["explanation"]["confidence"] == 0.8
    assert document["explanation"]["features"] == {"districts": "W"}


def test_route_shows_time_of_day_rules_capacity_and_positions(pack_dir):
    """--at, --load and --position reach the dispatcher: the night rule picks the placed crew; a full crew overflows."""
    night = route(
        str(pack_dir), *WEST, "--category", "graffiti", "--at", "2026-11-26T23:30:00+01:00",
        "--position", "crew-a=52.005,4.996",
    )  # fmt: skip
    assert night.exit_code == 0, night.output
    assert "-> crew-a  [rule nights" in night.output
    assert "rule nights (priority 0): decided" in night.output
    full = route(str(pack_dir), *WEST, "--category", "pothole", "--load", "roads-w=1")
    assert "-> roads-e" in full.output and "overflowed to backup roads-e" in full.output


def test_route_keeps_the_older_city_flag_and_refuses_unknown_categories(pack_dir):
    """`--city DIR` still works; an unknown category lists the ones the pack has."""
    assert "-> roads-w" in route("--city", str(pack_dir), *WEST, "--category", "pothole").output
    unknown = route(str(pack_dir), *WEST, "--category", "potholes")
    assert unknown.exit_code != 0 and "pothole, graffiti" in unknown.output


def test_route_needs_an_offset_on_at(pack_dir):
    """A local time without an offset is ambiguous; the command says so."""
    result = route(str(pack_dir), *WEST, "--category", "pothole", "--at", "2026-11-26T23:30:00")
    assert result.exit_code != 0 and "UTC offset" in result.output


def test_route_without_a_confidence_does_not_print_one(pack_dir):
    """No --confidence, no "confidence: None" line; with one, it is shown."""
    without = route(str(pack_dir), *WEST, "--category", "pothole")
    assert without.exit_code == 0 and "confidence" not in without.output
    assert "confidence: 0.8" in route(str(pack_dir), *WEST, "--category", "pothole", "--confidence", "0.8").output


# What each command talks to; its --help must not offer the flags of what it does not (issue 11: `report --help`
# listed --redis, --city and --partitions, which it ignored).
USES = {
    ("worker",): {"--kafka", "--redis", "--city", "--topic-prefix", "--partitions", "--wait"},
    ("api",): {"--kafka", "--redis", "--city", "--topic-prefix", "--partitions", "--wait"},
    ("report",): {"--kafka", "--topic-prefix", "--wait"},
    ("tail",): {"--kafka", "--topic-prefix", "--wait"},
    ("simulate",): {"--kafka", "--city", "--topic-prefix", "--wait"},
    ("topics", "create"): {"--kafka", "--topic-prefix", "--partitions", "--wait"},
    ("units", "token"): {"--redis", "--city", "--topic-prefix", "--wait"},
    ("triage", "list"): {"--redis", "--topic-prefix", "--wait"},
    ("triage", "decide"): {"--kafka", "--city", "--topic-prefix", "--wait"},
    ("route",): set(),
}
DEPLOYMENT_FLAGS = {"--kafka", "--redis", "--city", "--topic-prefix", "--partitions", "--wait"}


@pytest.mark.parametrize("command", list(USES), ids=" ".join)
def test_help_lists_the_deployment_flags_a_command_uses_and_no_others(command):
    text = CliRunner().invoke(main, [*command, "--help"]).output
    offered = {flag for flag in DEPLOYMENT_FLAGS if f"  {flag} " in text}
    assert offered == USES[command]


def test_the_top_help_starts_with_the_demo():
    top = CliRunner().invoke(main, ["--help"]).output
    assert top.index("cityloop demo") < top.index("cityloop dev up") and "--debug" in top
