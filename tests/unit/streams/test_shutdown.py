"""A stop is bounded: past the grace period the watchdog says what it abandons and exits non-zero; a second signal
does it at once; a stop that ends in time is left alone. Readiness is off from the first signal."""

from __future__ import annotations

import logging
import signal
import threading
import time

import pytest

from streams import health
from streams.shutdown import ShutdownWatchdog


class Exits:
    """Records the exit instead of ending the test process."""

    def __init__(self) -> None:
        self.codes: list[int] = []
        self.done = threading.Event()

    def __call__(self, code: int) -> None:
        self.codes.append(code)
        self.done.set()


def test_past_the_grace_it_logs_what_it_abandons_flushes_and_exits_128_plus_the_signal(caplog):
    exits, flushed = Exits(), []
    watchdog = ShutdownWatchdog(0.3, lambda: "a batch of 500 records in flight", flush=lambda: flushed.append(1),
                                exit=exits).start()  # fmt: skip
    started = time.monotonic()
    with caplog.at_level(logging.ERROR, logger="streams.shutdown"):
        watchdog.arm(signal.SIGTERM)
        assert exits.done.wait(5)
    waited = time.monotonic() - started
    assert exits.codes == [143] and flushed == [1]
    assert 0.3 <= waited < 2.0, waited
    (line,) = [r.getMessage() for r in caplog.records if r.name == "streams.shutdown"]
    assert line.startswith("the stop after SIGTERM did not finish within 0.3 s")
    assert "exiting with status 143; abandoned: a batch of 500 records in flight" in line


def test_a_second_ctrl_c_while_stopping_exits_at_once_with_130(caplog):
    exits = Exits()
    watchdog = ShutdownWatchdog(60, lambda: "nothing", flush=lambda: None, exit=exits).start()
    watchdog.arm(signal.SIGINT)
    assert exits.codes == []
    with caplog.at_level(logging.ERROR, logger="streams.shutdown"):
        watchdog.arm(signal.SIGINT)
    assert exits.codes == [130]
    assert "SIGINT again while stopping after SIGINT" in caplog.records[-1].getMessage()


def test_a_watchdog_no_signal_armed_never_fires():
    exits = Exits()
    ShutdownWatchdog(0.2, lambda: "nothing", flush=lambda: None, exit=exits).start()  # never armed
    assert not exits.done.wait(0.8)
    assert exits.codes == []


def test_it_exits_even_if_telling_what_was_abandoned_fails():
    exits = Exits()

    def broken() -> str:
        raise RuntimeError("ingest state unreadable")

    watchdog = ShutdownWatchdog(0.1, broken, flush=lambda: None, exit=exits).start()
    watchdog.arm(signal.SIGTERM)
    assert exits.done.wait(5) and exits.codes == [143]


@pytest.mark.parametrize("stopping", [False, True])
def test_a_worker_told_to_stop_is_not_ready_whatever_else_holds(stopping):
    now = 100.0
    broker, redis = health.Dependency("broker"), health.Dependency("redis")
    broker.record(now, None)
    redis.record(now, None)
    verdict = health.worker_readiness(now, 4, [broker, redis], 5.0, stopping=stopping)
    assert verdict.ok is not stopping
    if stopping:
        assert verdict.http_status == 503 and verdict.status == "stopping"
        assert verdict.reasons[0].startswith("stopping")
