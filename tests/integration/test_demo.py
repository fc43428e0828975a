"""`cityloop demo` shows the loop working and leaves nothing running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from streams.demoview import progress_header
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
    lines = result.stdout.splitlines()
    assert lines[0].startswith("cityloop demo: 12 s of a simulated city"), "the first line comes before any work"
    assert "  SLA          acknowledge:" in result.stdout
    assert sum("export TOKEN=clu_" in line for line in lines) == 2, "the board, with the token, before and after"
    progress = lines[lines.index(progress_header()) : -1]  # the last line names the logs' path, however long
    assert not [line for line in progress if len(line) > 79], "progress and summary fit 80 columns"
    assert lines[-1] == f"stopped everything the demo started; logs in {tmp_path / 'data' / 'logs'}"
    assert len(summary["started_pids"]) >= 3, "the broker (or Redis), the worker and the API"
    assert not [pid for pid in summary["started_pids"] if alive(pid)], "the demo left processes behind"


def test_ctrl_c_stops_everything_exits_130_and_counts_records_in_flight_as_in_flight(tmp_path, redis_url):
    """Interrupted mid-run, the demo stops what it started, says it was interrupted, and loses nothing by its count."""
    out = tmp_path / "summary.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "demo", "--duration", "60", "--rate", "40",
         "--web-port", str(free_port()), "--api-port", str(free_port()), "--data-dir", str(tmp_path / "data"),
         "--json", str(out)],
        env={**os.environ, "CITYLOOP_REDIS_URL": redis_url}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    assert process.stdout is not None
    seen, playing = [], False
    for line in process.stdout:  # up to the first row of progress: the city is being played
        seen.append(line)
        if playing:
            break
        playing = line.rstrip("\n") == progress_header()
    process.send_signal(signal.SIGINT)
    rest, _ = process.communicate(timeout=120)
    text = "".join(seen) + rest
    assert process.returncode == 130, text[-2000:]
    assert "interrupted: stopping everything the demo started" in text and "(interrupted)" in text
    assert "in flight" in text and "unexplained losses" not in text
    summary = json.loads(out.read_text())
    assert summary["interrupted"] is True and summary["reports_sent"] > 0
    assert not [pid for pid in summary["started_pids"] if alive(pid)], "the demo left processes behind"
