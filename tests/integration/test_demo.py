"""`cityloop demo` shows the loop working and leaves nothing running."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.integration.conftest import free_port

pytestmark = pytest.mark.integration


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); read its state
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_demo_runs_the_loop_and_stops_everything_it_started(tmp_path, redis_url):
    """A short demo ingests reports, assigns tasks, dead-letters garbage, loses nothing, leaves no process.

    Field crews work the tasks through the HTTP API (acknowledge, resolve; the supervisor verifies), so orders
    close, and on the demo's compressed clock some acknowledgements are late: the summary counts SLA outcomes.
    """
    out = tmp_path / "summary.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "demo",
            "--duration",
            "12",
            "--rate",
            "40",
            "--web-port",
            str(free_port()),
            "--api-port",
            str(free_port()),
            "--data-dir",
            str(tmp_path / "data"),
            "--json",
            str(out),
        ],
        env={**os.environ, "CITYLOOP_REDIS_URL": redis_url},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "summary" in result.stdout and "unexplained losses: 0" in result.stdout
    summary = json.loads(out.read_text())
    assert summary["reports_valid_unique"] > 300
    fates = summary["reports_opened_incident"] + summary["reports_merged"] + summary["reports_triaged"]
    assert fates == summary["reports_valid_unique"], "every valid report opened, joined or waits on an incident"
    assert summary["reports_merged"] > 0 and summary["merge_ratio"] > 1.2, "residents' repeat reports merge"
    assert summary["tasks"] == sum(summary["incidents"].values()), "one task per incident"
    assert summary["reports_garbage"] > 0
    assert sum(summary["dead_letters"].values()) == summary["reports_garbage"]
    assert summary["reports_unaccounted"] == 0 and summary["garbage_without_dead_letter"] == 0
    assert summary["latency_p50_ms"] is not None
    events = summary["lifecycle_events"]
    assert events["ack"] > 0 and events["resolve"] > 0 and events["close"] > 0, "crews closed the loop"
    assert summary["crew_actions"]["ack"] > 0 and summary["crew_errors"] == 0, "the crews' API calls were answered"
    acknowledge = summary["sla"]["acknowledge"]
    assert acknowledge["met"] > 0 and acknowledge["met"] + acknowledge["missed"] >= events["ack"] // 2
    assert "SLA         acknowledge:" in result.stdout
    assert len(summary["started_pids"]) >= 3, "the broker (or Redis), the worker and the API"
    assert not [pid for pid in summary["started_pids"] if alive(pid)], "the demo left processes behind"
