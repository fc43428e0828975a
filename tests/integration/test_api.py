"""The HTTP API against the real broker and Redis: Open311, field units, the ops centre, errors and limits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from streams.ids import stable_id
from tests.integration.api_helpers import (
    OPEN311_KEY,
    api_client,
    api_settings,
    bearer,
    demo_pack,
    issue_token,
    post_request,
    send_unsure_report,
)
from tests.integration.conftest import collect, free_port, wait_for
from tests.integration.loop import short_sla_city

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers]


@pytest.fixture
def city(tmp_path):
    return demo_pack(tmp_path / "city")


class BrokenWriter:
    async def write(self, topic: str, key: str, record: dict) -> None:
        raise RuntimeError("secret internal detail: broker exploded at /srv/cityloop/writer.py line 42")


def open311_error(response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert isinstance(body, list) and body[0]["code"] == status and body[0]["description"]
    return body[0]["description"]


def test_open311_services_validation_and_errors(bootstrap, redis_url, namespace, city, topics):
    """services.json and services/{code}.json describe the pack; bad input gets Open311's [{code, description}].

    A missing or wrong api_key (403), half a location, an overlong description, a JSON body, an unknown service, a
    query window over 90 days and unknown ids are refused; an oversized body is 413; nothing reaches the broker.
    """
    settings = api_settings(bootstrap, redis_url, namespace, city)
    with api_client(settings) as client:
        services = client.get("/open311/v2/services.json").json()
        assert {"service_code": "pothole", "service_name": "Pothole"}.items() <= services[0].items()
        assert len(services) == 15 and all(s["type"] == "realtime" and s["metadata"] is False for s in services)
        assert client.get("/open311/v2/services/pothole.json").json() == {"service_code": "pothole", "attributes": []}
        open311_error(client.get("/open311/v2/services/dragons.json"), 404)

        assert "api_key" in open311_error(post_request(client, api_key=None), 403)
        open311_error(post_request(client, api_key="guess"), 403)
        assert "together" in open311_error(post_request(client, lat=None, address_string="Main St 1"), 400)
        open311_error(post_request(client, lat="north"), 400)
        open311_error(post_request(client, long="200"), 400)
        open311_error(post_request(client, service_code="dragons"), 404)
        assert "4000" in open311_error(post_request(client, description="x" * 4001), 400)
        open311_error(post_request(client, media_url="javascript:alert(1)"), 400)
        json_body = client.post("/open311/v2/requests.json", json={"api_key": OPEN311_KEY, "service_code": "pothole"})
        open311_error(json_body, 400)
        big = client.post("/open311/v2/requests.json", data={"api_key": OPEN311_KEY, "description": "x" * 5000})
        assert "larger than 4096" in open311_error(big, 413)

        now = datetime.now(UTC)
        query = {"start_date": (now - timedelta(days=91)).isoformat(), "end_date": now.isoformat()}
        assert "90 days" in open311_error(client.get("/open311/v2/requests.json", params=query), 400)
        open311_error(client.get("/open311/v2/requests.json", params={"start_date": "last tuesday"}), 400)
        open311_error(client.get("/open311/v2/requests.json", params={"status": "pending"}), 400)
        open311_error(client.get("/open311/v2/requests/o311-nope.json"), 404)
        open311_error(client.get("/open311/v2/tokens/nope.json"), 404)
        assert client.get("/open311/v2/requests.json").json() == []
    assert collect(bootstrap, topics.reports, lambda rs: False, timeout=1) == []


def test_a_crash_answers_500_with_a_request_id_and_no_trace(bootstrap, redis_url, namespace, city, caplog):
    """An unexpected failure answers a generic 500 naming the request id; the trace goes to the log only."""
    settings = api_settings(bootstrap, redis_url, namespace, city)
    with api_client(settings, writer=BrokenWriter()) as client:
        response = post_request(client, **{})
        body = response.json()
        assert response.status_code == 500
        rid = response.headers["X-Request-ID"]
        assert rid in body[0]["description"] and "secret" not in response.text and "Traceback" not in response.text
        # the request is not kept when its report could not be written
        assert client.get("/open311/v2/requests.json").json() == []
        unit = issue_token(redis_url, namespace, "roads-west")
        own = client.get("/units/me", headers={**bearer(unit), "X-Request-ID": "trace-me-1"})
        assert own.headers["X-Request-ID"] == "trace-me-1"
    assert any("secret internal detail" in r.getMessage() or r.exc_info for r in caplog.records)


def test_units_need_a_token_and_the_ops_routes_need_the_ops_centres(bootstrap, redis_url, namespace, city):
    """No token or an unknown one: 401 with WWW-Authenticate; a unit's token on /ops: 403; a revoked token: 401."""
    settings = api_settings(bootstrap, redis_url, namespace, city)
    with api_client(settings) as client:
        missing = client.get("/units/me/tasks")
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"].startswith("Bearer")
        assert missing.json()["error"]["code"] == "unauthorized"
        assert client.get("/units/me/tasks", headers=bearer("clu_made-up")).status_code == 401
        unit = issue_token(redis_url, namespace, "roads-west", holder="jan")
        me = client.get("/units/me", headers=bearer(unit)).json()
        assert me == {"unit_id": "roads-west", "name": "Roads crew West", "kind": "field_team",
                      "department": "public-works", "holder": "jan", "ops_centre": False}  # fmt: skip
        assert client.get("/ops/sla", headers=bearer(unit)).status_code == 403
        ops = issue_token(redis_url, namespace, "ops-centre", holder="ana")
        board = client.get("/ops/sla", headers=bearer(ops)).json()
        assert board["counts"] == {"yellow": 0, "red": 0}
        bad = client.post("/units/me/tasks/tsk-x-1/reject", headers=bearer(unit), json={"reason_code": "bored"})
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_request"
        extra = client.post("/units/me/tasks/tsk-x-1/ack", headers=bearer(unit), json={"note": "x", "admin": True})
        assert extra.status_code == 400
        huge = client.post("/units/me/tasks/tsk-x-1/resolve", headers=bearer(unit), content=b"{" + b" " * 5000 + b"}")
        assert huge.status_code == 413 and huge.json()["error"]["code"] == "too_large"
        assert client.get("/units/me/tasks/tsk-x-1", headers=bearer(unit)).status_code == 404

    from click.testing import CliRunner

    from streams.cli import main

    env = {"CITYLOOP_REDIS_URL": redis_url, "CITYLOOP_TOPIC_PREFIX": namespace, "CITYLOOP_CITY": str(city)}
    revoked = CliRunner().invoke(main, ["units", "token", "roads-west", "--revoke"], env=env)
    assert revoked.exit_code == 0 and "revoked 1 token" in revoked.output
    issued = CliRunner().invoke(main, ["units", "token", "roads-east"], env=env)
    assert issued.exit_code == 0 and issued.output.startswith("clu_")
    with api_client(settings) as client:
        assert client.get("/units/me", headers=bearer(unit)).status_code == 401
        assert client.get("/units/me", headers=bearer(issued.output.strip())).json()["unit_id"] == "roads-east"


def wait_json(client, url: str, check, headers=None, timeout: float = 30.0):
    """GET ``url`` until ``check(json)`` holds; the last answer otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(url, headers=headers).json()
        if check(body) or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def test_a_reported_pothole_through_open311_and_a_field_units_day(
    workers, bootstrap, redis_url, namespace, city, topics
):
    """Open311 POST -> a task for roads-west; the unit lists, acknowledges, starts and resolves it over the API.

    Another unit can neither see nor change it (404). A second report at the same place joins the incident; after
    the ops centre verifies, both requests read closed with the unit's name and notes, and the status filters of
    requests.json follow.
    """
    workers.start(CITYLOOP_CITY=str(city))
    settings = api_settings(bootstrap, redis_url, namespace, city)
    west = bearer(issue_token(redis_url, namespace, "roads-west", holder="jan"))
    east = bearer(issue_token(redis_url, namespace, "roads-east"))
    ops = bearer(issue_token(redis_url, namespace, "ops-centre", holder="ana"))
    with api_client(settings) as client:
        posted = post_request(client, email="resident@example.org", first_name="Kim", address_string="Schoolstraat 4")
        assert posted.status_code == 201, posted.text
        (receipt,) = posted.json()
        request_id = receipt["service_request_id"]
        assert "token" not in receipt  # the id is known at once: GeoReport v2 returns one or the other
        tasks = collect(bootstrap, topics.tasks, lambda rs: len(rs) >= 1, timeout=30)
        task = json.loads(tasks[0].value)
        assert task["incident_id"] == stable_id("inc", "report", request_id) and task["unit_id"] == "roads-west"
        task_id = task["task_id"]
        mine = wait_json(client, "/units/me/tasks", lambda b: len(b["tasks"]) == 1, headers=west)
        assert mine["tasks"][0]["task_id"] == task_id and mine["tasks"][0]["address"] == "Schoolstraat 4"
        status = client.get(f"/open311/v2/requests/{request_id}.json").json()[0]
        assert status["status"] == "open" and status["agency_responsible"] == "Roads crew West"
        assert status["expected_datetime"] == task["sla"]["resolve_by"]

        assert client.get(f"/units/me/tasks/{task_id}", headers=east).status_code == 404
        assert client.post(f"/units/me/tasks/{task_id}/ack", headers=east).status_code == 404
        assert client.get("/units/me/tasks", headers=east).json()["tasks"] == []
        early = client.post(f"/units/me/tasks/{task_id}/resolve", headers=west, json={"note": "done"})
        assert early.status_code == 409 and "allowed: ack" in early.json()["error"]["message"]

        retry = {**west, "Idempotency-Key": "ack-from-tablet-7"}
        for _ in range(2):  # a retried call is the same event: applied once
            acked = client.post(f"/units/me/tasks/{task_id}/ack", headers=retry)
            assert acked.status_code == 200 and acked.json()["task"]["state"] == "acknowledged", acked.text
        started = client.post(f"/units/me/tasks/{task_id}/start", headers=west, json={"note": "on site"})
        assert started.status_code == 200
        waiting = client.post(
            f"/units/me/tasks/{task_id}/wait", headers=west, json={"reason": "which side of the road"}
        )
        assert waiting.status_code == 200 and waiting.json()["task"]["sla"]["resolve_by"] is None
        paused = client.get(f"/open311/v2/requests/{request_id}.json").json()[0]
        assert paused["status_notes"].endswith("which side of the road.") and paused["expected_datetime"] is None
        assert client.post(f"/units/me/tasks/{task_id}/resume", headers=west).status_code == 200
        photo = "https://photos.example/p1.jpg"
        answer = client.post(f"/units/me/tasks/{task_id}/resolve", headers=west, json={"note": "filled",
                                                                                       "media_url": photo})  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.json()["task"]["state"] == "resolved" and answer.json()["task"]["sla"]["verify_by"]
        again = client.post(f"/units/me/tasks/{task_id}/resolve", headers=west, json={"note": "filled"})
        assert again.status_code == 409

        second = post_request(client, lat="51.9902", description="pothole by the school gate").json()[0]
        second_id = second["service_request_id"]
        wait_json(client, f"/ops/incidents/{task['incident_id']}", lambda b: len(b["sources"]) == 2, headers=ops)
        verified = client.post(f"/ops/orders/{task['incident_id']}/verify", headers=ops, json={"note": "seen"})
        assert verified.status_code == 200 and verified.json()["task"]["state"] == "closed"
        for rid in (request_id, second_id):
            closed = client.get(f"/open311/v2/requests/{rid}.json").json()[0]
            assert closed["status"] == "closed" and closed["status_notes"].startswith("Fixed and verified")
            assert closed["agency_responsible"] == "Roads crew West"
        listed = client.get("/open311/v2/requests.json", params={"status": "closed", "service_code": "pothole"})
        assert {r["service_request_id"] for r in listed.json()} == {request_id, second_id}
        assert client.get("/open311/v2/requests.json", params={"status": "open"}).json() == []
        both = client.get("/open311/v2/requests.json", params={"service_request_id": f"{request_id},{second_id}"})
        assert len(both.json()) == 2
        record = client.get(f"/ops/tasks/{task_id}", headers=ops).json()
        assert record["current"] and [h["type"] for h in record["order"]["history"]] == [
            "dispatched", "ack", "start", "wait", "resume", "resolve", "verify", "close"
        ]  # fmt: skip
        assert record["order"]["history"][1]["actor"] == "unit:roads-west"


def test_the_ops_centre_triages_watches_the_board_merges_and_cancels(
    workers, bootstrap, redis_url, namespace, tmp_path
):
    """Triage: an unsure report waits; the ops centre's decision dispatches it. The SLA board counts a red litter
    order under its unit and category. Merging one order into another makes its request follow; cancelling the
    survivor closes both requests 'without action'. A reassignment sends the order to the named unit."""
    city = short_sla_city(tmp_path / "city", {"litter": ("0.05m", "1h", "1h")})
    workers.start(CITYLOOP_CITY=str(city), CITYLOOP_TRIAGE_THRESHOLD="0.99")
    settings = api_settings(bootstrap, redis_url, namespace, city)
    ops = bearer(issue_token(redis_url, namespace, "ops-centre", holder="ana"))
    with api_client(settings) as client:
        # an unsure report (no service code) waits for a person
        unsure = post_request(client, service_code="graffiti", description="strange smell near the canal").json()
        assert unsure[0]["service_request_id"]
        odd = send_unsure_report(bootstrap, namespace)
        waiting = wait_json(client, "/ops/triage", lambda b: len(b["waiting"]) == 1, headers=ops)["waiting"]
        assert waiting[0]["text"] == odd["text"]
        incident = waiting[0]["incident_id"]
        decided = client.post(f"/ops/triage/{incident}/decision", headers=ops, json={"category": "illegal_dumping"})
        assert decided.status_code == 200 and decided.json()["task"]["unit_id"] == "cleansing-south"
        assert (
            client.post(f"/ops/triage/{incident}/decision", headers=ops, json={"category": "litter"}).status_code == 409
        )
        assert client.post("/ops/triage/x/decision", headers=ops, json={"category": "dragons"}).status_code == 400

        # a litter order with a 3 s acknowledge SLA turns red on the board
        litter = post_request(client, service_code="litter", lat="51.985", description="bags torn open").json()[0]
        litter_incident = stable_id("inc", "report", litter["service_request_id"])
        board = wait_json(client, "/ops/sla", lambda b: b["counts"].get("red") == 1, headers=ops)
        assert board["by_unit"] == {"cleansing-south": {"yellow": 0, "red": 1}}
        assert board["by_department"] == {"public-works": {"yellow": 0, "red": 1}}
        assert board["by_category"] == {"litter": {"yellow": 0, "red": 1}}
        assert board["orders"]["red"][0]["incident_id"] == litter_incident

        # merge the graffiti order into the litter one, then cancel the litter one: both requests close
        graffiti_incident = stable_id("inc", "report", unsure[0]["service_request_id"])
        wait_json(client, f"/ops/incidents/{graffiti_incident}", lambda b: b["order"] is not None, headers=ops)
        merged = client.post(f"/ops/orders/{graffiti_incident}/merge", headers=ops,
                             json={"into": litter_incident, "reason": "same corner, same mess"})  # fmt: skip
        assert merged.status_code == 200 and merged.json()["task"]["state"] == "merged"
        follows = client.get(f"/open311/v2/requests/{unsure[0]['service_request_id']}.json").json()[0]
        assert follows["status"] == "open" and follows["agency_responsible"] == "Cleansing team South"
        moved = client.post(f"/ops/orders/{litter_incident}/assign", headers=ops,
                            json={"unit_id": "cleansing-central", "reason": "south is on strike"})  # fmt: skip
        assert moved.status_code == 200 and moved.json()["task"]["unit_id"] == "cleansing-central"
        assert moved.json()["task"]["attempt"] == 2
        cancelled = client.post(f"/ops/orders/{litter_incident}/cancel", headers=ops, json={"reason": "cleared"})
        assert cancelled.status_code == 200
        for request_id in (litter["service_request_id"], unsure[0]["service_request_id"]):
            closed = client.get(f"/open311/v2/requests/{request_id}.json").json()[0]
            assert closed["status"] == "closed" and closed["status_notes"] == "Closed without action: cleared."
        assert client.post(f"/ops/orders/{litter_incident}/cancel", headers=ops,
                           json={"reason": "again"}).status_code == 409  # fmt: skip
        assert wait_json(client, "/ops/sla", lambda b: b["counts"].get("red") == 0, headers=ops)["counts"]["red"] == 0


def test_cityloop_api_serves_openapi_and_pushes_new_assignments_over_sse(
    workers, bootstrap, redis_url, namespace, city, tmp_path
):
    """A real `cityloop api` process: /health, the OpenAPI document, and a unit's event stream that delivers the
    assignment of a report posted through Open311 (the ops centre's stream stays silent about it)."""
    workers.start(CITYLOOP_CITY=str(city))
    port = free_port()
    env = {**os.environ, "CITYLOOP_KAFKA_BOOTSTRAP": bootstrap, "CITYLOOP_REDIS_URL": redis_url,
           "CITYLOOP_TOPIC_PREFIX": namespace, "CITYLOOP_CITY": str(city), "CITYLOOP_API_PORT": str(port),
           "CITYLOOP_OPEN311_API_KEYS": OPEN311_KEY}  # fmt: skip
    log_path = tmp_path / "api.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "streams.cli", "api"], env=env, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: _answers(f"{base}/health"), timeout=30), log_path.read_text()
        document = httpx.get(f"{base}/openapi.json").json()
        assert "/open311/v2/requests.json" in document["paths"] and "/units/me/events" in document["paths"]
        assert "HTTPBearer" in document["components"]["securitySchemes"]
        httpx.request("INVENTED", f"{base}/health")
        scraped = httpx.get(f"{base}/metrics").text
        assert 'cityloop_api_requests_total{method="GET",route="/openapi.json",status="200"} 1.0' in scraped
        # the live process serves its own series: an invented method is `other`, no worker series (it exported
        # cityloop_worker_ready 0, which fired CityLoopWorkerNotReady on the API)
        assert 'method="other"' in scraped and "INVENTED" not in scraped
        assert "cityloop_worker_ready" not in scraped and "cityloop_faust_" not in scraped
        token = issue_token(redis_url, namespace, "roads-west")
        received: list[str] = []
        connected = threading.Event()

        def listen() -> None:
            with httpx.stream("GET", f"{base}/units/me/events", params={"max_events": 1}, headers=bearer(token),
                              timeout=30) as stream:  # fmt: skip
                for line in stream.iter_lines():
                    if line.startswith(": connected"):
                        connected.set()
                    received.append(line)

        listener = threading.Thread(target=listen)
        listener.start()
        assert connected.wait(10)
        form = {"api_key": OPEN311_KEY, "service_code": "pothole", "lat": "51.99", "long": "5.06",
                "description": "pothole"}  # fmt: skip
        posted = httpx.post(f"{base}/open311/v2/requests.json", data=form).json()[0]
        listener.join(timeout=30)
        assert not listener.is_alive()
        events = [line for line in received if line.startswith(("event:", "data:", "id:"))]
        assert events[1] == "event: assignment"
        data = json.loads(events[2][len("data: ") :])
        assert data["incident_id"] == stable_id("inc", "report", posted["service_request_id"])
        assert data["unit_id"] == "roads-west" and data["state"] == "dispatched"
        missed = httpx.get(f"{base}/units/me/events", params={"max_events": 1}, timeout=10,
                           headers={**bearer(token), "Last-Event-ID": "0-0"})  # fmt: skip
        assert "event: assignment" in missed.text, "reconnecting with Last-Event-ID replays what was missed"
        assert httpx.get(f"{base}/units/me/events").status_code == 401
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0, "a graceful stop on SIGTERM exits 0, as the README says"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_recategorising_routes_the_order_again_and_tells_both_units(
    workers, bootstrap, redis_url, namespace, city, topics, redis_client
):
    """A 'pothole' that is really a blocked drain: the ops centre changes the category while roads-west works on it.

    The order is routed again under the new category (water-west, attempt 2) with the re-routing in the task's
    explanation and the new category's SLA; roads-west's inbox gets a withdrawal and its task is gone from its
    list and its load, water-west's gets the assignment; a later report of a blocked drain there joins the
    incident. A second change that keeps the unit (a burst main is also water-west's) is a new task for the same
    unit. Stale or unknown changes are refused.
    """
    from dispatch.store import UnitStore

    workers.start(CITYLOOP_CITY=str(city))
    settings = api_settings(bootstrap, redis_url, namespace, city)
    west = bearer(issue_token(redis_url, namespace, "roads-west"))
    water = bearer(issue_token(redis_url, namespace, "water-west"))
    ops = bearer(issue_token(redis_url, namespace, "ops-centre", holder="ana"))
    units = UnitStore(redis_client, namespace)
    with api_client(settings) as client:
        posted = post_request(client, description="water pours out of a hole in the road").json()[0]
        incident = stable_id("inc", "report", posted["service_request_id"])
        first = wait_json(client, "/units/me/tasks", lambda b: len(b["tasks"]) == 1, headers=west)["tasks"][0]
        assert client.post(f"/units/me/tasks/{first['task_id']}/ack", headers=west).status_code == 200
        assert client.post(f"/units/me/tasks/{first['task_id']}/start", headers=west).status_code == 200

        unknown = client.post(f"/ops/orders/{incident}/recategorise", headers=ops,
                              json={"category": "dragons", "reason": "?"})  # fmt: skip
        assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "unknown_category"
        same = client.post(f"/ops/orders/{incident}/recategorise", headers=ops,
                           json={"category": "pothole", "reason": "no change"})  # fmt: skip
        assert same.status_code == 409 and same.json()["error"]["code"] == "illegal_transition"

        moved = client.post(f"/ops/orders/{incident}/recategorise", headers=ops,
                            json={"category": "blocked_drain", "reason": "the crew found a blocked drain"})  # fmt: skip
        assert moved.status_code == 200, moved.text
        task = moved.json()["task"]
        assert (task["unit_id"], task["attempt"], task["category"], task["state"]) == (
            "water-west", 2, "blocked_drain", "dispatched")  # fmt: skip
        tasks = [json.loads(m.value) for m in collect(bootstrap, topics.tasks, lambda rs: len(rs) >= 2, timeout=30)]
        second = tasks[1]
        assert (second["unit_id"], second["attempt"], second["category"]) == ("water-west", 2, "blocked_drain")
        why = second["reason"]["explanation"]["recategorised"]
        assert (why["from"], why["to"], why["previous_unit"]) == ("pothole", "blocked_drain", "roads-west")
        assert second["reason"]["explanation"]["decided_by"] == "ops:ana"
        assert second["sla"]["acknowledge_by"] != tasks[0]["sla"]["acknowledge_by"]

        assert client.get("/units/me/tasks", headers=west).json()["tasks"] == []
        gone = client.post(f"/units/me/tasks/{first['task_id']}/resolve", headers=west, json={"note": "done"})
        assert gone.status_code == 404
        inbox = redis_client.xrange(f"{namespace}:unit:roads-west:inbox")
        withdrawn = [json.loads(fields[b"data"]) for _, fields in inbox if fields[b"event"] == b"withdrawn"]
        assert [w["task_id"] for w in withdrawn] == [first["task_id"]]
        water_inbox = redis_client.xrange(f"{namespace}:unit:water-west:inbox")
        assigned = [json.loads(f[b"data"]) for _, f in water_inbox if f[b"event"] == b"assignment"]
        assert [a["task_id"] for a in assigned] == [second["task_id"]]
        assert [t["task_id"] for t in client.get("/units/me/tasks", headers=water).json()["tasks"]] == [
            second["task_id"]]  # fmt: skip
        assert units.loads(["roads-west", "water-west"]) == {"roads-west": 0, "water-west": 1}
        request = client.get(f"/open311/v2/requests/{posted['service_request_id']}.json").json()[0]
        assert request["agency_responsible"] == "Water crew West"
        # a neighbour reports the blocked drain itself: it joins the re-categorised incident, no second task
        post_request(client, service_code="blocked_drain", lat="51.9901", description="drain blocked, road flooded")
        joined = wait_json(client, f"/ops/incidents/{incident}", lambda b: len(b["sources"]) == 2, headers=ops)
        assert len(joined["sources"]) == 2

        handed = client.post(f"/ops/orders/{incident}/assign", headers=ops,
                             json={"unit_id": "roads-east", "reason": "east has the pump"})  # fmt: skip
        assert handed.status_code == 200 and handed.json()["task"]["attempt"] == 3
        back = client.post(f"/ops/orders/{incident}/recategorise", headers=ops,
                           json={"category": "water_main_break", "reason": "it is the main"})  # fmt: skip
        assert back.status_code == 200, back.text
        third = back.json()["task"]
        # the burst main is water-west's again (roads-east held it after the reassignment): attempt 4
        assert (third["unit_id"], third["attempt"], third["category"]) == ("water-west", 4, "water_main_break")
        history = client.get(f"/ops/incidents/{incident}", headers=ops).json()["order"]["history"]
        assert [h["type"] for h in history] == ["dispatched", "ack", "start", "recategorise", "dispatched", "assign",
                                                "recategorise", "dispatched"]  # fmt: skip
        assert units.loads(["roads-east", "water-west"]) == {"roads-east": 0, "water-west": 1}
