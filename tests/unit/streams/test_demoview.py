"""What `cityloop demo` prints fits 80 columns, and an interrupted run does not call records in flight lost."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

import streams.demo
from streams.cli import main
from streams.demoview import WIDTH, board, progress_header, progress_row, step, summary_lines

TOKEN = "clu_" + "x" * 43  # the length `cityloop units token` gives
CREW = "clu_" + "c" * 43


def summary(**changes) -> dict:
    big = 99_999
    base = {
        "played_s": 60.0,
        "reports_sent": big, "reports_valid_unique": big, "reports_resent": big, "reports_garbage": big,
        "reports_opened_incident": big, "reports_merged": big, "reports_triaged": big, "triage_decisions_applied": big,
        "readings_sent": big, "incidents": {"report": big, "sensor": big}, "merge_ratio": 2.873,
        "sensor_alarms_cleared": big, "tasks": big,
        "tasks_by_unit": {f"a-rather-long-unit-name-{i}": big for i in range(17)},
        "lifecycle_events": {k: big for k in ("ack", "reject", "arbitrate", "resolve", "verify", "reopen", "close",
                                              "sla_warning", "escalate")},
        "sla": {"acknowledge": {"met": big, "missed": big}, "resolve": {"met": big, "missed": 0}},
        "crew_actions": {"ack": big}, "crew_refused": {"ack 409": big}, "crew_errors": 0,
        "latency_p50_ms": 1234.5, "latency_p99_ms": 12345.6,
        "dead_letters": {"missing_field": big, "bad_encoding": big, "out_of_range": big, "invalid_json": big},
        "reports_unaccounted": 0, "garbage_without_dead_letter": 0, "interrupted": False,
    }  # fmt: skip
    return {**base, **changes}


def too_wide(lines: list[str]) -> list[str]:
    return [line for line in lines if len(line) > WIDTH]


def test_the_progress_table_fits_80_columns_up_to_99999_of_everything():
    counts = dict.fromkeys(("reports", "incidents", "tasks", "triage", "dead", "acked", "resolved", "closed",
                            "late"), 99_999)  # fmt: skip
    lines = [progress_header(), progress_row(3599, counts)]
    assert not too_wide(lines)
    assert progress_row(12, counts).split()[0] == "12s"
    assert len(progress_header().split()) == len(progress_row(12, counts).split()), "a value under every heading"


def test_the_board_and_start_up_steps_fit_80_columns_with_five_digit_ports():
    """Every line but the ready links, which are printed whole on lines of their own (a terminal wraps them)."""
    lines = board(api_url="http://127.0.0.1:65535", metrics_url="http://127.0.0.1:65535/metrics",
                  kafka="127.0.0.1:65535", prefix="demoabcdef", token=TOKEN, live=True,
                  crew=("A rather long crew name, West", CREW))  # fmt: skip
    lines += board(api_url="http://127.0.0.1:65535", metrics_url="http://127.0.0.1:65535/metrics",
                   kafka="127.0.0.1:65535", prefix="demoabcdef", token=TOKEN, live=False)  # fmt: skip
    lines.append(step("worker", "ready", 12.3))
    assert not too_wide([line for line in lines if not line.startswith("http://")])
    assert f"export TOKEN={TOKEN}" in "\n".join(lines), "the token is printed whole, ready to paste"


def test_the_board_gives_ready_links_for_the_ops_centre_and_one_crew():
    lines = board(api_url="http://127.0.0.1:8080", metrics_url="http://127.0.0.1:9090/metrics", kafka="k:9092",
                  prefix="demo", token=TOKEN, live=True, crew=("Roads crew West", CREW))  # fmt: skip
    assert f"http://127.0.0.1:8080/board#token={TOKEN}" in lines, "alone on its line: nothing to trim before a click"
    assert f"http://127.0.0.1:8080/crew#token={CREW}" in lines
    assert lines[lines.index(f"http://127.0.0.1:8080/crew#token={CREW}") - 1].endswith("Roads crew West")


def test_the_summary_fits_80_columns_with_big_numbers_and_long_unit_names():
    lines = summary_lines(summary())
    assert not too_wide(lines), too_wide(lines)
    assert any("unexplained losses: 0" in line for line in lines)


@pytest.mark.parametrize("interrupted", [False, True])
def test_records_in_flight_at_ctrl_c_are_not_counted_as_losses(interrupted):
    """Stopped early, the reports not yet out are "in flight"; only a run that finished can claim losses."""
    text = "\n".join(summary_lines(summary(interrupted=interrupted, reports_unaccounted=7)))
    if interrupted:
        assert "(interrupted)" in text and "in flight" in text and "7 valid reports" in text
        assert "losses" not in text.replace("not counted as losses", "")
    else:
        assert "unexplained losses: 7" in text and "in flight" not in text


def test_the_demo_says_what_it_is_about_to_do_before_any_work(monkeypatch, tmp_path):
    """The first line comes before the demo's imports and start-up (a blank screen for 3-6 s was the complaint)."""
    printed: list[str] = []
    printed_before_work: list[list[str]] = []

    def run_demo(**_: object) -> dict:
        printed_before_work.append(list(printed))
        return {"interrupted": False, "signal": None}

    monkeypatch.setattr(streams.demo, "run_demo", run_demo)
    monkeypatch.setattr(click, "echo", lambda message="", **_: printed.append(str(message)))
    outcome = CliRunner().invoke(main, ["demo", "--data-dir", str(tmp_path), "--web-port", "1", "--api-port", "2"])
    assert outcome.exit_code == 0, outcome.output
    assert printed_before_work == [["cityloop demo: 60 s of a simulated city on this machine; Ctrl-C stops it all"]]
