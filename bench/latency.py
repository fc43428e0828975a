"""Report -> task latency of one worker at a fixed offered load, seen from outside.

Starts a worker on fresh topics and waits until it holds its partitions, then
an aiokafka producer offers reports at a fixed rate (paced every 10 ms, each
stamped with the time it is sent) while a separate consumer reads the tasks
topic. A report's latency is from its send to its task's arrival at that
consumer: producer, broker, worker and consumer all included, as an ops centre
would see it. Reports that join an incident get no task and are not timed.

    python -m bench.latency --rate 1000 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import broker, redis_server, report_records
from bench.e2e_throughput import drop_prefix, start_worker, stop_workers, worker_peak_rss_mb
from streams.admin import ensure_topics
from streams.ids import stable_id
from streams.topics import Topics


def wait_ready(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                if json.loads(response.read()).get("status") == "ready":
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the worker was not ready within {timeout:.0f} s")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def offer(bootstrap: str, topics: Topics, rate: float, seconds: float) -> dict[str, Any]:
    records = report_records(int(rate * seconds), f"lat{uuid.uuid4().hex[:6]}")
    sent: dict[str, float] = {}
    arrived: dict[str, float] = {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=10)
    await consumer.start()
    await consumer.topics()  # loads the cluster's metadata
    consumer.assign([TopicPartition(topics.tasks, p) for p in consumer.partitions_for_topic(topics.tasks) or ()])
    await consumer.seek_to_end()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()

    async def read() -> None:
        while True:
            got = await consumer.getmany(timeout_ms=100)
            now = time.time()
            for messages in got.values():
                for message in messages:
                    arrived.setdefault(json.loads(message.value)["incident_id"], now)

    reader = asyncio.create_task(read())
    started = time.perf_counter()
    futures = []
    index = 0
    try:
        while index < len(records):
            due = int((time.perf_counter() - started) * rate) + 1
            while index < min(due, len(records)):
                record = records[index]
                record["reported_at"] = datetime.now(UTC).isoformat()
                incident = stable_id("inc", "report", record["report_id"])
                sent[incident] = time.time()
                futures.append(await producer.send(topics.reports, json.dumps(record).encode(),
                                                   key=record["report_id"].encode()))  # fmt: skip
                index += 1
            await asyncio.sleep(0.01)
        await asyncio.gather(*futures)
        offered_s = time.perf_counter() - started
        await asyncio.sleep(5.0)  # let the last tasks arrive
    finally:
        reader.cancel()
        await producer.stop()
        await consumer.stop()
    latencies = [(arrived[i] - sent[i]) * 1000 for i in arrived if i in sent]
    if not latencies:
        raise SystemExit("no task arrived: is the worker running?")
    return {
        "offered_per_s": rate,
        "offered_actual_per_s": round(len(records) / offered_s, 1),
        "reports": len(records),
        "tasks_timed": len(latencies),
        "p50_ms": round(statistics.median(latencies), 1),
        "p95_ms": round(percentile(latencies, 0.95), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "max_ms": round(max(latencies), 1),
    }


def latency_run(bootstrap: str, redis_url: str, rate: float, seconds: float) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="cityloop-latency-"))
    prefix = f"benchlat{uuid.uuid4().hex[:6]}"
    topics = Topics(prefix)
    ensure_topics(bootstrap, topics.all(), partitions=4)
    worker, port = start_worker(bootstrap, redis_url, prefix, workdir)
    try:
        wait_ready(port)
        result = asyncio.run(offer(bootstrap, topics, rate, seconds))
        result["worker_peak_rss_mb"] = worker_peak_rss_mb(worker.pid)
    finally:
        stop_workers([worker])
        drop_prefix(redis_url, prefix)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="reports offered per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="how long to offer them")
    parser.add_argument("--bootstrap", help="use this broker instead of starting a Tansu")
    parser.add_argument("--redis", default=os.environ.get("CITYLOOP_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    with broker(args.bootstrap) as bootstrap, redis_server(args.redis) as args.redis:
        result = latency_run(bootstrap, args.redis, args.rate, args.seconds)
    print(json.dumps(result, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    sys.exit(0)


if __name__ == "__main__":
    main()
