"""Capacity: a unit at capacity overflows along its backup chain; loads are a plain mapping."""

from __future__ import annotations

import pytest

from dispatch import Dispatcher
from dispatch.reroute import reroute
from tests.unit.dispatch.packs import make_pack, unit

WEST = (52.005, 4.995)


@pytest.fixture
def dispatcher(tmp_path):
    units = [
        unit("roads-w", ("districts", ["W"]), groups=["roads"], capacity=2, backup="roads-e"),
        unit("roads-e", ("districts", ["E"]), groups=["roads"], capacity=1, backup="roads-w"),
        unit("clean", ("districts", "*"), groups=["clean"]),
    ]
    return Dispatcher(make_pack(tmp_path, units=units))


@pytest.mark.parametrize(
    ("loads", "unit_id", "overflowed"),
    [
        (None, "roads-w", False),  # no loads given: capacity is not considered
        ({}, "roads-w", False),
        ({"roads-w": 1}, "roads-w", False),
        ({"roads-w": 2}, "roads-e", True),
        ({"roads-w": 5, "roads-e": 0}, "roads-e", True),
        ({"roads-w": 2, "roads-e": 1}, "roads-w", True),  # the whole chain is full: the responsible unit keeps it
    ],
)
def test_overflow_table(dispatcher, loads, unit_id, overflowed):
    """Where a pothole in W goes for given open-task counts."""
    assignment = dispatcher.assign("pothole", *WEST, loads=loads)
    assert assignment.unit_id == unit_id
    assert ("overflow" in assignment.explanation) is overflowed


def test_overflow_explains_and_tells_the_full_unit(dispatcher):
    """The full unit is told that its backup took the incident; the candidates show it."""
    assignment = dispatcher.assign("pothole", *WEST, loads={"roads-w": 2})
    assert assignment.co_notify == ("roads-w",)
    assert assignment.explanation["overflow"] == "roads-w (2/2) at capacity; overflowed to backup roads-e"
    outcomes = {c["unit"]: (c["outcome"], c["why"]) for c in assignment.explanation["candidates"]}
    assert outcomes["roads-w"] == ("lost", "at capacity; overflowed to backup roads-e")
    assert outcomes["roads-e"][0] == "chosen"
    assert assignment.explanation["capacity"] == {"unit": "roads-e", "load": 0, "capacity": 1}


def test_all_full_is_said_plainly(dispatcher):
    """When the whole backup chain is full the responsible unit keeps it, over capacity, and nobody else is told."""
    assignment = dispatcher.assign("pothole", *WEST, loads={"roads-w": 2, "roads-e": 1})
    assert "with every backup; kept by roads-w, over capacity" in assignment.explanation["overflow"]
    assert assignment.co_notify == ()


def test_a_batch_counts_its_own_assignments(dispatcher):
    """Five potholes at once: two fill roads-w, one fills roads-e, the rest stay with roads-w over capacity."""
    batch = dispatcher.assign_batch(["pothole"] * 5, [WEST[0]] * 5, [WEST[1]] * 5, loads={})
    assert [a.unit_id for a in batch] == ["roads-w", "roads-w", "roads-e", "roads-w", "roads-w"]


def test_loads_given_are_not_modified(dispatcher):
    """The caller's mapping is a snapshot; the dispatcher counts on a copy."""
    loads = {"roads-w": 1}
    dispatcher.assign_batch(["pothole"] * 3, [WEST[0]] * 3, [WEST[1]] * 3, loads=loads)
    assert loads == {"roads-w": 1}


def test_unlimited_units_never_overflow(dispatcher):
    """A unit without a capacity takes any number of tasks."""
    assert dispatcher.assign("graffiti", *WEST, loads={"clean": 10_000}).unit_id == "clean"


def test_recategorising_reroutes_and_names_both_units(dispatcher):
    """Graffiti reported as a pothole: the cleansing team takes over, the roads crew is told to drop it."""
    result = reroute(
        dispatcher, old_category="pothole", old_unit="roads-w", new_category="graffiti", lat=WEST[0], lon=WEST[1]
    )
    assert result.assignment.unit_id == "clean"
    assert result.moved and result.notify == ("roads-w", "clean")
    change = result.assignment.explanation["recategorised"]
    assert change["from"] == "pothole" and change["to"] == "graffiti" and change["previous_unit"] == "roads-w"
    assert "clean takes over from roads-w" in change["why"]


def test_recategorising_within_the_same_unit_tells_it_once(dispatcher):
    """A new category that leads back to the same unit notifies that unit once and says it stays responsible."""
    result = reroute(
        dispatcher, old_category="graffiti", old_unit="clean", new_category="graffiti", lat=WEST[0], lon=WEST[1]
    )
    assert not result.moved and result.notify == ("clean",)
    assert "clean stays responsible" in result.assignment.explanation["recategorised"]["why"]


def test_recategorising_does_not_count_the_moving_task_against_its_old_unit(dispatcher):
    """roads-w is at 2/2 only because of this very incident; moving between roads categories keeps it there."""
    result = reroute(
        dispatcher,
        old_category="pothole",
        old_unit="roads-w",
        new_category="pothole",
        lat=WEST[0],
        lon=WEST[1],
        loads={"roads-w": 2},
    )
    assert result.assignment.unit_id == "roads-w" and not result.moved
