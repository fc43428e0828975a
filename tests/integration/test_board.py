"""The ops centre's board data through a real worker: open incidents listed, a live feed of their changes."""

from __future__ import annotations

import json

import pytest

from streams.ids import report_incident
from tests.integration.api_helpers import (
    api_client,
    api_settings,
    bearer,
    demo_pack,
    issue_token,
    post_request,
    send_unsure_report,
)
from tests.integration.test_api import wait_json

pytestmark = [pytest.mark.integration]


def board_items(body: dict) -> dict[str, dict]:
    return {item["incident_id"]: item for item in body["items"]}


def feed(client, headers: dict, since: str, count: int = 1000) -> list[tuple[str, dict]]:
    """Events of the board's feed after ``since``, (event, data): the first ``count``, or all until it goes quiet."""
    events, kind = [], None
    with client.stream("GET", "/ops/board/events", params={"since": since, "max_events": count},
                       headers=headers) as stream:  # fmt: skip
        for line in stream.iter_lines():
            if line.startswith(": keep-alive"):  # nothing new for 5 s
                break
            if line.startswith("event: "):
                kind = line[len("event: ") :]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[len("data: ") :])))
    return events


def test_the_board_lists_open_incidents_and_follows_them_live(workers, bootstrap, redis_url, namespace, tmp_path):
    city = demo_pack(tmp_path / "city")
    workers.start(CITYLOOP_CITY=str(city), CITYLOOP_TRIAGE_THRESHOLD="0.99")
    settings = api_settings(bootstrap, redis_url, namespace, city)
    ops = bearer(issue_token(redis_url, namespace, "ops-centre", holder="ana"))
    crew = bearer(issue_token(redis_url, namespace, "roads-west"))
    with api_client(settings) as client:
        assert client.get("/ops/board", headers=crew).status_code == 403, "a unit's token is not the ops centre's"
        assert client.get("/ops/city", headers=crew).status_code == 403
        drawn = client.get("/ops/city", headers=ops).json()
        assert set(drawn["layers"]) == {"districts", "basins"} and len(drawn["categories"]) == 15
        assert drawn["layers"]["districts"]["features"][0]["geometry"]["type"] in ("Polygon", "MultiPolygon")
        start = client.get("/ops/board", headers=ops).json()
        assert start["items"] == []

        pothole = post_request(client).json()[0]["service_request_id"]
        incident = report_incident(pothole)
        listed = wait_json(client, "/ops/board", lambda b: incident in board_items(b), headers=ops)
        item = board_items(listed)[incident]
        assert (item["kind"], item["state"], item["unit_id"], item["light"]) == ("order", "dispatched", "roads-west",
                                                                                   "green")  # fmt: skip
        assert item["acknowledge_by"] and item["lat"] == 51.99

        odd = send_unsure_report(bootstrap, namespace)
        unsure = report_incident("odd-1")
        waiting = wait_json(client, "/ops/board", lambda b: unsure in board_items(b), headers=ops)
        assert board_items(waiting)[unsure]["kind"] == "triage"
        assert board_items(waiting)[unsure]["text"] == odd["text"]
        decided = client.post(f"/ops/triage/{unsure}/decision", headers=ops, json={"category": "illegal_dumping"})
        assert decided.status_code == 200
        cancelled = client.post(f"/ops/orders/{incident}/cancel", headers=ops, json={"reason": "already filled"})
        assert cancelled.status_code == 200
        after = wait_json(client, "/ops/board", lambda b: incident not in board_items(b)
                          and board_items(b).get(unsure, {}).get("kind") == "order", headers=ops)  # fmt: skip
        assert incident not in board_items(after), "a cancelled order leaves the board"
        assert board_items(after)[unsure]["unit_id"] == "cleansing-south"

        events = feed(client, ops, start["last_event_id"], 5)
        kinds = [(kind, data["incident_id"]) for kind, data in events]
        assert ("order", incident) in kinds and ("triage", unsure) in kinds and ("triaged", unsure) in kinds
        replay = feed(client, ops, start["last_event_id"], 5)
        assert replay == events, "the feed from one id is the same every time: a board that reconnects misses nothing"
        everything = feed(client, ops, start["last_event_id"])
        closing = [d for k, d in everything if k == "order" and d["incident_id"] == incident]
        assert closing[-1]["open"] is False and closing[-1]["state"] == "cancelled"
