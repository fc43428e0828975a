"""A worker killed with SIGKILL mid-stream loses nothing and assigns nothing twice."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime

import pytest

from dispatch.demo_city import CATEGORIES, bounds
from streams.outcomes import stable_id
from tests.integration.conftest import collect

pytestmark = pytest.mark.integration

TOTAL = 3000


def test_sigkill_mid_stream_then_restart_loses_nothing_and_assigns_each_report_once(
    workers, producer, topics, bootstrap, redis_client, namespace
):
    """Reports flow in at ~1,000/s; the worker is SIGKILLed after ~600 tasks and restarted.

    Every report ends with exactly one task id and one unit. Records the broker
    redelivered after the crash may repeat a task record with the same id
    (at-least-once); the count of such repeats is printed for the note.
    """
    first = workers.start()
    min_lon, min_lat, max_lon, max_lat = bounds()
    now = datetime.now(UTC).isoformat()

    def produce() -> None:
        for i in range(TOTAL):
            lat = min_lat + (max_lat - min_lat) * ((i * 7919) % 1000) / 1000
            lon = min_lon + (max_lon - min_lon) * ((i * 104729) % 1000) / 1000
            record = {
                "report_id": f"k-{i}",
                "source": "app",
                "text": "pothole",
                "lat": lat,
                "lon": lon,
                "reported_at": now,
                "service_code": CATEGORIES[i % len(CATEGORIES)]["code"],
            }
            producer.send(topics.reports, key=record["report_id"].encode(), value=json.dumps(record).encode())
            if i % 100 == 99:
                producer.flush()
                time.sleep(0.1)
        producer.flush()

    sender = threading.Thread(target=produce)
    sender.start()
    collect(bootstrap, topics.tasks, lambda rs: len(rs) >= 600, timeout=60)
    assert first.kill(signal.SIGKILL) == -signal.SIGKILL
    killed_at = len(collect(bootstrap, topics.tasks, lambda rs: False, timeout=1))
    assert killed_at < TOTAL, "the kill must land mid-stream"

    second = workers.start()
    sender.join(timeout=60)
    tasks = collect(
        bootstrap, topics.tasks, lambda rs: len({json.loads(m.value)["task_id"] for m in rs}) >= TOTAL, timeout=120
    )
    tasks = collect(bootstrap, topics.tasks, lambda rs: False, timeout=3)

    per_report: dict[str, set[tuple[str, str]]] = defaultdict(set)
    raw_count = 0
    for message in tasks:
        task = json.loads(message.value)
        per_report[task["incident_id"]].add((task["task_id"], task["unit_id"]))
        raw_count += 1
    missing = [i for i in range(TOTAL) if stable_id("inc", "report", f"k-{i}") not in per_report]
    assert not missing, f"{len(missing)} reports lost, e.g. {missing[:5]}"
    doubled = {k: v for k, v in per_report.items() if len(v) != 1}
    assert not doubled, f"reports assigned more than once: {list(doubled.items())[:3]}"
    assert len(per_report) == TOTAL
    redelivered = sum(
        float(line.rsplit(" ", 1)[1])
        for line in second.metrics().splitlines()
        if line.startswith("cityloop_duplicates_total{")
    )
    print(
        f"\ncrash drill: {TOTAL} reports, killed after {killed_at} task records, "
        f"{raw_count} task records in all, {raw_count - TOTAL} repeats of an existing task id; "
        f"the restarted worker recognised {redelivered:.0f} redelivered reports as done"
    )
