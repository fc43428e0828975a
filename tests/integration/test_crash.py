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
from tests.integration.conftest import collect

pytestmark = [pytest.mark.integration, pytest.mark.both_brokers]

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
            # every third report is a neighbour's repeat of the report before it (20 m away): it merges
            problem = i - 1 if i % 3 == 1 else i
            lat = min_lat + (max_lat - min_lat) * ((problem * 7919) % 1000) / 1000 + (0.0002 if problem != i else 0)
            lon = min_lon + (max_lon - min_lon) * ((problem * 104729) % 1000) / 1000
            record = {
                "report_id": f"k-{i}",
                "source": "app",
                "text": "pothole",
                "lat": lat,
                "lon": lon,
                "reported_at": now,
                "service_code": CATEGORIES[problem % len(CATEGORIES)]["code"],
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

    def all_reports_seen(records: list) -> bool:
        return len({s for m in records for s in json.loads(m.value)["source_ids"]}) >= TOTAL

    collect(bootstrap, topics.incidents, all_reports_seen, timeout=120)
    incidents = collect(bootstrap, topics.incidents, lambda rs: False, timeout=2)
    tasks = collect(bootstrap, topics.tasks, lambda rs: False, timeout=2)
    per_incident: dict[str, set[tuple[str, str]]] = defaultdict(set)
    raw_count = 0
    for message in tasks:
        task = json.loads(message.value)
        per_incident[task["incident_id"]].add((task["task_id"], task["unit_id"]))
        raw_count += 1
    home: dict[str, set[str]] = defaultdict(set)  # report -> incidents that list it as a source
    for message in incidents:
        record = json.loads(message.value)
        for source in record["source_ids"]:
            home[source].add(record["incident_id"])
    missing = [i for i in range(TOTAL) if not home.get(f"report:k-{i}")]
    assert not missing, f"{len(missing)} reports lost, e.g. {missing[:5]}"
    split = {r: i for r, i in home.items() if len(i) != 1}
    assert not split, f"reports counted in two incidents: {list(split.items())[:3]}"
    incident_ids = {i for ids in home.values() for i in ids}
    assert incident_ids == set(per_incident), "every incident has a task and every task an incident"
    doubled = {k: v for k, v in per_incident.items() if len(v) != 1}
    assert not doubled, f"incidents assigned more than once: {list(doubled.items())[:3]}"
    # the repeats merged, across the crash too: each neighbour's repeat is in its original's incident
    repeats = [i for i in range(TOTAL) if i % 3 == 1]
    unmerged = [i for i in repeats if home[f"report:k-{i}"] != home[f"report:k-{i - 1}"]]
    assert not unmerged, f"{len(unmerged)} of {len(repeats)} repeats not merged, e.g. k-{unmerged[:5]}"
    assert len(incident_ids) <= TOTAL - len(repeats)
    redelivered = sum(
        float(line.rsplit(" ", 1)[1])
        for line in second.metrics().splitlines()
        if line.startswith("cityloop_duplicates_total{")
    )
    print(
        f"\ncrash drill: {TOTAL} reports, killed after {killed_at} task records, "
        f"{len(incident_ids)} incidents ({TOTAL - len(incident_ids)} reports merged), {raw_count} task records, "
        f"{raw_count - len(per_incident)} repeats of an existing task id; "
        f"the restarted worker recognised {redelivered:.0f} redelivered reports as done"
    )
