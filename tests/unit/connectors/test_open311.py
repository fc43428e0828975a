"""The open311 connector against a GeoReport v2 server played in-process, on an in-memory Redis: the request a task
becomes, one request per task however often it is sent (also when the first answer was lost), withdrawals that
are not left silent, and polled status as unit actions."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import fakeredis
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from dispatch.citypack import Unit
from dispatch.connectors import Open311Connector, StatusNotes
from streams.connectors.base import Delivery, Host, Kind, Verdict
from streams.connectors.georeport import Unmappable, marked_task, observe, request_form
from streams.connectors.open311 import Open311

CONNECTOR = {"type": "open311", "url": "http://placeholder/open311/v2", "api_key_env": "ROADS_O311_KEY",
             "service_codes": {"pothole": "PH-1", "broken_sidewalk": "SW-2"},
             "status_notes": {"acknowledged": "has taken", "resolved": "reports it fixed",
                              "rejected": "^closed without action"}}  # fmt: skip
TASK = {"schema": 1, "task_id": "tsk-abc-1", "incident_id": "inc-abc", "unit_id": "roads-west", "attempt": 1,
        "category": "pothole", "lat": 51.99, "lon": 5.06, "address": "Kerkstraat 1"}  # fmt: skip


def spec(**changes: Any) -> Open311Connector:
    return Open311Connector.model_validate({**CONNECTOR, **changes})


def task_delivery(task: dict[str, Any] = TASK, offset: int = 0) -> Delivery:
    return Delivery("roads-west", Kind.TASK, task["task_id"], json.dumps(task), ("p.tasks", 0, offset), "inc-abc", 0.0)


def event_delivery(kind: str, **fields: Any) -> Delivery:
    record = {"event_id": f"evt-{kind}", "type": kind, "incident_id": "inc-abc", "task_id": "tsk-abc-1",
              "unit_id": "roads-west", "actor": "ops:ann", **fields}  # fmt: skip
    return Delivery("roads-west", Kind.EVENT, record["event_id"], json.dumps(record), ("p.feedback", 0, 1), None, 0.0)


# ---------------------------------------------------------------- the mapping


def test_a_task_becomes_a_form_with_the_mapped_service_code_its_point_address_and_its_mark():
    form = request_form(TASK, spec(jurisdiction_id="lindenhaven"), "the-key")
    assert form["api_key"] == "the-key" and form["service_code"] == "PH-1"
    assert (form["lat"], form["long"], form["address_string"]) == ("51.99", "5.06", "Kerkstraat 1")
    assert form["jurisdiction_id"] == "lindenhaven"
    assert "pothole" in form["description"] and "inc-abc" in form["description"]
    assert marked_task(form["description"]) == "tsk-abc-1"


def test_a_category_the_connector_does_not_map_is_unmappable_naming_it():
    with pytest.raises(Unmappable, match=r"'streetlight' has no service_code.*broken_sidewalk, pothole"):
        request_form({**TASK, "category": "streetlight"}, spec(), "k")


@pytest.mark.parametrize(
    ("status", "notes", "expected"),
    [
        ("open", "Received; being routed.", None),
        ("open", "Roads crew has taken the request.", ("ack", {"note": "Roads crew has taken the request."})),
        ("open", "Roads crew reports it fixed; awaiting verification.",
         ("resolve", {"note": "Roads crew reports it fixed; awaiting verification."})),
        ("closed", "Patched on Tuesday", ("resolve", {"note": "Patched on Tuesday"})),
        ("closed", None, ("resolve", {"note": "closed by S"})),
        ("closed", "Closed without action: not ours", ("reject", {"reason_code": "other",
                                                                 "reason": "Closed without action: not ours"})),
        ("in_progress", "working on it", None),  # a status of the server's own: open, and nothing matches
    ],
)  # fmt: skip
def test_a_requests_status_is_the_unit_action_it_amounts_to(status, notes, expected):
    seen = observe({"status": status, "status_notes": notes}, spec().status_notes, "S")
    assert (None if seen is None else (seen.type, seen.fields)) == expected


def test_without_notes_patterns_only_closed_is_observed():
    plain = StatusNotes()
    assert observe({"status": "open", "status_notes": "x reports it fixed"}, plain, "S") is None
    assert observe({"status": "closed", "status_notes": "Closed without action"}, plain, "S").type == "resolve"


# ------------------------------------------------------- against a GeoReport v2 server


class GeoReport:
    """A GeoReport v2 server: keeps posted requests; ``lose`` answers that many POSTs 503 after saving them."""

    def __init__(self) -> None:
        self.requests: dict[str, dict[str, Any]] = {}
        self.posts: list[dict[str, str]] = []
        self.lose = 0
        self.down = False

    def app(self) -> web.Application:
        async def post(request: web.Request) -> web.Response:
            form = dict(await request.post())
            self.posts.append(form)  # type: ignore[arg-type]
            if form.get("api_key") != "the-key":
                return web.json_response([{"code": 403, "description": "api_key is not valid"}], status=403)
            rid = f"r{len(self.requests) + 1}"
            self.requests[rid] = {
                "service_request_id": rid,
                "service_code": form["service_code"],
                "description": form["description"],
                "status": "open",
                "status_notes": None,
            }
            if self.lose:
                self.lose -= 1
                return web.Response(status=503, text="upstream timed out")
            return web.json_response([{"service_request_id": rid}], status=201)

        async def listing(request: web.Request) -> web.Response:
            if self.down:
                return web.Response(status=502)
            ids = request.query.get("service_request_id")
            if ids:
                return web.json_response([self.requests[i] for i in ids.split(",") if i in self.requests])
            code = request.query.get("service_code")
            return web.json_response([r for r in self.requests.values() if r["service_code"] == code])

        app = web.Application()
        app.router.add_post("/open311/v2/requests.json", post)
        app.router.add_get("/open311/v2/requests.json", listing)
        return app


Scenario = Callable[[Open311, GeoReport], Awaitable[Any]]


def against_server(scenario: Scenario, **changes: Any) -> Any:
    async def run() -> Any:
        system = GeoReport()
        server = TestServer(system.app())
        await server.start_server()
        connector_spec = spec(url=str(server.make_url("/open311/v2")), **changes)
        unit = Unit.model_validate({"id": "roads-west", "name": "Roads crew West", "connector": connector_spec})
        connector = Open311(unit, b"the-key", Host(fakeredis.FakeAsyncRedis(), "ns", 3600, clock=lambda: 1_800_000_000))
        try:
            return await scenario(connector, system)
        finally:
            await connector.close()
            await server.close()

    return asyncio.run(run())


def test_a_task_sent_again_is_not_posted_again():
    async def scenario(connector: Open311, system: GeoReport) -> None:
        first = await connector.send(task_delivery())
        again = await connector.send(task_delivery(offset=5))  # a redelivery, or the courier's retry
        assert (first.verdict, again.verdict) == (Verdict.DELIVERED, Verdict.DELIVERED)
        assert len(system.posts) == 1 and list(system.requests) == ["r1"]
        assert system.posts[0]["service_code"] == "PH-1" and system.posts[0]["api_key"] == "the-key"
        assert await connector.remote.request_of("tsk-abc-1") == "r1"

    against_server(scenario)


def test_when_the_answer_to_a_post_was_lost_the_retry_finds_the_request_by_its_mark_instead_of_posting_again():
    async def scenario(connector: Open311, system: GeoReport) -> None:
        system.lose = 1  # the server made r1, but its answer is lost in a 503
        lost = await connector.send(task_delivery())
        assert lost.verdict is Verdict.RETRY and "503" in lost.reason
        retried = await connector.send(task_delivery())
        assert retried.verdict is Verdict.DELIVERED
        assert len(system.posts) == 1, "a retry must look the request up, not post it a second time"
        assert await connector.remote.request_of("tsk-abc-1") == "r1"
        assert list(await connector.remote.open_requests()) == ["r1"]

    against_server(scenario)


def test_a_refused_post_is_refused_and_an_unmapped_category_is_never_posted():
    async def scenario(connector: Open311, system: GeoReport) -> None:
        unmapped = await connector.send(task_delivery({**TASK, "task_id": "tsk-x-1", "category": "graffiti"}))
        assert (unmapped.verdict, unmapped.reason_code) == (Verdict.REFUSED, "unmapped")
        assert "'graffiti' has no service_code" in unmapped.reason and not system.posts
        connector._api_key = "wrong"
        refused = await connector.send(task_delivery())
        assert refused.verdict is Verdict.REFUSED and "api_key is not valid" in refused.reason
        assert await connector.remote.posting_since("tsk-abc-1") is None  # nothing to look for on a later attempt

    against_server(scenario)


def test_a_cancel_stops_the_polling_and_is_refused_naming_the_request_left_open_there():
    async def scenario(connector: Open311, system: GeoReport) -> None:
        await connector.send(task_delivery())
        own = await connector.send(event_delivery("ack", by="connector:roads-west", actor="unit:roads-west"))
        notice = await connector.send(event_delivery("sla_warning"))
        assert (own.verdict, notice.verdict) == (Verdict.DELIVERED, Verdict.DELIVERED)
        cancelled = await connector.send(event_delivery("cancel", reason="duplicate"))
        assert (cancelled.verdict, cancelled.reason_code) == (Verdict.REFUSED, "unsupported")
        assert "r1" in cancelled.reason and "close it in that system by hand" in cancelled.reason
        assert await connector.remote.open_requests() == {}
        again = await connector.send(event_delivery("cancel", reason="duplicate"))
        assert again.verdict is Verdict.DELIVERED  # nothing left open there to speak of

    against_server(scenario)


def test_a_reassignment_to_another_unit_withdraws_every_request_of_the_incident():
    async def scenario(connector: Open311, system: GeoReport) -> None:
        await connector.send(task_delivery())
        to_me = await connector.send(event_delivery("dispatched", unit_id="roads-west", task_id="tsk-abc-2"))
        assert to_me.verdict is Verdict.DELIVERED and await connector.remote.open_requests()
        away = await connector.send(event_delivery("assign", unit_id="roads-east", task_id="tsk-abc-2"))
        assert away.verdict is Verdict.REFUSED and "r1" in away.reason

    against_server(scenario)


def test_polling_reports_each_new_status_once_keyed_by_the_request():
    async def scenario(connector: Open311, system: GeoReport) -> None:
        await connector.send(task_delivery())
        assert await connector.poll() == []  # open, nothing said yet
        system.requests["r1"]["status_notes"] = "Roads crew has taken the request."
        (ack,) = await connector.poll()
        assert (ack.task_id, ack.type, ack.key, ack.remote_id) == ("tsk-abc-1", "ack", "open311:r1", "r1")
        assert await connector.poll() == [ack], "found again until it is settled"
        await connector.settle(ack)
        assert await connector.poll() == []
        system.requests["r1"].update(status="closed", status_notes="Patched")
        (done,) = await connector.poll()
        assert (done.type, done.fields, done.key) == ("resolve", {"note": "Patched"}, "open311:r1")
        await connector.settle(done)
        assert await connector.remote.open_requests() == {}, "a resolved request is polled no more"

    against_server(scenario)


def test_a_poll_the_server_answers_with_an_error_raises_poll_failed():
    from streams.connectors.base import PollFailed

    async def scenario(connector: Open311, system: GeoReport) -> None:
        await connector.send(task_delivery())
        system.down = True
        with pytest.raises(PollFailed) as failed:
            await connector.poll()
        assert failed.value.code == "http_5xx" and "502" in failed.value.reason

    against_server(scenario)


def test_cityloop_connectors_takes_the_api_key_from_the_variable_the_pack_names_and_refuses_to_start_without_it(
    tmp_path,
):
    import yaml

    from dispatch import load_city_pack
    from dispatch.demo_city import write_demo_city
    from streams.connectors.service import MissingSecret, secrets_from_env

    city = write_demo_city(tmp_path / "city")
    document = yaml.safe_load((city / "city.yaml").read_text())
    next(u for u in document["units"] if u["id"] == "roads-west")["connector"] = CONNECTOR
    (city / "city.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    pack = load_city_pack(city)
    assert secrets_from_env(pack, {"ROADS_O311_KEY": "k-1"}) == {"roads-west": b"k-1"}
    with pytest.raises(MissingSecret, match=r"roads-west's connector needs its api_key in \$ROADS_O311_KEY"):
        secrets_from_env(pack, {"SOMETHING_ELSE": "x"})
