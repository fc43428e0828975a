"""The closed loop through a real worker: every path of a work order, on the real broker and Redis."""

from __future__ import annotations

import json
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
    report(producer, topics, "hp-2", "pothole", lat=LAT + 0.0002, text="pothole by the school gate")
    dispatched = wait_order(redis_client, namespace, incident, lambda o: o["sources"] == 2)
    assert dispatched["state"] == "dispatched" and dispatched["unit_id"] == "roads-west"
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
    wait_order(redis_client, namespace, later, lambda o: o["state"] == "dispatched")
    assert order(redis_client, namespace, incident)["sources"] == 2
