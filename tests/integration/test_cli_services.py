"""The command line against a real broker and a real Redis: the errors that need one of them up, and the happy path
of a smoke test (create the topics, write a report, read it back)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.conftest import free_port
from tests.unit.streams.test_cli_errors import Ran

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers]


def cityloop(*args: str, env: dict[str, str], cwd: Path, timeout: float = 90) -> Ran:
    done = subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip
    return Ran(done.returncode, done.stdout, done.stderr)


@pytest.fixture
def env(tmp_path: Path, bootstrap: str, redis_url: str, namespace: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("CITYLOOP_")},
        "CITYLOOP_KAFKA_BOOTSTRAP": bootstrap,
        "CITYLOOP_REDIS_URL": redis_url,
        "CITYLOOP_TOPIC_PREFIX": namespace,
        "CITYLOOP_DATA_DIR": str(tmp_path / "data"),
    }


def test_a_worker_with_redis_but_no_broker_says_so_in_one_line(env, tmp_path):
    """It used to print 37 lines of Kafka client logs over 30 s before its error."""
    nowhere = f"127.0.0.1:{free_port()}"
    ran = cityloop("worker", "--web-port", str(free_port()), "--kafka", nowhere, "--wait", "1", env=env, cwd=tmp_path)
    ran.assert_one_line_error(1, f"no Kafka broker answers at {nowhere}", "cityloop dev up")


def test_tail_on_a_topic_that_does_not_exist_says_which_and_how_to_make_it(env, tmp_path, namespace):
    """It used to wait silently; now it waits --wait seconds for the topic, then names it and the fix."""
    ran = cityloop("tail", "tasks", "--wait", "1", env=env, cwd=tmp_path)
    ran.assert_one_line_error(1, f"topic {namespace}.tasks does not exist", "cityloop topics create")


def test_topics_create_then_report_then_tail_reads_the_report_back(env, tmp_path, namespace):
    """The smoke test a city runs on a new deployment, command by command, with a clean stdout for pipes."""
    created = cityloop("topics", "create", env=env, cwd=tmp_path)
    assert created.status == 0, created.stderr
    assert f"{namespace}.reports: created" in created.stdout
    report = ("report", "--text", "pothole by the school", "--lat", "52.0", "--lon", "5.05")
    sent = cityloop(*report, env=env, cwd=tmp_path)
    assert sent.status == 0 and sent.stderr == "", sent.stderr
    report_id = sent.stdout.strip()
    tailed = cityloop("tail", "reports", "--from-beginning", "--max", "1", "--timeout", "20", env=env, cwd=tmp_path)
    assert tailed.status == 0, tailed.stderr
    (line,) = tailed.stdout.splitlines()
    record = json.loads(line)
    assert (record["report_id"], record["text"], record["lat"]) == (report_id, "pothole by the school", 52.0)
    assert tailed.stderr.startswith(f"following {namespace}.reports")


def test_a_worker_says_its_own_few_lines_by_default_and_the_libraries_with_verbose(workers):
    """By default: CityLoop's start-up summary, "ready", the signal and "stopped" (it was ~106 lines of Kafka and
    Faust start-up); --verbose brings the libraries' lines back."""
    quiet = workers.start()
    verbose = workers.start(args=("--verbose",))
    workers.stop_all()
    lines = quiet.log().splitlines()
    assert lines[0].startswith("worker for Lindenhaven"), lines[:3]
    assert any("ready: ingest holds" in line for line in lines) or any("holds no partitions" in line for line in lines)
    assert any("SIGTERM received: stopping" in line for line in lines)
    assert lines[-1].rstrip().endswith("stopped: every service is down and the ingest committed its offsets")
    chatter = [line for line in lines if "[^" in line or "kafka." in line or "aiokafka" in line]
    assert not chatter and len(lines) <= 15, "\n".join(lines)
    assert sum("[^" in line for line in verbose.log().splitlines()) > 10, "Faust's service lines with --verbose"
