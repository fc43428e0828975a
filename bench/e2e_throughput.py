"""End-to-end throughput of real workers on a backlog, against the broker's raw ceiling in the same run.

Pre-loads the reports (or readings) topic with N records (bench/common.py's
workloads), measures a raw kafka-python consume + json.loads of the same
records, then starts ``--workers`` `cityloop worker` processes in one consumer
group and times how fast they turn the backlog into outcomes, by sampling their
/metrics four times a second: reports count when their outcome (task, merge,
triage, dead letter) is acknowledged by the broker, readings when accepted.
The rate is the steady part, from 10% to 90% of the backlog. Each worker's peak
RSS is read from /proc.

    python -m bench.e2e_throughput --kind reports --count 20000 [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import redis
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bench.common import broker, encoded, free_port, reading_records, redis_server, report_records
from streams.admin import ensure_topics
from streams.topics import Topics


def records(kind: str, count: int) -> list[tuple[bytes, bytes]]:
    """The shared workloads (bench/common.py), keyed as producers key them."""
    if kind == "reports":
        return encoded(report_records(count, "b"), "report_id")
    return encoded(reading_records(count, "b"), "sensor_id")


def preload(bootstrap: str, topic: str, payloads: list[tuple[bytes, bytes]]) -> float:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024)
    started = time.perf_counter()
    for key, value in payloads:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()
    return len(payloads) / (time.perf_counter() - started)


def raw_consume_rate(bootstrap: str, topic: str, count: int) -> float:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, max_poll_records=5000
    )
    partitions = consumer.partitions_for_topic(topic) or set()
    consumer.assign([TopicPartition(topic, p) for p in partitions])
    consumer.seek_to_beginning()
    seen = 0
    started = time.perf_counter()
    while seen < count:
        for batch in consumer.poll(timeout_ms=500).values():
            for message in batch:
                json.loads(message.value)
            seen += len(batch)
    elapsed = time.perf_counter() - started
    consumer.close()
    return count / elapsed


def metric_sum(port: int, name: str, having: str = "") -> float:
    """Sum of a metric's samples whose line contains ``having`` (e.g. a label)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if (line.startswith(name + "{") or line.startswith(name + " ")) and having in line
    )


def worker_peak_rss_mb(pid: int) -> float | None:
    """A process's peak resident memory (VmHWM), from /proc; None where /proc is not there."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def start_worker(bootstrap: str, redis_url: str, prefix: str, workdir: Path, batch_size: int = 500,
                 name: str = "worker", **env: str) -> tuple[subprocess.Popen[bytes], int]:  # fmt: skip
    """A `cityloop worker` on the bench's topics; returns the process and its metrics port."""
    port = free_port()
    env = {
        **os.environ,
        "CITYLOOP_KAFKA_BOOTSTRAP": bootstrap,
        "CITYLOOP_REDIS_URL": redis_url,
        "CITYLOOP_TOPIC_PREFIX": prefix,
        "CITYLOOP_WEB_PORT": str(port),
        "CITYLOOP_DATA_DIR": str(workdir),
        "CITYLOOP_BATCH_SIZE": str(batch_size),
        **env,
    }
    log = open(workdir / f"{name}.log", "wb")  # noqa: SIM115 - the worker writes it until it stops
    process = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker", "--loglevel", os.environ.get("BENCH_LOGLEVEL", "warning")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    return process, port


def stop_workers(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        worker.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            print("warning: a worker did not stop within 30 s of SIGTERM; killing it", file=sys.stderr)
            worker.kill()
            worker.wait()


def drop_prefix(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    batch = []
    for key in client.scan_iter(f"{prefix}:*", count=5000):
        batch.append(key)
        if len(batch) >= 1000:
            client.delete(*batch)
            batch = []
    if batch:
        client.delete(*batch)
    client.close()


def backlog_run(bootstrap: str, redis_url: str, kind: str, count: int, *, workers: int = 1, batch_size: int = 500,
                ceiling: bool = True, progress: bool = True,
                env: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Preload ``count`` records, start ``workers`` workers, and time the backlog; see the module docstring."""
    workdir = Path(tempfile.mkdtemp(prefix="cityloop-bench-"))
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    topics = Topics(prefix)
    ensure_topics(bootstrap, topics.all(), partitions=4)
    topic = topics.reports if kind == "reports" else topics.readings
    produce_rate = preload(bootstrap, topic, records(kind, count))
    consume_rate = raw_consume_rate(bootstrap, topic, count) if ceiling else None
    # a report always has an outcome; a normal reading has none, so readings count when accepted
    counter, having = (
        ("cityloop_processed_total", 'stream="reports"')
        if kind == "reports"
        else ("cityloop_ingested_total", 'kind="reading"')
    )
    procs: list[subprocess.Popen[bytes]] = []
    ports: list[int] = []
    for n in range(workers):
        process, port = start_worker(
            bootstrap, redis_url, prefix, workdir, batch_size, name=f"worker{n}", **(env or {})
        )
        procs.append(process)
        ports.append(port)
    samples: list[tuple[float, float]] = []
    started = time.perf_counter()
    peaks: list[float | None] = []
    try:
        while True:
            time.sleep(0.25)  # a scrape costs the worker CPU: four a second are enough
            for process in procs:
                if process.poll() is not None:
                    raise SystemExit(f"a worker exited: see {workdir}")
            try:
                done = sum(metric_sum(port, counter, having) for port in ports)
            except OSError:
                continue
            samples.append((time.perf_counter(), done))
            if progress and len(samples) % 4 == 0:  # a progress line a second
                print(f"{done:>8.0f}/{count} {kind} processed", file=sys.stderr, flush=True)
            if done >= count:
                break
            if time.perf_counter() - started > 600:
                raise SystemExit("gave up after 600 s")
    finally:
        peaks = [worker_peak_rss_mb(p.pid) for p in procs]
        stop_workers(procs)
        drop_prefix(redis_url, prefix)
    first = next(t for t, n in samples if n > 0)
    t10 = next(t for t, n in samples if n >= 0.1 * count)
    t90 = next(t for t, n in samples if n >= 0.9 * count)
    steady = 0.8 * count / (t90 - t10) if t90 > t10 else float("nan")
    return {
        "kind": kind,
        "count": count,
        "workers": workers,
        "batch_size": batch_size,
        "preload_produce_per_s": round(produce_rate),
        "kafka_python_consume_per_s": None if consume_rate is None else round(consume_rate),
        "overall_per_s": round(count / (samples[-1][0] - first)),
        "steady_per_s": round(steady),
        "peak_rss_mb": peaks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["reports", "readings"], default="reports")
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--workers", type=int, default=1, help="workers in one consumer group")
    parser.add_argument("--bootstrap", help="use this broker instead of starting a Tansu")
    parser.add_argument("--redis", default=os.environ.get("CITYLOOP_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--json", dest="json_out", help="write results as JSON to this file")
    args = parser.parse_args()

    with broker(args.bootstrap) as bootstrap, redis_server(args.redis) as args.redis:
        result = backlog_run(bootstrap, args.redis, args.kind, args.count, workers=args.workers,
                             batch_size=args.batch_size)  # fmt: skip
    result["cpus"] = os.cpu_count()
    print(file=sys.stderr)
    print(f"{'stage':<44}{'records/s':>12}")
    print(f"{'kafka-python produce (preload)':<44}{result['preload_produce_per_s']:>12,}")
    print(f"{'kafka-python consume + json.loads':<44}{result['kafka_python_consume_per_s']:>12,}")
    print(f"{f'{args.workers} worker(s) end to end, first->last':<44}{result['overall_per_s']:>12,}")
    print(f"{f'{args.workers} worker(s) end to end, steady (10%->90%)':<44}{result['steady_per_s']:>12,}")
    share = result["steady_per_s"] / result["kafka_python_consume_per_s"]
    print(f"steady rate = {share:.1%} of the raw consume ceiling")
    print(f"worker peak RSS (MB): {', '.join(str(p) for p in result['peak_rss_mb'])}")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
