"""Kill -> processing again: how long the city's intake waits when a worker dies and its replacement starts.

A worker runs and is ready; it is SIGKILLed and a replacement started at once
(as a supervisor would). From then on a probe report goes in every 100 ms; the
figure is the time from the replacement's start to the first task of a probe
(so it counts the replacement's start-up, its group join, the dead member's
session running out and the first batch): the first incident record that
lists a probe among its sources (probes merge, so most open no task). Repeated ``--runs`` times (each
replacement is the next run's victim), on Tansu and on Apache Kafka, medians
printed, with dynamic group membership and with static membership (the
replacement has the victim's ``CITYLOOP_WORKER_ID``). ``ready`` is when the
replacement's ingest said it holds partitions (from its log).

    python -m bench.restart [--runs 5] [--brokers tansu,kafka] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from bench.common import broker_of, redis_server
from bench.e2e_throughput import drop_prefix, start_worker, stop_workers
from streams.admin import ensure_topics
from streams.topics import Topics


def probe(report_id: str) -> bytes:
    record = {"report_id": report_id, "source": "bench", "text": "pothole", "service_code": "pothole",
              "lat": 51.99, "lon": 5.06, "reported_at": datetime.now(UTC).isoformat()}  # fmt: skip
    return json.dumps(record).encode()


def first_line_after(log: Path, marker: str) -> float | None:
    """Seconds since the epoch of the first log line containing ``marker`` (its own timestamp), if any."""
    for line in log.read_text(errors="replace").splitlines():
        if marker in line and line.startswith("["):
            stamp = line[1 : line.index("]")]
            return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").astimezone().timestamp()
    return None


def one_kill(bootstrap: str, topics: Topics, victim: subprocess.Popen[bytes], spawn: Any, run: int) -> dict[str, Any]:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    consumer = KafkaConsumer(topics.incidents, bootstrap_servers=bootstrap, auto_offset_reset="latest",
                             enable_auto_commit=False, group_id=None, fetch_max_wait_ms=20)  # fmt: skip
    consumer.poll(timeout_ms=500)  # assigned, positioned at the end before anything is killed
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed = time.time()
    replacement, log = spawn(run)
    started = time.time()
    sent: dict[str, float] = {}
    try:
        while time.time() - started < 120:
            report_id = f"probe-{run}-{len(sent)}-{uuid.uuid4().hex[:6]}"
            producer.send(topics.reports, key=report_id.encode(), value=probe(report_id))
            sent[f"report:{report_id}"] = time.time()
            producer.flush()
            for batch in consumer.poll(timeout_ms=100).values():
                for message in batch:  # a probe opens an incident or joins the last run's: either way it is in one
                    if any(source in sent for source in json.loads(message.value)["source_ids"]):
                        done = time.time()
                        ready = first_line_after(log, "ready: ingest holds")
                        return {
                            "processing_again_s": round(done - started, 2),
                            "since_kill_s": round(done - killed, 2),
                            "ready_s": round(ready - started, 2) if ready else None,
                            "replacement": replacement,
                        }
        raise RuntimeError(f"the replacement processed nothing within 120 s; see {log}")
    finally:
        producer.close()
        consumer.close()


def measure(kind: str, bootstrap: str, redis_url: str, runs: int, static: bool, session_s: float) -> dict[str, Any]:
    prefix = f"restart{uuid.uuid4().hex[:6]}"
    topics = Topics(prefix)
    workdir = Path(tempfile.mkdtemp(prefix="cityloop-bench-restart-"))
    ensure_topics(bootstrap, topics.all(), partitions=4)
    processes: list[subprocess.Popen[bytes]] = []

    def spawn(run: int) -> tuple[subprocess.Popen[bytes], Path]:
        env = {"CITYLOOP_GROUP_SESSION_TIMEOUT_S": str(session_s)}
        if static:
            env["CITYLOOP_WORKER_ID"] = "w1"  # the replacement is the same worker, restarted
        process, port = start_worker(bootstrap, redis_url, prefix, workdir, name=f"worker-{run}", **env)
        processes.append(process)
        return process, workdir / f"worker-{run}.log"

    os.environ.setdefault("BENCH_LOGLEVEL", "info")  # the replacement's "ready" line, for the phases
    try:
        current, _ = spawn(0)
        wait_ready_process(current, workdir / "worker-0.log")
        results = []
        for run in range(1, runs + 1):
            result = one_kill(bootstrap, topics, current, spawn, run)
            current = result.pop("replacement")
            results.append(result)
            print(f"  {kind} run {run}: {result}", flush=True)
            time.sleep(1.0)
        summary = {key: round(statistics.median(r[key] for r in results if r[key] is not None), 2)
                   for key in ("processing_again_s", "since_kill_s", "ready_s")}  # fmt: skip
        membership = "static" if static else "dynamic"
        return {"broker": kind, "membership": membership, "session_s": session_s, "runs": results, "median": summary}
    finally:
        stop_workers([p for p in processes if p.poll() is None])
        drop_prefix(redis_url, prefix)


def graceful_handover(kind: str, bootstrap: str, redis_url: str, runs: int) -> dict[str, Any]:
    """Two workers share the partitions; one gets SIGTERM: seconds until the other holds them all (it left at once?)."""
    prefix = f"leave{uuid.uuid4().hex[:6]}"
    workdir = Path(tempfile.mkdtemp(prefix="cityloop-bench-leave-"))
    ensure_topics(bootstrap, Topics(prefix).all(), partitions=4)
    times = []
    try:
        for run in range(runs):
            pair = [start_worker(bootstrap, redis_url, prefix, workdir, name=f"pair-{run}-{i}") for i in range(2)]
            try:
                ports = [port for _, port in pair]
                wait_until(lambda ports=ports: all(assigned(p) for p in ports) and sum(map(assigned, ports)) == 12)
                pair[0][0].send_signal(signal.SIGTERM)
                stopped = time.monotonic()
                wait_until(lambda ports=ports: assigned(ports[1]) == 12, interval=0.05)
                times.append(round(time.monotonic() - stopped, 2))
                print(f"  {kind} graceful stop {run + 1}: the other holds every partition after {times[-1]} s",
                      flush=True)  # fmt: skip
            finally:
                stop_workers([process for process, _ in pair if process.poll() is None])
    finally:
        drop_prefix(redis_url, prefix)
    return {"broker": kind, "runs": times, "median": round(statistics.median(times), 2)}


def assigned(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
            return int(json.loads(response.read())["assigned_partitions"])
    except (OSError, ValueError, KeyError):
        return 0


def wait_until(condition: Any, timeout: float = 90, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out")
        time.sleep(interval)


def wait_ready_process(process: subprocess.Popen[bytes], log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "ready: ingest holds" in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited; see {log}")
        time.sleep(0.1)
    raise RuntimeError(f"the worker was not ready within {timeout} s; see {log}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--brokers", default="tansu,kafka")
    parser.add_argument("--redis", default=os.environ.get("CITYLOOP_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument(
        "--configs",
        default="tansu:dynamic:6,tansu:dynamic:2,kafka:dynamic:6,kafka:static:6",
        help="broker:membership:session seconds, comma separated (static: CITYLOOP_WORKER_ID set)",
    )
    parser.add_argument("--graceful", action="store_true", help="also: SIGTERM one of two workers, time the handover")
    parser.add_argument("--json", dest="json_out")
    args = parser.parse_args()
    out = []
    configs = [tuple(c.split(":")) for c in args.configs.split(",")]
    leaves: list[dict[str, Any]] = []
    with redis_server(args.redis) as redis_url:
        for kind in args.brokers.split(","):
            with broker_of(kind) as bootstrap:
                for _, membership, session in (c for c in configs if c[0] == kind):
                    print(f"{kind} at {bootstrap}, {membership} membership, session {session} s: {args.runs} kills",
                          flush=True)  # fmt: skip
                    out.append(measure(kind, bootstrap, redis_url, args.runs, membership == "static", float(session)))
                if args.graceful:
                    print(f"{kind}: {args.runs} graceful stops of one of two workers", flush=True)
                    leaves.append(graceful_handover(kind, bootstrap, redis_url, args.runs))
    print()
    print(f"{'broker':<8}{'membership':<12}{'session':>8}{'processing again':>18}{'since the kill':>16}{'ready':>8}"
          "   (medians, s)")  # fmt: skip
    for result in out:
        m = result["median"]
        print(f"{result['broker']:<8}{result['membership']:<12}{result['session_s']:>8g}{m['processing_again_s']:>18}"
              f"{m['since_kill_s']:>16}{m['ready_s']:>8}")  # fmt: skip
    for leave in leaves:
        print(f"{leave['broker']:<8}graceful stop: the other worker holds every partition after {leave['median']} s "
              "(median)")  # fmt: skip
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"kills": out, "graceful": leaves}, indent=2))
    sys.exit(0)


if __name__ == "__main__":
    main()
