"""End-to-end throughput of one worker, against the broker's raw ceiling in the same run.

Pre-loads the reports (or readings) topic with N records using kafka-python,
measures a raw kafka-python consume + json.loads of the same records (the
ceiling a pipeline could reach on this broker from Python), then starts one
`cityloop worker` and times how fast it turns the backlog into tasks (reports)
or detector updates (readings), by sampling the worker's /metrics.

    python -m bench.e2e_throughput --kind reports --count 20000
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

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from bench.common import encoded, free_port, reading_records, report_records
from streams.admin import ensure_topics
from streams.devbroker import start_broker
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
    """The worker's peak resident memory (VmHWM), from /proc; None where /proc is not there."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=["reports", "readings"], default="reports")
    parser.add_argument("--count", type=int, default=20000)
    parser.add_argument("--bootstrap", help="use this broker instead of starting a Tansu")
    parser.add_argument("--redis", default=os.environ.get("CITYLOOP_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--json", dest="json_out", help="write results as JSON to this file")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="cityloop-bench-"))
    broker_pid = None
    bootstrap = args.bootstrap
    if not bootstrap:
        broker = start_broker("127.0.0.1", free_port(), workdir / "broker.log")
        bootstrap, broker_pid = broker.bootstrap, broker.pid
    prefix = f"bench{uuid.uuid4().hex[:6]}"
    topics = Topics(prefix)
    ensure_topics(bootstrap, topics.all(), partitions=4)
    topic = topics.reports if args.kind == "reports" else topics.readings
    payloads = records(args.kind, args.count)
    produce_rate = preload(bootstrap, topic, payloads)
    ceiling = raw_consume_rate(bootstrap, topic, args.count)

    port = free_port()
    env = {
        **os.environ,
        "CITYLOOP_KAFKA_BOOTSTRAP": bootstrap,
        "CITYLOOP_REDIS_URL": args.redis,
        "CITYLOOP_TOPIC_PREFIX": prefix,
        "CITYLOOP_WEB_PORT": str(port),
        "CITYLOOP_DATA_DIR": str(workdir),
        "CITYLOOP_BATCH_SIZE": str(args.batch_size),
    }
    log = open(workdir / "worker.log", "wb")
    started = time.perf_counter()
    worker = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker", "--loglevel", os.environ.get("BENCH_LOGLEVEL", "warning")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    # a report always has an outcome; a normal reading has none, so readings count when accepted
    counter, having = (
        ("cityloop_processed_total", 'stream="reports"')
        if args.kind == "reports"
        else ("cityloop_ingested_total", 'kind="reading"')
    )
    samples: list[tuple[float, float]] = []
    try:
        while True:
            time.sleep(0.25)  # a scrape costs the worker CPU: four a second are enough
            if worker.poll() is not None:
                raise SystemExit(f"worker exited: see {workdir / 'worker.log'}")
            try:
                done = metric_sum(port, counter, having)
            except OSError:
                continue
            samples.append((time.perf_counter(), done))
            if len(samples) % 4 == 0:  # a progress line a second
                print(f"{done:>8.0f}/{args.count} processed", file=sys.stderr, flush=True)
            if done >= args.count:
                break
            if time.perf_counter() - started > 600:
                raise SystemExit("gave up after 600 s")
    finally:
        peak_rss_mb = worker_peak_rss_mb(worker.pid)
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            # seen after a large backlog: the worker does not finish stopping (see BENCHMARKS.md); measurements stand
            print("warning: the worker did not stop within 30 s of SIGTERM; killing it", file=sys.stderr)
            worker.kill()
            worker.wait()
        if broker_pid:
            os.kill(broker_pid, signal.SIGTERM)
    print(file=sys.stderr)
    first = next(t for t, n in samples if n > 0)
    t10 = next(t for t, n in samples if n >= 0.1 * args.count)
    t90 = next(t for t, n in samples if n >= 0.9 * args.count)
    overall = args.count / (samples[-1][0] - first)
    steady = 0.8 * args.count / (t90 - t10) if t90 > t10 else float("nan")
    result = {
        "kind": args.kind,
        "count": args.count,
        "batch_size": args.batch_size,
        "preload_produce_per_s": round(produce_rate),
        "raw_consume_ceiling_per_s": round(ceiling),
        "worker_overall_per_s": round(overall),
        "worker_steady_per_s": round(steady),
        "ratio_of_ceiling": round(steady / ceiling, 3),
        "cpus": os.cpu_count(),
        "worker_peak_rss_mb": peak_rss_mb,
    }
    print(f"{'stage':<40}{'records/s':>12}")
    print(f"{'kafka-python produce (preload)':<40}{result['preload_produce_per_s']:>12,}")
    print(f"{'kafka-python consume + json.loads':<40}{result['raw_consume_ceiling_per_s']:>12,}")
    print(f"{'worker end to end, first->last':<40}{result['worker_overall_per_s']:>12,}")
    print(f"{'worker end to end, steady (10%->90%)':<40}{result['worker_steady_per_s']:>12,}")
    print(f"steady rate = {result['ratio_of_ceiling']:.1%} of the raw consume ceiling")
    print(f"worker peak RSS {peak_rss_mb} MB")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
