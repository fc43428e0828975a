"""A broker outage makes the client libraries log dozens of lines a second; a quiet worker shows a few a minute."""

import logging

import pytest

from streams.console import ClientErrorThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def shown():
    clock = Clock()
    throttle = ClientErrorThrottle(every_s=30, settle_s=30, clock=clock)
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(f"{record.name}: {record.getMessage()}")

    handler = Collect()
    handler.addFilter(throttle)
    loggers = [logging.getLogger(n) for n in ("aiokafka.conn", "aiokafka.consumer.group_coordinator", "streams.x")]
    for logger in loggers:
        logger.addHandler(handler)
        logger.propagate = False
    yield clock, lines
    for logger in loggers:
        logger.removeHandler(handler)
        logger.propagate = True


def test_an_outage_shows_the_first_line_then_one_per_interval_with_the_count_held_back(shown):
    clock, lines = shown
    conn = logging.getLogger("aiokafka.conn")
    for second in range(60):  # a minute of 75 lines a second, as measured with the broker gone
        clock.now = 1000.0 + second
        for _ in range(75):
            conn.error("Unable connect to node with id %s: %s", 1, "Connect call failed")
    clock.now = 1061.0
    conn.error("Unable connect to node with id %s: %s", 1, "Connect call failed")
    assert len(lines) == 3, lines
    assert lines[0] == "aiokafka.conn: Unable connect to node with id 1: Connect call failed"
    assert "[2249 more like this in the last 30 s not shown; --verbose shows all]" in lines[1]
    assert "[2249 more like this in the last 31 s not shown" in lines[2]


def test_different_messages_are_each_shown_and_own_lines_and_critical_always_pass(shown):
    clock, lines = shown
    for _ in range(3):
        logging.getLogger("aiokafka.conn").error("Unable connect to node %s", 1)
        logging.getLogger("aiokafka.consumer.group_coordinator").error("Failed fetch messages from %s", 1)
        logging.getLogger("aiokafka.conn").critical("the sky fell")
        logging.getLogger("streams.x").error("our own line")
    assert lines.count("aiokafka.conn: Unable connect to node 1") == 1
    assert lines.count("aiokafka.consumer.group_coordinator: Failed fetch messages from 1") == 1
    assert lines.count("aiokafka.conn: the sky fell") == 3
    assert lines.count("streams.x: our own line") == 3


def test_a_coordinator_not_yet_elected_is_hidden_on_start_and_shown_if_it_lasts(shown):
    clock, lines = shown
    coordinator = logging.getLogger("aiokafka.consumer.group_coordinator")
    coordinator.error("Group Coordinator Request failed: %s", "[Error 15] GroupCoordinatorNotAvailableError")
    clock.now += 31
    coordinator.error("Group Coordinator Request failed: %s", "[Error 15] GroupCoordinatorNotAvailableError")
    assert lines == ["aiokafka.consumer.group_coordinator: Group Coordinator Request failed: "
                     "[Error 15] GroupCoordinatorNotAvailableError"]  # fmt: skip
