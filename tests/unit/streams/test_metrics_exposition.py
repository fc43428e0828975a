"""Each process serves its own series: the API's /metrics has no worker series, label values stay bounded, and the
counters alerts take ``increase()`` of exist at 0 from the start (streams/metrics.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dispatch import load_city_pack
from dispatch.demo_city import write_demo_city
from streams import metrics
from streams.api import create_api
from streams.settings import load_settings

API_OWN = {"cityloop_api_requests", "cityloop_api_request_seconds", "cityloop_connector_callbacks",
           "cityloop_redis_errors", "cityloop_produce_records", "cityloop_produce_bytes", "cityloop_produce_seconds",
           "cityloop_produce_errors"}  # fmt: skip
INVENTED = [f"X{i}METHOD" for i in range(20)]


class Writer:
    async def write(self, topic: str, key: str, record: dict) -> None:
        pass


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    pack = load_city_pack(write_demo_city(Path(tmp_path_factory.mktemp("city")) / "demo-city"))
    app = create_api(load_settings(topic_prefix="t"), pack, redis_client=fakeredis.FakeAsyncRedis(), writer=Writer())

    @app.get("/test-crash")
    async def crash() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def families(text: str) -> dict[str, list]:
    """Samples by family; the parser's separate ``_created`` families are folded into their metric's name."""
    found: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        found.setdefault(family.name.removesuffix("_created"), []).extend(family.samples)
    return found


def test_the_apis_metrics_have_no_worker_series(api: TestClient) -> None:
    """Only the API's own CityLoop families (and the process' standard ones) are on the API's /metrics."""
    api.get("/health")
    found = families(api.get("/metrics").text)
    ours = {name for name in found if name.startswith("cityloop_")}
    assert ours <= API_OWN, f"not the API's: {sorted(ours - API_OWN)}"
    assert "cityloop_api_requests" in ours
    assert "process_cpu_seconds" in found  # the standard process series stay


def test_invented_methods_are_counted_as_other(api: TestClient) -> None:
    """Twenty methods no standard knows make one `other` series, not twenty."""

    def others(samples: list) -> float:  # the registry is the process's: count what this test adds
        return sum(
            s.value for s in samples if s.name == "cityloop_api_requests_total" and s.labels["method"] == "other"
        )

    before = others(families(api.get("/metrics").text).get("cityloop_api_requests", []))
    for method in INVENTED:
        api.request(method, "/health")
    samples = families(api.get("/metrics").text)["cityloop_api_requests"]
    methods = {s.labels["method"] for s in samples if s.name == "cityloop_api_requests_total"}
    assert "other" in methods
    assert methods <= metrics.KNOWN_METHODS | {"other"}, methods
    assert others(samples) - before == len(INVENTED)
    assert metrics.method_label("GET") == "GET"
    assert metrics.method_label("get") == "other"  # methods are case-sensitive (RFC 9110)


def test_the_workers_registry_has_no_api_or_connector_series() -> None:
    """The default registry (the worker's /metrics, with Faust's sensor) carries no API or connector family."""
    names = set(families(generate_latest(REGISTRY).decode()))
    assert not {n for n in names if n.startswith(("cityloop_api_", "cityloop_connector_"))}


def test_the_connectors_registry_has_only_connector_series_and_their_dead_letters() -> None:
    """`cityloop connectors` serves its connector families and dead letters of stage `connector` only."""
    metrics.start_connector_series(["roads"])
    found = families(generate_latest(metrics.CONNECTORS_REGISTRY).decode())
    ours = {name for name in found if name.startswith("cityloop_")}
    assert all(n.startswith("cityloop_connector_") or n == "cityloop_deadletters" for n in ours), ours
    stages = {s.labels["stage"] for s in found["cityloop_deadletters"] if s.name == "cityloop_deadletters_total"}
    assert stages == {"connector"}
    labels = {"connector": "roads", "reason": "delivery_failed"}
    assert metrics.CONNECTORS_REGISTRY.get_sample_value("cityloop_connector_deadletters_total", labels) == 0.0


FRESH_WORKER = """
import json
from prometheus_client import REGISTRY
from streams import metrics
from streams.records import REASON_CODES
metrics.start_worker_series(REASON_CODES, ["pothole"], ("acknowledge", "resolve", "verify"))
get = REGISTRY.get_sample_value
print(json.dumps({
    "internal": [get("cityloop_deadletters_total", {"stage": s, "reason": "processing_error"})
                 for s in ("discover", "dispatch", "internal")],
    "validate": [get("cityloop_deadletters_total", {"stage": "validate", "reason": c}) for c in REASON_CODES],
    "breach": get("cityloop_sla_breaches_total", {"category": "pothole", "stage": "resolve"}),
    "consumed": [get("cityloop_consumed_records_total", {"stream": s})
                 for s in ("reports", "readings", "feedback", "tasks")],
    "labels": len(metrics.worker_dead_letter_labels(REASON_CODES)),
    "codes": len(REASON_CODES),
}))
"""


def test_a_worker_starts_its_failure_counters_at_zero() -> None:
    """A one-off processing failure must be an increase from 0, so its series exists before it happens; the pace
    the lag alerts compare against exists at 0 before anything is finished.

    Run in a fresh interpreter: in this one, other tests have already counted dead letters on the shared registry."""
    out = subprocess.run([sys.executable, "-c", FRESH_WORKER], capture_output=True, text=True, check=True, timeout=60)
    seen = json.loads(out.stdout)
    assert seen["internal"] == [0.0, 0.0, 0.0]
    assert seen["validate"] == [0.0] * seen["codes"]
    assert seen["breach"] == 0.0
    assert seen["consumed"] == [0.0, 0.0, 0.0, None]  # inputs only; absent would silence the lag alerts
    assert seen["labels"] == 2 * seen["codes"] + 7  # bounded


def test_an_unhandled_error_is_counted_as_a_500(api: TestClient) -> None:
    """A route that raises is answered 500 outside the measuring middleware; CityLoopApiErrors must still see it."""

    def crashed() -> list[tuple[str, str, float]]:
        samples = families(api.get("/metrics").text).get("cityloop_api_requests", [])
        found = [s for s in samples if s.name == "cityloop_api_requests_total" and s.labels["route"] == "/test-crash"]
        return [(s.labels["method"], s.labels["status"], s.value) for s in found]

    before = {(method, status): value for method, status, value in crashed()}  # the registry is the process's
    assert api.get("/test-crash").status_code == 500
    assert crashed() == [("GET", "500", before.get(("GET", "500"), 0.0) + 1.0)]
