"""`--log-format json`: one JSON object per line with the ids bound to the record being handled; text by default,
as before; an id never outlives the block that bound it."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from streams import logs


@pytest.fixture
def json_lines() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logs.install([handler], "json", None)
    logger = logging.getLogger("streams.test_json")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    yield logger, out
    logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


def parsed(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_a_line_is_one_json_object_with_utc_time_level_logger_message_and_the_bound_ids(json_lines):
    logger, out = json_lines
    with logs.bound(report_id="r-1", incident_id="inc-1"), logs.bound(task_id="task-inc-1"):
        logger.warning("routed %s to %s", "inc-1", "roads-west")
    (line,) = parsed(out)
    assert set(line) == {"time", "level", "logger", "message", "report_id", "incident_id", "task_id"}
    assert line["time"].endswith("Z") and line["time"][10] == "T" and len(line["time"]) == 24  # ms precision
    assert (line["level"], line["logger"]) == ("WARNING", "streams.test_json")
    assert line["message"] == "routed inc-1 to roads-west"
    assert (line["report_id"], line["incident_id"], line["task_id"]) == ("r-1", "inc-1", "task-inc-1")


def test_an_exception_is_one_field_and_the_line_stays_one_line(json_lines):
    logger, out = json_lines
    try:
        raise ConnectionError("broker gone\nreally")
    except ConnectionError:
        logger.exception("batch failed")
    assert len(out.getvalue().splitlines()) == 1
    (line,) = parsed(out)
    assert line["message"] == "batch failed"
    assert line["exception"].startswith("Traceback") and "ConnectionError: broker gone\nreally" in line["exception"]


def test_a_line_after_a_record_was_handled_carries_none_of_its_ids(json_lines):
    logger, out = json_lines
    for report in ("r-1", "r-2"):
        with logs.bound(report_id=report, record=f"t.reports:0@{report[-1]}"):
            logger.info("handling")
    logger.info("batch of 2 done")
    lines = parsed(out)
    assert [line.get("report_id") for line in lines] == ["r-1", "r-2", None]
    assert "record" not in lines[2]


def test_concurrent_handlers_each_see_their_own_ids(json_lines):
    logger, out = json_lines

    async def handle(report: str, gate: asyncio.Event, other: asyncio.Event) -> None:
        with logs.bound(report_id=report):
            other.set()
            await gate.wait()  # the other task binds its id meanwhile
            logger.info("handled %s", report)

    async def both() -> None:
        a, b = asyncio.Event(), asyncio.Event()
        await asyncio.gather(handle("r-a", a, b), handle("r-b", b, a))

    asyncio.run(both())
    assert {(line["message"], line["report_id"]) for line in parsed(out)} == {("handled r-a", "r-a"),
                                                                              ("handled r-b", "r-b")}  # fmt: skip


def test_unknown_id_fields_are_refused_so_the_schema_stays_fixed():
    with pytest.raises(ValueError, match="not a log id field: colour"), logs.bound(colour="red"):
        pass


def test_the_text_format_is_unchanged_by_default_and_shows_no_ids():
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter(logs.TEXT_FORMAT))
    logs.install([handler], "text", None)
    record = logging.LogRecord("streams.x", logging.INFO, __file__, 1, "ready: %d partitions", (4,), None)
    record.created = 0.0
    with logs.bound(report_id="r-1"):
        handler.handle(record)
    assert out.getvalue().endswith(" INFO streams.x: ready: 4 partitions\n"), out.getvalue()
    assert "r-1" not in out.getvalue()


def test_a_repeat_summary_in_json_says_how_many_and_carries_no_record_ids(json_lines):
    logger, out = json_lines
    now = [0.0]
    throttle = logs.RepeatThrottle(every_s=10, settle_s=0, clock=lambda: now[0])
    (handler,) = [h for h in logger.handlers if isinstance(h, logging.StreamHandler) and h.stream is out]
    handler.addFilter(throttle)
    for i in range(5):
        with logs.bound(report_id=f"r-{i}"):
            logger.error("Redis unavailable; retrying in %.1fs", 0.1)
    now[0] = 10.0
    throttle.flush_due()
    first, summary = parsed(out)
    assert first["report_id"] == "r-0"
    assert summary["repeated"] == 4 and summary["repeated_over_s"] == 10.0 and "report_id" not in summary
    assert summary["message"] == "Redis unavailable; retrying in 0.1s [repeated 4 times in the last 10 s]"
