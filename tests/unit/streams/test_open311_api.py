"""Open311 GeoReport v2 as the standard reads: both formats with its element names, its errors and status codes,
UTF-8 in and out, empty arguments as absent ones, addresses instead of points, Service Discovery and CORS.

The API runs in-process on an in-memory Redis and a writer that keeps what it is given (no broker): what is checked
here is the HTTP contract. tests/integration/test_open311_clients.py reads the live API with independent clients.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from fastapi.testclient import TestClient

from dispatch import CityPack, load_city_pack
from dispatch.demo_city import write_demo_city
from streams.api import create_api
from streams.api.store import ApiStore
from streams.settings import load_settings
from streams.state import TriageQueue

KEY = "unit-test-key"
BASE = "/open311/v2"
FORM = "application/x-www-form-urlencoded"


@dataclass
class Writer:
    sent: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    async def write(self, topic: str, key: str, record: dict[str, Any]) -> None:
        self.sent.append((topic, key, record))


@dataclass
class Api:
    client: TestClient
    writer: Writer
    server: fakeredis.FakeServer

    def redis(self, work: Any) -> Any:
        """Run ``work(async client)`` against the API's Redis, from the test's side."""

        async def run() -> Any:
            client = fakeredis.FakeAsyncRedis(server=self.server)
            try:
                return await work(client)
            finally:
                await client.aclose()

        return asyncio.run(run())

    def post(self, fmt: str = "json", body: bytes | None = None, **fields: str) -> Any:
        """A form post; ``body`` sends those exact bytes instead (what curl -d sends)."""
        form = {"api_key": KEY, "service_code": "pothole", "lat": "51.99", "long": "5.06", "description": "a hole"}
        form.update(fields)
        content = body if body is not None else "&".join(f"{k}={v}" for k, v in form.items() if v is not None)
        data = content if isinstance(content, bytes) else content.encode()
        return self.client.post(f"{BASE}/requests.{fmt}", content=data, headers={"content-type": FORM})


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> CityPack:
    return load_city_pack(write_demo_city(Path(tmp_path_factory.mktemp("city")) / "demo-city"))


def make_api(pack: CityPack, **settings: Any) -> Iterator[Api]:
    server = fakeredis.FakeServer()
    writer = Writer()
    app = create_api(load_settings(open311_api_keys=KEY, topic_prefix="t", **settings), pack,
                     redis_client=fakeredis.FakeAsyncRedis(server=server), writer=writer)  # fmt: skip
    with TestClient(app, raise_server_exceptions=False) as client:
        yield Api(client, writer, server)


@pytest.fixture
def api(pack: CityPack) -> Iterator[Api]:
    yield from make_api(pack)


def xml(response: Any, root: str) -> ET.Element:
    """The XML document of a response, checked to be declared UTF-8 and served as XML with its charset."""
    assert response.headers["content-type"] == "text/xml; charset=utf-8", response.headers["content-type"]
    assert response.content.startswith(b'<?xml version="1.0" encoding="UTF-8"?>'), response.content[:60]
    document = ET.fromstring(response.content)
    assert document.tag == root, ET.tostring(document)
    return document


def errors(response: Any, status: int) -> str:
    """The description of a GeoReport error answer in either format, checked to be in the standard's shape."""
    assert response.status_code == status, response.text
    if response.headers["content-type"].startswith("text/xml"):
        [error] = xml(response, "errors").findall("error")
        assert [child.tag for child in error] == ["code", "description"] and error.findtext("code") == str(status)
        return error.findtext("description") or ""
    assert response.headers["content-type"] == "application/json; charset=utf-8"
    [error] = response.json()
    assert error["code"] == status and set(error) == {"code", "description"}
    return error["description"]


def test_every_endpoint_answers_xml_with_the_standards_element_names(api: Api):
    services = xml(api.client.get(f"{BASE}/services.xml"), "services").findall("service")
    assert len(services) == len(api.client.get(f"{BASE}/services.json").json()) > 1
    assert [child.tag for child in services[0]] == ["service_code", "service_name", "description", "metadata",
                                                    "type", "keywords", "group"]  # fmt: skip
    assert services[0].findtext("metadata") == "false" and services[0].findtext("type") == "realtime"
    definition = xml(api.client.get(f"{BASE}/services/pothole.xml"), "service_definition")
    assert definition.findtext("service_code") == "pothole" and definition.find("attributes") is not None

    posted = api.post("xml")
    assert posted.status_code == 201
    [answer] = xml(posted, "service_requests").findall("request")
    request_id = answer.findtext("service_request_id")
    assert request_id and request_id.startswith("o311-") and answer.find("service_notice") is not None

    [one] = xml(api.client.get(f"{BASE}/requests/{request_id}.xml"), "service_requests").findall("request")
    assert [child.tag for child in one] == [
        "service_request_id", "status", "status_notes", "service_name", "service_code", "description",
        "agency_responsible", "service_notice", "requested_datetime", "updated_datetime", "expected_datetime",
        "address", "address_id", "zipcode", "lat", "long", "media_url"]  # fmt: skip
    assert (one.findtext("status"), one.findtext("lat"), one.findtext("long")) == ("open", "51.99", "5.06")
    listed = xml(api.client.get(f"{BASE}/requests.xml"), "service_requests").findall("request")
    assert [r.findtext("service_request_id") for r in listed] == [request_id]

    # a token of a request posted before ids were returned at once still resolves, in both formats
    api.redis(lambda r: ApiStore(r, "t").save_request({"service_request_id": "o311-old"}, "tok-1", datetime.now(UTC)))
    [token] = xml(api.client.get(f"{BASE}/tokens/tok-1.xml"), "service_requests").findall("request")
    assert (token.findtext("service_request_id"), token.findtext("token")) == ("o311-old", "tok-1")
    assert api.client.get(f"{BASE}/tokens/tok-1.json").json() == [{"service_request_id": "o311-old", "token": "tok-1"}]


def test_text_is_escaped_in_xml_and_utf8_everywhere(api: Api):
    """Markup, quotes and ampersands come back as text; a control character XML cannot carry becomes U+FFFD."""
    tricky = 'caf\u00e9 <b>&amp;</b> "x" \u2603 \x01'
    posted = api.post("json", description=tricky.replace("&", "%26"))
    request_id = posted.json()[0]["service_request_id"]
    [one] = xml(api.client.get(f"{BASE}/requests/{request_id}.xml"), "service_requests").findall("request")
    assert one.findtext("description") == tricky.replace("\x01", "\ufffd")
    as_json = api.client.get(f"{BASE}/requests/{request_id}.json")
    assert as_json.headers["content-type"] == "application/json; charset=utf-8"
    assert as_json.json()[0]["description"] == tricky


def test_a_raw_utf8_form_body_is_read_as_utf8_not_latin1(api: Api):
    """``curl -d "description=café"`` sends the bytes C3 A9 unescaped; they must not become "cafÃ©"."""
    body = f"api_key={KEY}&service_code=pothole&lat=51.99&long=5.06&description=".encode() + "café ☃".encode()
    request_id = api.post(body=body).json()[0]["service_request_id"]
    [(_, _, report)] = api.writer.sent
    assert report["text"] == "café ☃"
    assert api.client.get(f"{BASE}/requests/{request_id}.json").json()[0]["description"] == "café ☃"
    assert "UTF-8" in errors(api.post(body=body + b"\xff"), 400)  # not UTF-8 at all: refused, not guessed


def test_missing_api_key_is_403_and_unknown_service_404_in_the_standards_error_format(api: Api):
    for fmt in ("json", "xml"):
        assert "api_key" in errors(api.post(fmt, api_key=None), 403)
        assert "api_key" in errors(api.post(fmt, api_key=""), 403)
        errors(api.post(fmt, api_key="guess"), 403)
        assert "dragons" in errors(api.post(fmt, service_code="dragons"), 404)
        assert "service_code" in errors(api.post(fmt, service_code=None), 400)
        errors(api.client.get(f"{BASE}/services/dragons.{fmt}"), 404)
        errors(api.client.get(f"{BASE}/requests/o311-nope.{fmt}"), 404)
        errors(api.client.get(f"{BASE}/tokens/nope.{fmt}"), 404)
        errors(api.client.get(f"{BASE}/nothing-here.{fmt}"), 404)
        errors(api.client.get(f"{BASE}/requests.{fmt}", params={"status": "pending"}), 400)
    assert api.writer.sent == []


def test_empty_optional_arguments_are_the_same_as_absent_ones(api: Api):
    request_id = api.post(email="", first_name="", phone="", media_url="", address_string="", account_id="")
    assert request_id.status_code == 201, request_id.text
    empty = {"service_request_id": "", "service_code": "", "start_date": "", "end_date": "", "status": ""}
    for fmt in ("json", "xml"):
        answer = api.client.get(f"{BASE}/requests.{fmt}", params=empty)
        assert answer.status_code == 200, answer.text
    assert len(api.client.get(f"{BASE}/requests.json", params=empty).json()) == 1
    assert len(api.client.get(f"{BASE}/requests.json", params={**empty, "start_date": " "}).json()) == 1


def test_a_request_located_by_an_address_only_is_accepted_and_awaits_its_location(api: Api):
    by_address = api.post(lat="", long="", address_string="Stationsplein 1, Lindenhaven")
    assert by_address.status_code == 201, by_address.text
    [(_, _, report)] = api.writer.sent
    assert "lat" not in report and "lon" not in report and report["address"] == "Stationsplein 1, Lindenhaven"
    [view] = api.client.get(f"{BASE}/requests/{by_address.json()[0]['service_request_id']}.json").json()
    assert (view["status"], view["lat"], view["long"]) == ("open", None, None)
    assert "awaiting location" in view["status_notes"]
    by_id = api.post(lat=None, long=None, address_id="BAG-0344200000123")
    assert by_id.status_code == 201 and api.writer.sent[-1][2]["address_id"] == "BAG-0344200000123"
    assert "address_string" in errors(api.post(lat=None, long=None), 400)
    assert "together" in errors(api.post(long=None, address_string="Stationsplein 1"), 400)


def test_post_returns_the_service_request_id_and_no_token(api: Api):
    """The id is made before the report is written, so the spec's "one or the other" is the id."""
    [answer] = api.post().json()
    assert set(answer) == {"service_request_id", "service_notice", "account_id"}


def test_no_date_answers_5xx_and_out_of_range_ones_say_why(api: Api):
    assert "1970" in errors(api.client.get(f"{BASE}/requests.json", params={"end_date": "0001-01-01T00:00:00Z"}), 400)
    odd = [
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-12:00",
        "9999-12-31",
        "2026-02-30T00:00:00Z",
        "2026-01-01T25:00:00Z",
        "1969-12-31T23:59:59Z",
        "nonsense",
        "2026-01-01T00:00:00",
    ]
    for value in odd:
        for name in ("start_date", "end_date"):
            answer = api.client.get(f"{BASE}/requests.xml", params={name: value})
            assert answer.status_code < 500, (name, value, answer.text)
    recent = api.client.get(f"{BASE}/requests.json", params={"start_date": "2025-01-01T00:00:00Z"})
    assert recent.status_code == 200  # only a start: the 90 days from it


def test_points_redis_cannot_index_are_refused_with_the_limits(api: Api):
    for lat in ("85.06", "-89", "90.5", "nan", "inf"):
        message = errors(api.post(lat=lat), 400)
        assert "85.05112878" in message or "number" in message, message
    assert api.post(lat="85.05", long="-180").status_code == 201


def test_service_discovery_names_the_endpoint_its_formats_and_contacts(api: Api, pack: CityPack):
    document = api.client.get("/open311/discovery.json").json()
    assert set(document) == {"changeset", "contact", "key_service", "endpoints"}
    [endpoint] = document["endpoints"]
    assert endpoint == {"specification": "http://wiki.open311.org/GeoReport_v2", "url": "http://testserver/open311/v2",
                        "changeset": document["changeset"], "type": "production",
                        "formats": ["text/xml", "application/json"]}  # fmt: skip
    assert api.client.get(f"{BASE}/discovery.json").json() == document
    root = xml(api.client.get("/open311/discovery.xml"), "discovery")
    [endpoint_xml] = root.find("endpoints").findall("endpoint")  # type: ignore[union-attr]
    assert [f.text for f in endpoint_xml.find("formats").findall("format")] == ["text/xml", "application/json"]  # type: ignore[union-attr]
    assert endpoint_xml.findtext("specification") == "http://wiki.open311.org/GeoReport_v2"

    configured = make_api(pack, open311_public_url="https://311.example.gov/", open311_contact="311@example.gov",
                          open311_key_service="https://311.example.gov/keys", open311_endpoint_type="test")  # fmt: skip
    other = next(configured)
    custom = other.client.get("/open311/discovery.json").json()
    assert (custom["contact"], custom["key_service"]) == ("311@example.gov", "https://311.example.gov/keys")
    assert (custom["endpoints"][0]["url"], custom["endpoints"][0]["type"]) == ("https://311.example.gov/open311/v2",
                                                                              "test")  # fmt: skip
    configured.close()


def test_open311_reads_are_open_to_other_origins_and_nothing_else_is(api: Api, pack: CityPack):
    origin = {"Origin": "https://map.example.org"}
    assert api.client.get(f"{BASE}/services.json", headers=origin).headers["access-control-allow-origin"] == "*"
    preflight = api.client.options(f"{BASE}/requests.xml", headers={**origin, "Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 200 and preflight.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-origin" not in api.post(**{}).headers  # no Origin: no CORS answer either way
    assert (
        "access-control-allow-origin"
        not in api.client.post(
            f"{BASE}/requests.json", content=f"api_key={KEY}".encode(), headers={**origin, "content-type": FORM}
        ).headers
    )
    assert "access-control-allow-origin" not in api.client.get("/ops/triage", headers=origin).headers

    configured = make_api(pack, open311_cors_origins="none", open311_cors_post_origins="https://form.example.gov")
    other = next(configured)
    assert "access-control-allow-origin" not in other.client.get(f"{BASE}/services.json", headers=origin).headers
    form_origin = {"Origin": "https://form.example.gov", "content-type": FORM}
    answer = other.client.post(f"{BASE}/requests.json", content=b"api_key=x", headers=form_origin)
    assert answer.status_code == 403 and answer.headers["access-control-allow-origin"] == "https://form.example.gov"
    configured.close()


def test_the_ops_centre_places_an_unlocated_report_when_it_decides_it(api: Api):
    """The triage decision refuses to dispatch a report without a point unless it is given one."""
    incident = "inc-r-addr"
    item = {"source_id": "report:addr", "channel": "open311", "text": "hole", "lat": None, "lon": None,
            "address": "Stationsplein 1", "event_time": "2026-11-30T10:00:00Z", "guess": "pothole",
            "confidence": 1.0, "top": [["pothole", 1.0]]}  # fmt: skip

    async def setup(r: Any) -> str:
        await TriageQueue(r, "t", 3600).add([(incident, 1.0, item)])
        return await ApiStore(r, "t").issue_token("ops-centre", "ana", datetime.now(UTC))

    token = api.redis(setup)
    url, auth = f"/ops/triage/{incident}/decision", {"Authorization": f"Bearer {token}"}
    refused = api.client.post(url, json={"category": "pothole"}, headers=auth)
    assert refused.status_code == 400 and "lat and lon" in refused.json()["error"]["message"]
    assert api.client.post(url, json={"category": "pothole", "lat": 89.0, "lon": 5.0}, headers=auth).status_code == 400
    assert api.writer.sent == []
    api.client.app.state.ctx.settings = api.client.app.state.ctx.settings.model_copy(update={"api_wait_s": 0})
    placed = api.client.post(url, json={"category": "pothole", "lat": 51.99, "lon": 5.06}, headers=auth)
    assert placed.status_code == 202, placed.text
    [(_, _, decision)] = api.writer.sent
    assert (decision["type"], decision["lat"], decision["lon"]) == ("triage_decision", 51.99, 5.06)
