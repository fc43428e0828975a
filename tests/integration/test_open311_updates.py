"""Open311 service request updates against the real broker, Redis and a worker: the feed a front end polls, in JSON
and XML, filtered by time; and updates posted by a unit's own system and by a front end."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from tests.integration.api_helpers import OPEN311_KEY, api_client, api_settings, bearer, demo_pack, issue_token
from tests.integration.api_helpers import post_request as post_report
from tests.integration.test_api import wait_json

pytestmark = [pytest.mark.integration]

FEED = "/open311/v2/servicerequestupdates"
ROW = ["update_id", "service_request_id", "status", "updated_datetime", "description", "media_url"]


@pytest.fixture
def city(tmp_path):
    return demo_pack(tmp_path / "city")


def rows_of(client, request_id: str, count: int, **query) -> list[dict]:
    body = wait_json(client, f"{FEED}.json?" + "&".join(f"{k}={v}" for k, v in query.items()),
                     lambda b: len([r for r in b if r["service_request_id"] == request_id]) >= count)  # fmt: skip
    return [r for r in body if r["service_request_id"] == request_id]


def act(client, headers, task_id: str, kind: str, **body) -> None:
    answer = client.post(f"/units/me/tasks/{task_id}/{kind}", headers=headers, json=body or None)
    assert answer.status_code == 200, answer.text  # applied by the worker


def test_a_request_dispatched_acknowledged_and_resolved_is_told_in_order_in_json_and_xml(
    workers, bootstrap, redis_url, namespace, city
):
    """Each step of the order reaches the feed once, in order, with the request's id and the unit's name; a second
    request merged into the incident gets the same steps under its own update ids; start_date/end_date cut by the
    steps' own times."""
    workers.start(CITYLOOP_CITY=str(city))
    settings = api_settings(bootstrap, redis_url, namespace, city)
    west = bearer(issue_token(redis_url, namespace, "roads-west", holder="jan"))
    with api_client(settings) as client:
        first = post_report(client).json()[0]["service_request_id"]
        [assigned] = rows_of(client, first, 1)
        assert (assigned["status"], assigned["description"]) == ("open", "Assigned to Roads crew West.")
        second = post_report(client, lat="51.9902", description="pothole by the school gate").json()[0]
        [task] = wait_json(client, "/units/me/tasks", lambda b: len(b["tasks"]) == 1, headers=west)["tasks"]
        act(client, west, task["task_id"], "ack")
        act(client, west, task["task_id"], "start", note="on site")
        act(client, west, task["task_id"], "resolve", note="filled", media_url="https://photos.example/p1.jpg")

        mine = rows_of(client, first, 4)
        assert all(list(r) == ROW for r in mine)
        assert [(r["status"], r["description"]) for r in mine] == [
            ("open", "Assigned to Roads crew West."),
            ("action_scheduled", "Roads crew West has taken the request."),
            ("in_progress", "Roads crew West is working on it."),
            ("in_progress", "Roads crew West reports it fixed: filled. Awaiting verification."),
        ]
        assert [r["updated_datetime"] for r in mine] == sorted(r["updated_datetime"] for r in mine)
        assert mine[3]["media_url"] == "https://photos.example/p1.jpg" and mine[0]["media_url"] == ""
        theirs = rows_of(client, second["service_request_id"], 4)
        assert [r["status"] for r in theirs] == [r["status"] for r in mine]
        assert not {r["update_id"] for r in theirs} & {r["update_id"] for r in mine}

        document = ET.fromstring(client.get(f"{FEED}.xml").content)
        assert document.tag == "service_request_updates"
        xml_mine = [u for u in document.findall("request_update") if u.findtext("service_request_id") == first]
        assert [[c.tag for c in u] for u in xml_mine] == [ROW] * 4
        assert [u.findtext("update_id") for u in xml_mine] == [r["update_id"] for r in mine]
        assert [u.findtext("status") for u in xml_mine] == [r["status"] for r in mine]

        window = {"start_date": mine[1]["updated_datetime"], "end_date": mine[2]["updated_datetime"]}
        cut = client.get(f"{FEED}.json", params=window).json()
        assert [r["update_id"] for r in cut if r["service_request_id"] == first] == [mine[1]["update_id"],
                                                                                     mine[2]["update_id"]]  # fmt: skip
        assert client.get(f"{FEED}.json", params={"end_date": "2020-01-01T00:00:00Z"}).json() == []


def test_a_units_system_posts_updates_that_move_the_order_and_a_front_end_posts_a_note(
    workers, bootstrap, redis_url, namespace, city
):
    """The holding unit's token as api_key: ACTION_SCHEDULED is its acknowledgement, FIXED before work started is
    refused in the standard's error format; a front end's key leaves a note on its request, once per update_id."""
    workers.start(CITYLOOP_CITY=str(city))
    settings = api_settings(bootstrap, redis_url, namespace, city)
    system = issue_token(redis_url, namespace, "roads-west", holder="roads-asset-system")
    with api_client(settings) as client:
        request_id = post_report(client).json()[0]["service_request_id"]
        rows_of(client, request_id, 1)
        form = {"api_key": system, "service_request_id": request_id, "description": "crew booked for 14:00"}
        early = client.post(f"{FEED}.xml", data={**form, "status": "FIXED"})
        assert early.status_code == 409 and ET.fromstring(early.content).findtext("error/code") == "409"

        acked = client.post(f"{FEED}.json", data={**form, "status": "ACTION_SCHEDULED", "update_id": "ams-1"})
        assert acked.status_code == 201, acked.text  # the worker applied it within the API's wait
        [update] = acked.json()
        status = client.get(f"/open311/v2/requests/{request_id}.json").json()[0]
        assert status["status_notes"] == "Roads crew West has taken the request."
        told = rows_of(client, request_id, 2)
        assert told[-1] == {**told[-1], "update_id": update["update_id"], "status": "action_scheduled"}

        note = {"api_key": OPEN311_KEY, "service_request_id": request_id, "status": "OPEN",
                "description": "It is getting bigger", "update_id": "fms-9"}  # fmt: skip
        answers = [client.post(f"{FEED}.xml", data=note) for _ in range(2)]
        assert [a.status_code for a in answers] == [201, 201]
        ids = {ET.fromstring(a.content).findtext("request_update/update_id") for a in answers}
        notes = [r for r in rows_of(client, request_id, 3) if r["description"] == "It is getting bigger"]
        assert [(n["update_id"], n["status"]) for n in notes] == [(ids.pop(), "action_scheduled")]
        assert client.get(f"/open311/v2/requests/{request_id}.json").json()[0]["status"] == "open"
