"""Connectors on a live stack: a real worker, `cityloop connectors`, the API, the real broker and Redis, and local
HTTP servers standing in for the departments' own systems."""

from __future__ import annotations

import json
import time

import pytest
from kafka import KafkaConsumer, TopicPartition

from streams.connectors.signing import sign, verify
from tests.integration.api_helpers import api_client, api_settings
from tests.integration.conftest import collect, wait_for
from tests.integration.department import Department, connected_city, start_connectors
from tests.integration.loop import LAT, LON, order, report

pytestmark = pytest.mark.integration

ROADS, LIGHTS = "roads-west-secret", "lighting-secret"
SECRETS = {"ROADS_WEST_HOOK_SECRET": ROADS, "LIGHTING_HOOK_SECRET": LIGHTS}


@pytest.fixture
def department():
    system = Department()
    system.start()
    yield system
    system.stop()


@pytest.fixture
def city(tmp_path, department):
    return connected_city(tmp_path / "city", {
        "roads-west": {"type": "webhook", "url": department.url("/roads"), "secret_env": "ROADS_WEST_HOOK_SECRET",
                       "retry": {"max_attempts": 5, "initial": "200ms", "max": "400ms"}},
        "lighting": {"type": "webhook", "url": department.url("/lights"), "secret_env": "LIGHTING_HOOK_SECRET",
                     "retry": {"max_attempts": 3, "initial": "2s", "max": "4s"},
                     "breaker": {"failures": 2, "cooldown": "1s"}},
    })  # fmt: skip


@pytest.fixture
def connectors(bootstrap, redis_url, namespace, city, tmp_path):
    process = start_connectors(bootstrap, redis_url, namespace, city, tmp_path, **SECRETS)
    yield process
    process.stop()


def tasks_received(department: Department, path: str) -> list[dict]:
    return [r.json for r in department.delivered(path) if r.json["kind"] == "task"]


def test_tasks_go_out_signed_retried_and_a_dead_system_holds_back_no_other(
    workers, producer, topics, bootstrap, namespace, city, department, connectors
):
    """The lighting department's system answers 503 to everything; roads-west's answers 503 once, then 200.

    Roads-west gets both its tasks, each signed (HMAC over t.body, checked here with the secret) with the task id as
    Idempotency-Key, the first to arrive twice with the same key and body (the retry after the 503), while lighting's
    task still waits in its queue; after 3 failed attempts lighting's task is dead-lettered with the reason. A task
    record written to the topic again (as after a crash) reaches roads-west's system no second time.
    """
    department.defaults["/lights"] = 503
    department.scripts["/roads#task"] = [503]
    workers.start(CITYLOOP_CITY=str(city))
    lights = report(producer, topics, "lt-1", "streetlight", text="streetlight out")
    first = report(producer, topics, "rw-1", "pothole", text="deep pothole")
    second = report(producer, topics, "rw-2", "broken_sidewalk", text="broken kerb")

    assert wait_for(lambda: len(tasks_received(department, "/roads")) == 2, 30), connectors.log()[-2000:]
    assert {t["record"]["incident_id"] for t in tasks_received(department, "/roads")} == {first, second}
    assert not any(r.status < 300 for r in department.received if r.path == "/lights")
    waiting = connectors.health()["connectors"]["lighting"]
    assert waiting["pending"] >= 1, "lighting's task waits in its own queue while roads-west's went out"

    (refused,) = [r for r in department.received if r.path == "/roads" and r.status == 503]  # whichever came first
    tries = [r for r in department.received if r.path == "/roads" and r.json["id"] == refused.json["id"]]
    assert [r.status for r in tries] == [503, 200]
    assert tries[0].body == tries[1].body and tries[0].headers["Idempotency-Key"] == tries[1].headers[
        "Idempotency-Key"] == tries[0].json["record"]["task_id"]  # fmt: skip
    for attempt in tries:
        verify(ROADS.encode(), attempt.headers["X-CityLoop-Signature"], attempt.body, time.time())
    with pytest.raises(ValueError):
        verify(LIGHTS.encode(), tries[0].headers["X-CityLoop-Signature"], tries[0].body, time.time())

    letters = collect(bootstrap, topics.deadletter, lambda rs: any(b":connector:" in r.value for r in rs), timeout=40)
    (letter,) = [json.loads(r.value) for r in letters if b":connector:" in r.value]
    assert (letter["stage"], letter["reason_code"]) == ("connector", "delivery_failed")
    assert letter["deadletter_id"].endswith(":connector:lighting") and "HTTP 503" in letter["reason"]
    assert json.loads(letter["original"])["incident_id"] == lights
    assert len([r for r in department.received if r.path == "/lights" and r.json["kind"] == "task"]) == 3

    (task_record,) = [json.loads(r.value) for r in collect(bootstrap, topics.tasks, lambda rs: False, timeout=1)
                      if json.loads(r.value)["incident_id"] == first]  # fmt: skip
    again = producer.send(topics.tasks, key=first.encode(), value=json.dumps(task_record).encode()).get(timeout=10)
    where = TopicPartition(topics.tasks, again.partition)
    assert wait_for(lambda: _committed(bootstrap, f"{namespace}-worker-connectors", where) > again.offset, 30)
    assert len([r for r in department.delivered("/roads") if r.json["id"] == task_record["task_id"]]) == 1
    metrics = connectors.get("/metrics")[1]
    assert 'cityloop_connector_deadletters_total{connector="lighting",reason="delivery_failed"} 1.0' in metrics
    assert 'cityloop_connector_sent_total{connector="roads-west",kind="task"} 2.0' in metrics
    # its own registry: the dead letter by stage, roads-west's created at 0, and none of the worker's series
    assert 'cityloop_deadletters_total{reason="delivery_failed",stage="connector"} 1.0' in metrics
    assert 'cityloop_connector_deadletters_total{connector="roads-west",reason="delivery_refused"} 0.0' in metrics
    assert "cityloop_worker_ready" not in metrics and "cityloop_ingested_total" not in metrics


def test_a_signed_callback_becomes_a_lifecycle_event_once_and_a_forged_one_changes_nothing(
    workers, producer, topics, bootstrap, redis_url, redis_client, namespace, city, department, connectors, monkeypatch
):
    """roads-west's system acknowledges then resolves through POST /connectors/roads-west/events.

    A tampered body and a stale timestamp are refused (401) and change nothing; the same action retried with its
    Idempotency-Key (signed anew) is one event; a captured request replayed under another key is refused (409);
    the order moves (acknowledged, started, resolved with the note), and the ack comes back to the system as an event.
    """
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    workers.start(CITYLOOP_CITY=str(city))
    incident = report(producer, topics, "cb-1", "pothole", lat=LAT, lon=LON)
    assert wait_for(lambda: len(tasks_received(department, "/roads")) == 1, 30), connectors.log()[-2000:]
    task_id = tasks_received(department, "/roads")[0]["record"]["task_id"]

    def post(client, action: dict, key: str, at: float | None = None, tamper: bool = False, secret: str = ROADS):
        body = json.dumps(action).encode()
        headers = {"X-CityLoop-Signature": sign(secret.encode(), body, at or time.time()), "Idempotency-Key": key,
                   "Content-Type": "application/json"}  # fmt: skip
        sent = body.replace(b"ack", b"resolve") if tamper else body
        return client.post("/connectors/roads-west/events", content=sent, headers=headers), headers

    settings = api_settings(bootstrap, redis_url, namespace, city)
    with api_client(settings) as client:
        ack = {"type": "ack", "task_id": task_id, "note": "crew booked"}
        assert post(client, ack, "wo-77-ack", tamper=True)[0].status_code == 401
        stale, _ = post(client, ack, "wo-77-ack", at=time.time() - 3600)
        assert (stale.status_code, stale.json()["error"]["code"]) == (401, "signature_stale")
        assert post(client, ack, "wo-77-ack", secret=LIGHTS)[0].status_code == 401
        assert client.post("/connectors/parks/events", content=b"{}").status_code == 404  # parks has no connector
        assert order(redis_client, namespace, incident)["state"] == "dispatched"

        first, headers = post(client, ack, "wo-77-ack")
        assert first.status_code == 200, first.text
        assert first.json()["task"]["state"] == "acknowledged"
        again, _ = post(client, ack, "wo-77-ack")  # the system's retry: signed anew, the same key
        assert again.status_code == 200 and again.json()["event_id"] == first.json()["event_id"]
        body = json.dumps(ack).encode()
        replay = client.post("/connectors/roads-west/events", content=body,
                             headers={**headers, "Idempotency-Key": "wo-77-other"})  # fmt: skip
        assert (replay.status_code, replay.json()["error"]["code"]) == (409, "replayed")
        bad = post(client, {"type": "reject", "task_id": task_id}, "wo-77-rej")[0]
        assert bad.status_code == 400
        assert post(client, {"type": "start", "task_id": task_id}, "wo-77-start")[0].status_code == 200
        done = post(client, {"type": "resolve", "task_id": task_id, "note": "patched"}, "wo-77-res")[0]
        assert done.status_code == 200 and done.json()["task"]["state"] == "resolved"

    history = order(redis_client, namespace, incident)["history"]
    assert [h["type"] for h in history] == ["dispatched", "ack", "start", "resolve"]
    assert wait_for(lambda: any(r.json["kind"] == "event" and r.json["id"] == first.json()["event_id"]
                                and r.json["record"].get("by") == "connector:roads-west"
                                for r in department.delivered("/roads")), 30)  # fmt: skip


def _committed(bootstrap: str, group: str, tp: TopicPartition) -> int:
    """The group's committed offset on ``tp`` (what `cityloop connectors` has queued or passed over)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        return consumer.committed(tp) or 0
    finally:
        consumer.close()
