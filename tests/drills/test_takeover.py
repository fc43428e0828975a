"""Drill: two workers share the partitions of one consumer group; one is SIGKILLed; the other takes over."""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime

import pytest

from tests.integration.conftest import collect, wait_for
from tests.ops.fixtures import encoded, figures, make_report, outcome, samples, send, total

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.both_brokers]

REPORTS = 2000
WARM = 100


def _reports_partitions(worker) -> set[str]:
    return {lbls["partition"] for lbls, _ in samples(worker.metrics(), "cityloop_consumer_lag_records")
            if lbls["stream"] == "reports"}  # fmt: skip


def test_the_surviving_worker_takes_over_every_partition_and_nothing_is_lost_or_repeated(
    workers, producer, topics, bootstrap
):
    """Both workers hold partitions (/health assigned_partitions, and each some of the reports topic) and both
    process reports; one is SIGKILLed mid-stream; the survivor is assigned every partition, and every report ends
    in exactly one incident with exactly one task."""
    first = workers.start()
    everything = first.health()["assigned_partitions"]  # alone, it holds every partition (Faust's own topic too)
    second = workers.start()

    def shared() -> bool:
        a, b = first.health() or {}, second.health() or {}
        return (
            a.get("assigned_partitions", 0) > 0
            and b.get("assigned_partitions", 0) > 0
            and a["assigned_partitions"] + b["assigned_partitions"] == everything
        )

    assert wait_for(shared, timeout=60), (first.health(), second.health())
    split = (first.health()["assigned_partitions"], second.health()["assigned_partitions"])
    assert wait_for(lambda: _reports_partitions(first) and _reports_partitions(second), timeout=15)

    now = datetime.now(UTC).isoformat()
    records = [encoded(make_report(i, "takeover", now)) for i in range(REPORTS)]
    # a first hundred, until both workers are processing (a worker that has just joined may take a few seconds to
    # fetch under load; the kill must come when both are), then the rest as a stream the kill falls into
    send(producer, topics.reports, records[:WARM])

    def processed() -> tuple[float, float]:
        return total(first.metrics(), "cityloop_ingested_total"), total(second.metrics(), "cityloop_ingested_total")

    assert wait_for(lambda: all(n > 0 for n in processed()), timeout=60), f"both should process: {processed()}"
    sender = threading.Thread(target=send, args=(producer, topics.reports, records[WARM:]), kwargs={"every": 100,
                              "pause": 0.25})  # fmt: skip
    sender.start()
    collect(bootstrap, topics.tasks, lambda rs: len(rs) >= WARM + 300, timeout=60)
    assert sender.is_alive(), "the kill must fall in the middle of the stream"
    before = processed()

    assert first.kill(signal.SIGKILL) == -signal.SIGKILL
    killed = time.monotonic()
    assert wait_for(lambda: (second.health() or {}).get("assigned_partitions") == everything, timeout=60, interval=0.1)
    takeover_s = time.monotonic() - killed
    sender.join(timeout=120)
    assert not sender.is_alive()

    ids = {f"takeover-{i}" for i in range(REPORTS)}
    result = outcome(bootstrap, topics, ids, timeout=120)
    lost, doubled = result.lost(ids), result.assigned_twice()
    assert not lost, f"{len(lost)} reports lost, e.g. {lost[:5]}"
    assert not result.split() and not result.without_task()
    assert not doubled, f"incidents assigned twice: {list(doubled.items())[:3]}"
    assert second.process.poll() is None
    figures(
        "two-workers-one-killed",
        sent=REPORTS,
        processed=len(result.home),
        dead_lettered=0,
        lost=len(lost),
        duplicated=len(doubled),
        task_records=result.task_records,
        partitions_before=f"{split[0]}+{split[1]}",
        ingested_before_kill=f"{before[0]:.0f}+{before[1]:.0f}",
        takeover_seconds=f"{takeover_s:.1f}",
        redelivered_recognised=int(total(second.metrics(), "cityloop_duplicates_total")),
    )
