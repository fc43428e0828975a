"""A batch that fails because of one of its records is split at once (not tried again whole), and only the record
that fails alone is dead-lettered; an outage of Redis or the broker, even in the middle of the split, is waited out
and dead-letters nothing."""

from __future__ import annotations

import asyncio

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ResponseError

from streams.app import _process, transient
from streams.engine import BatchResult
from tests.unit.pipeline.conftest import LAT, report


def test_a_record_redis_refuses_splits_its_batch_on_the_first_failure_and_only_it_is_dead_lettered(loop):
    apart = [report(n, lat=LAT + n * 0.005) for n in range(5)]  # 550 m apart: five incidents, none merged
    envelopes = loop.envelopes(loop.topics.reports, apart)
    calls: list[list[int]] = []

    async def handle(batch):
        calls.append([e.offset for e in batch])
        if any(e.offset == 3 for e in batch):  # what Redis GEO answers for a point it cannot store
            raise ResponseError("ERR invalid longitude,latitude pair 5.060000,89.000000")
        return await loop.engine.process_reports(batch)

    result = asyncio.run(_process("reports", handle, loop.engine, envelopes))
    assert calls == [[0, 1, 2, 3, 4], [0], [1], [2], [3], [4]], "one try of the batch, then each record once"
    assert result.dead_lettered == 1
    (dead,) = loop.sink.on("deadletter")
    assert dead["offset"] == 3 and dead["reason_code"] == "processing_error" and "latitude" in dead["reason"]
    assert len(loop.sink.on("tasks")) == 4


def test_an_outage_during_the_split_is_waited_out_and_dead_letters_nothing(loop, monkeypatch):
    envelopes = loop.envelopes(loop.topics.reports, [report(n) for n in range(3)])
    failures = iter([ValueError("a record's doing"), RedisConnectionError("gone"), OutOfMemoryError("OOM")])
    monkeypatch.setattr(asyncio, "sleep", _no_wait)

    async def handle(batch):
        error = next(failures, None)
        if error is not None:
            raise error
        return BatchResult(consumed=len(batch))

    result = asyncio.run(_process("reports", handle, loop.engine, envelopes))
    assert result.dead_lettered == 0 and loop.sink.on("deadletter") == []


@pytest.mark.parametrize(
    ("error", "waited"),
    [(RedisConnectionError("gone"), True), (OutOfMemoryError("OOM command not allowed"), True),
     (ResponseError("BUSY Redis is busy running a script"), True), (ResponseError("ERR invalid longitude"), False),
     (ValueError("bad"), False), (KeyError("x"), False)],
)  # fmt: skip
def test_what_is_waited_out_and_what_is_a_records_doing(error, waited):
    assert transient(error) is waited


_real_sleep = asyncio.sleep


async def _no_wait(delay: float) -> None:
    await _real_sleep(0)
