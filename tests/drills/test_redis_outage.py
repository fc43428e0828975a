"""Drill: Redis becomes unavailable while reports keep arriving; the worker waits, retries and catches up.

The worker's Redis is a private redis-server (tests/ops/redisproc.py), never the shared one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests.integration.conftest import collect
from tests.ops.fixtures import encoded, figures, make_report, outcome, send, total

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTAGE_S = 10.0


def _reports(prefix: str, count: int) -> list[tuple[bytes, bytes]]:
    now = datetime.now(UTC).isoformat()
    return [encoded(make_report(i, prefix, now)) for i in range(count)]


def _during(seconds: float, check: object) -> None:
    """Call ``check`` every 0.25 s for ``seconds`` (the length of the fault), so the worker is watched throughout."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        check()  # type: ignore[operator]
        time.sleep(0.25)


def test_redis_paused_for_10s_loses_nothing_and_the_worker_catches_up(
    private_workers, private_redis, producer, topics, bootstrap
):
    """Redis is SIGSTOPped for 10 s mid-stream (connections hang: the worst kind of unavailable) while 2,400 reports
    arrive at ~200/s. The worker stays up and healthy, retries with back-off (cityloop_redis_errors_total rises), its
    lag grows, and after SIGCONT every report gets exactly one incident and every incident one task."""
    worker = private_workers.start()
    pid = worker.process.pid
    records = _reports("outage", 2400)
    handed = [0]  # records handed to the producer so far

    def counted() -> Iterator[tuple[bytes, bytes]]:
        for record in records:
            handed[0] += 1
            yield record

    sender = threading.Thread(target=send, args=(producer, topics.reports, counted()), kwargs={"every": 50,
                              "pause": 0.25})  # fmt: skip
    sender.start()
    collect(bootstrap, topics.tasks, lambda rs: len(rs) >= 100, timeout=60)

    peak_lag = 0.0

    def still_serving() -> None:
        nonlocal peak_lag
        assert worker.process.poll() is None, "the worker died while Redis was away"
        peak_lag = max(peak_lag, total(worker.metrics(), "cityloop_consumer_lag_records", stream="reports"))

    private_redis.pause()
    handed_at_pause = handed[0]
    try:
        _during(OUTAGE_S, still_serving)
        errors_during = total(worker.metrics(), "cityloop_redis_errors_total")
        sent_during = handed[0] - handed_at_pause
    finally:
        private_redis.resume()
    sender.join(timeout=120)
    assert not sender.is_alive()

    ids = {f"outage-{i}" for i in range(len(records))}
    result = outcome(bootstrap, topics, ids, timeout=120)
    lost, split = result.lost(ids), result.split()
    assert not lost, f"{len(lost)} reports lost, e.g. {lost[:5]}"
    assert not split, f"reports in two incidents: {list(split.items())[:3]}"
    assert not result.without_task()
    doubled = result.assigned_twice()
    assert not doubled, f"incidents assigned twice: {list(doubled.items())[:3]}"
    assert worker.process.poll() is None and worker.process.pid == pid
    assert (worker.health() or {}).get("status") == "ready"
    assert errors_during > 0, "the worker should have seen Redis fail and retried"
    # nothing is processed while Redis hangs, so the gauge must show most of what arrived meanwhile (the probe
    # refreshes every 2 s and a batch may have been taken before the pause: not all of it)
    assert peak_lag >= 0.6 * sent_during, f"lag peaked at {peak_lag:g} while {sent_during} reports arrived"
    incidents = {i for homes in result.home.values() for i in homes}
    figures(
        "redis-paused-10s",
        sent=len(records),
        processed=len(result.home),
        dead_lettered=0,
        lost=len(lost),
        duplicated=len(doubled),
        incidents=len(incidents),
        task_records=result.task_records,
        redis_errors_retried=int(total(worker.metrics(), "cityloop_redis_errors_total")),
        peak_lag=int(peak_lag),
        sent_during_outage=sent_during,
    )


def test_redis_killed_and_restarted_with_its_append_only_file_loses_nothing(
    private_workers, private_redis, producer, topics, bootstrap
):
    """Redis is SIGKILLed mid-stream (connections refused) and restarted on the same port 5 s later from its
    append-only file; the worker retries throughout and every report still gets exactly one incident and task."""
    worker = private_workers.start()
    records = _reports("restart", 1600)
    sender = threading.Thread(target=send, args=(producer, topics.reports, records), kwargs={"every": 50,
                              "pause": 0.25})  # fmt: skip
    sender.start()
    collect(bootstrap, topics.tasks, lambda rs: len(rs) >= 100, timeout=60)
    private_redis.kill()
    _during(5.0, lambda: None if worker.process.poll() is None else pytest.fail("the worker died"))
    private_redis.start()
    sender.join(timeout=120)

    ids = {f"restart-{i}" for i in range(len(records))}
    result = outcome(bootstrap, topics, ids, timeout=120)
    lost, doubled = result.lost(ids), result.assigned_twice()
    assert not lost, f"{len(lost)} reports lost, e.g. {lost[:5]}"
    assert not result.split() and not result.without_task()
    assert not doubled, f"incidents assigned twice: {list(doubled.items())[:3]}"
    errors = total(worker.metrics(), "cityloop_redis_errors_total")
    assert errors > 0
    figures(
        "redis-killed-restarted",
        sent=len(records),
        processed=len(result.home),
        dead_lettered=0,
        lost=len(lost),
        duplicated=len(doubled),
        task_records=result.task_records,
        redis_errors_retried=int(errors),
    )
