"""Rules decide by explicit priority, on category, area, source and local time of day."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from shapely.geometry import box

from dispatch import Dispatcher, DispatchError
from dispatch.citypack import TimeWindow
from dispatch.rules import in_window
from tests.unit.dispatch.packs import TWIN_DISTRICTS, make_pack, twin_roads, unit

AMS = ZoneInfo("Europe/Amsterdam")
WEST = (52.005, 4.995)  # (lat, lon) in district W
EAST = (52.005, 5.005)


def rules_pack(tmp_path, rules, units=None, **top):
    units = units if units is not None else [*twin_roads(), unit("night-crew", kind="field_team")]
    return make_pack(tmp_path, units=units, rules=rules, **top)


@pytest.mark.parametrize(
    ("start", "end", "days", "local", "expected"),
    [
        ("08:00", "18:00", [], datetime(2026, 11, 25, 8, 0), True),  # start is inside
        ("08:00", "18:00", [], datetime(2026, 11, 25, 18, 0), False),  # end is outside
        ("22:00", "06:00", [], datetime(2026, 11, 25, 23, 30), True),  # wraps: evening part
        ("22:00", "06:00", [], datetime(2026, 11, 26, 5, 59), True),  # wraps: small hours
        ("22:00", "06:00", [], datetime(2026, 11, 26, 6, 0), False),
        ("22:00", "06:00", [], datetime(2026, 11, 25, 22, 0), True),  # wraps: its start is inside too
        ("22:00", "06:00", ["sun"], datetime(2026, 11, 30, 2, 0), True),  # Monday 02:00 belongs to Sunday night
        ("22:00", "06:00", ["mon"], datetime(2026, 11, 30, 2, 0), False),
        ("22:00", "06:00", ["fri"], datetime(2026, 11, 28, 2, 0), True),  # Saturday 02:00 belongs to Friday night
        ("22:00", "06:00", ["fri"], datetime(2026, 11, 27, 2, 0), False),  # Friday 02:00 belongs to Thursday
        ("09:00", "17:00", ["sat", "sun"], datetime(2026, 11, 28, 12, 0), True),
        ("09:00", "17:00", ["sat", "sun"], datetime(2026, 11, 27, 12, 0), False),
    ],
)
def test_time_windows_table(start, end, days, local, expected):
    """Start inclusive, end exclusive; a window past midnight belongs to the day it starts."""
    window = TimeWindow(start=time.fromisoformat(start), end=time.fromisoformat(end), days=days)
    assert in_window(window, local.replace(tzinfo=AMS)) is expected


def test_higher_priority_wins_over_declared_order(tmp_path):
    """Of two matching rules, the one with the higher priority decides, wherever it is declared."""
    pack = rules_pack(
        tmp_path,
        [
            {"id": "low", "priority": 1, "match": {"categories": ["pothole"]}, "assign": "roads-e"},
            {"id": "high", "priority": 5, "match": {"categories": ["pothole"]}, "assign": "night-crew"},
        ],
    )
    assignment = Dispatcher(pack).assign("pothole", *WEST)
    assert (assignment.unit_id, assignment.rule) == ("night-crew", "high")
    trace = assignment.explanation["rules"]
    assert [(step["rule"], step["outcome"]) for step in trace] == [("high", "decided")]


def test_rule_on_an_area_overrides_the_district_owner_only_there(tmp_path):
    """A red-route style rule: a road strip owned by another body, inside a district."""
    strip = box(4.994, 52.0, 4.996, 52.01)
    red_route = {
        "id": "red-route",
        "priority": 10,
        "match": {"groups": ["roads"], "area": {"layer": "routes"}},
        "assign": "night-crew",
    }
    pack = rules_pack(tmp_path, [red_route], layers={"districts": TWIN_DISTRICTS, "routes": [("R1", strip)]})
    dispatcher = Dispatcher(pack)
    on_route = dispatcher.assign("pothole", 52.005, 4.995)
    off_route = dispatcher.assign("pothole", 52.005, 4.992)
    assert (on_route.unit_id, on_route.rule) == ("night-crew", "red-route")
    assert (off_route.unit_id, off_route.rule) == ("roads-w", "service-area")
    lost = {c["unit"]: c for c in on_route.explanation["candidates"]}["roads-w"]
    assert lost["outcome"] == "lost" and "red-route" in lost["why"]
    # the distance reported is to the edge of the rule's strip (~68 m wide: the point is in its middle)
    assert on_route.explanation["boundary_m"] == pytest.approx(68.6, abs=1.0)
    skipped = off_route.explanation["rules"][0]
    assert skipped["outcome"] == "no match" and "outside its area" in skipped["why"]


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 11, 25, 21, 30, tzinfo=UTC), "night-crew"),  # 22:30 in Amsterdam
        (datetime(2026, 11, 25, 12, 0, tzinfo=UTC), "roads-w"),  # 13:00
        (datetime(2026, 7, 1, 20, 30, tzinfo=UTC), "night-crew"),  # 22:30 summer time (UTC+2)
        (datetime(2026, 7, 1, 19, 30, tzinfo=UTC), "roads-w"),  # 21:30 summer time
        (None, "roads-w"),  # no time given: a time-of-day rule cannot match
    ],
)
def test_time_of_day_rule_uses_local_time_passed_in(tmp_path, now, expected):
    """The window is read in the city's zone (DST included) at the ``now`` the caller passes."""
    pack = rules_pack(
        tmp_path,
        [{"id": "nights", "match": {"hours": {"start": "22:00", "end": "06:00"}}, "assign": "night-crew"}],
    )
    assert Dispatcher(pack).assign("pothole", *WEST, now=now).unit_id == expected


def test_naive_now_is_refused(tmp_path):
    """Local time needs a zone; a naive datetime would silently be read as the machine's."""
    pack = rules_pack(tmp_path, [{"id": "r", "match": {"hours": {"start": "22:00", "end": "06:00"}}, "assign": "ops"}])
    with pytest.raises(DispatchError, match="timezone-aware"):
        Dispatcher(pack).assign("pothole", *WEST, now=datetime(2026, 1, 1, 12, 0))


def test_source_rule_matches_case_insensitively_and_only_that_source(tmp_path):
    """A rule on source 'sensor' catches sensor incidents; app reports go by area."""
    pack = rules_pack(tmp_path, [{"id": "sensors", "match": {"sources": ["Sensor"]}, "assign": "night-crew"}])
    dispatcher = Dispatcher(pack)
    batch = dispatcher.assign_batch(
        ["pothole", "pothole", "pothole"], [WEST[0]] * 3, [WEST[1]] * 3, sources=["sensor", "app", None]
    )
    assert [a.unit_id for a in batch] == ["night-crew", "roads-w", "roads-w"]
    assert "source not one of ['sensor']" in batch[1].explanation["rules"][0]["why"]


def test_co_notify_rules_add_units_without_deciding(tmp_path):
    """A rule with only co_notify tells a unit and lets the next rule or the areas decide."""
    pack = rules_pack(
        tmp_path,
        [
            {"id": "tell-night", "priority": 9, "match": {"categories": ["pothole"]}, "co_notify": ["night-crew"]},
            {
                "id": "east-to-west",
                "priority": 1,
                "match": {"area": {"layer": "districts", "features": ["E"]}},
                "assign": "roads-w",
                "co_notify": ["roads-e"],
            },  # fmt: skip
        ],
    )
    dispatcher = Dispatcher(pack)
    west = dispatcher.assign("pothole", *WEST)
    east = dispatcher.assign("pothole", *EAST)
    assert (west.unit_id, west.co_notify) == ("roads-w", ("night-crew",))
    assert east.unit_id == "roads-w" and set(east.co_notify) == {"roads-e", "night-crew"}
    whys = {entry["unit"]: entry["why"] for entry in east.explanation["co_notify"]}
    assert "east-to-west" in whys["roads-e"] and "tell-night" in whys["night-crew"]


def test_with_rules_an_unsettled_overlap_goes_to_the_fallback(tmp_path):
    """With explicit precedence, two units covering a point is not resolved by declaration order."""
    units = [
        unit("roads-all", ("districts", "*"), groups=["roads"]),
        unit("roads-w", ("districts", ["W"]), groups=["roads"]),
        unit("night-crew", kind="field_team"),
    ]
    pack = rules_pack(tmp_path, [{"id": "r", "match": {"categories": ["graffiti"]}, "assign": "night-crew"}], units)
    assignment = Dispatcher(pack).assign("pothole", *WEST)
    assert (assignment.unit_id, assignment.rule) == ("ops", "fallback")
    assert "roads-all, roads-w all cover this point" in assignment.explanation["why"]
    outcomes = {c["unit"]: c["outcome"] for c in assignment.explanation["candidates"]}
    assert outcomes == {"roads-all": "lost", "roads-w": "lost"}
    only_one = Dispatcher(pack).assign("pothole", *EAST)
    assert (only_one.unit_id, only_one.rule) == ("roads-all", "service-area")


def test_nearest_team_with_spare_capacity(tmp_path):
    """The department's nearest placed team with room takes it; none placed: the department itself."""
    units = [
        unit("works", kind="department"),
        unit("crew-a", kind="field_team", department="works", capacity=2),
        unit("crew-b", kind="field_team", department="works", capacity=2),
    ]
    pack = rules_pack(tmp_path, [{"id": "nearest", "match": {}, "nearest_team_of": "works"}], units)
    dispatcher = Dispatcher(pack)
    positions = {"crew-a": (52.005, 4.996), "crew-b": (52.005, 5.004)}  # a is ~70 m from WEST, b ~620 m
    near = dispatcher.assign("pothole", *WEST, positions=positions, loads={})
    assert near.unit_id == "crew-a"
    assert near.explanation["team"]["distance_m"] == pytest.approx(68.6, abs=1.0)
    full = dispatcher.assign("pothole", *WEST, positions=positions, loads={"crew-a": 2})
    assert full.unit_id == "crew-b"
    considered = {c["unit"]: c["why"] for c in full.explanation["team"]["considered"]}
    assert considered["crew-a"] == "at capacity (2/2)"
    nobody = dispatcher.assign("pothole", *WEST, positions={}, loads={})
    assert nobody.unit_id == "works" and "no field team of works" in nobody.explanation["why"]
    # within one batch, teams fill up as incidents are assigned
    batch = dispatcher.assign_batch(["pothole"] * 5, [WEST[0]] * 5, [WEST[1]] * 5, positions=positions, loads={})
    assert [a.unit_id for a in batch] == ["crew-a", "crew-a", "crew-b", "crew-b", "works"]


def test_explanation_is_json_and_names_the_pack_version_rule_and_confidence(tmp_path):
    """Everything an operator needs is in a JSON-serialisable explanation."""
    pack = rules_pack(tmp_path, [{"id": "r", "match": {"categories": ["graffiti"]}, "assign": "night-crew"}])
    assignment = Dispatcher(pack).assign("pothole", *WEST, 0.73, source="app", now=datetime(2026, 1, 1, tzinfo=UTC))
    explanation = json.loads(json.dumps(assignment.explanation))
    assert explanation["pack_version"] == pack.version
    assert explanation["rule"] == "service-area" and explanation["confidence"] == 0.73
    assert explanation["features"] == {"districts": "W"}
    assert explanation["local_time"] == "2026-01-01T01:00+01:00"
    assert explanation["boundary_m"] == pytest.approx(342.9, abs=2.0)  # 0.005 degrees of longitude at 52 N
    assert explanation["rules"] == []  # the only rule is for graffiti


def test_rules_tried_out_of_order_are_shown_in_the_trace(tmp_path):
    """The trace lists the category's rules in the order tried, up to the one that decided."""
    pack = rules_pack(
        tmp_path,
        [
            {"id": "b", "priority": 2, "match": {"sources": ["phone"]}, "assign": "night-crew"},
            {"id": "a", "priority": 3, "match": {"area": {"layer": "districts", "features": ["E"]}}, "assign": "ops"},
            {"id": "c", "priority": 1, "match": {"categories": ["pothole"]}, "assign": "roads-e"},
        ],
    )
    assignment = Dispatcher(pack).assign("pothole", *WEST, source="app")
    assert [(s["rule"], s["outcome"]) for s in assignment.explanation["rules"]] == [
        ("a", "no match"),
        ("b", "no match"),
        ("c", "decided"),
    ]
    assert assignment.unit_id == "roads-e"


def test_why_a_rule_did_not_match_is_said_in_words(tmp_path):
    """The trace's "why" names the area, the source list and the local time against the window, joined by "; "."""
    pack = rules_pack(
        tmp_path,
        [
            {
                "id": "east-nights",
                "match": {
                    "area": {"layer": "districts", "features": ["E"]},
                    "sources": ["sensor"],
                    "hours": {"start": "22:00", "end": "06:00", "days": ["fri", "sat"]},
                },
                "assign": "night-crew",
            },
            {
                "id": "anywhere-nights",
                "match": {"area": {"layer": "districts", "features": "*"}, "hours": {"start": "22:00", "end": "06:00"}},
                "assign": "night-crew",
            },
            {
                "id": "phone-days",
                "match": {
                    "area": {"layer": "districts", "features": ["E", "W"]},
                    "sources": ["phone"],
                    "hours": {"start": "08:00", "end": "18:00"},
                },
                "assign": "night-crew",
            },
        ],
    )
    noon = datetime(2026, 11, 25, 11, 0, tzinfo=UTC)  # Wednesday 12:00 in Amsterdam
    trace = Dispatcher(pack).assign("pothole", *WEST, source="app", now=noon).explanation["rules"]
    assert [(step["rule"], step["why"]) for step in trace] == [
        (
            "east-nights",
            "point outside its area (districts: E); source not one of ['sensor']; "
            "local time Wed 12:00 outside 22:00-06:00 on fri,sat",
        ),
        ("anywhere-nights", "local time Wed 12:00 outside 22:00-06:00"),
        ("phone-days", "source not one of ['phone']"),  # inside its hours: the time is not a reason
    ]
    outside = Dispatcher(pack).assign("pothole", 52.005, 5.2, source="app").explanation["rules"]  # east of both
    assert [step["why"] for step in outside] == [
        "point outside its area (districts: E); source not one of ['sensor']; no time given outside 22:00-06:00 on "
        "fri,sat",
        "point outside its area (districts: every feature); no time given outside 22:00-06:00",
        "point outside its area (districts: E, W); source not one of ['phone']; no time given outside 08:00-18:00",
    ]


def test_the_units_a_rejected_task_may_go_to_next_cover_the_point_and_handle_the_category(tmp_path):
    """covering_units (feedback.next_unit's candidates): the units whose area holds the point, chosen one first."""
    pack = rules_pack(tmp_path, [])
    dispatcher = Dispatcher(pack)
    assert dispatcher.covering_units("pothole", *WEST) == ["roads-w"]
    assert dispatcher.covering_units("pothole", *EAST) == ["roads-e"]


def test_what_the_dispatcher_cannot_read_is_refused_in_words(tmp_path):
    pack = rules_pack(tmp_path, [{"id": "r", "match": {"hours": {"start": "22:00", "end": "06:00"}}, "assign": "ops"}])
    dispatcher = Dispatcher(pack)
    with pytest.raises(DispatchError) as refused:
        dispatcher.assign("hovercraft", *WEST)
    assert str(refused.value) == f"category 'hovercraft' is not in city pack {pack.name!r}"
    with pytest.raises(DispatchError) as refused:
        dispatcher.assign("pothole", *WEST, now=datetime(2026, 1, 1, 12, 0))
    assert str(refused.value) == "now must be timezone-aware (rules match on the city's local time)"


def test_one_incident_s_source_reaches_the_rules(tmp_path):
    """assign() (one incident) passes its source on, as assign_batch does."""
    pack = rules_pack(tmp_path, [{"id": "sensors", "match": {"sources": ["sensor"]}, "assign": "night-crew"}])
    assert Dispatcher(pack).assign("pothole", *WEST, source="sensor").unit_id == "night-crew"
    assert Dispatcher(pack).assign("pothole", *WEST, source="app").unit_id == "roads-w"


def test_the_fallback_is_named_in_the_explanation(tmp_path):
    assignment = Dispatcher(rules_pack(tmp_path, [])).assign("pothole", 48.0, 2.0)
    assert (assignment.unit_id, assignment.explanation["why"]) == (
        "ops",
        "no unit that handles pothole covers this point; sent to ops",
    )


def test_a_unit_that_covers_the_point_but_lost_is_still_a_candidate_for_later(tmp_path):
    units = [*twin_roads(), unit("roads-all", ("districts", ["W", "E"]), groups=["roads"])]
    dispatcher = Dispatcher(rules_pack(tmp_path, [], units=units))
    assert dispatcher.covering_units("pothole", *WEST) == ["roads-w", "roads-all"]


def test_locate_gives_each_layer_s_feature_or_minus_one(tmp_path):
    dispatcher = Dispatcher(rules_pack(tmp_path, []))
    located = dispatcher.locate(np.array([WEST[0], EAST[0], 48.0]), np.array([WEST[1], EAST[1], 2.0]))
    ids = dispatcher.pack.layers["districts"].feature_ids
    assert [ids[i] if i >= 0 else None for i in located["districts"].tolist()] == ["W", "E", None]


def test_location_keys_tell_places_apart_packed_or_as_tuples(tmp_path):
    """Batches group incidents by "which feature of every layer"; a pack too big for one 64-bit key uses tuples."""
    dispatcher = Dispatcher(rules_pack(tmp_path, []))
    located = dispatcher.locate(np.array([WEST[0], EAST[0], WEST[0], 48.0]), np.array([WEST[1], EAST[1], WEST[1], 2.0]))
    packed = dispatcher.location_keys(located)
    dispatcher._layer_sizes = [2**62] * len(dispatcher._layer_sizes)  # as if the layers held that many features
    as_tuples = dispatcher.location_keys(located)
    for keys in (packed, as_tuples):
        assert keys[0] == keys[2] and len({keys[0], keys[1], keys[3]}) == 3, keys
    assert all(isinstance(k, int) for k in packed) and all(isinstance(k, tuple) for k in as_tuples)
