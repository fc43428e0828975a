"""The worker's lifecycle and SLA timer on in-memory stores: orders from events, follow-ups applied once, each
deadline's event emitted once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from streams.ids import iso, report_incident, task_id_for
from tests.unit.pipeline.conftest import report


def unit_event(loop, kind: str, incident: str, unit: str, task_id: str, n: int, **fields):
    return {"schema": 1, "event_id": f"evt-t-{n}", "type": kind, "incident_id": incident, "task_id": task_id,
            "unit_id": unit, "actor": f"unit:{unit}", "at": iso(loop.clock()), **fields}  # fmt: skip


def test_a_rejected_task_goes_to_the_backup_once_with_its_own_deadlines(loop):
    incident = report_incident("r-1")

    async def scenario():
        await loop.reports(report(1))
        start = await loop.loop_back()  # the dispatched event makes the order
        loop.clock.advance(minutes=30)
        reject = unit_event(loop, "reject", incident, "roads-west", task_id_for(incident), 1,
                            reason_code="outside_remit", reason="private road")  # fmt: skip
        _, applied = await loop.feedback(reject)
        _, again = await loop.feedback(reject)  # redelivered
        await loop.loop_back(start)  # the follow-ups come back round: applied already, nothing new
        return applied, again, await loop.parts.lifecycle.orders.load([incident])

    applied, again, orders = asyncio.run(scenario())
    order = orders[incident]
    assert (order.attempt, order.unit_id, order.rule, order.state.value) == (2, "roads-east", "backup", "dispatched")
    tasks = loop.sink.on("tasks")
    assert [t["attempt"] for t in tasks] == [1, 2] and tasks[1]["unit_id"] == "roads-east"
    # the second task's clocks start at the re-dispatch, 30 minutes after the first
    assert tasks[1]["sla"]["acknowledge_by"] == "2026-11-30T14:30:00Z"
    assert tasks[1]["reason"]["explanation"]["rejected_by"] == ["roads-west"]
    assert len(loop.sink.on("feedback", "dispatched")) == 2, "one re-dispatch event"
    assert (applied.tasks, again.emitted, again.tasks) == (1, 0, 0)


def test_a_reject_by_a_unit_that_does_not_hold_the_task_is_dead_lettered_and_the_stream_goes_on(loop):
    incident = report_incident("r-1")

    async def scenario():
        await loop.reports(report(1))
        await loop.loop_back()
        wrong = unit_event(loop, "reject", incident, "parks", task_id_for(incident), 1, reason_code="outside_remit")
        ack = unit_event(loop, "ack", incident, "roads-west", task_id_for(incident), 2)
        _, applied = await loop.feedback(wrong, ack)
        return applied, await loop.parts.lifecycle.orders.load([incident])

    applied, orders = asyncio.run(scenario())
    assert orders[incident].state.value == "acknowledged"
    [letter] = loop.sink.on("deadletter")
    assert letter["stage"] == "lifecycle" and applied.dead_lettered == 1


def test_the_timer_warns_then_escalates_each_deadline_once(loop):
    incident = report_incident("r-1")

    async def scenario():
        await loop.reports(report(1))  # pothole: acknowledge within 4 h
        await loop.loop_back()
        timer = loop.parts.timer
        fired = []
        for minutes in (60, 130, 30, 60, 60):  # 1 h, 3:10 (yellow at 3 h), 3:40, 4:40 (red at 4 h), 5:40
            loop.clock.advance(minutes=minutes)
            fired.append(await timer.fire_due())
        # fired deadlines are marked, not only deduplicated by the ledger: none is left to pop, even after its lease
        later = int((loop.clock() + timedelta(days=30)).timestamp() * 1000)
        left = [m for m in await timer.orders.pop_due(later, 100, 1000) if "|acknowledge|" in m]
        return fired, left

    fired, left = asyncio.run(scenario())
    assert left == []
    warnings = loop.sink.on("feedback", "sla_warning")
    escalations = loop.sink.on("feedback", "escalate")
    assert fired == [0, 1, 0, 1, 0]
    assert [(e["stage"], e["level"]) for e in warnings] == [("acknowledge", "yellow")]
    assert [(e["stage"], e["supervisor"]) for e in escalations] == [("acknowledge", "public-works")]
    assert escalations[0]["incident_id"] == incident


def test_a_timer_round_whose_send_failed_fires_again_after_its_lease_with_the_same_event_id(loop):
    async def scenario():
        await loop.reports(report(1))
        await loop.loop_back()
        timer = loop.parts.timer
        loop.clock.advance(hours=3, minutes=10)
        loop.sink.fail = True
        try:
            await timer.fire_due()
        except ConnectionError:
            pass
        within_lease = await timer.fire_due()
        loop.clock.advance(seconds=timer.lease.total_seconds() + 1)
        after_lease = await timer.fire_due()
        return within_lease, after_lease

    within_lease, after_lease = asyncio.run(scenario())
    assert (within_lease, after_lease) == (0, 1)
    assert len(loop.sink.on("feedback", "sla_warning")) == 1


def test_the_unit_holding_a_task_counts_it_until_it_is_done(loop):
    incident = report_incident("r-1")

    async def scenario():
        await loop.reports(report(1))
        await loop.loop_back()
        units = loop.engine.unit_state.units
        held = await units.loads(["roads-west"])
        task = task_id_for(incident)
        steps = [unit_event(loop, kind, incident, "roads-west", task, n) for n, kind in enumerate(("ack", "start"))]
        await loop.feedback(*steps, unit_event(loop, "resolve", incident, "roads-west", task, 3, note="filled"))
        return held, await units.loads(["roads-west"])

    held, after = asyncio.run(scenario())
    assert (held, after) == ({"roads-west": 1}, {"roads-west": 0})
    assert not loop.sink.on("deadletter")
