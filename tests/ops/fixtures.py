"""Fixtures and helpers shared by tests/ops and tests/drills.

They reuse the integration layer's fixtures (a real broker, Redis, workers as subprocesses) and add a private
redis-server for tests that pause or kill Redis, and a reader of a worker's /metrics.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from dispatch.demo_city import CATEGORIES, bounds
from tests.integration.conftest import WorkerFactory, collect, free_port
from tests.ops.redisproc import PrivateRedis


def samples(metrics_text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every sample called ``name`` in a Prometheus text exposition."""
    found = []
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == name:
                found.append((dict(sample.labels), sample.value))
    return found


def total(metrics_text: str, name: str, **labels: str) -> float:
    """The sum of ``name`` over the samples whose labels include ``labels``."""
    return sum(v for lbls, v in samples(metrics_text, name) if all(lbls.get(k) == x for k, x in labels.items()))


_GRID_DEG = 0.0025  # ~170-280 m between cells in Lindenhaven: farther than the 150 m merge radius


def make_report(i: int, prefix: str, now: str) -> dict[str, Any]:
    """A valid report that merges with no other made here (its own category and grid cell) for i < 12,000."""
    min_lon, min_lat, max_lon, max_lat = bounds()
    columns = int((max_lon - min_lon) / _GRID_DEG) - 1
    rows = int((max_lat - min_lat) / _GRID_DEG) - 1
    cell = (i // len(CATEGORIES)) % (columns * rows)
    return {
        "report_id": f"{prefix}-{i}",
        "source": "app",
        "text": "something needs fixing here",
        "lat": min_lat + _GRID_DEG * (1 + cell // columns),
        "lon": min_lon + _GRID_DEG * (1 + cell % columns),
        "reported_at": now,
        "service_code": CATEGORIES[i % len(CATEGORIES)]["code"],
    }


@dataclass
class Outcome:
    """What the output topics say about a set of reports."""

    home: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # report id -> incidents
    tasks: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # incident id -> task ids
    task_records: int = 0

    def lost(self, report_ids: Iterable[str]) -> list[str]:
        return [r for r in report_ids if not self.home.get(r)]

    def split(self) -> dict[str, set[str]]:
        return {r: i for r, i in self.home.items() if len(i) > 1}

    def without_task(self) -> list[str]:
        return sorted({i for ids in self.home.values() for i in ids} - set(self.tasks))

    def assigned_twice(self) -> dict[str, set[str]]:
        return {i: t for i, t in self.tasks.items() if len(t) > 1}


def outcome(bootstrap: str, topics: Any, report_ids: set[str], timeout: float,
            isolation_level: str = "read_uncommitted") -> Outcome:  # fmt: skip
    """Read incidents until every report in ``report_ids`` is a source of one (or the timeout), then the tasks."""

    def seen(records: list[Any]) -> set[str]:
        return {
            s.split(":", 1)[1] for m in records for s in json.loads(m.value)["source_ids"] if s.startswith("report:")
        }

    incidents = collect(bootstrap, topics.incidents, lambda rs: report_ids <= seen(rs), timeout=timeout,
                        isolation_level=isolation_level)  # fmt: skip
    result = Outcome()
    for message in incidents:
        record = json.loads(message.value)
        for source in record["source_ids"]:
            if source.startswith("report:"):
                result.home[source.split(":", 1)[1]].add(record["incident_id"])
    wanted = {i for ids in result.home.values() for i in ids}
    tasks = collect(bootstrap, topics.tasks, lambda rs: wanted <= {json.loads(m.value)["incident_id"] for m in rs},
                    timeout=30, isolation_level=isolation_level)  # fmt: skip
    for message in tasks:
        task = json.loads(message.value)
        result.tasks[task["incident_id"]].add(task["task_id"])
        result.task_records += 1
    return result


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(free_port(), tmp_path / "private-redis")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_workers(
    bootstrap: str, private_redis: PrivateRedis, namespace: str, tmp_path: Path
) -> Iterator[WorkerFactory]:
    """Workers whose Redis is the private one."""
    factory = WorkerFactory(bootstrap, private_redis.url, namespace, tmp_path)
    yield factory
    factory.stop_all()


def send(producer: Any, topic: str, records: Iterable[tuple[bytes | None, bytes | None]], every: int = 100,
         pause: float = 0.05) -> int:  # fmt: skip
    """Send (key, value) pairs, flushing and pausing every ``every`` records (a steady stream, bounded); the count."""
    count = 0
    for key, value in records:
        producer.send(topic, key=key, value=value)
        count += 1
        if count % every == 0:
            producer.flush()
            if pause:
                time.sleep(pause)
    producer.flush()
    return count


def encoded(record: dict[str, Any], key_field: str = "report_id") -> tuple[bytes, bytes]:
    return str(record[key_field]).encode(), json.dumps(record).encode()


def dead_letters(bootstrap: str, topics: Any, expected: int, timeout: float) -> list[dict[str, Any]]:
    """Dead-letter records, read until ``expected`` distinct ones arrived (or the timeout)."""

    def distinct(records: list[Any]) -> int:
        return len({json.loads(m.value)["deadletter_id"] for m in records})

    return [json.loads(m.value) for m in collect(bootstrap, topics.deadletter, lambda rs: distinct(rs) >= expected,
                                                 timeout=timeout)]  # fmt: skip


def figures(drill: str, **numbers: Any) -> str:
    """One line of drill figures for the note (pytest -s shows it)."""
    line = f"\ndrill {drill}: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in numbers.items())
    print(line)
    return line
