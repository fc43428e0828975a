"""`cityloop dev up / status / down` from a fresh directory: the default data dir is relative, and nothing answers
on the Redis port it is given, so it starts the embedded Redis there (this failed on every fresh machine: redis-server
changes into its --dir before opening a relative log file)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from streams.apachekafka import missing_tools
from tests.integration.conftest import free_port
from tests.integration.test_demo import alive
from tests.integration.test_readme import listening

pytestmark = pytest.mark.integration


def cityloop(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)  # fmt: skip


@pytest.mark.parametrize("kafka", [(), ("--kafka",)], ids=["tansu", "apache kafka"])
def test_dev_up_starts_broker_and_redis_with_the_relative_default_data_dir_and_dev_down_stops_both(tmp_path, kafka):
    if kafka and missing_tools() and os.environ.get("CITYLOOP_TEST_REQUIRE_KAFKA") != "1":
        pytest.skip(f"Apache Kafka needs {' and '.join(missing_tools())}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYLOOP_")}
    broker_port, redis_port = free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    up = cityloop("dev", "up", "--port", str(broker_port), "--redis", redis_url, *kafka, cwd=tmp_path, env=env)
    state_file = tmp_path / ".cityloop" / "dev.json"
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "started an embedded one there" in up.stdout
        assert listening(broker_port) and listening(redis_port)
        assert (tmp_path / ".cityloop" / "logs" / "redis.log").stat().st_size > 0, "Redis logs where it was told to"
        status = cityloop("dev", "status", cwd=tmp_path, env=env)
        assert status.returncode == 0 and "up" in status.stdout and "answers" in status.stdout
        again = cityloop("dev", "up", "--port", str(broker_port), "--redis", redis_url, *kafka, cwd=tmp_path, env=env)
        assert again.returncode == 1 and again.stderr.startswith("Error: the dev runtime is already up")
    finally:
        state = json.loads(state_file.read_text()) if state_file.exists() else {}
        down = cityloop("dev", "down", cwd=tmp_path, env=env)
    assert down.returncode == 0, down.stderr
    assert state and not alive(state["broker_pid"]) and not alive(state["redis_pid"])
    assert not listening(broker_port) and not listening(redis_port)
    assert not state_file.exists()
