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
    send_readings,
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


def test_the_sensors_view_lists_each_sensors_newest_reading_and_its_open_alarm(
    workers, bootstrap, redis_url, namespace, tmp_path
):
    """Readings through the worker: each sensor's newest reading is listed, and the incident its alarm opened is its
    open alarm; sensors with open alarms come first. Only the ops centre's token reads it."""
    city = demo_pack(tmp_path / "city")
    workers.start(CITYLOOP_CITY=str(city))
    settings = api_settings(bootstrap, redis_url, namespace, city)
    ops = bearer(issue_token(redis_url, namespace, "ops-centre", holder="ana"))
    crew = bearer(issue_token(redis_url, namespace, "roads-west"))
    with api_client(settings) as client:
        assert client.get("/ops/sensors", headers=crew).status_code == 403, "a unit's token is not the ops centre's"
        assert client.get("/ops/sensors").status_code == 401
        assert client.get("/ops/sensors", headers=ops).json()["sensors"] == []
        send_readings(bootstrap, namespace, ("gauge-a", "noise_level", 60.0, 51.97, 5.04, 120),
                      ("gauge-b", "water_level", 12.0, 51.99, 5.06, 120),
                      ("gauge-b", "water_level", 41.5, 51.99, 5.06, 60),  # over 30 cm: an alarm opens
                      ("gauge-a", "noise_level", 62.5, 51.97, 5.04, 60))  # fmt: skip
        listed = wait_json(client, "/ops/sensors", lambda b: len(b["sensors"]) == 2
                           and b["sensors"][0]["open_alarms"], headers=ops)["sensors"]  # fmt: skip
        alarmed, quiet = listed
        assert (alarmed["sensor_id"], alarmed["kind"], alarmed["value"], alarmed["unit"]) == ("gauge-b", "water_level",
                                                                                              41.5, "cm")  # fmt: skip
        assert (alarmed["lat"], alarmed["lon"], alarmed["alarm"], alarmed["category"]) == (51.99, 5.06, True,
                                                                                           "flooding")  # fmt: skip
        incident = alarmed["open_alarms"][0]
        order = client.get(f"/ops/incidents/{incident}", headers=ops).json()["order"]
        assert (order["origin"], order["category"], len(alarmed["open_alarms"])) == ("sensor", "flooding", 1)
        assert alarmed["observed_at"] == alarmed["alarm_since"], "the reading that opened the alarm is the newest"
        assert (quiet["sensor_id"], quiet["value"], quiet["unit"], quiet["alarm"], quiet["open_alarms"]) == (
            "gauge-a", 62.5, "dBA", False, [])  # fmt: skip

        cancelled = client.post(f"/ops/orders/{incident}/cancel", headers=ops, json={"reason": "gauge being fixed"})
        assert cancelled.status_code == 200
        after = client.get("/ops/sensors", headers=ops).json()["sensors"]
        assert [s["open_alarms"] for s in after] == [[], []], "a finished order is no open alarm"
