"""Which broker a broker-facing test runs on.

Every test that uses the ``bootstrap`` fixture runs on the dev broker (Tansu).
Tests marked ``both_brokers`` run once on Tansu and once on Apache Kafka
(streams/apachekafka.py starts one node from the jars on Maven Central); the
test id says which (``[tansu]``, ``[kafka]``).
"""

from __future__ import annotations

import pytest

BOTH = ("tansu", "kafka")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "broker_kind" in metafunc.fixturenames and metafunc.definition.get_closest_marker("both_brokers"):
        metafunc.parametrize("broker_kind", BOTH, indirect=True, scope="session")


@pytest.fixture(scope="session")
def broker_kind(request: pytest.FixtureRequest) -> str:
    return str(getattr(request, "param", "tansu"))
