"""Loads and positions in real Redis drive overflow to backups and the nearest-team rule."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio

from dispatch import Dispatcher, load_city_pack
from dispatch.reroute import reroute
from dispatch.store import AsyncUnitStore, UnitStore
from tests.unit.dispatch.packs import twin_roads, unit, write_pack

WEST = (52.005, 4.995)


@pytest.fixture
def pack(tmp_path):
    units = [
        *twin_roads(capacity=3),
        unit("works", kind="department"),
        unit("crew-a", kind="field_team", department="works", capacity=1),
        unit("crew-b", kind="field_team", department="works", capacity=1),
    ]
    units[0]["backup"] = "roads-e"
    rules = [{"id": "graffiti-crews", "match": {"categories": ["graffiti"]}, "nearest_team_of": "works"}]
    return load_city_pack(write_pack(tmp_path, units=units, rules=rules))


def test_a_full_unit_overflows_to_its_backup_with_redis_counters(pack, redis_client, namespace):
    """Open tasks counted in Redis fill roads-w; the next pothole in W goes to its backup roads-e."""
    store = UnitStore(redis_client, namespace)
    dispatcher = Dispatcher(pack)
    units = [u.id for u in pack.spec.units]
    assigned = []
    for n in range(5):
        assignment = dispatcher.assign("pothole", *WEST, loads=store.loads(units))
        store.open_task(assignment.unit_id, f"task-{n}")
        assigned.append(assignment.unit_id)
    assert assigned == ["roads-w", "roads-w", "roads-w", "roads-e", "roads-e"]
    assert store.loads(["roads-w", "roads-e"]) == {"roads-w": 3, "roads-e": 2}
    # a closed task frees a slot: the next one stays at home
    assert store.close_task("roads-w", "task-0")
    assert dispatcher.assign("pothole", *WEST, loads=store.loads(units)).unit_id == "roads-w"


def test_counting_is_idempotent_per_task(redis_client, namespace):
    """A redelivered task is counted once, closed once, and a replayed move changes nothing."""
    store = UnitStore(redis_client, namespace)
    assert store.open_task("roads-w", "t1") is True
    assert store.open_task("roads-w", "t1") is False
    assert store.loads(["roads-w"]) == {"roads-w": 1}
    assert store.move_task("t1", "roads-w", "roads-e") is True
    assert store.move_task("t1", "roads-w", "roads-e") is False
    assert store.loads(["roads-w", "roads-e"]) == {"roads-w": 0, "roads-e": 1}
    assert store.close_task("roads-e", "t1") is True
    assert store.close_task("roads-e", "t1") is False
    assert store.loads(["roads-e"]) == {"roads-e": 0}


def test_rerouting_moves_the_task_between_counters(pack, redis_client, namespace):
    """Recategorised from pothole to graffiti: the store moves the task from the roads crew to the new unit."""
    store = UnitStore(redis_client, namespace)
    dispatcher = Dispatcher(pack)
    store.set_position("crew-a", 52.005, 4.996)
    first = dispatcher.assign("pothole", *WEST, loads=store.loads(["roads-w"]))
    store.open_task(first.unit_id, "t-9")
    units = [u.id for u in pack.spec.units]
    result = reroute(
        dispatcher,
        old_category="pothole",
        old_unit=first.unit_id,
        new_category="graffiti",
        lat=WEST[0],
        lon=WEST[1],
        loads=store.loads(units),
        positions=store.positions(units),
    )
    assert result.notify == ("roads-w", "crew-a")
    store.move_task("t-9", result.previous_unit, result.assignment.unit_id)
    assert store.loads(["roads-w", "crew-a"]) == {"roads-w": 0, "crew-a": 1}


def test_nearest_team_from_geo_positions_with_spare_capacity(pack, redis_client, namespace):
    """Positions in a Redis GEO set choose the team; a full team is passed over; unknown teams are not guessed."""
    store = UnitStore(redis_client, namespace)
    dispatcher = Dispatcher(pack)
    teams = ["crew-a", "crew-b"]
    store.set_position("crew-a", 52.005, 4.996)  # ~70 m from WEST
    store.set_position("crew-b", 52.005, 5.004)  # ~620 m
    positions = store.positions([*teams, "works"])
    assert set(positions) == set(teams)
    assert positions["crew-a"] == pytest.approx((52.005, 4.996), abs=1e-5)
    first = dispatcher.assign("graffiti", *WEST, loads=store.loads(teams), positions=positions)
    assert first.unit_id == "crew-a"
    store.open_task("crew-a", "g1")
    second = dispatcher.assign("graffiti", *WEST, loads=store.loads(teams), positions=positions)
    assert second.unit_id == "crew-b"
    store.forget_position("crew-b")
    store.open_task("crew-b", "g2")
    third = dispatcher.assign("graffiti", *WEST, loads=store.loads(teams), positions=store.positions(teams))
    assert third.unit_id == "works"


def test_the_async_store_sees_the_same_state(redis_url, redis_client, namespace):
    """The asyncio client (what a worker uses) reads and writes the same keys as the sync one."""
    UnitStore(redis_client, namespace).open_task("roads-w", "t1")

    async def scenario() -> tuple[dict[str, int], dict[str, int], dict[str, tuple[float, float]]]:
        client = redis.asyncio.Redis.from_url(redis_url)
        try:
            store = AsyncUnitStore(client, namespace)
            before = await store.loads(["roads-w", "roads-e"])
            await store.open_task("roads-e", "t2")
            await store.move_task("t1", "roads-w", "roads-e")
            await store.set_position("crew-a", 52.0, 5.0)
            return before, await store.loads(["roads-w", "roads-e"]), await store.positions(["crew-a"])
        finally:
            await client.aclose()

    before, after, positions = asyncio.run(scenario())
    assert before == {"roads-w": 1, "roads-e": 0}
    assert after == {"roads-w": 0, "roads-e": 2}
    assert positions["crew-a"] == pytest.approx((52.0, 5.0), abs=1e-5)
