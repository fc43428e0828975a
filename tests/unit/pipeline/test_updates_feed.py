"""The reporters' feed (Open311 status updates) as the worker writes it: one entry per told step of an order, in
order, in plain words, once per event, trimmed as it grows."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import feedback.updates
from feedback.store import RedisOrderStore
from feedback.updates import describe, entries_of, status_of, update_id
from streams.ids import iso, report_incident, task_id_for
from tests.unit.pipeline.conftest import NOW, report
from tests.unit.pipeline.test_lifecycle import unit_event

NAMES = {"roads-west": "Roads crew West", "roads-east": "Roads crew East"}
FAR = 10**15  # ms: after everything


def _store(loop) -> RedisOrderStore:
    return RedisOrderStore(loop.redis, loop.settings.redis_namespace, None)


def ops_event(loop, kind: str, incident: str, n: int, **fields):
    return {"schema": 1, "event_id": f"evt-ops-{n}", "type": kind, "incident_id": incident, "actor": "ops:ana",
            "at": iso(loop.clock()), **fields}  # fmt: skip


async def _walk_to_close(loop, incident: str) -> None:
    """Dispatch, ack, start, wait, resume, resolve (with a photo), verify: each a minute apart."""
    await loop.reports(report(1))
    await loop.loop_back()
    task = task_id_for(incident)
    steps = [("ack", {}), ("start", {}), ("wait", {"reason": "which side of the road?"}), ("resume", {}),
             ("resolve", {"note": "hole filled", "media_url": "https://img.example/after.jpg"})]  # fmt: skip
    for n, (kind, fields) in enumerate(steps, start=1):
        loop.clock.advance(minutes=1)
        await loop.feedback(unit_event(loop, kind, incident, "roads-west", task, n, **fields))
    loop.clock.advance(minutes=1)
    start = len(loop.sink.sent)
    await loop.feedback(ops_event(loop, "verify", incident, 1, task_id=task, unit_id="roads-west"))
    await loop.loop_back(start)  # the close follow-up comes round again: applied already


def test_every_told_step_of_an_order_is_one_entry_in_order_in_plain_words(loop):
    incident = report_incident("r-1")

    async def scenario():
        await _walk_to_close(loop, incident)
        return await _store(loop).updates_between(0, FAR, 0, 100)

    entries = asyncio.run(scenario())
    kinds = [e["type"] for e in entries]
    assert kinds == ["dispatched", "ack", "start", "wait", "resume", "resolve", "close"], "verify is told by close"
    assert [status_of(e) for e in entries] == ["open", "action_scheduled", "in_progress", "in_progress",
                                               "in_progress", "in_progress", "fixed"]  # fmt: skip
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)
    assert entries[0]["at"] == iso(NOW) and entries[1]["at"] == iso(NOW + timedelta(minutes=1))
    words = [describe(e, NAMES) for e in entries]
    assert words[0] == "Assigned to Roads crew West."
    assert words[3] == "Roads crew West needs more information from you: which side of the road?."
    assert words[5] == "Roads crew West reports it fixed: hole filled. Awaiting verification."
    assert words[6] == "Fixed and verified. hole filled"
    assert entries[5]["media_url"] == "https://img.example/after.jpg"
    assert not any("roads-west" in w for w in words), "no internal unit id reaches a reporter"
    assert len({e["event_id"] for e in entries}) == len(entries)


def test_a_redelivered_event_adds_nothing_and_a_rejection_is_told_by_the_next_dispatch(loop):
    incident = report_incident("r-1")

    async def scenario():
        await loop.reports(report(1))
        start = await loop.loop_back()
        reject = unit_event(loop, "reject", incident, "roads-west", task_id_for(incident), 1,
                            reason_code="outside_remit", reason="private road")  # fmt: skip
        loop.clock.advance(minutes=5)
        await loop.feedback(reject)
        await loop.feedback(reject)
        await loop.loop_back(start)
        return await _store(loop).updates_between(0, FAR, 0, 100)

    entries = asyncio.run(scenario())
    assert [(e["type"], e["unit_id"]) for e in entries] == [("dispatched", "roads-west"), ("dispatched", "roads-east")]
    assert describe(entries[1], NAMES) == "Assigned to Roads crew East."


def test_the_feed_is_read_by_time_and_trimmed_by_length_as_it_is_written(loop, monkeypatch):
    incident = report_incident("r-1")
    monkeypatch.setattr(feedback.updates, "UPDATES_LEN", 3)

    async def scenario():
        await _walk_to_close(loop, incident)
        store = _store(loop)
        everything = await store.updates_between(0, FAR, 0, 100)
        minute = int((NOW + timedelta(minutes=6)).timestamp() * 1000)
        return everything, await store.updates_between(minute, minute, 0, 100)

    everything, one = asyncio.run(scenario())
    assert [e["type"] for e in everything] == ["resume", "resolve", "close"], "the newest 3 are kept"
    assert [e["type"] for e in one] == ["close"]


def test_a_merged_order_is_linked_to_the_one_its_reports_now_follow(loop):
    first, second = report_incident("r-1"), report_incident("r-2")

    async def scenario():
        await loop.reports(report(1), report(2, lat=52.01, lon=5.06))  # two incidents, far apart
        await loop.loop_back()
        loop.clock.advance(minutes=1)
        await loop.feedback(ops_event(loop, "merge_order", second, 1, task_id=task_id_for(second), into=first))
        store = _store(loop)
        return await store.updates_between(0, FAR, 0, 100), await store.followers([first, second])

    entries, (links, reports) = asyncio.run(scenario())
    merged = [e for e in entries if e["type"] == "merge_order"]
    assert len(merged) == 1 and merged[0]["incident_id"] == second
    assert links == {first: [second], second: []}
    assert reports == {first: ["report:r-1"], second: ["report:r-2"]}, "the reports that opened each order"


def test_reports_that_join_an_order_are_recorded_with_it(loop):
    incident = report_incident("r-1")

    async def scenario():
        await loop.reports(report(1))
        await loop.loop_back()
        loop.clock.advance(minutes=10)
        await loop.reports(report(2, text="another deep hole"))  # joins: a merged notice on the feedback stream
        await loop.loop_back()
        return await _store(loop).followers([incident])

    _, reports = asyncio.run(scenario())
    assert reports == {incident: ["report:r-1", "report:r-2"]}


def test_words_for_steps_a_reporter_must_not_read_ids_in():
    sensor = {"type": "reopen", "state": "reopened", "unit_id": "water-west", "by_sensor": True,
              "text": "sensor s-9 alarmed again; continued as inc-123"}  # fmt: skip
    assert "s-9" not in describe(sensor, NAMES) and "inc-" not in describe(sensor, NAMES)
    assert describe({"type": "ack", "unit_id": "gone-unit"}, NAMES) == "the responsible team has taken the request."
    assert status_of({"type": "cancel", "state": "cancelled"}) == "no_further_action"
    assert status_of({"type": "note", "status": "in_progress"}) == "in_progress"


def test_update_ids_are_stable_and_one_per_request_and_event():
    assert update_id("o311-a", "evt-1") == update_id("o311-a", "evt-1")
    ids = {update_id(r, e) for r in ("o311-a", "o311-b") for e in ("evt-1", "evt-2")}
    assert len(ids) == 4 and all(i.startswith(("o311-a_", "o311-b_")) for i in ids)


def test_a_change_without_applied_events_tells_nothing():
    assert entries_of(None, _order(), []) == []


def _order():
    from feedback.orders import State, WorkOrder

    history = ({"event_id": "e1", "type": "dispatched", "to": "dispatched", "at": iso(NOW)},)
    return WorkOrder("inc-1", State.DISPATCHED, "roads-west", "tsk-1", 1, "pothole", NOW, NOW, history=history)
