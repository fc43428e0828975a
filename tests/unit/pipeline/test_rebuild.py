"""Rebuilding Redis's state from the log, on in-memory stores: a worker's output folded back (streams/logstate.py)
and written into an empty Redis (streams/rebuild.py) must let repeat reports join their incidents and units act on
their tasks, as if Redis had never lost anything; and the state guard (streams/epoch.py) must hold batches back
while the state is missing, with one rebuild at a time."""

from __future__ import annotations

import asyncio
import json

import fakeredis
import pytest

from streams import state as state_module
from streams.citypolicy import calendar_of, policy_for
from streams.epoch import StateBusy, StateGuard, StateLost, install_outage_check
from streams.ids import iso, report_incident, task_id_for
from streams.logstate import LogState
from streams.rebuild import restore_state
from tests.unit.pipeline.conftest import LAT, Loop, Words, report

MODEL = {"flood": ("flooding", 0.95), "hole": ("pothole", 0.97)}
FAR = LAT + 0.01  # about 1.1 km north: a problem of its own


def unit_event(loop: Loop, kind: str, incident: str, unit: str, n: int) -> dict:
    return {"schema": 1, "event_id": f"evt-u-{n}", "type": kind, "incident_id": incident, "unit_id": unit,
            "task_id": task_id_for(incident), "actor": f"unit:{unit}", "at": iso(loop.clock())}  # fmt: skip


async def posted(loop: Loop, event: dict) -> tuple:
    """An event the API writes to the feedback topic (so it is in the log), then read by the worker."""
    loop.sink.sent.append((loop.topics.feedback, event["incident_id"], event))
    return await loop.feedback(event)


def folded(loop: Loop, pack) -> LogState:
    """Everything the loop sent, as the rebuild reads it back from the topics."""
    log = LogState(loop.topics, policy_for(pack, loop.settings, calendar_of(pack)))
    for topic, _, record in loop.sink.sent:
        log.add(topic, json.dumps(record).encode())
    return log


def lost_and_rebuilt(before: Loop, pack, *, rebuild: bool = True) -> Loop:
    """A worker on a Redis that came back empty (restored from ``before``'s log when ``rebuild``)."""
    after = Loop(pack, Words(MODEL))
    after.clock.now = before.clock.now
    after.offset = before.offset
    if rebuild:
        asyncio.run(restore_state(after.settings, pack, after.redis, folded(before, pack)))
    return after


def dispatched_history(pack) -> tuple[Loop, str, str]:
    """Two potholes dispatched; the far one's unit has acknowledged it."""
    loop = Loop(pack, Words(MODEL))
    near, far = report_incident("r-1"), report_incident("r-2")

    async def scenario() -> str:
        await loop.reports(report(1), report(2, lat=FAR))
        await loop.loop_back()
        [far_task] = [t for t in loop.sink.on("tasks") if t["incident_id"] == far]
        await posted(loop, unit_event(loop, "ack", far, far_task["unit_id"], 1))
        return far_task["unit_id"]

    unit = asyncio.run(scenario())
    return loop, near, unit


def test_after_the_rebuild_a_repeat_report_joins_its_incident_and_a_unit_can_go_on_with_its_task(pack):
    before, near, far_unit = dispatched_history(pack)
    far = report_incident("r-2")

    def repeat_and_start(after: Loop):
        async def scenario():
            repeated = await after.reports(report(3, text="deep hole in the road here", lat=LAT + 0.0002))
            _, started = await after.feedback(unit_event(after, "start", far, far_unit, 2))
            return repeated, started, await after.parts.lifecycle.orders.load([far])

        return asyncio.run(scenario())

    repeated, started, orders = repeat_and_start(lost_and_rebuilt(before, pack))
    assert (repeated.merged, repeated.tasks) == (1, 0), "the repeat joined the dispatched incident: no new task"
    assert started.dead_lettered == 0 and orders[far].state.value == "in_progress"

    # the same, without the rebuild: what the drill measured (a new incident and task; the unit's action refused)
    repeated, started, orders = repeat_and_start(lost_and_rebuilt(before, pack, rebuild=False))
    assert (repeated.merged, repeated.tasks) == (0, 1) and started.dead_lettered == 1 and orders[far] is None


def test_after_the_rebuild_a_redelivered_report_is_recognised_and_keeps_its_incident_and_task_ids(pack):
    before, near, _ = dispatched_history(pack)
    after = lost_and_rebuilt(before, pack)
    again = asyncio.run(after.reports(report(1)))  # delivered again (its offset was not committed when Redis went)
    assert (again.duplicates, again.emitted, after.sink.sent) == (1, 0, []), "the ledger says it was sent"
    asyncio.run(after.redis.delete(f"{after.settings.redis_namespace}:ledger:report:r-1"))  # even without that,
    asyncio.run(after.reports(report(1)))
    [task] = after.sink.on("tasks")  # its outcome is sent again with the same ids
    assert (task["incident_id"], task["task_id"]) == (near, task_id_for(near))


def test_a_cancelled_incident_stays_closed_after_the_rebuild_and_a_new_report_there_opens_a_new_one(pack):
    before, near, _ = dispatched_history(pack)
    cancel = {"schema": 1, "event_id": "evt-ops-1", "type": "cancel", "incident_id": near, "actor": "ops:ana",
              "at": iso(before.clock()), "reason": "duplicate of a road works notice"}  # fmt: skip
    asyncio.run(posted(before, cancel))
    log = folded(before, pack)
    assert log.orders[near].state.value == "cancelled"
    after = lost_and_rebuilt(before, pack)
    repeated = asyncio.run(after.reports(report(3, lat=LAT + 0.0002)))
    assert (repeated.merged, repeated.tasks) == (0, 1)


def test_the_rebuild_fills_in_only_what_is_missing(pack):
    before, near, _ = dispatched_history(pack)
    after = lost_and_rebuilt(before, pack)
    again = asyncio.run(restore_state(after.settings, pack, after.redis, folded(before, pack)))
    assert again == (2, 0), "the two incidents are in the index; no order was written twice"
    [order] = asyncio.run(after.parts.lifecycle.orders.load([near])).values()
    assert order.version == 1


class Rebuilds:
    def __init__(self, client, epoch_key: str) -> None:
        self.client, self.epoch_key, self.count = client, epoch_key, 0

    async def __call__(self) -> None:
        self.count += 1
        await asyncio.sleep(0.05)  # long enough for the other worker to find the lock taken


def test_workers_finding_the_epoch_gone_rebuild_once_and_hold_their_batches_until_then():
    client = fakeredis.FakeAsyncRedis()
    rebuilds = Rebuilds(client, "t:state:epoch")
    first, second = (StateGuard(client, "t", rebuilds, poll_s=0.01) for _ in range(2))
    handled: list[str] = []

    async def handle(batch: str) -> str:
        handled.append(batch)
        return batch

    async def scenario():
        with pytest.raises(StateLost):
            await first.verify()
        assert first.problem and "lost its state" in first.problem
        await asyncio.gather(first.gated(handle)("a"), second.gated(handle)("b"))
        epoch = first.epoch
        await client.flushall()  # Redis restarted empty
        await first.gated(handle)("c")
        return epoch

    epoch = asyncio.run(scenario())
    assert sorted(handled[:2]) == ["a", "b"] and handled[2:] == ["c"]
    assert rebuilds.count == 2, "one rebuild for two workers, then one after the second loss"
    assert first.epoch != epoch and first.problem is None and second.problem is None


def test_a_rebuild_in_progress_elsewhere_is_reported_busy():
    client = fakeredis.FakeAsyncRedis()
    guard = StateGuard(client, "t", Rebuilds(client, "t:state:epoch"))

    async def scenario():
        await client.set(guard.lock_key, "someone", ex=30)
        await guard.rebuild_now()

    with pytest.raises(StateBusy):
        asyncio.run(scenario())


def test_a_redis_call_retried_after_an_outage_stops_when_redis_came_back_without_its_state():
    client = fakeredis.FakeAsyncRedis()
    guard = StateGuard(client, "t", Rebuilds(client, "t:state:epoch"))
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("Redis went away")
        return "written into an empty Redis"

    install_outage_check(guard)
    try:
        with pytest.raises(StateLost):
            asyncio.run(state_module.with_retry("merge", flaky))
        assert calls == 1, "the call was not tried again on the empty Redis"
    finally:
        install_outage_check(None)
