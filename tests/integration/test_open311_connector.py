"""The open311 connector end to end: a second CityLoop plays the department's Open311 system.

Two CityLoop instances share the broker and Redis under different topic prefixes (and so Redis namespaces). In
city A, roads-west is served by instance B through an ``open311`` connector; B has the same categories and its
own roads-west crew. A's worker and ``cityloop connectors`` run as processes, as do B's worker; B's API is served
in-process on a real port (the connector reaches it over HTTP), A's API through a test client.
"""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path

import httpx
import pytest

from dispatch import load_city_pack
from dispatch.demo_city import write_demo_city
from streams.admin import ensure_topics
from streams.api import create_api
from streams.ids import report_incident
from streams.topics import Topics
from tests.browser.conftest import serving
from tests.integration.api_helpers import OPEN311_KEY, api_client, api_settings, bearer, issue_token, post_request
from tests.integration.conftest import WorkerFactory, collect, wait_for
from tests.integration.department import connected_city, start_connectors
from tests.integration.loop import events_of, order, wait_order

pytestmark = pytest.mark.integration

NOTES = {"acknowledged": "has taken the request", "resolved": "reports it fixed", "rejected": "^Closed without action"}


@pytest.fixture
def namespace_b(redis_client):
    prefix = f"t{uuid.uuid4().hex[:10]}"
    yield prefix
    keys = list(redis_client.scan_iter(f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 500):
        redis_client.delete(*keys[start : start + 500])


@pytest.fixture
def instance_b(bootstrap, redis_url, namespace_b, tmp_path):
    """City B: its worker (a process) and its API on a free port; yields (base URL, its namespace)."""
    (tmp_path / "b").mkdir()
    city = write_demo_city(tmp_path / "b" / "city")
    settings = api_settings(bootstrap, redis_url, namespace_b, city)
    ensure_topics(bootstrap, Topics(namespace_b).all(), settings.partitions)
    factory = WorkerFactory(bootstrap, redis_url, namespace_b, tmp_path / "b")
    factory.start(CITYLOOP_CITY=str(city))
    try:
        with serving(create_api(settings, load_city_pack(city))) as url:
            yield url
    finally:
        factory.stop_all()


def requests_at(base: str, **params: str) -> list[dict]:
    answer = httpx.get(f"{base}/open311/v2/requests.json", params=params, timeout=10)
    answer.raise_for_status()
    return answer.json()


def city_a(root: Path, b_url: str, service_codes: dict[str, str]) -> Path:
    """City A, whose roads-west is served by B's Open311 endpoint."""
    return connected_city(root, {"roads-west": {
        "type": "open311", "url": f"{b_url}/open311/v2", "api_key_env": "CITY_B_OPEN311_KEY",
        "service_codes": service_codes, "poll_every": "1s", "status_notes": NOTES,
        "retry": {"max_attempts": 5, "initial": "200ms", "max": "1s"},
    }})  # fmt: skip


def test_a_task_for_the_connected_unit_is_a_request_in_the_other_city_and_its_crews_work_comes_back(
    workers, bootstrap, redis_url, redis_client, namespace, namespace_b, instance_b, tmp_path: Path
):
    """A report to A for roads-west becomes one Open311 request in B, which B dispatches to its own roads-west.

    B's crew acknowledges through B's units API: A's connector polls B, and A's order is acknowledged (by
    ``connector:roads-west``). B's crew starts and resolves: A's order is resolved with B's status notes, and the
    reporter's Open311 request at A reads that roads-west reports it fixed. B holds one request, not two.
    """
    b_url = instance_b
    pack = city_a(tmp_path / "a", b_url, {"pothole": "pothole", "broken_sidewalk": "broken_sidewalk"})
    workers.start(CITYLOOP_CITY=str(pack))
    connectors = start_connectors(bootstrap, redis_url, namespace, pack, tmp_path, CITY_B_OPEN311_KEY=OPEN311_KEY)
    try:
        with api_client(api_settings(bootstrap, redis_url, namespace, pack)) as a:
            posted = post_request(a, service_code="pothole", description="deep pothole by the school")
            assert posted.status_code == 201, posted.text
            reporter_request = posted.json()[0]["service_request_id"]
            incident_a = report_incident(reporter_request)
            first = wait_order(redis_client, namespace, incident_a, lambda o: o["state"] == "dispatched")
            assert first["unit_id"] == "roads-west"

            def at_b() -> list[dict]:
                return [r for r in requests_at(b_url) if first["task_id"] in (r.get("description") or "")]

            assert wait_for(lambda: len(at_b()) == 1, 30), connectors.log()[-3000:]
            (remote,) = at_b()
            assert remote["service_code"] == "pothole" and incident_a in remote["description"]
            assert (remote["lat"], remote["long"]) == (51.99, 5.06)
            incident_b = report_incident(remote["service_request_id"])
            task_b = wait_order(redis_client, namespace_b, incident_b, lambda o: o["state"] == "dispatched")
            assert task_b["unit_id"] == "roads-west"

            crew = bearer(issue_token(redis_url, namespace_b, "roads-west"))
            with httpx.Client(base_url=b_url, headers=crew, timeout=20) as b:
                acked = b.post(f"/units/me/tasks/{task_b['task_id']}/ack", json={"note": "on our list"})
                assert acked.status_code in (200, 202), acked.text
                seen = wait_order(redis_client, namespace, incident_a, lambda o: o["state"] == "acknowledged")
                assert seen["history"][-1]["note"] == "Roads crew West has taken the request."
                for action, body in (("start", {}), ("resolve", {"note": "patched with cold asphalt"})):
                    done = b.post(f"/units/me/tasks/{task_b['task_id']}/{action}", json=body)
                    assert done.status_code in (200, 202), done.text

            resolved = wait_order(redis_client, namespace, incident_a, lambda o: o["state"] == "resolved")
            assert [h["type"] for h in resolved["history"]] == ["dispatched", "ack", "start", "resolve"]
            assert re.search("reports it fixed", resolved["resolution"]["note"]), resolved["resolution"]
            events = [e for e in events_of(collect(bootstrap, f"{namespace}.feedback", lambda rs: False, timeout=2),
                                           incident_a) if e["type"] in ("ack", "start", "resolve")]  # fmt: skip
            assert [e["type"] for e in {e["event_id"]: e for e in events}.values()] == ["ack", "start", "resolve"]
            assert {(e["actor"], e["by"]) for e in events} == {("unit:roads-west", "connector:roads-west")}
            view = a.get(f"/open311/v2/requests/{reporter_request}.json").json()[0]
            assert view["status_notes"] == "Roads crew West reports it fixed; awaiting verification.", view
            feed = a.get("/open311/v2/servicerequestupdates.json").json()  # what a front end polls
            told = [(u["status"], u["description"]) for u in feed if u["service_request_id"] == reporter_request]
            assert told[0] == ("open", "Assigned to Roads crew West."), told
            assert told[-1][0] == "in_progress" and told[-1][1].startswith("Roads crew West reports it fixed"), told
        assert len(at_b()) == 1, "the connector made one request in B, however often it ran"
        metrics = connectors.get("/metrics")[1]
        assert 'cityloop_connector_updates_total{connector="roads-west",outcome="written"} 2.0' in metrics
        assert order(redis_client, namespace_b, incident_b)["state"] == "resolved"
        health = connectors.health()["connectors"]["roads-west"]
        assert health["breaker"] == "closed" and health["last_poll"] is not None
    finally:
        connectors.stop()


def test_an_unmapped_category_and_a_cancelled_task_are_dead_letters_that_say_what_to_do(
    workers, bootstrap, redis_url, redis_client, namespace, instance_b, tmp_path: Path
):
    """A maps only potholes to B. A broken-sidewalk task for roads-west is dead-lettered naming the category, and
    never reaches B. When A's ops centre cancels the pothole order, GeoReport v2 has no way to withdraw B's request:
    the cancel is dead-lettered naming that request, to close there by hand, and the request is polled no more."""
    b_url = instance_b
    pack = city_a(tmp_path / "a", b_url, {"pothole": "pothole"})
    workers.start(CITYLOOP_CITY=str(pack))
    connectors = start_connectors(bootstrap, redis_url, namespace, pack, tmp_path, CITY_B_OPEN311_KEY=OPEN311_KEY)
    try:
        with api_client(api_settings(bootstrap, redis_url, namespace, pack)) as a:
            kerb = post_request(a, service_code="broken_sidewalk", description="broken kerb").json()[0]
            hole = post_request(a, service_code="pothole", description="deep pothole").json()[0]
            incident = report_incident(hole["service_request_id"])
            task = wait_order(redis_client, namespace, incident, lambda o: o["state"] == "dispatched")["task_id"]
            assert wait_for(lambda: any(task in (r.get("description") or "") for r in requests_at(b_url)), 30)
            (remote,) = [r for r in requests_at(b_url) if task in (r.get("description") or "")]

            ops = bearer(issue_token(redis_url, namespace, "ops-centre", holder="ana"))
            cancelled = a.post(f"/ops/orders/{incident}/cancel", headers=ops, json={"reason": "filled by a resident"})
            assert cancelled.status_code in (200, 202), cancelled.text

        def letters(records: list) -> list[dict]:
            return [json.loads(r.value) for r in records if b":connector:roads-west" in r.value]

        found = letters(collect(bootstrap, f"{namespace}.deadletter", lambda rs: len(letters(rs)) >= 2, timeout=40))
        assert len(found) == 2, connectors.log()[-3000:]
        unmapped, withdrawal = sorted(found, key=lambda d: json.loads(d["original"]).get("type", ""))
        assert (unmapped["stage"], unmapped["reason_code"]) == ("connector", "delivery_refused")
        assert "'broken_sidewalk' has no service_code" in unmapped["reason"]
        assert json.loads(unmapped["original"])["incident_id"] == report_incident(kerb["service_request_id"])
        assert json.loads(withdrawal["original"])["type"] == "cancel"
        assert remote["service_request_id"] in withdrawal["reason"]
        assert "close it in that system by hand" in withdrawal["reason"]
        assert redis_client.hlen(f"{namespace}:connector:roads-west:open311:open") == 0, "no longer polled"
        assert not any("broken_sidewalk" == r["service_code"] for r in requests_at(b_url))
        assert order(redis_client, namespace, incident)["state"] == "cancelled"
    finally:
        connectors.stop()
