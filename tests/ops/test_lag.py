"""Consumer lag is right on the dev broker, whose ListOffsets(LATEST) is not (see streams/lag.py)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import pytest
from kafka import KafkaConsumer, TopicPartition

from streams.lag import partition_lag
from tests.ops.fixtures import make_report, outcome, samples, total

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers]

BACKLOG = 1500


def test_partition_lag_takes_the_larger_end_and_the_committed_position():
    """End = max(fetch high watermark, highest fetched + 1); position = committed, else the first offset fetched."""
    assert partition_lag(100, 99, 100, 0) == 0
    assert partition_lag(100, 49, 40, 0) == 60
    assert partition_lag(51, 99, 60, 0) == 40, "a watermark below what was fetched is not believed"
    assert partition_lag(None, 9, None, 5) == 5
    assert partition_lag(None, None, 3, None) is None
    assert partition_lag(0, None, None, None) == 0, "an empty partition has no lag"
    assert partition_lag(7, None, None, None) is None, "unknown position: say nothing rather than guess"
    assert partition_lag(5, None, 9, None) == 0


def test_lag_counts_a_multi_record_backlog_exactly_and_returns_to_zero(
    private_workers, private_redis, producer, topics, bootstrap
):
    """Redis is paused so the worker cannot process; 1,500 reports arrive in multi-record batches.

    While nothing is processed the lag must reach the backlog exactly and never exceed it (the worker's own consumer
    does not refetch a partition whose buffer is full; the lag probe does, streams/lagprobe.py); the broker's
    ListOffsets(LATEST), which the usual lag exporters use, is printed beside it. Once Redis is back and every report
    has its task, the lag falls to exactly 0 and cityloop_consumed_records_total has counted each report once.
    """
    worker = private_workers.start()
    consumed_before = total(worker.metrics(), "cityloop_consumed_records_total", stream="reports")
    private_redis.pause()
    try:
        now = datetime.now(UTC).isoformat()
        for i in range(BACKLOG):
            record = make_report(i, "lag", now)
            producer.send(topics.reports, key=record["report_id"].encode(), value=json.dumps(record).encode())
        producer.flush()

        deadline = time.monotonic() + 20
        lag = peak = 0.0
        while time.monotonic() < deadline and lag != BACKLOG:
            lag = total(worker.metrics(), "cityloop_consumer_lag_records", stream="reports")
            assert lag <= BACKLOG, f"lag {lag} is more than the {BACKLOG} reports sent"
            peak = max(peak, lag)
            time.sleep(0.2)
        # exact: the lag probe (streams/lagprobe.py) refetches the log end of partitions the worker's own consumer
        # holds a full buffer of (without it this read 329 for 1,500)
        assert lag == BACKLOG, f"lag {lag} (peak {peak}) while {BACKLOG} reports wait"
        per_partition = samples(worker.metrics(), "cityloop_consumer_lag_records")
        assert {lbls["stream"] for lbls, _ in per_partition} == {"reports", "readings", "feedback"}

        probe = KafkaConsumer(bootstrap_servers=bootstrap)
        try:
            ends = probe.end_offsets([TopicPartition(topics.reports, p) for p in range(4)])
        finally:
            probe.close()
        list_offsets_total = sum(ends.values())
    finally:
        private_redis.resume()

    result = outcome(bootstrap, topics, {f"lag-{i}" for i in range(BACKLOG)}, timeout=90)
    assert not result.lost(f"lag-{i}" for i in range(BACKLOG))
    assert not result.without_task()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        lag = total(worker.metrics(), "cityloop_consumer_lag_records")
        if lag == 0:
            break
        time.sleep(0.2)
    assert lag == 0, f"lag {lag} after catch-up"
    # the pace the lag alerts compare against counts each record once, when its outcome is acknowledged
    consumed = total(worker.metrics(), "cityloop_consumed_records_total", stream="reports") - consumed_before
    assert consumed == BACKLOG, f"{consumed:g} reports counted as consumed for {BACKLOG}"
    print(
        f"\nlag: backlog {BACKLOG} reports in multi-record batches; cityloop_consumer_lag_records said {peak:.0f}; "
        f"the broker's ListOffsets(LATEST) ends add up to {list_offsets_total} "
        f"({'wrong' if list_offsets_total != BACKLOG else 'right'} on this broker); after catch-up the lag is 0"
    )
