"""Every command fails the same way: one line on stderr naming what failed and the next step, a non-zero exit, no
traceback. One test per mistake a new user made on a machine with no broker and no Redis (issue 11's table).

The commands run as a person runs them, in a fresh interpreter, with Kafka and Redis pointed at loopback ports where
nothing listens. The rows that need a running broker or Redis are in tests/integration/test_cli_services.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.conftest import free_port as closed_port  # bound once, released: nothing listens


@dataclass
class Ran:
    status: int
    stdout: str
    stderr: str

    def assert_one_line_error(self, status: int, *fragments: str) -> None:
        lines = self.stderr.splitlines()
        assert self.status == status, f"exit {self.status}, stderr:\n{self.stderr}"
        assert "Traceback" not in self.stderr + self.stdout
        assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{self.stderr}"
        assert lines[0].startswith("Error: "), lines[0]
        assert "unexpected" not in lines[0], f"a known mistake reported as a bug: {lines[0]}"
        for fragment in fragments:
            assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
        assert self.stdout == "", f"stdout should be empty on an error: {self.stdout!r}"


@pytest.fixture
def cityloop(tmp_path: Path):
    """Run `cityloop ARGS...` in a subprocess with no broker and no Redis where the settings point."""
    kafka, redis = f"127.0.0.1:{closed_port()}", f"redis://127.0.0.1:{closed_port()}/0"
    base = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CITYLOOP_")},
        "CITYLOOP_KAFKA_BOOTSTRAP": kafka,
        "CITYLOOP_REDIS_URL": redis,
        "CITYLOOP_DATA_DIR": str(tmp_path / "data"),
    }

    def run(*args: str, timeout: float = 60, env: dict[str, str] | None = None) -> Ran:
        done = subprocess.run(
            [sys.executable, "-m", "streams.cli", *args], env={**base, **(env or {})}, cwd=tmp_path,
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        return Ran(done.returncode, done.stdout, done.stderr)

    run.kafka, run.redis = kafka, redis  # type: ignore[attr-defined]
    return run


ROUTE = ("route", "--lat", "52.0", "--lon", "5.05", "--category", "pothole")


def test_tail_without_a_broker_gives_up_after_the_default_wait_in_one_line(cityloop):
    """`cityloop tail tasks` with no broker: one line naming the address and `cityloop dev up`, after 5 s, not 32."""
    started = time.monotonic()
    ran = cityloop("tail", "tasks")
    waited = time.monotonic() - started
    ran.assert_one_line_error(1, f"no Kafka broker answers at {cityloop.kafka}", "tried for 5 s", "cityloop dev up")
    assert 5 <= waited < 30, f"it kept trying for {waited:.1f} s: the default wait is 5 s"


def test_triage_list_without_redis_stops_instead_of_retrying_forever(cityloop):
    ran = cityloop("triage", "list", "--wait", "1")
    ran.assert_one_line_error(1, f"Redis does not answer at {cityloop.redis}", "CITYLOOP_REDIS_URL")


def test_units_token_without_redis_is_one_line(cityloop):
    ran = cityloop("units", "token", "roads-west", "--wait", "1")
    ran.assert_one_line_error(1, f"Redis does not answer at {cityloop.redis}")


def test_units_token_for_an_unknown_unit_names_the_known_ones(cityloop):
    ran = cityloop("units", "token", "roads-nowhere")
    ran.assert_one_line_error(2, "unknown unit 'roads-nowhere'", "roads-west")


def test_route_refuses_a_load_that_is_not_a_number(cityloop):
    ran = cityloop(*ROUTE, "--load", "roads-west=abc")
    ran.assert_one_line_error(2, "--load roads-west=abc", "whole number")


def test_route_refuses_a_load_for_a_unit_the_pack_does_not_have(cityloop):
    ran = cityloop(*ROUTE, "--load", "nobody=3")
    ran.assert_one_line_error(2, "unknown unit 'nobody'")


@pytest.mark.parametrize(
    ("flag", "value", "what"),
    [("--lat", "nan", "latitude"), ("--lat", "99", "latitude"), ("--lon", "-181", "longitude"),
     ("--lon", "inf", "longitude")],
)  # fmt: skip
def test_route_refuses_coordinates_that_are_not_finite_or_out_of_range(cityloop, flag, value, what):
    args = list(ROUTE)
    args[args.index(flag) + 1] = value
    ran = cityloop(*args)
    ran.assert_one_line_error(2, f"'{value}' is not a {what}", "cityloop route --help")


def test_route_refuses_a_confidence_outside_0_to_1(cityloop):
    ran = cityloop(*ROUTE, "--confidence", "7")
    ran.assert_one_line_error(2, "'7' is not a probability")


def test_route_refuses_a_position_off_the_globe(cityloop):
    ran = cityloop(*ROUTE, "--position", "roads-west=52,500")
    ran.assert_one_line_error(2, "--position roads-west=52,500", "longitude")


def test_report_without_a_broker_says_so_and_how_to_start_one(cityloop):
    ran = cityloop("report", "--text", "pothole", "--lat", "52", "--lon", "5", "--wait", "1")
    ran.assert_one_line_error(1, f"no Kafka broker answers at {cityloop.kafka}", "cityloop dev up")


def test_triage_decide_without_a_broker_says_so_and_how_to_start_one(cityloop):
    ran = cityloop("triage", "decide", "inc-1", "--category", "pothole", "--by", "ana", "--wait", "1")
    ran.assert_one_line_error(1, f"no Kafka broker answers at {cityloop.kafka}", "CITYLOOP_KAFKA_BOOTSTRAP")


def test_triage_decide_refuses_a_category_the_city_does_not_have(cityloop):
    ran = cityloop("triage", "decide", "inc-1", "--category", "potholes", "--by", "ana")
    ran.assert_one_line_error(2, "unknown category 'potholes'")


def test_report_refuses_a_latitude_off_the_globe_before_sending_anything(cityloop):
    """--lat 999 used to print an id and exit 0, to be dead-lettered later; now nothing is sent (no broker needed)."""
    ran = cityloop("report", "--text", "pothole", "--lat", "999", "--lon", "5")
    ran.assert_one_line_error(2, "'999' is not a latitude")


def test_worker_without_redis_is_one_line_not_a_page_of_client_logs(cityloop):
    ran = cityloop("worker", "--web-port", str(closed_port()), "--wait", "1")
    ran.assert_one_line_error(1, f"Redis does not answer at {cityloop.redis}")


def test_a_bad_setting_in_the_environment_is_named_with_its_variable(cityloop):
    ran = cityloop("triage", "list", env={"CITYLOOP_REDIS_URL": "localhost:6379"})
    ran.assert_one_line_error(2, "redis_url (CITYLOOP_REDIS_URL)", "'localhost:6379' is not a Redis URL")


def test_a_port_out_of_range_is_a_usage_error_not_a_crash(cityloop):
    ran = cityloop("dev", "up", "--port", "99999")
    ran.assert_one_line_error(2, "99999 is not in the range 1<=x<=65535")


def test_a_damaged_dev_state_file_is_named_and_refused(cityloop, tmp_path):
    """A state file with no pids (or pid -1, which kill() takes as "every process") is refused, not acted on."""
    state = tmp_path / "data" / "dev.json"
    state.parent.mkdir(parents=True)
    for content in ("{}", '{"bootstrap": "x:1", "redis_url": "redis://x", "broker_pid": -1}', "not json"):
        state.write_text(content)
        for command in ("up", "down", "status"):
            ran = cityloop("dev", command)
            ran.assert_one_line_error(1, f"the dev state file {state} is damaged", "delete it")


def test_cityloop_alone_prints_its_help_and_exits_0(cityloop):
    for args in ((), ("dev",), ("city",), ("triage",)):
        ran = cityloop(*args)
        assert ran.status == 0 and ran.stdout.startswith("Usage: cityloop") and ran.stderr == "", args


def test_a_reader_that_closes_the_pipe_early_ends_the_command_quietly(tmp_path):
    """`cityloop route ... --json | head -c 10`: no 'unexpected BrokenPipeError', no traceback; exit 141 as SIGPIPE."""
    env = {**os.environ, "CITYLOOP_DATA_DIR": str(tmp_path / "data")}
    process = subprocess.Popen([sys.executable, "-m", "streams.cli", *ROUTE, "--json"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the reader is gone before the first line
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=60) == 141 and stderr == "", stderr


def test_a_missing_city_pack_is_named_without_a_placeholder(cityloop, tmp_path):
    ran = cityloop("route", str(tmp_path / "nowhere"), "--lat", "52", "--lon", "5", "--category", "pothole")
    ran.assert_one_line_error(1, f"invalid city pack: {tmp_path / 'nowhere'}: not a directory")


def test_debug_shows_the_traceback_the_one_line_hides(cityloop):
    """`cityloop --debug` is the way to the traceback, for the rare error that is a bug or needs one."""
    ran = cityloop("--debug", "report", "--text", "pothole", "--lat", "52", "--lon", "5", "--wait", "0.2")
    assert ran.status == 1 and "Traceback" in ran.stderr and "Unreachable" in ran.stderr


CITY = str(Path(__file__).resolve().parents[3] / "deploy" / "k8s" / "base" / "city")  # a pack that loads at once


def test_the_api_refuses_to_start_with_the_development_key_and_names_the_setting(cityloop):
    """Production accepted the README's `dev-open311-key` with only a log line: now `cityloop api` stops at once (it
    does not wait for Redis first), naming the setting to fix and the development flag; also when the development key
    is one of several."""
    ran = cityloop("api", "--port", "0", env={"CITYLOOP_CITY": CITY})
    ran.assert_one_line_error(1, "CITYLOOP_OPEN311_API_KEYS", "dev-open311-key", "CITYLOOP_DEV=1")
    mixed = cityloop("api", "--port", "0", env={"CITYLOOP_CITY": CITY,
                                                 "CITYLOOP_OPEN311_API_KEYS": "city-key,dev-open311-key"})  # fmt: skip
    mixed.assert_one_line_error(1, "CITYLOOP_OPEN311_API_KEYS")


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("--dev",), {}),
        ((), {"CITYLOOP_DEV": "1"}),
        ((), {"CITYLOOP_OPEN311_API_KEYS": "a-city-key"}),
    ],
    ids=["--dev", "CITYLOOP_DEV=1", "own key"],
)
def test_the_api_starts_with_the_development_flag_or_its_own_keys(cityloop, args, env):
    """With --dev, CITYLOOP_DEV=1 or keys of its own, `cityloop api` goes on to its next step: reaching Redis (there is
    none here, so that is the error it ends with)."""
    ran = cityloop("api", "--port", "0", "--wait", "1", *args, env={"CITYLOOP_CITY": CITY, **env})
    ran.assert_one_line_error(1, f"Redis does not answer at {cityloop.redis}")
