"""What the lag gauge reads on a busy, healthy worker: reports sent at steady rates below its ceiling.

One `cityloop worker` (4 partitions) takes reports sent at each ``--rates`` value for ``--seconds`` each; four times
a second the bench reads the worker's ``cityloop_consumer_lag_records{stream="reports"}`` (summed over partitions)
and ``cityloop_consumed_records_total{stream="reports"}``. Per rate it prints the lag's median, p95 and max over the
steady part (the first 5 s of each phase are left out), the pace the worker finished records at, and the median lag
in seconds of work at that pace: what CityLoopConsumerLagHigh compares (more than 1,000 records and more than 120 s
of work). A rate the worker cannot keep up with shows as a pace below the rate and a lag that grows.

    python -m bench.lag_steady --rates 250,500,1000,1500 --seconds 20 [--bootstrap HOST:PORT] [--redis URL]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from bench.common import broker, encoded, redis_server, report_records
from bench.e2e_throughput import drop_prefix, metric_sum, start_worker, stop_workers
from bench.latency import wait_ready
from streams.admin import ensure_topics
from streams.topics import Topics


def read(port: int) -> tuple[float, float]:
    """(lag of reports summed over partitions, reports consumed so far) from the worker's /metrics."""
    lag = metric_sum(port, "cityloop_consumer_lag_records", 'stream="reports"')
    done = metric_sum(port, "cityloop_consumed_records_total", 'stream="reports"')
    return lag, done


def phase(producer: KafkaProducer, topic: str, port: int, rate: float, seconds: float, tag: str) -> dict[str, Any]:
    """Send ``rate`` reports a second for ``seconds``, sampling the worker four times a second."""
    payloads = encoded(report_records(int(rate * seconds) + 1, tag), "report_id")
    samples: list[tuple[float, float, float]] = []
    started = time.monotonic()
    sent = 0
    next_sample = started
    while True:
        now = time.monotonic()
        elapsed = now - started
        if elapsed >= seconds:
            break
        due = min(len(payloads), int(rate * elapsed))
        while sent < due:
            key, value = payloads[sent]
            producer.send(topic, key=key, value=value)
            sent += 1
        producer.flush()
        if now >= next_sample:
            try:
                lag, done = read(port)
                samples.append((elapsed, lag, done))
            except OSError:  # a scrape that failed is left out, not read as a number
                pass
            next_sample += 0.25
        time.sleep(0.02)
    steady = [s for s in samples if s[0] >= 5.0]
    lags = sorted(s[1] for s in steady)
    pace = (steady[-1][2] - steady[0][2]) / (steady[-1][0] - steady[0][0]) if len(steady) > 1 else 0.0
    p95 = lags[min(len(lags) - 1, int(0.95 * len(lags)))] if lags else float("nan")
    median = statistics.median(lags) if lags else float("nan")
    return {
        "rate": rate,
        "sent": sent,
        "sent_per_s": round(sent / seconds, 1),
        "lag_median": median,
        "lag_p95": p95,
        "lag_max": max(lags) if lags else float("nan"),
        "pace_per_s": round(pace, 1),
        "lag_seconds_of_work": round(median / pace, 2) if pace > 0 else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="250,500,1000,1500", help="reports a second, one phase each (comma list)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each phase")
    parser.add_argument("--bootstrap", help="use this broker instead of starting a Tansu")
    parser.add_argument("--redis", default=os.environ.get("CITYLOOP_REDIS_URL", "redis://127.0.0.1:6379/0"),
                        help="this Redis if it answers, else an embedded one")  # fmt: skip
    parser.add_argument("--json", dest="json_out", help="write results as JSON to this file")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",") if r.strip()]
    with broker(args.bootstrap) as bootstrap, redis_server(args.redis) as redis_url:
        workdir = Path(tempfile.mkdtemp(prefix="cityloop-lag-"))
        prefix = f"lag{uuid.uuid4().hex[:6]}"
        topics = Topics(prefix)
        ensure_topics(bootstrap, topics.all(), partitions=4)
        process, port = start_worker(bootstrap, redis_url, prefix, workdir)
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
        results: list[dict[str, Any]] = []
        try:
            wait_ready(port)
            for n, rate in enumerate(rates):
                result = phase(producer, topics.reports, port, rate, args.seconds, f"s{n}")
                results.append(result)
                print(json.dumps(result), file=sys.stderr, flush=True)
        finally:
            producer.close()
            stop_workers([process])
            drop_prefix(redis_url, prefix)
    print(f"{'rate/s':>7} {'sent/s':>7} {'lag median':>10} {'p95':>6} {'max':>6} {'pace/s':>7} {'s of work':>9}")
    for r in results:
        print(f"{r['rate']:>7.0f} {r['sent_per_s']:>7.0f} {r['lag_median']:>10.0f} {r['lag_p95']:>6.0f} "
              f"{r['lag_max']:>6.0f} {r['pace_per_s']:>7.0f} "
              f"{r['lag_seconds_of_work'] or float('nan'):>9.2f}")  # fmt: skip
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
