"""With the broker away, the client libraries and the worker's retries log the same warnings and errors dozens of
times a second; a worker shows the first of each kind, then one line per interval saying how many there were."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from streams.logs import RepeatThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.levelname} {record.name}: {record.getMessage()}")


@pytest.fixture
def shown() -> Iterator[tuple[Clock, RepeatThrottle, list[str]]]:
    clock = Clock()
    throttle = RepeatThrottle(every_s=10, settle_s=30, clock=clock)
    handler = Collect()
    handler.addFilter(throttle)
    loggers = [logging.getLogger(n) for n in ("aiokafka.conn", "aiokafka.consumer.group_coordinator", "streams.x")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
    yield clock, throttle, handler.lines
    for logger in loggers:
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


def outage(clock: Clock, throttle: RepeatThrottle, seconds: int, per_second: int) -> None:
    """``per_second`` connection errors a second, with the port changing, and the summaries flushed every second."""
    conn = logging.getLogger("aiokafka.conn")
    start = clock.now
    for second in range(seconds):
        for i in range(per_second):
            clock.now = start + second + i / per_second
            conn.error("Unable connect to node with id %s: %s", 1, f"Connect call failed ('127.0.0.1', {i})")
        clock.now = start + second + 1
        throttle.flush_due()


def test_an_outage_shows_its_first_line_then_one_summary_per_interval_with_the_count(shown):
    clock, throttle, lines = shown
    outage(clock, throttle, seconds=30, per_second=150)  # the 150 lines a second, for 30 s
    assert len(lines) == 4, lines  # 4,500 lines logged
    assert lines[0] == "ERROR aiokafka.conn: Unable connect to node with id 1: Connect call failed ('127.0.0.1', 0)"
    for summary in lines[1:]:
        assert summary.startswith("ERROR aiokafka.conn: Unable connect to node with id 1: Connect call failed")
    # the first interval ends at 10 s with 1,499 held back; each later one holds every line of its 10 s
    assert lines[1].endswith("('127.0.0.1', 149) [repeated 1499 times in the last 10 s]"), lines[1]
    assert all(line.endswith("[repeated 1500 times in the last 10 s]") for line in lines[2:])


def test_when_the_repeats_stop_the_last_count_is_still_told_and_the_next_line_passes_at_once(shown):
    clock, throttle, lines = shown
    outage(clock, throttle, seconds=3, per_second=10)
    assert len(lines) == 1
    clock.now += 10
    throttle.flush_due()
    assert lines[-1].endswith("[repeated 29 times in the last 13 s]"), lines
    clock.now += 10
    throttle.flush_due()  # a quiet interval: the kind is forgotten, nothing logged
    assert len(lines) == 2
    logging.getLogger("aiokafka.conn").error("Unable connect to node with id %s: %s", 1, "again")
    assert lines[-1] == "ERROR aiokafka.conn: Unable connect to node with id 1: again"


def test_the_kind_is_the_logger_and_template_and_info_critical_and_other_kinds_always_pass(shown):
    clock, throttle, lines = shown
    for _ in range(3):
        logging.getLogger("aiokafka.conn").error("Unable connect to node %s", 1)
        logging.getLogger("aiokafka.consumer.group_coordinator").error("Unable connect to node %s", 1)
        logging.getLogger("aiokafka.conn").error("Failed fetch messages from %s", 1)
        logging.getLogger("aiokafka.conn").critical("the sky fell")
        logging.getLogger("streams.x").info("ready: %d partitions", 4)
        logging.getLogger("streams.x").warning("fetching from the broker failed (%r); retrying in 1 s", OSError(1))
    assert lines.count("ERROR aiokafka.conn: Unable connect to node 1") == 1
    assert lines.count("ERROR aiokafka.consumer.group_coordinator: Unable connect to node 1") == 1
    assert lines.count("ERROR aiokafka.conn: Failed fetch messages from 1") == 1
    assert lines.count("CRITICAL aiokafka.conn: the sky fell") == 3
    assert lines.count("INFO streams.x: ready: 4 partitions") == 3
    assert lines.count("WARNING streams.x: fetching from the broker failed (OSError(1)); retrying in 1 s") == 1


def test_a_record_on_two_handlers_is_counted_once(shown):
    clock, throttle, lines = shown
    second = Collect()
    second.addFilter(throttle)
    conn = logging.getLogger("aiokafka.conn")
    conn.addHandler(second)
    try:
        conn.error("Unable connect to node %s", 1)
        conn.error("Unable connect to node %s", 1)
    finally:
        conn.removeHandler(second)
    assert len(lines) == len(second.lines) == 1
    clock.now += 10
    assert "[repeated 1 time in the last 10 s]" in throttle.flush_due()[0].getMessage()


def test_a_coordinator_not_yet_elected_is_hidden_on_start_and_shown_if_it_lasts(shown):
    clock, throttle, lines = shown
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    coordinator.error("Group Coordinator Request failed: %s", "[Error 15] GroupCoordinatorNotAvailableError")
    clock.now += 31
    coordinator.error("Group Coordinator Request failed: %s", "[Error 15] GroupCoordinatorNotAvailableError")
    assert lines == ["ERROR aiokafka.consumer.group_coordinator: Group Coordinator Request failed: "
                     "[Error 15] GroupCoordinatorNotAvailableError"]  # fmt: skip


def test_a_process_that_stops_tells_every_count_held_back_with_the_true_time(shown):
    clock, throttle, lines = shown
    conn = logging.getLogger("aiokafka.conn")
    for _ in range(4):
        conn.error("Unable connect to node %s", 1)
    clock.now += 2
    (summary,) = throttle.flush_all()
    assert lines[-1] == "ERROR aiokafka.conn: Unable connect to node 1 [repeated 3 times in the last 2 s]"
    # a formatter that rebuilds the arguments (Faust's, for the worker's text lines) formats a summary too
    summary.args = tuple(summary.args)
    assert logging.Formatter("%(message)s").format(summary).endswith("[repeated 3 times in the last 2 s]")
