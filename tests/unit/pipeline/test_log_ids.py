"""While the worker handles one record, what it logs names that record: JSON lines carry the report, incident, task
and event ids bound where the record is handled; a line about the whole batch carries none of them."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from streams import logs
from streams.ids import report_incident, task_id_for
from tests.unit.pipeline.conftest import LAT, Loop, Words, report
from tests.unit.pipeline.test_lifecycle import unit_event


@pytest.fixture
def lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The JSON lines the ``streams`` loggers wrote so far, parsed."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logs.install([handler], "json", None)
    streams = logging.getLogger("streams")
    streams.addHandler(handler)
    streams.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in out.getvalue().splitlines()]
    streams.removeHandler(handler)
    streams.setLevel(logging.NOTSET)


class Explodes(Words):
    """Classifies like Words, except that a text with "boom" in it breaks the model (a bug a record triggers)."""

    def predict(self, texts):
        if any("boom" in text for text in texts):
            raise ValueError("the model broke on this text")
        return super().predict(texts)


def test_a_record_that_fails_alone_is_logged_with_its_report_id_and_a_later_batch_line_with_none(pack, lines):
    loop = Loop(pack, Explodes({"hole": ("pothole", 0.97)}))
    first = [report(1, code=None, text="deep hole"), report(2, code=None, text="boom hole", lat=LAT + 0.01),
             report(3, code=None, text="hole", lat=LAT + 0.02)]  # classified by their words  # fmt: skip
    second = [report(4, code=None, text="boom", lat=LAT + 0.03), report(5, code=None, text="hole", lat=LAT + 0.04)]

    async def two_batches() -> None:  # one task, one context: as the worker's ingest handles batch after batch
        await loop.reports(*first)
        await loop.reports(*second)

    asyncio.run(two_batches())
    said = lines()
    batch_lines = [line for line in said if "on a batch of" in line["message"]]
    assert [line["message"] for line in batch_lines] == [
        "discover failed on a batch of 3; retrying one by one",
        "discover failed on a batch of 2; retrying one by one",
    ]
    for line in batch_lines:  # the second comes right after r-2's own line: none of its ids
        assert not {"report_id", "record", "incident_id"} & set(line), line
    culprits = [line for line in said if line["message"].startswith("discover failed on t.reports")]
    assert [(c["report_id"], c["record"]) for c in culprits] == [("r-2", "t.reports:0@1"), ("r-4", "t.reports:0@3")]
    assert "ValueError: the model broke on this text" in culprits[0]["exception"]
    assert len(loop.sink.on("deadletter")) == 2 and len(loop.sink.on("tasks")) == 3


def test_a_lifecycle_event_refused_is_logged_with_its_incident_task_unit_and_event_ids(loop, lines):
    incident = report_incident("r-1")

    async def scenario() -> None:
        await loop.reports(report(1))
        await loop.loop_back()
        wrong = unit_event(loop, "reject", incident, "parks", task_id_for(incident), 7, reason_code="outside_remit")
        await loop.feedback(wrong)

    asyncio.run(scenario())
    (refused,) = [line for line in lines() if line["message"].startswith("refused reject")]
    assert refused["incident_id"] == incident and refused["task_id"] == task_id_for(incident)
    assert refused["unit_id"] == "parks" and refused["event_id"] == "evt-t-7"
    assert refused["record"].startswith("t.feedback:0@")
