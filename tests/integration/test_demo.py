"""`cityloop demo` shows the loop working and leaves nothing running."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request

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
    wide = [line for line in progress if len(line) > 79 and not line.startswith("http://")]  # but ready links
    assert not wide, "progress, summary and the board fit 80 columns"
    assert lines[-1] == f"stopped everything the demo started; logs in {tmp_path / 'data' / 'logs'}"
    assert len(summary["started_pids"]) >= 3, "the broker (or Redis), the worker and the API"
    assert not [pid for pid in summary["started_pids"] if alive(pid)], "the demo left processes behind"


def start_demo(tmp_path, redis_url, *args: str, **popen: object) -> tuple[subprocess.Popen[str], int]:
    api_port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "demo", "--rate", "40", "--web-port", str(free_port()),
         "--api-port", str(api_port), "--data-dir", str(tmp_path / "data"), "--json", str(tmp_path / "summary.json"),
         *args],
        env={**os.environ, "CITYLOOP_REDIS_URL": redis_url}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True, **popen,
    )  # fmt: skip
    return process, api_port


def read_until(process: subprocess.Popen[str], done) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:
        lines.append(line.rstrip("\n"))
        if done(lines):
            return lines
    raise AssertionError("the demo ended early:\n" + "\n".join(lines[-40:]))


@pytest.mark.parametrize(
    ("stop", "status"),
    [(lambda p: os.killpg(p.pid, signal.SIGINT), 130), (lambda p: p.send_signal(signal.SIGTERM), 143)],
    ids=["ctrl-c to the terminal's process group", "sigterm"],
)
def test_an_interrupted_demo_stops_everything_and_counts_records_in_flight_as_in_flight(tmp_path, redis_url, stop,
                                                                                        status):  # fmt: skip
    """Stopped mid-run, the demo stops what it started, says so, and loses nothing by its own count."""
    process, _ = start_demo(tmp_path, redis_url, "--duration", "60")
    seen = read_until(process, lambda lines: len(lines) >= 2 and lines[-2] == progress_header())  # a row: playing
    stop(process)
    rest, _ = process.communicate(timeout=120)
    text = "\n".join(seen) + "\n" + rest
    assert process.returncode == status, text[-2000:]
    assert "interrupted: stopping everything the demo started" in text and "(interrupted)" in text
    assert "in flight" in text and "unexplained losses" not in text
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["interrupted"] is True and summary["reports_sent"] > 0
    assert not [pid for pid in summary["started_pids"] if alive(pid)], "the demo left processes behind"


def test_keep_running_keeps_the_board_live_until_ctrl_c_even_started_as_a_background_job(tmp_path, redis_url):
    """After the summary the board's URLs answer; Ctrl-C then stops everything and exits 0. Started with SIGINT
    ignored, as a shell starts a background job, Ctrl-C (SIGINT) still works."""
    process, api_port = start_demo(tmp_path, redis_url, "--duration", "3", "--keep-running",
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # fmt: skip
    lines = read_until(process, lambda lines: lines[-1] == "still running: Ctrl-C stops everything")
    token = [line.split("export TOKEN=")[1] for line in lines if "export TOKEN=" in line][-1]
    request = urllib.request.Request(f"http://127.0.0.1:{api_port}/ops/sla",
                                     headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200 and "counts" in json.loads(response.read())
    assert any(f"http://127.0.0.1:{api_port}/board" in line for line in lines), "the board's address is printed"
    assert f"http://127.0.0.1:{api_port}/board#token={token}" in lines, "a ready link for the ops centre"
    crew_links = [line for line in lines if line.startswith(f"http://127.0.0.1:{api_port}/crew#token=clu_")]
    assert crew_links, "a ready link for one crew"
    crew_token = crew_links[-1].split("#token=")[1]
    crew = urllib.request.Request(f"http://127.0.0.1:{api_port}/units/me",
                                  headers={"Authorization": f"Bearer {crew_token}"})  # fmt: skip
    with urllib.request.urlopen(crew, timeout=10) as response:
        me = json.loads(response.read())
        assert not me["ops_centre"] and f"the crew app of {me['name']}" in "\n".join(lines), me
    with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/board", timeout=10) as response:
        assert response.status == 200 and "script-src 'self'" in response.headers["Content-Security-Policy"]
    board = urllib.request.Request(f"http://127.0.0.1:{api_port}/ops/board",
                                   headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    with urllib.request.urlopen(board, timeout=10) as response:
        assert "last_event_id" in json.loads(response.read())
    os.killpg(process.pid, signal.SIGINT)
    rest, _ = process.communicate(timeout=120)
    assert process.returncode == 0, rest[-2000:]
    assert rest.rstrip().endswith(f"stopped everything the demo started; logs in {tmp_path / 'data' / 'logs'}")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert not [pid for pid in summary["started_pids"] if alive(pid)], "the demo left processes behind"
