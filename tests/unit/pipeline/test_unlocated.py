"""Reports located by an address only (Open311's address_string / address_id) and points Redis cannot index.

A report without a point cannot be merged or routed: it waits in triage, saying so, until a person's decision gives
its point. A point beyond Redis GEO's latitudes is dead-lettered at decode, alone, with the reason.
"""

from __future__ import annotations

import asyncio

from streams.ids import report_incident
from tests.unit.pipeline.conftest import LAT, LON, report


def unlocated(i: int, **fields: object) -> dict[str, object]:
    record = report(i)
    del record["lat"], record["lon"]
    return {**record, "address": "Stationsplein 1", **fields}


def test_a_report_with_only_an_address_waits_in_triage_for_its_location_even_with_a_known_category(loop):
    result = asyncio.run(loop.reports(unlocated(1)))
    assert (result.triaged, result.tasks, result.dead_lettered) == (1, 0, 0)
    [needed] = loop.sink.on("feedback", "triage_needed")
    assert needed["needs_location"] is True and "no location" in needed["why"] and "Stationsplein 1" in needed["why"]
    [incident] = loop.sink.on("incidents")
    assert (incident["status"], incident["lat"], incident["lon"]) == ("triage", None, None)
    item = asyncio.run(loop.engine.triage.get(report_incident("r-1")))
    assert item["lat"] is None and item["address"] == "Stationsplein 1"


def test_a_decision_without_a_point_is_dead_lettered_and_one_with_a_point_dispatches_it(loop):
    incident = report_incident("r-1")
    decision = {"type": "triage_decision", "incident_id": incident, "category": "pothole", "decided_by": "ana"}

    async def scenario():
        await loop.reports(unlocated(1, address=None, address_id="BAG-0344200000123"))
        await loop.feedback(decision)
        still_waiting = await loop.engine.triage.is_waiting(incident)
        await loop.feedback({**decision, "lat": LAT, "lon": LON, "event_id": "second"})
        return still_waiting, await loop.engine.triage.is_waiting(incident)

    still_waiting, waiting_after = asyncio.run(scenario())
    [letter] = loop.sink.on("deadletter")
    assert (letter["stage"], letter["reason_code"]) == ("triage", "missing_field")
    assert "must give its lat and lon" in letter["reason"]
    assert still_waiting and not waiting_after
    [task] = loop.sink.on("tasks")
    assert (task["incident_id"], task["lat"], task["lon"], task["unit_id"]) == (incident, LAT, LON, "roads-west")


def test_a_latitude_redis_cannot_index_is_dead_lettered_alone_at_once(loop):
    """85.06 degrees is a real latitude but not one Redis GEO takes: without the check, the merge's script failed
    the whole batch (retried three times, then split); now the record is dead-lettered at decode with the reason."""
    result = asyncio.run(loop.reports(report(1, lat=85.06), report(2)))
    assert (result.dead_lettered, result.tasks) == (1, 1)
    [letter] = loop.sink.on("deadletter")
    assert (letter["stage"], letter["reason_code"]) == ("validate", "out_of_range")
    assert "Redis GEO" in letter["reason"]
