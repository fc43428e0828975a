"""The engine on in-memory stores: each stage's outcome as records, metrics observed at the boundaries.

Integration tests run the same engine under a worker with the real broker and Redis; these run in milliseconds.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from streams.ids import report_incident, sensor_incident, task_id_for
from tests.unit.pipeline.conftest import LAT, LON, NOW, reading, report


def test_a_report_with_a_known_service_code_opens_one_incident_and_sends_one_task(loop):
    result = asyncio.run(loop.reports(report(1)))
    incident = report_incident("r-1")
    assert (result.accepted, result.tasks, result.dead_lettered) == (1, 1, 0)
    [task] = loop.sink.on("tasks")
    assert task["task_id"] == task_id_for(incident) and task["incident_id"] == incident
    assert task["unit_id"] == "roads-west" and task["reason"]["rule"]
    # the pothole SLA: acknowledge in 4 h, resolve in 72 h, on the calendar clock
    assert task["sla"] == {"clock": "calendar", "acknowledge_by": "2026-11-30T14:00:00Z",
                           "resolve_by": "2026-12-03T10:00:00Z", "verify_within": "24h"}  # fmt: skip
    [dispatched] = loop.sink.on("feedback", "dispatched")
    assert dispatched["task_id"] == task["task_id"] and dispatched["source_id"] == "report:r-1"
    assert loop.sink.on("incidents")[0]["status"] == "open"
    counts = loop.sensor.counts
    assert counts["processed", "reports", "opened"] == 1 and counts["classified", "service_code"] == 1
    assert counts["opened", "report", "pothole"] == 1 and counts["assigned", "roads-west", task["reason"]["rule"]] == 1
    assert len(loop.sensor.latencies) == 1


def test_a_report_repeated_in_a_batch_and_redelivered_later_makes_one_task(loop):
    async def scenario():
        first = await loop.reports(report(1), report(1))
        again = await loop.reports(report(1))
        return first, again

    first, again = asyncio.run(scenario())
    assert len(loop.sink.on("tasks")) == 1
    assert (first.duplicates, again.duplicates, again.emitted) == (1, 1, 0)
    assert loop.sensor.total("duplicate", "report") == 2


def test_a_second_report_of_the_same_problem_joins_the_incident_without_a_new_task(loop):
    async def scenario():
        await loop.reports(report(1, text="deep hole in the road"))
        return await loop.reports(report(2, text="deep hole in the road here", lat=LAT + 0.0002))

    joined = asyncio.run(scenario())
    assert joined.merged == 1 and joined.tasks == 0
    assert len(loop.sink.on("tasks")) == 1
    [merged] = loop.sink.on("feedback", "merged")
    assert merged["incident_id"] == report_incident("r-1") and merged["source_id"] == "report:r-2"
    assert loop.sensor.counts["merged", "report", "pothole"] == 1


def test_an_unsure_report_waits_for_a_person_whose_decision_dispatches_it_once(loop):
    async def scenario():
        queued = await loop.reports(report(1, code=None, text="maybe paint on the wall"))
        waiting = await loop.engine.triage.is_waiting(report_incident("r-1"))
        decision = {"type": "triage_decision", "incident_id": report_incident("r-1"), "category": "graffiti",
                    "decided_by": "ana"}  # fmt: skip
        await loop.feedback(decision)
        again, _ = await loop.feedback(decision)  # redelivered: the ledger has its outcomes, nothing new goes out
        unknown = {**decision, "incident_id": report_incident("r-404")}
        await loop.feedback(unknown)
        assert again.emitted == 0 and again.duplicates == 2
        return queued, waiting, await loop.engine.triage.is_waiting(report_incident("r-1"))

    queued, waiting_before, waiting_after = asyncio.run(scenario())
    assert queued.triaged == 1 and queued.tasks == 0 and waiting_before and not waiting_after
    [needed] = loop.sink.on("feedback", "triage_needed")
    assert "below the triage threshold 0.50 for graffiti" in needed["why"]
    [task] = loop.sink.on("tasks")
    assert task["category"] == "graffiti" and task["incident_id"] == report_incident("r-1")
    [label] = loop.sink.on("feedback", "triaged")
    assert label["category"] == "graffiti" and label["text"] == "maybe paint on the wall"
    [unknown] = loop.sink.on("deadletter")
    assert (unknown["stage"], unknown["reason_code"]) == ("triage", "not_in_triage")
    assert loop.sensor.counts["triage_decided",] == 1


def test_invalid_records_are_dead_lettered_with_their_reason_and_the_rest_goes_on(loop):
    async def scenario():
        reports = await loop.reports({"report_id": "bad", "lat": "north"}, report(2))
        raw = await loop.engine.process_reports(loop.envelopes(loop.topics.reports, [b"\xff not json"]))
        readings = await loop.readings(reading("x-1", 3.0, NOW, kind="radiation"))
        return reports, raw, readings

    reports, raw, readings = asyncio.run(scenario())
    assert (reports.dead_lettered, reports.tasks, raw.dead_lettered, readings.dead_lettered) == (1, 1, 1, 1)
    letters = {(d["stage"], d["reason_code"]) for d in loop.sink.on("deadletter")}
    assert ("detect", "unknown_kind") in letters and all(stage in ("validate", "detect") for stage, _ in letters)
    assert loop.sensor.total("dead_letter") == 3


def test_one_report_that_breaks_dispatch_is_dead_lettered_alone(loop, monkeypatch):
    dispatcher = loop.engine.dispatcher
    real = dispatcher.assign_batch

    def assign_batch(categories, *args, **kwargs):
        if "graffiti" in categories:
            raise RuntimeError("a broken rule")
        return real(categories, *args, **kwargs)

    monkeypatch.setattr(dispatcher, "assign_batch", assign_batch)
    result = asyncio.run(loop.reports(report(1), report(2, code="graffiti", lat=LAT + 0.01)))
    assert (result.tasks, result.dead_lettered) == (1, 1)
    [letter] = loop.sink.on("deadletter")
    assert (letter["stage"], letter["reason_code"]) == ("dispatch", "processing_error")
    assert "a broken rule" in letter["reason"]


def test_a_batch_whose_send_failed_is_sent_again_with_the_same_ids(loop):
    async def scenario():
        loop.sink.fail = True
        try:
            await loop.reports(report(1))
        except ConnectionError:
            pass
        loop.clock.advance(minutes=5)  # a later attempt: a new clock reading must not change the outcome
        return await loop.reports(report(1))

    retried = asyncio.run(scenario())
    assert retried.tasks == 1
    [task] = loop.sink.on("tasks")
    assert task["dispatched_at"] == "2026-11-30T10:00:00Z", "the stored outcome is sent, not a new one"


def test_a_sensor_alarm_opens_an_incident_and_its_clear_tells_that_incident(loop):
    async def scenario():
        await loop.readings(reading("wl-1", 10.0, NOW), reading("wl-1", 35.0, NOW + timedelta(minutes=1)))
        stale = await loop.readings(reading("wl-1", 36.0, NOW))  # older than the last applied: changes nothing
        await loop.readings(reading("wl-1", 15.0, NOW + timedelta(minutes=2)))
        return stale

    stale = asyncio.run(scenario())
    since = (NOW + timedelta(minutes=1)).timestamp()
    incident = sensor_incident("wl-1", since)
    [task] = loop.sink.on("tasks")
    assert task["incident_id"] == incident and task["category"] == "flooding"
    assert loop.sink.on("incidents")[0]["classified_by"] == "sensor_threshold"
    [clear] = loop.sink.on("feedback", "sensor_clear")
    assert clear["incident_id"] == incident and clear["value"] == 15.0
    assert stale.stale == 1 and stale.emitted == 0
    counts = loop.sensor.counts
    assert (counts["alarm_opened", "water_level"], counts["alarm_cleared", "water_level"]) == (1, 1)
    assert counts["stale", "water_level"] == 1


def test_a_report_and_an_alarm_about_one_flood_become_one_incident(loop):
    async def scenario():
        await loop.readings(reading("wl-2", 10.0, NOW - timedelta(minutes=2)),
                            reading("wl-2", 40.0, NOW - timedelta(minutes=1)))  # fmt: skip
        return await loop.reports(report(5, code="flooding", text="street flooded", lat=LAT + 0.0002, lon=LON))

    joined = asyncio.run(scenario())
    assert joined.merged == 1 and len(loop.sink.on("tasks")) == 1
