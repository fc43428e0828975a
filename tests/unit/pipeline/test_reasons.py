"""Why each task went to its unit, kept for the board: every task sent (first ones by the engine, later ones by
the lifecycle) leaves its explanation under its incident and attempt; nothing else does."""

from __future__ import annotations

import asyncio

import fakeredis

from classifiers.store import RedisIncidentIndex
from feedback.reasons import LARGE, SKIPPED_KEPT, TaskReasons, trimmed
from streams.ids import report_incident, task_id_for
from tests.unit.pipeline.conftest import report
from tests.unit.pipeline.test_lifecycle import unit_event


def test_each_task_sent_keeps_its_explanation_per_attempt_and_a_rejection_adds_the_second(loop):
    incident = report_incident("r-1")

    async def scenario():
        await loop.reports(report(1), report(2, code=None, text="maybe some paint"))  # the second waits for triage
        first = await TaskReasons(loop.redis, loop.settings.redis_namespace).of(incident)
        start = await loop.loop_back()
        reject = unit_event(loop, "reject", incident, "roads-west", task_id_for(incident), 1,
                            reason_code="outside_remit", reason="private road")  # fmt: skip
        await loop.feedback(reject)
        await loop.loop_back(start)
        reasons = TaskReasons(loop.redis, loop.settings.redis_namespace)
        return first, await reasons.of(incident), await reasons.of(report_incident("r-2"))

    first, both, waiting = asyncio.run(scenario())
    assert [(r["attempt"], r["unit_id"], r["rule"]) for r in first] == [(1, "roads-west", "first-covering-unit")]
    outcomes = {c["unit"]: c["outcome"] for c in first[0]["explanation"]["candidates"]}
    assert outcomes == {"roads-west": "chosen", "roads-east": "skipped"}
    assert first[0]["task_id"] == task_id_for(incident)
    assert [(r["attempt"], r["unit_id"], r["rule"]) for r in both] == [(1, "roads-west", "first-covering-unit"),
                                                                        (2, "roads-east", "backup")]  # fmt: skip
    assert both[1]["explanation"]["rejected_by"] == ["roads-west"]
    assert waiting == [], "a report waiting for triage has no task, so no reason"


def test_a_task_whose_send_failed_keeps_no_reason_until_it_is_sent(loop):
    incident = report_incident("r-1")

    async def scenario():
        loop.sink.fail = True
        try:
            await loop.reports(report(1))
        except ConnectionError:
            pass
        reasons = TaskReasons(loop.redis, loop.settings.redis_namespace)
        before = await reasons.of(incident)
        await loop.reports(report(1))  # redelivered: sent this time, as stored
        return before, await reasons.of(incident)

    before, after = asyncio.run(scenario())
    assert before == [] and [r["unit_id"] for r in after] == ["roads-west"]


def test_an_incident_keeps_what_each_merged_report_said_and_stops_at_its_limit(loop, monkeypatch):
    from classifiers import store

    incident = report_incident("r-1")
    monkeypatch.setattr(store, "SAID_KEPT_TEXT", "3")

    async def scenario():
        await loop.reports(report(1, text="deep hole in the road by the school"))
        await loop.reports(*(report(n, text=f"hole number {n}") for n in range(2, 6)))  # four more join it
        return await RedisIncidentIndex(loop.redis, loop.settings.redis_namespace).said(incident)

    said = asyncio.run(scenario())
    assert sorted(said) == ["report:r-1", "report:r-2", "report:r-3"], "the first three kept, the rest not"
    assert said["report:r-1"]["text"] == "deep hole in the road by the school"
    assert said["report:r-1"]["channel"] == "app" and said["report:r-1"]["at"].startswith("2026-11-30T10:00")


def test_a_long_explanation_keeps_the_winners_and_losers_and_counts_the_skipped_it_drops():
    candidates = [{"unit": "a", "outcome": "chosen", "why": "w"}, {"unit": "b", "outcome": "lost", "why": "w"}]
    candidates += [{"unit": f"s{i}", "outcome": "skipped", "why": "w"} for i in range(SKIPPED_KEPT + 5)]
    kept = trimmed({"rule": "r", "candidates": candidates})
    assert [c["unit"] for c in kept["candidates"][:2]] == ["a", "b"]
    assert len(kept["candidates"]) == 2 + SKIPPED_KEPT and kept["skipped_more"] == 5
    short = {"candidates": candidates[:5]}
    assert trimmed(short) == short and "skipped_more" not in trimmed(short)


def test_reasons_expire_with_the_retention_come_back_in_attempt_order_and_a_long_one_is_stored_trimmed():
    import orjson

    async def scenario():
        client = fakeredis.FakeAsyncRedis()
        reasons = TaskReasons(client, "ns", retention_s=600)
        tasks = [{"incident_id": "inc-1", "task_id": f"t-{n}", "attempt": n, "unit_id": f"u{n}",
                  "reason": {"rule": "r", "explanation": {}}} for n in (10, 2, 1)]  # fmt: skip
        skipped = [{"unit": f"s{i}", "outcome": "skipped", "why": "x" * 200} for i in range(40)]
        tasks.append({"incident_id": "inc-2", "task_id": "t-big", "attempt": 1, "unit_id": "u",
                      "reason": {"rule": "r", "explanation": {"candidates": skipped}}})  # fmt: skip
        await reasons.save([(task, orjson.dumps(task)) for task in tasks])
        stored = await client.hget("ns:why:inc-2", "1")
        return await reasons.of("inc-1"), await client.ttl("ns:why:inc-1"), stored, await reasons.of("inc-2")

    kept, ttl, stored, big = asyncio.run(scenario())
    assert [r["attempt"] for r in kept] == [1, 2, 10], "attempt 10 after 2: numbers, not text"
    assert 0 < ttl <= 600
    assert len(stored) < LARGE, "a 40-candidate explanation is stored trimmed"
    assert big[0]["explanation"]["skipped_more"] == 40 - SKIPPED_KEPT
