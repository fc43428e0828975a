"""Open311 service request updates: the feed of what reporters are told, in both formats, and updates posted by
front ends (notes) and by a unit's system (lifecycle events, only on the orders that unit holds).

The API and a worker share one in-memory Redis and one clock; what the API writes to Kafka is handed to the worker
by :meth:`Stack.pump`, as the broker would. tests/integration/test_open311_updates.py runs the same on the real broker.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from fastapi.testclient import TestClient

from classifiers.triage import TriagePolicy
from dispatch import CityPack, load_city_pack
from dispatch.demo_city import write_demo_city
from streams.api import create_api
from streams.api.store import ApiStore
from streams.settings import load_settings
from streams.topics import Topics
from streams.wiring import worker_parts
from tests.unit.pipeline.conftest import NOW, Clock, Loop, Sink, Words
from tests.unit.streams.test_open311_api import FORM, KEY, Writer, errors

BASE = "/open311/v2"
ROW = ["update_id", "service_request_id", "status", "updated_datetime", "description", "media_url"]


class Stack:
    """The API and a worker on one in-memory Redis; ``pump`` delivers what was written to Kafka until all is done."""

    def __init__(self, pack: CityPack) -> None:
        self.server = fakeredis.FakeServer()
        self.clock = Clock(NOW)
        self.writer = Writer()
        settings = load_settings(open311_api_keys=KEY, topic_prefix="t", api_wait_s=0)
        self.app = create_api(settings, pack, redis_client=fakeredis.FakeAsyncRedis(server=self.server),
                              writer=self.writer, clock=self.clock)  # fmt: skip
        self.sink = Sink()
        self.topics = Topics("t")
        self.loop = Loop.__new__(Loop)  # only for its envelopes(): the parts below share the API's Redis
        self.loop.offset, self.loop.clock, self.loop.topics = 0, self.clock, self.topics
        self.worker_redis = fakeredis.FakeAsyncRedis(server=self.server)
        self.parts = worker_parts(settings, pack, Words({"hole": ("pothole", 0.97)}), TriagePolicy(0.5),
                                  self.worker_redis, self.sink, clock=self.clock)  # fmt: skip
        self.taken = {"writer": 0, "sink": 0}

    def pump(self) -> None:
        async def run() -> None:
            while True:
                new = [(t, r) for t, _, r in self.writer.sent[self.taken["writer"] :]]
                new += [(t, r) for t, _, r in self.sink.sent[self.taken["sink"] :] if t == self.topics.feedback]
                self.taken = {"writer": len(self.writer.sent), "sink": len(self.sink.sent)}
                if not new:
                    return
                reports = [r for t, r in new if t == self.topics.reports]
                events = [r for t, r in new if t == self.topics.feedback]
                if reports:
                    await self.parts.engine.process_reports(self.loop.envelopes(self.topics.reports, reports))
                if events:
                    envelopes = self.loop.envelopes(self.topics.feedback, events)
                    await self.parts.engine.process_feedback(envelopes)
                    await self.parts.lifecycle.process(envelopes)

        asyncio.run(run())

    def token(self, unit: str) -> str:
        async def issue() -> str:
            client = fakeredis.FakeAsyncRedis(server=self.server)
            try:
                return await ApiStore(client, "t").issue_token(unit, f"{unit}-system", NOW)
            finally:
                await client.aclose()

        return asyncio.run(issue())


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> CityPack:
    return load_city_pack(write_demo_city(Path(tmp_path_factory.mktemp("city")) / "demo-city"))


@pytest.fixture
def stack(pack: CityPack) -> Iterator[tuple[Stack, TestClient]]:
    built = Stack(pack)
    with TestClient(built.app, raise_server_exceptions=False) as client:
        yield built, client


def post(client: TestClient, path: str, **fields: str) -> Any:
    body = "&".join(f"{k}={v}" for k, v in fields.items())
    return client.post(f"{BASE}/{path}", content=body.encode(), headers={"content-type": FORM})


def report(client: TestClient, **fields: str) -> str:
    form = {"api_key": KEY, "service_code": "pothole", "lat": "51.99", "long": "5.06", "description": "a deep hole"}
    answer = post(client, "requests.json", **(form | fields))
    assert answer.status_code == 201, answer.text
    return str(answer.json()[0]["service_request_id"])


def act(stack: Stack, client: TestClient, token: str, kind: str, **body: str) -> None:
    [task] = client.get("/units/me/tasks", headers={"authorization": f"Bearer {token}"}).json()["tasks"]
    answer = client.post(f"/units/me/tasks/{task['task_id']}/{kind}", headers={"authorization": f"Bearer {token}"},
                         json=body)  # fmt: skip
    assert answer.status_code in (200, 202), answer.text
    stack.pump()


def feed(client: TestClient, fmt: str = "json", **query: str) -> Any:
    answer = client.get(f"{BASE}/servicerequestupdates.{fmt}", params=query)
    assert answer.status_code == 200, answer.text
    return answer.json() if fmt == "json" else ET.fromstring(answer.content)


def test_the_feed_tells_each_step_to_every_request_of_the_order_in_order_in_both_formats(stack):
    stack, client = stack
    first = report(client)
    stack.pump()
    stack.clock.advance(minutes=5)
    second = report(client, description="another hole, same spot")  # joins the same incident
    stack.pump()
    crew = stack.token("roads-west")
    for minutes, kind, body in ((10, "ack", {}), (20, "start", {}), (30, "resolve", {"note": "hole filled"})):
        stack.clock.advance(minutes=minutes)
        act(stack, client, crew, kind, **body)

    rows = feed(client)
    assert all(list(row) == ROW for row in rows)
    mine = [r for r in rows if r["service_request_id"] == first]
    assert [(r["status"], r["description"]) for r in mine] == [
        ("open", "Assigned to Roads crew West."),
        ("action_scheduled", "Roads crew West has taken the request."),
        ("in_progress", "Roads crew West is working on it."),
        ("in_progress", "Roads crew West reports it fixed: hole filled. Awaiting verification."),
    ]
    assert [r["updated_datetime"] for r in mine] == ["2026-11-30T10:00:00Z", "2026-11-30T10:15:00Z",
                                                     "2026-11-30T10:35:00Z", "2026-11-30T11:05:00Z"]  # fmt: skip
    theirs = [r for r in rows if r["service_request_id"] == second]
    assert [r["status"] for r in theirs] == [r["status"] for r in mine], "a merged report follows its incident"
    assert len({r["update_id"] for r in rows}) == len(rows) == 8
    assert feed(client) == rows, "ids and rows are stable"

    document = feed(client, "xml")
    assert document.tag == "service_request_updates"
    items = document.findall("request_update")
    assert [[child.tag for child in item] for item in items] == [ROW] * 8
    assert [i.findtext("update_id") for i in items] == [r["update_id"] for r in rows]

    later = feed(client, start_date="2026-11-30T10:15:00Z", end_date="2026-11-30T10:35:00Z")
    assert [r["status"] for r in later if r["service_request_id"] == first] == ["action_scheduled", "in_progress"]
    assert feed(client, end_date="2026-11-30T09:59:59Z") == []


def test_a_front_ends_update_is_a_note_on_its_request_only_once_and_moves_nothing(stack):
    stack, client = stack
    request = report(client)
    stack.pump()
    stack.clock.advance(minutes=1)
    form = {"api_key": KEY, "service_request_id": request, "status": "CLOSED", "description": "Still there, sadly",
            "update_id": "fms-77", "updated_datetime": "2026-11-30T10:01:00Z"}  # fmt: skip
    answer = post(client, "servicerequestupdates.xml", **form)
    again = post(client, "servicerequestupdates.json", **form)
    assert answer.status_code == again.status_code == 201, answer.text
    [item] = ET.fromstring(answer.content).findall("request_update")
    assert again.json() == [{"update_id": item.findtext("update_id")}]
    notes = [r for r in feed(client) if r["description"] == "Still there, sadly"]
    assert [(n["service_request_id"], n["status"], n["update_id"]) for n in notes] == [
        (request, "open", item.findtext("update_id"))
    ]
    assert client.get(f"{BASE}/requests/{request}.json").json()[0]["status"] == "open"


def test_the_holding_units_system_moves_the_order_and_is_refused_a_step_it_skips(stack):
    stack, client = stack
    request = report(client)
    stack.pump()
    crew = stack.token("roads-west")
    form = {"api_key": crew, "service_request_id": request, "description": "done"}
    skipped = post(client, "servicerequestupdates.xml", **form, status="FIXED")
    assert "cannot apply to a request that is dispatched" in errors(skipped, 409)
    stack.clock.advance(minutes=2)
    scheduled = post(client, "servicerequestupdates.json", **form, status="action_scheduled", update_id="x-1")
    assert scheduled.status_code == 202, scheduled.text  # the worker applies it when pumped
    written = stack.writer.sent[-1][2]
    by = "open311:unit:roads-west:roads-west-system"  # the unit, and the system its token was issued to
    assert (written["type"], written["actor"], written["by"]) == ("ack", "unit:roads-west", by)
    stack.pump()
    rows = feed(client)
    assert rows[-1]["status"] == "action_scheduled" and rows[-1]["update_id"] == scheduled.json()[0]["update_id"]
    assert client.get(f"{BASE}/requests/{request}.json").json()[0]["status_notes"] == "Roads crew West has taken " \
        "the request."  # fmt: skip

    stack.clock.advance(minutes=1)
    other = post(client, "servicerequestupdates.json", **(form | {"api_key": stack.token("parks")}), status="FIXED")
    assert other.status_code == 201, other.text
    stack.pump()
    assert feed(client)[-1]["description"] == "done", "another unit's system only leaves a note"
    assert client.get(f"{BASE}/requests/{request}.json").json()[0]["status"] == "open"


def test_posted_updates_are_refused_in_the_standards_error_format(stack):
    stack, client = stack
    request = report(client)
    good = {"api_key": KEY, "service_request_id": request, "status": "OPEN", "description": "hello"}
    assert "api_key is required" in errors(post(client, "servicerequestupdates.xml", **(good | {"api_key": ""})), 403)
    assert "not valid" in errors(post(client, "servicerequestupdates.json", **(good | {"api_key": "nope"})), 403)
    assert "no request" in errors(post(client, "servicerequestupdates.json", **(good | {"service_request_id": "x"})),
                                  404)  # fmt: skip
    assert "status must be" in errors(post(client, "servicerequestupdates.json", **(good | {"status": "DONE"})), 400)
    assert "description is required" in errors(
        post(client, "servicerequestupdates.xml", **(good | {"description": ""})), 400
    )
    assert "ISO 8601" in errors(post(client, "servicerequestupdates.json", **good, updated_datetime="yesterday"), 400)
    assert "end_date is before" in errors(
        client.get(f"{BASE}/servicerequestupdates.xml", params={"start_date": "2026-11-30", "end_date": "2026-11-01"}),
        400,
    )


def test_a_request_is_still_told_after_the_incident_index_forgot_its_reports(stack):
    """The incident index forgets an incident's reports a week after the last one joined; a repair can take longer."""
    stack, client = stack
    first = report(client)
    stack.pump()
    stack.clock.advance(minutes=5)
    second = report(client, description="another hole, same spot")
    stack.pump()

    async def forget() -> None:
        redis = fakeredis.FakeAsyncRedis(server=stack.server)
        keys = [k async for k in redis.scan_iter("t:src:*")] + [k async for k in redis.scan_iter("t:inc:*")]
        await redis.delete(*keys)
        await redis.aclose()

    asyncio.run(forget())
    stack.clock.advance(days=9)
    act(stack, client, stack.token("roads-west"), "ack")
    rows = feed(client, start_date="2026-12-09T00:00:00Z")
    assert sorted(r["service_request_id"] for r in rows) == sorted([first, second])
    assert {r["status"] for r in rows} == {"action_scheduled"}
