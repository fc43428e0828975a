"""The closed loop through a real worker: every path of a work order, on the real broker and Redis."""

from __future__ import annotations

import json
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.conftest import collect, wait_for
from tests.integration.loop import (
    LAT,
    LON,
    events_of,
    iso,
    lifecycle_event,
    order,
    report,
    send,
    short_sla_city,
    wait_order,
)

pytestmark = pytest.mark.integration


def test_happy_path_closes_the_incident_and_everything_merged_into_it(
    workers, producer, topics, bootstrap, redis_client, namespace
):
    """dispatched -> ack -> start -> resolve -> verify -> close; a repeat report that joined it closes with it.

    Each transition is one event on the feedback stream; the same event sent twice is applied once; after the
    close a new report at the same place opens a new incident instead of merging into the closed one.
    """
    workers.start()
    incident = report(producer, topics, "hp-1", "pothole", text="deep pothole outside the school")
    # the repeat after the first has its order: reports on different partitions have no order between them
    dispatched = wait_order(redis_client, namespace, incident, lambda o: o["state"] == "dispatched")
    report(producer, topics, "hp-2", "pothole", lat=LAT + 0.0002, text="pothole by the school gate")
    collect(bootstrap, topics.feedback, lambda rs: any(e["type"] == "merged" for e in events_of(rs)), timeout=30)
    assert dispatched["unit_id"] == "roads-west"
    task = dispatched["task_id"]
    unit = "unit:roads-west"
    ack = lifecycle_event("ack", incident, unit, task)
    for record in [ack, ack, lifecycle_event("start", incident, unit, task),
                   lifecycle_event("resolve", incident, unit, task, note="filled with cold asphalt",
                                   media_url="https://photos.example/after.jpg")]:  # fmt: skip
        send(producer, topics.feedback, incident, record)
    wait_order(redis_client, namespace, incident, lambda o: o["state"] == "resolved")
    send(producer, topics.feedback, incident, lifecycle_event("verify", incident, "ops:ana", note="checked on site"))
    closed = wait_order(redis_client, namespace, incident, lambda o: o["state"] == "closed")

    assert [(h["type"], h["to"]) for h in closed["history"]] == [
        ("dispatched", "dispatched"), ("ack", "acknowledged"), ("start", "in_progress"), ("resolve", "resolved"),
        ("verify", "verified"), ("close", "closed"),
    ]  # fmt: skip
    assert closed["resolution"]["note"] == "filled with cold asphalt"
    feedback = events_of(collect(bootstrap, topics.feedback, lambda rs: False, timeout=1), incident)
    (close,) = [e for e in feedback if e["type"] == "close"]
    assert sorted(close["source_ids"]) == ["report:hp-1", "report:hp-2"]
    assert not redis_client.zrange(f"{namespace}:unit:roads-west:orders", 0, -1), "a closed order leaves the unit"
    later = report(producer, topics, "hp-3", "pothole", text="pothole outside the school again")
    wait_order(redis_client, namespace, later, lambda o: o["state"] == "dispatched")  # a new incident, a new order


def test_rejections_re_dispatch_then_the_ops_centre_arbitrates(
    workers, producer, topics, bootstrap, redis_client, namespace
):
    """roads-west rejects -> its backup roads-east (attempt 2) rejects -> 2 rejections: the ops centre (attempt 3).

    The ops centre assigns it back to roads-west (attempt 4), whose new rejection is refused (arbitration is
    final), as is roads-east acting on a task that is no longer its own; both refusals are dead-lettered with
    stage lifecycle and a reason, and the worker keeps going.
    """
    workers.start()
    incident = report(producer, topics, "rj-1", "pothole")
    first = wait_order(redis_client, namespace, incident, lambda o: o["state"] == "dispatched")
    send(
        producer,
        topics.feedback,
        incident,
        lifecycle_event(
            "reject", incident, "unit:roads-west", first["task_id"], reason_code="outside_remit", reason="private road"
        ),
    )
    second = wait_order(redis_client, namespace, incident, lambda o: o["attempt"] == 2)
    assert (second["state"], second["unit_id"], second["rule"]) == ("dispatched", "roads-east", "backup")
    send(producer, topics.feedback, incident, lifecycle_event("reject", incident, "unit:roads-east", second["task_id"],
                                                              reason_code="wrong_location"))  # fmt: skip
    third = wait_order(redis_client, namespace, incident, lambda o: o["attempt"] == 3)
    assert (third["state"], third["unit_id"], third["rule"]) == ("arbitration", "ops-centre", "arbitration")
    assert [r["unit_id"] for r in third["rejections"]] == ["roads-west", "roads-east"]
    assign = lifecycle_event("assign", incident, "ops:ana", third["task_id"], unit_id="roads-west", attempt=4,
                             reason="the road is public; roads-west owns it")  # fmt: skip
    assign["task_id"] = f"{third['task_id'][:-2]}-4"
    send(producer, topics.feedback, incident, assign)
    fourth = wait_order(redis_client, namespace, incident, lambda o: o["attempt"] == 4)
    assert (fourth["state"], fourth["unit_id"], fourth["arbitrated"]) == ("dispatched", "roads-west", True)
    send(
        producer,
        topics.feedback,
        incident,
        lifecycle_event("reject", incident, "unit:roads-west", fourth["task_id"], reason_code="outside_remit"),
    )
    send(producer, topics.feedback, incident, lifecycle_event("ack", incident, "unit:roads-east", fourth["task_id"]))
    dead = collect(bootstrap, topics.deadletter, lambda rs: len(rs) >= 2, timeout=30)
    assert sorted((d["stage"], d["reason_code"]) for d in events_of(dead)) == [
        ("lifecycle", "illegal_transition"), ("lifecycle", "not_assigned")
    ]  # fmt: skip
    tasks = [json.loads(m.value) for m in collect(bootstrap, topics.tasks, lambda rs: len(rs) >= 4, timeout=30)]
    assert [(t["attempt"], t["unit_id"], t["reason"]["rule"]) for t in tasks] == [
        (1, "roads-west", "first-covering-unit"), (2, "roads-east", "backup"), (3, "ops-centre", "arbitration"),
        (4, "roads-west", "arbitrated"),
    ]  # fmt: skip
    assert order(redis_client, namespace, incident)["state"] == "dispatched"


def test_an_overdue_order_warns_then_escalates_to_the_department_once(
    workers, producer, topics, bootstrap, redis_client, namespace, tmp_path
):
    """A 3 s acknowledge SLA: yellow at 75% (sla_warning), red at breach (escalate to public-works), once each.

    The order shows on the red board until the late acknowledgement stops its clock.
    """
    pack = short_sla_city(tmp_path / "city", {"pothole": ("0.05m", "1h", "1h")})
    workers.start(CITYLOOP_CITY=str(pack))
    incident = report(producer, topics, "late-1", "pothole")
    dispatched = wait_order(redis_client, namespace, incident, lambda o: o["state"] == "dispatched")

    def escalated(records: list) -> bool:
        return any(e["type"] == "escalate" for e in events_of(records, incident))

    feedback = events_of(collect(bootstrap, topics.feedback, escalated, timeout=30), incident)
    warning = [e for e in feedback if e["type"] == "sla_warning"]
    escalation = [e for e in feedback if e["type"] == "escalate"]
    assert len(warning) == 1 and len(escalation) == 1
    assert escalation[0]["supervisor"] == "public-works" and escalation[0]["stage"] == "acknowledge"
    assert escalation[0]["unit_id"] == "roads-west" and escalation[0]["task_id"] == dispatched["task_id"]
    dispatched_at = datetime.fromisoformat(dispatched["created_at"])
    assert datetime.fromisoformat(escalation[0]["due"]) == dispatched_at + timedelta(seconds=3)
    assert wait_for(lambda: redis_client.zscore(f"{namespace}:sla:red", incident) is not None, timeout=10)
    send(
        producer, topics.feedback, incident, lifecycle_event("ack", incident, "unit:roads-west", dispatched["task_id"])
    )
    acked = wait_order(redis_client, namespace, incident, lambda o: o["state"] == "acknowledged")
    assert acked["clocks"]["acknowledge"]["breached"] is True
    assert redis_client.zscore(f"{namespace}:sla:red", incident) is None
    again = events_of(collect(bootstrap, topics.feedback, lambda rs: False, timeout=1), incident)
    assert sum(e["type"] == "escalate" for e in again) == 1


def test_not_fixed_reopens_to_the_same_unit_with_a_new_task(
    workers, producer, topics, bootstrap, redis_client, namespace
):
    """The ops centre finds it not fixed: reopened -> dispatched to the same unit as attempt 2 with fresh clocks.

    The old task id is refused (stale); the new one goes through to closure; the reporter's later 'still broken'
    reopens the closed order again (attempt 3).
    """
    workers.start()
    incident = report(producer, topics, "ro-1", "streetlight", text="street light out all week")
    first = wait_order(redis_client, namespace, incident, lambda o: o["state"] == "dispatched")
    unit, task = f"unit:{first['unit_id']}", first["task_id"]
    for kind in ("ack", "start", "resolve"):
        send(producer, topics.feedback, incident, lifecycle_event(kind, incident, unit, task))
    wait_order(redis_client, namespace, incident, lambda o: o["state"] == "resolved")
    send(producer, topics.feedback, incident, lifecycle_event("reopen", incident, "ops:ana", reason="still dark"))
    second = wait_order(redis_client, namespace, incident, lambda o: o["attempt"] == 2)
    assert (second["state"], second["unit_id"], second["reopens"], second["rule"]) == (
        "dispatched", first["unit_id"], 1, "reopened"
    )  # fmt: skip
    assert second["clocks"]["resolve"]["used"] == 0 and second["clocks"]["resolve"]["since"] is not None
    send(producer, topics.feedback, incident, lifecycle_event("ack", incident, unit, task))
    dead = collect(bootstrap, topics.deadletter, lambda rs: len(rs) >= 1, timeout=30)
    assert [d["reason_code"] for d in events_of(dead)] == ["stale_event"]
    for kind in ("ack", "start", "resolve"):
        send(producer, topics.feedback, incident, lifecycle_event(kind, incident, unit, second["task_id"]))
    wait_order(redis_client, namespace, incident, lambda o: o["state"] == "resolved")
    send(producer, topics.feedback, incident, lifecycle_event("verify", incident, "ops:ana"))
    wait_order(redis_client, namespace, incident, lambda o: o["state"] == "closed")
    send(
        producer,
        topics.feedback,
        incident,
        lifecycle_event("reopen", incident, "ops:ana", reason="reporter: it went out again"),
    )
    third = wait_order(redis_client, namespace, incident, lambda o: o["attempt"] == 3)
    assert third["state"] == "dispatched" and third["reopens"] == 2 and third["closed_at"] is None


def test_a_sensor_incident_verifies_itself_after_a_quiet_period_and_a_re_alarm_reopens_it(
    workers, producer, topics, bootstrap, redis_client, namespace
):
    """A water-level alarm clears; 2 s of normal readings later the sensor verifies it and it closes.

    The sensor alarms again within the reopen window: a new incident opens (the closed one takes no merges) and
    the closed one is reopened and merged into it, so one order carries the problem on.
    """
    workers.start(CITYLOOP_SENSOR_QUIET_S="2")
    now = datetime.now(UTC)

    def reading(value: float, at: datetime) -> None:
        send(
            producer,
            topics.readings,
            "wl-7",
            {
                "sensor_id": "wl-7",
                "kind": "water_level",
                "value": value,
                "unit": "cm",
                "lat": LAT,
                "lon": LON,
                "observed_at": iso(at),
            },
        )

    for seconds, value in [(-20, 10), (-19, 45), (-18, 44), (-1, 12)]:
        reading(value, now + timedelta(seconds=seconds))
    opened = [
        e
        for e in events_of(
            collect(bootstrap, topics.feedback, lambda rs: any(json.loads(m.value)["type"] == "close" for m in rs), 30)
        )
    ]
    first = next(e for e in opened if e["type"] == "dispatched")["incident_id"]
    closed = wait_order(redis_client, namespace, first, lambda o: o["state"] == "closed")
    verify = next(h for h in closed["history"] if h["type"] == "verify")
    assert verify["actor"] == "sensor:wl-7"
    assert datetime.fromisoformat(verify["at"]) >= now + timedelta(seconds=1)  # clear (-1 s) + 2 s quiet

    reading(52, datetime.now(UTC))
    merged = wait_order(redis_client, namespace, first, lambda o: o["state"] == "merged")
    successor = merged["merged_into"]
    assert successor != first and [h["type"] for h in merged["history"]][-2:] == ["reopen", "merge_order"]
    assert order(redis_client, namespace, successor)["state"] == "dispatched"


def test_a_timer_killed_while_breaches_are_due_neither_repeats_nor_loses_one(
    workers, producer, topics, bootstrap, redis_client, namespace, tmp_path
):
    """Twelve orders with a 3 s acknowledge SLA; the worker is SIGKILLed once the first warning is out.

    The breaches fall due while no worker runs. After a restart every order has exactly one sla_warning and one
    escalate record on the feedback stream: each event id once, none missing.
    """
    pack = short_sla_city(tmp_path / "city", {"pothole": ("0.05m", "1h", "1h")})
    env = {"CITYLOOP_CITY": str(pack), "CITYLOOP_TIMER_LEASE_S": "1"}
    first = workers.start(**env)
    incidents = [
        report(producer, topics, f"tk-{i}", "pothole", lat=LAT + 0.003 * (i // 4), lon=LON + 0.004 * (i % 4))
        for i in range(12)
    ]
    orders = [wait_order(redis_client, namespace, i, lambda o: o["state"] == "dispatched") for i in incidents]

    def warned(records: list) -> bool:
        return any(e["type"] == "sla_warning" for e in events_of(records))

    collect(bootstrap, topics.feedback, warned, timeout=30)
    assert first.kill(signal.SIGKILL) == -signal.SIGKILL
    before = events_of(collect(bootstrap, topics.feedback, lambda rs: False, timeout=1))
    escalated_before = sum(e["type"] == "escalate" for e in before)
    assert escalated_before < len(incidents), "the kill must land before every breach was emitted"
    last_due = max(datetime.fromisoformat(o["created_at"]) for o in orders) + timedelta(seconds=3)

    workers.start(**env)
    assert datetime.now(UTC) > last_due, "the breaches fell due while no worker ran"

    def all_escalated(records: list) -> bool:
        return len({e["incident_id"] for e in events_of(records) if e["type"] == "escalate"}) >= len(incidents)

    collect(bootstrap, topics.feedback, all_escalated, timeout=60)
    timer_events = [e for e in events_of(collect(bootstrap, topics.feedback, lambda rs: False, timeout=1))
                    if e["type"] in ("sla_warning", "escalate")]  # fmt: skip
    per_id = Counter(e["event_id"] for e in timer_events)
    assert all(count == 1 for count in per_id.values()), [i for i, c in per_id.items() if c > 1]
    per_order = Counter((e["incident_id"], e["type"]) for e in timer_events)
    assert per_order == Counter({(i, kind): 1 for i in incidents for kind in ("sla_warning", "escalate")})
    print(f"\ntimer drill: {escalated_before} of {len(incidents)} breaches out before the kill; the rest after the "
          f"restart; {len(timer_events)} timer events, each id once")  # fmt: skip
