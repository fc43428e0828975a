"""`cityloop simulate` loads any deployment's topics with the simulated city."""

from __future__ import annotations

import json
import re

import pytest
from click.testing import CliRunner

from streams.cli import main
from tests.integration.conftest import collect

pytestmark = pytest.mark.integration


def test_simulate_writes_what_it_says_inside_the_city(bootstrap, topics, tmp_path):
    """Every record it counts is on the topics; valid reports lie within the pack's bounds."""
    env = {"CITYLOOP_KAFKA_BOOTSTRAP": bootstrap, "CITYLOOP_TOPIC_PREFIX": topics.prefix,
           "CITYLOOP_DATA_DIR": str(tmp_path)}  # fmt: skip
    result = CliRunner().invoke(main, ["simulate", "--rate", "30", "--duration", "3", "--sensors", "5"], env=env)
    assert result.exit_code == 0, result.output
    sent = dict((k, int(v)) for v, k in re.findall(r"(\d+) (reports|garbage|readings)", result.output.splitlines()[-1]))
    assert sent["reports"] > 50 and sent["readings"] >= 10
    reports = collect(bootstrap, topics.reports, lambda rs: len(rs) >= sent["reports"] + sent["garbage"], timeout=30)
    readings = collect(bootstrap, topics.readings, lambda rs: len(rs) >= sent["readings"], timeout=30)
    assert len(reports) == sent["reports"] + sent["garbage"] and len(readings) == sent["readings"]
    for message in reports:
        try:
            record = json.loads(message.value)
        except ValueError:
            continue
        if isinstance(record, dict) and isinstance(record.get("lat"), float) and abs(record["lat"]) <= 90:
            assert 51.97 <= record["lat"] <= 52.05 and 5.04 <= record["lon"] <= 5.18
