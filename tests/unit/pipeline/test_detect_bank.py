"""Stage *detect*: adaptive sensors stepped together in a bank give what stepping reading by reading gives.

Random reading streams (several sensors of two adaptive kinds and a threshold kind, readings out of order, repeated
and held back, alarms from the learnt pattern and from the limits opening and clearing, across the night the demo
city's clocks go back) go through ``Detect(pack, bank=False)`` and ``Detect(pack)`` batch by batch, each from its
own detector store (the real ``DetectorStore`` on an in-memory Redis). Every batch must give the same sightings,
clears (with the state each cleared), stale readings and states to save, and leave the same bytes in Redis.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import fakeredis
import pytest
import yaml

from classifiers import AdaptiveState, DetectorState
from dispatch import CityPack, load_city_pack
from dispatch.demo_city import write_demo_city
from streams.outcomes import Envelope
from streams.pipeline.detect import Detect, Detected
from streams.records import Reading
from streams.state import DetectorStore
from tests.unit.pipeline.conftest import LAT, LON, Loop, Words

DST_END = datetime(2026, 10, 25, 1, 0, tzinfo=UTC)  # Europe/Amsterdam: 03:00 summer time becomes 02:00 winter time
START = DST_END - timedelta(hours=14)
HOURS = 26
# river_flow: a pattern-only kind that learns within hours (6 slots of 4 h), so pattern alarms open in a short stream
RIVER_FLOW = {"category": "flooding", "unit": "m3/s", "detector": "adaptive", "direction": "both",
              "adaptive": {"buckets": 6, "memory_days": 0.25, "warmup_days": 0.05}}  # fmt: skip
SENSORS = {
    **{f"pm-{i}": "pm25" for i in range(4)},  # the demo city's "both" kind: learnt pattern and health limits
    **{f"rf-{i}": "river_flow" for i in range(4)},
    **{f"wl-{i}": "water_level" for i in range(2)},  # static thresholds, stepped reading by reading either way
    "sw-0": "switching",  # reports as pm25 (24 slots) or river_flow (6 slots): a model of another slot count
}
NORMAL = {"pm25": (35.0, 12.0), "river_flow": (100.0, 30.0), "water_level": (15.0, 5.0)}  # level, daily swing
EXCURSION = {"pm25": 55.0, "river_flow": 90.0, "water_level": 20.0}


@pytest.fixture(scope="module")
def bank_pack(tmp_path_factory: pytest.TempPathFactory) -> CityPack:
    root = write_demo_city(Path(tmp_path_factory.mktemp("city")) / "demo-city")
    document = yaml.safe_load((root / "city.yaml").read_text(encoding="utf-8"))
    document["sensor_kinds"]["river_flow"] = RIVER_FLOW
    (root / "city.yaml").write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")
    pack = load_city_pack(root)
    assert pack.spec.timezone == "Europe/Amsterdam"
    return pack


def streams(seed: int) -> list[list[Reading]]:
    """Batches of readings as a worker might get them: each sensor every 2-15 min, excursions now and then, the
    batch shuffled, some readings repeated (in the batch or a later one) and some held back to a later batch."""
    rng = random.Random(seed)
    zone = ZoneInfo("Europe/Amsterdam")
    timeline: list[Reading] = []
    for sensor, kind in SENSORS.items():
        at, excursion, sign = START + timedelta(seconds=rng.uniform(0, 600)), 0, 1.0
        current = "pm25" if kind == "switching" else kind
        while at < START + timedelta(hours=HOURS):
            if kind == "switching" and rng.random() < 0.05:
                current = "river_flow" if current == "pm25" else "pm25"
            if excursion == 0 and rng.random() < 0.04:
                excursion, sign = rng.randint(2, 10), rng.choice([1.0, 1.0, -1.0])
            level, swing = NORMAL[current]
            local = at.astimezone(zone)
            hour = local.hour + local.minute / 60
            value = level + swing * math.sin(2 * math.pi * hour / 24) + rng.gauss(0.0, 2.0)
            if excursion:
                value += sign * EXCURSION[current]
                excursion -= 1
            timeline.append(Reading(sensor, current, round(value, 3), LAT, LON, at, "x"))
            at += timedelta(seconds=rng.uniform(120, 900))
    timeline.sort(key=lambda r: r.observed_at)
    batches: list[list[Reading]] = []
    held: list[Reading] = []
    position = 0
    while position < len(timeline) or held:
        size = rng.choice([1, 3, 10, 40, 80, 150])
        batch, held = held, []
        for reading in timeline[position : position + size]:
            if rng.random() < 0.05:
                held.append(reading)  # delivered in the next batch, after newer readings of its sensor
            else:
                batch.append(reading)
            if rng.random() < 0.05:  # a redelivery, or another value at the same time: stale either way
                again = reading if rng.random() < 0.5 else Reading(*vars_of(reading, value=reading.value + 1.0))
                (batch if rng.random() < 0.5 else held).append(again)
        if position > 0 and rng.random() < 0.1:
            batch.append(rng.choice(timeline[:position]))  # an old reading again
        position += size
        rng.shuffle(batch)
        batches.append(batch)
    return batches


def vars_of(reading: Reading, **changes: Any) -> tuple[Any, ...]:
    fields = {"sensor_id": reading.sensor_id, "kind": reading.kind, "value": reading.value, "lat": reading.lat,
              "lon": reading.lon, "observed_at": reading.observed_at, "unit": reading.unit}  # fmt: skip
    fields.update(changes)
    return tuple(fields.values())


def saved(state: Any) -> tuple[Any, ...]:
    """What ``DetectorStore.save`` writes of a state."""
    return state.alarm, state.since, state.last_observed, state.to_bytes() if hasattr(state, "to_bytes") else None


def outcome(detected: Detected) -> tuple[Any, ...]:
    return (
        detected.opened,
        detected.cleared,
        {sensor: saved(state) for sensor, state in detected.changed.items()},
        detected.stale,
        detected.opened_kinds,
        detected.cleared_kinds,
        detected.latest,
    )


async def seed_store(client: Any, namespace: str) -> None:
    """Sensors the store already knows: unreadable models (too short; right size, wrong magic) and an open alarm
    without a model (a sensor moved from a threshold kind)."""
    learnt = AdaptiveState(last_observed=1.0, level=(1.0,) * 24, spread=(1.0,) * 24, weight=(0.5,) * 24).to_bytes()
    before = (START - timedelta(hours=1)).timestamp()
    for sensor, model in (("pm-0", b"junk"), ("rf-1", b"XX" + learnt[2:])):
        fields = {"alarm": "1", "since": repr(before), "last": repr(before), "model": model}
        await client.hset(f"{namespace}:sensor:{sensor}", mapping=fields)
    await client.hset(f"{namespace}:sensor:rf-0", mapping={"alarm": "1", "since": repr(before), "last": repr(before)})


async def stored_hashes(client: Any, namespace: str) -> dict[str, dict[bytes, bytes]]:
    keys = sorted(await client.keys(f"{namespace}:sensor:*"))
    return {key.decode().rsplit(":", 1)[1]: await client.hgetall(key) for key in keys}


async def both_paths(pack: CityPack, batches: list[list[Reading]]) -> dict[str, Any]:
    """Each batch through both paths, asserting they agree; tallies of what the stream exercised."""
    client = fakeredis.FakeAsyncRedis()
    per_reading, banked = Detect(pack, bank=False), Detect(pack)
    stores = {"each": DetectorStore(client, "each"), "bank": DetectorStore(client, "bank")}
    for namespace in stores:
        await seed_store(client, namespace)
    seen: dict[str, Any] = {"opened": [], "cleared": [], "stale": 0, "spans_dst": 0, "mixed": 0}
    offset = 0
    for number, batch in enumerate(batches):
        envelopes = [(Envelope(b"", None, "t.readings", 0, offset + i, None), r) for i, r in enumerate(batch)]
        offset += len(batch)
        sensors = sorted({r.sensor_id for r in batch})
        each = per_reading(envelopes, await stores["each"].load(sensors))
        bank = banked(envelopes, await stores["bank"].load(sensors))
        assert outcome(bank) == outcome(each), f"batch {number} of {len(batches)}"
        await stores["each"].save(each.changed, each.latest)
        await stores["bank"].save(bank.changed, bank.latest)
        assert await stored_hashes(client, "bank") == await stored_hashes(client, "each"), f"batch {number}"
        seen["opened"] += each.opened_kinds
        seen["cleared"] += each.cleared_kinds
        seen["stale"] += len(each.stale)
        adaptive_times = [r.observed_at for r in batch if r.kind != "water_level"]
        seen["spans_dst"] += bool(adaptive_times) and min(adaptive_times) < DST_END <= max(adaptive_times)
        seen["mixed"] += len({r.kind for r in batch if r.sensor_id == "sw-0"}) > 1
    return seen


@pytest.mark.parametrize("seed", range(8))
def test_the_bank_gives_what_stepping_reading_by_reading_gives(bank_pack, seed, caplog):
    batches = streams(seed)
    with caplog.at_level(logging.WARNING, logger="classifiers.anomaly"):
        seen = asyncio.run(both_paths(bank_pack, batches))
    # the stream did what it is meant to: alarms of every kind opened and cleared, pattern alarms among them
    # (river_flow has no limits), stale readings, batches across the change of clocks
    for kind in ("pm25", "river_flow", "water_level"):
        assert kind in seen["opened"] and kind in seen["cleared"], (kind, seen)
    assert seen["stale"] > 10 and seen["spans_dst"] >= 1
    unreadable = [r for r in caplog.records if "unreadable adaptive model" in r.getMessage()]
    assert len(unreadable) >= 4, "each unreadable model is relearnt with a warning, in both paths"


def test_some_stream_has_a_sensor_of_two_kinds_in_one_batch(bank_pack):
    """The switching sensor's batches with both kinds go reading by reading; make sure the seeds above meet one."""
    assert any(len({r.kind for r in batch if r.sensor_id == "sw-0"}) > 1 for seed in range(8) for batch in
               streams(seed))  # fmt: skip


def test_the_engine_sends_and_stores_the_same_with_either_path(bank_pack):
    """The whole readings stream of the worker: the same records out, the same counts, the same detector state."""
    batches = streams(11)[:60]
    now = START + timedelta(hours=HOURS)

    async def run(bank: bool) -> Loop:
        loop = Loop(bank_pack, Words({"flood": ("flooding", 0.95)}))
        loop.clock.now = now
        loop.engine.detect.bank = bank
        for batch in batches:
            records = [{"sensor_id": r.sensor_id, "kind": r.kind, "value": r.value, "unit": r.unit, "lat": r.lat,
                        "lon": r.lon, "observed_at": r.observed_at.isoformat()} for r in batch]  # fmt: skip
            await loop.readings(*records)
        return loop

    each, bank = asyncio.run(run(False)), asyncio.run(run(True))
    assert bank.sink.sent == each.sink.sent
    assert bank.sensor.counts == each.sensor.counts
    assert each.sink.on("feedback", "sensor_clear") and each.sink.on("tasks")

    async def dump(loop: Loop) -> dict[bytes, Any]:
        """Every key in the loop's Redis with its value: detector states, ledger, incident index."""
        read = {b"string": loop.redis.get, b"hash": loop.redis.hgetall, b"set": loop.redis.smembers,
                b"zset": lambda key: loop.redis.zrange(key, 0, -1)}  # fmt: skip
        return {key: await read[await loop.redis.type(key)](key) for key in sorted(await loop.redis.keys("*"))}

    stored_each, stored_bank = asyncio.run(dump(each)), asyncio.run(dump(bank))
    assert any(b":sensor:" in key for key in stored_each) and stored_bank == stored_each


def test_a_sensor_never_seen_and_one_without_a_model_start_as_restore_says(bank_pack):
    """A stored alarm without a model is kept (and cleared by the first normal reading), as ``restore`` keeps it."""
    since = START.timestamp()
    stored = {"rf-0": (DetectorState(True, since, since), None), "rf-9": (DetectorState(), None)}
    readings = [(Envelope(b"", None, "t", 0, i, None), Reading(s, "river_flow", 100.0, LAT, LON,
                 START + timedelta(minutes=5), "x")) for i, s in enumerate(stored)]  # fmt: skip
    detected = Detect(bank_pack)(readings, stored)
    [(reading, cleared)] = detected.cleared
    assert reading.sensor_id == "rf-0" and cleared == AdaptiveState(alarm=True, since=since, last_observed=since)
    assert sorted(detected.changed) == ["rf-0", "rf-9"] and not detected.opened
