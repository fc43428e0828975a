"""The newest reading of each sensor, kept by the worker for the ops centre's sensors view (``DetectorStore.heard``).

The engine runs on an in-memory Redis with the stores' real Lua scripts: the reading kept is the newest one applied
(a batch's readings out of order, a stale one later), with its kind, unit and place and the sensor's alarm state.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from streams import state
from streams.state import DetectorStore
from tests.unit.pipeline.conftest import LAT, LON, NOW, reading


def heard(loop, limit: int = 100) -> dict[str, dict]:
    store = DetectorStore(loop.redis, loop.settings.redis_namespace)
    return {sensor["sensor_id"]: sensor for sensor in asyncio.run(store.heard(limit))}


def test_the_newest_reading_applied_is_kept_with_its_kind_unit_place_and_alarm(loop):
    minute = timedelta(minutes=1)
    asyncio.run(loop.readings(reading("wl-1", 12.0, NOW + 2 * minute), reading("wl-1", 10.0, NOW),
                              reading("wl-1", 11.0, NOW + minute), reading("wl-2", 5.0, NOW)))  # fmt: skip
    sensors = heard(loop)
    assert sensors["wl-1"] == {"sensor_id": "wl-1", "kind": "water_level", "value": 12.0, "unit": "cm", "lat": LAT,
                               "lon": LON, "observed_at": (NOW + 2 * minute).timestamp(), "alarm": False,
                               "alarm_since": None}  # fmt: skip
    assert sensors["wl-2"]["value"] == 5.0

    asyncio.run(loop.readings(reading("wl-1", 99.0, NOW + minute)))  # stale: older than the newest applied
    assert heard(loop)["wl-1"]["value"] == 12.0

    asyncio.run(loop.readings(reading("wl-2", 40.0, NOW + 3 * minute)))  # over the water level's alarm threshold
    sensors = heard(loop)
    assert (sensors["wl-2"]["value"], sensors["wl-2"]["alarm"]) == (40.0, True)
    assert sensors["wl-2"]["alarm_since"] == (NOW + 3 * minute).timestamp()
    assert list(heard(loop, limit=1)) == ["wl-2"], "the most recently heard first"


def test_the_index_of_sensors_keeps_only_the_most_recently_heard(loop, monkeypatch):
    monkeypatch.setattr(state, "SENSORS_KEPT", 2)
    for i in range(4):
        asyncio.run(loop.readings(reading(f"wl-{i}", 10.0, NOW + timedelta(minutes=i))))
    assert sorted(heard(loop)) == ["wl-2", "wl-3"]
