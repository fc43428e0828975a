"""The live API (uvicorn, the real broker and Redis) read by clients CityLoop did not write.

* ``georeport`` (PyPI): an Open311 GeoReport v2 client built on requests and xmltodict, which reads services, a
  service definition, requests and a request in JSON and in XML, by the standard's element names;
* ``schemathesis``: inputs generated from the API's own OpenAPI document, valid and invalid, for every route (the
  units' and ops centre's with the ops centre's token): none may answer 5xx.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dispatch import load_city_pack
from streams.api import create_api
from tests.browser.conftest import serving
from tests.integration.api_helpers import OPEN311_KEY, api_settings, demo_pack, issue_token
from tests.integration.conftest import collect

pytestmark = [pytest.mark.integration]

UTF8_TEXT = "Gat in de weg bij café ’t Hoekje ☃"


@pytest.fixture
def live_api(bootstrap: str, redis_url: str, namespace: str, tmp_path: Any) -> Iterator[str]:
    """The API under uvicorn on a free port; actions do not wait for a worker (there is none)."""
    from streams.admin import ensure_topics
    from streams.topics import Topics

    settings = api_settings(bootstrap, redis_url, namespace, demo_pack(tmp_path / "city"), api_wait_s=0)
    ensure_topics(settings.kafka_bootstrap, Topics(settings.topic_prefix).all(), settings.partitions)
    with serving(create_api(settings, load_city_pack(settings.city))) as base:
        yield base


def as_list(value: Any) -> list[Any]:
    """xmltodict gives one repeated element as a dict and several as a list."""
    return value if isinstance(value, list) else [value]


def post_xml(base: str, body: bytes) -> str:
    answer = httpx.post(f"{base}/open311/v2/requests.xml", content=body,
                        headers={"content-type": "application/x-www-form-urlencoded"}, timeout=10)  # fmt: skip
    assert answer.status_code == 201, answer.text
    request_id = ET.fromstring(answer.content).findtext("request/service_request_id")
    assert request_id
    return request_id


def test_the_georeport_client_reads_services_definitions_and_requests_in_json_and_xml(live_api, bootstrap, topics):
    from georeport import GeoReport

    base = live_api
    # posted as curl -d would: raw UTF-8 bytes; one located by a point, one by an address only
    pointed = post_xml(base, f"api_key={OPEN311_KEY}&service_code=pothole&lat=51.99&long=5.06&description=".encode()
                       + UTF8_TEXT.encode())  # fmt: skip
    addressed = post_xml(base, f"api_key={OPEN311_KEY}&service_code=graffiti&address_string=Stationsplein+1".encode())
    seen: dict[str, Any] = {}
    for fmt in ("json", "xml"):
        client = GeoReport(f"{base}/open311/v2", jurisdiction="lindenhaven", output_format=fmt)  # ignored, accepted
        services = client.get_service_list()
        assert {s["service_code"] for s in services} >= {"pothole", "graffiti"}
        assert {s["service_code"]: s["service_name"] for s in services}["pothole"] == "Pothole"
        assert client.get_service_definition("pothole")["service_code"] == "pothole"
        listed = as_list(client.get_service_requests())
        assert {r["service_request_id"] for r in listed} == {pointed, addressed}
        one = client.get_service_request(pointed)
        assert (one["service_request_id"], one["status"], one["description"]) == (pointed, "open", UTF8_TEXT)
        filtered = as_list(client.get_service_requests(service_request_id=addressed))
        assert [r["service_request_id"] for r in filtered] == [addressed]
        assert "awaiting location" in filtered[0]["status_notes"] and not filtered[0]["lat"]
        seen[fmt] = (services, one)
    # the same facts in both formats (XML carries text: numbers and booleans as their spelling)
    json_services, json_one = seen["json"]
    xml_services, xml_one = seen["xml"]
    assert [s["service_code"] for s in json_services] == [s["service_code"] for s in xml_services]
    assert {k: str(v) for k, v in json_one.items() if v not in (None, False)} == {
        k: v for k, v in xml_one.items() if v is not None
    }
    reports = collect(bootstrap, topics.reports, lambda rs: len(rs) >= 2, timeout=20)
    assert len(reports) == 2


def test_no_generated_input_makes_any_route_answer_5xx(live_api, redis_url, namespace):
    """Every operation of /openapi.json (server-sent event streams aside: they never end) with generated valid
    and invalid inputs, a few examples each so the run stays well under a minute."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode

    base = live_api
    token = issue_token(redis_url, namespace, "ops-centre", "schemathesis")
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if not op.path.endswith("/events")]
    assert any(op.path.startswith("/open311/") for op in operations) and any(op.path.startswith("/ops/") for op in
                                                                              operations)  # fmt: skip
    failures: list[str] = []
    calls = 0
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(timeout=10) as session_probe:
        assert session_probe.get(f"{base}/open311/v2/services.json").status_code == 200
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(mode))
            @settings(max_examples=6, deadline=None, database=None,
                      suppress_health_check=list(HealthCheck))  # fmt: skip
            def run(case: Any) -> None:
                nonlocal calls
                calls += 1
                response = case.call(base_url=base, headers=headers, timeout=10)
                if response.status_code >= 500:
                    failures.append(f"{response.status_code} {case.method} {case.formatted_path} "
                                    f"query={case.query} body={case.body!r}: {response.text[:200]}")  # fmt: skip

            try:
                run()
            except Unsatisfiable:  # nothing invalid to say to an operation with no parameters or body
                assert mode is GenerationMode.NEGATIVE, operation.label
    assert calls > len(operations), calls
    assert failures == [], "\n".join(failures[:10])
