"""CPU seconds of CityLoop's processes per report, for the full loop, with profiles; optionally against another commit.

Workload: bench/common.py's reports (the same as bench/e2e_throughput.py), a backlog of ``--count`` reports. Each
run has fresh topics and a fresh Redis namespace. ``--workers`` `cityloop worker` processes start on empty topics;
once they hold all their partitions and their start-up is over (imports, the seed model's training), they work
through ``--warmup`` reports dated a month earlier (first batches build dispatch indexes, load Lua scripts and
import lazily: costs a running worker has paid long ago; the warm-up's incidents are outside the backlog's merge
windows). Then, for ``--idle`` seconds, the idle CPU of every process is measured (the SLA timer, heartbeats,
Faust's timers, empty fetches, this script's scrapes of /metrics). Then the workers are stopped (SIGSTOP), the
whole backlog is written to the reports topic and they are let go (SIGCONT): processing starts with the backlog in
place, and the producer's work is not in the window.

The window ends when the loop is quiescent: every report has its outcome (``cityloop_processed_total``), the
workers' consumer lag on the reports and feedback topics is 0 (their feedback events were read back, the work
orders created, the offsets committed), and the work counters (ingested, processed, order events, timer events,
dead letters, duplicates, triage) moved by at most ``--quiet-events`` over the last ``--settle`` seconds.

"Full loop" is everything a worker does for a report: decode, dedup, classify, merge, dispatch, the incident, task
and feedback records, then reading its own feedback events back (merged, dispatched, notices) and the work-order
lifecycle (new orders, their indexes and timers), and the SLA timer's rounds.

    CityLoop CPU per report = (CPU of the workers in the window - their idle CPU rate x the window) / reports

CityLoop's processes here are the workers (each with its threads and any children): the loop runs inside the
worker; the API is not on the path of a report (people and units use it) and is not started. CPU is user + system
time from /proc/PID/stat (clock ticks, usually 10 ms). "gross" is the same without the idle subtraction (an upper
bound: part of the idle cost, the empty fetches, does not happen while busy). The broker's and Redis's CPU per
report are printed gross, for information (Tansu spends about as much idle, polling, as busy); they are not
CityLoop's. The rate (reports/s) is the backlog over the time from SIGCONT to the last movement of the work
counters; it depends on what else runs on the machine, the CPU per report much less.

``--ref GITREF`` measures that commit in the same run: a temporary ``git worktree`` of it is made, and its workers
run from it with PYTHONPATH and the working directory pointing there, in this same venv (so the ref must work with
the installed dependencies; bench/ and pyproject.toml of the ref are not used). Runs alternate between the ref and
this working tree (the ref first in odd runs, the working tree first in even runs); medians for both.

``--profile`` adds one profiled run per tree after the measured ones (profiling costs CPU itself: those runs are
not in the figures). The worker runs under bench/profile_hook.py, switched on at SIGCONT and off at quiescence,
which counts the garbage collector in the window (collections and CPU per generation) in every mode:

- ``gc``: only that (it costs next to nothing);
- ``cprofile``: a cProfile of the event-loop thread as well (wall clock, epoll's waiting left out; it makes the
  worker about 2x slower and inflates functions called very often; it gives call counts);
- ``py-spy``: py-spy samples every thread of the worker (``--spy-rate``; py-spy must be on PATH: ``pip install
  py-spy`` in your venv, it is not a project dependency); native code counts for the Python function calling it.

cprofile and py-spy print self time grouped by part of the system (engine, lifecycle, records, dispatch,
classifiers, Redis client, aiokafka, json, ...), the top functions by self time, and CityLoop's functions by
cumulative time (their callees included). Garbage collection is charged to whatever function allocated when it
ran: read the garbage collector's own lines for its share. Files go to ``--out`` (bench/results/, not committed).

    python -m bench.cpu_per_report                       # this tree, 3 runs of 20,000 reports, one worker
    python -m bench.cpu_per_report --ref 76f074f --profile py-spy
    python -m bench.cpu_per_report --runs 0 --profile gc    # only the profiled run, garbage collector only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HOOK = Path(__file__).resolve().parent / "profile_hook.py"
HOOK_START, HOOK_STOP = signal.SIGRTMIN + 1, signal.SIGRTMIN + 2  # bench/profile_hook.py's
TICK = os.sysconf("SC_CLK_TCK")
INPUT_PARTITIONS = 3  # the worker's batch consumer reads reports, readings and feedback
WORK_COUNTERS = (
    "cityloop_ingested_total",
    "cityloop_processed_total",
    "cityloop_order_events_total",
    "cityloop_timer_events_total",
    "cityloop_lifecycle_refused_total",
    "cityloop_deadletters_total",
    "cityloop_duplicates_total",
    "cityloop_triage_total",
)
LAG = "cityloop_consumer_lag_records"


# ------------------------------------------------------------------------------------------------ CPU from /proc


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process (all its threads), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime: fields 14 and 15 of stat(5)


def descendants(pid: int) -> list[int]:
    """Children, grandchildren, ... of ``pid`` that are alive now."""
    parents: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parents[ppid].append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def group_cpu(pids: list[int]) -> float:
    """CPU of these processes and their live descendants."""
    total = 0.0
    for pid in pids:
        for one in (pid, *descendants(pid)):
            total += cpu_seconds(one) or 0.0
    return total


# ------------------------------------------------------------------------------------------------ what is measured


@dataclass
class Tree:
    """A source tree whose workers are measured: this working tree, or a temporary worktree of ``--ref``."""

    label: str
    path: Path
    describe: str


def describe(path: Path) -> str:
    out = subprocess.run(["git", "-C", str(path), "describe", "--always", "--dirty", "--abbrev=7"],
                         capture_output=True, text=True, check=False)  # fmt: skip
    return out.stdout.strip() or "?"


@contextmanager
def worktree_of(ref: str) -> Iterator[Tree]:
    """A detached ``git worktree`` of ``ref`` in a temporary directory, removed afterwards."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{ref}^{{commit}}"],
                            capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    path = Path(tempfile.mkdtemp(prefix="cityloop-ref-")) / "tree"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), commit],
                   check=True, capture_output=True)  # fmt: skip
    try:
        yield Tree(f"ref {ref}", path, commit[:7])
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=False)
        shutil.rmtree(path.parent, ignore_errors=True)


def tree_env(tree: Tree) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tree.path), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }


def check_imports_from(tree: Tree) -> None:
    """The worker's packages must come from the tree, not from the editable install of the working tree."""
    probe = "import streams, classifiers, dispatch, feedback; print(streams.__file__)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=tree.path, env=tree_env(tree), capture_output=True,
                         text=True, check=True).stdout.strip()  # fmt: skip
    if not Path(out).resolve().is_relative_to(tree.path.resolve()):
        raise SystemExit(f"{tree.label}: streams imports from {out}, not from {tree.path}")


@contextmanager
def broker_with_pid(kind: str, bootstrap: str | None, pid: int | None) -> Iterator[tuple[str, int | None]]:
    """The given broker (its pid if given, for its CPU), or a Tansu / Apache Kafka started for the run."""
    if bootstrap:
        yield bootstrap, pid
        return
    from bench.common import free_port

    workdir = Path(tempfile.mkdtemp(prefix="cityloop-cpu-broker-"))
    if kind == "tansu":
        from streams.devbroker import start_broker

        started: Any = start_broker("127.0.0.1", free_port(), workdir / "broker.log")
    else:
        from streams.apachekafka import start_apache_kafka

        started = start_apache_kafka(workdir, workdir / "kafka.log")
    try:
        yield started.bootstrap, started.pid
    finally:
        os.kill(started.pid, signal.SIGTERM)


@contextmanager
def redis_with_pid(url: str | None) -> Iterator[tuple[str, int | None]]:
    """Redis at ``url`` (its pid from INFO, if it runs on this machine), else an embedded one on a free port."""
    import redis

    from bench.common import free_port
    from streams.redisconn import start_embedded_redis

    if url:
        client = redis.Redis.from_url(url)
        pid = int(client.info("server")["process_id"])
        client.close()
        yield url, pid if Path(f"/proc/{pid}").exists() else None
        return
    workdir = Path(tempfile.mkdtemp(prefix="cityloop-cpu-redis-"))
    started = start_embedded_redis(f"redis://127.0.0.1:{free_port()}/0", workdir, workdir / "redis.log")
    try:
        yield started.url, started.pid
    finally:
        os.kill(started.pid, signal.SIGTERM)


@dataclass
class Services:
    bootstrap: str
    broker_pid: int | None
    redis_url: str
    redis_pid: int | None


# ------------------------------------------------------------------------------------------------ the workers


@dataclass
class Worker:
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    spy: subprocess.Popen[bytes] | None = None


def start_worker(tree: Tree, services: Services, prefix: str, workdir: Path, name: str, batch_size: int,
                 profile_out: Path | None, hook_mode: str = "gc") -> Worker:  # fmt: skip
    from bench.common import free_port

    port = free_port()
    env = {
        **tree_env(tree),
        "CITYLOOP_KAFKA_BOOTSTRAP": services.bootstrap,
        "CITYLOOP_REDIS_URL": services.redis_url,
        "CITYLOOP_TOPIC_PREFIX": prefix,
        "CITYLOOP_WEB_PORT": str(port),
        "CITYLOOP_DATA_DIR": str(workdir),
        "CITYLOOP_BATCH_SIZE": str(batch_size),
    }
    args = ["worker", "--loglevel", os.environ.get("BENCH_LOGLEVEL", "warning")]
    command = [sys.executable, str(HOOK), str(profile_out), hook_mode, *args] if profile_out else [
        sys.executable, "-m", "streams.cli", *args]  # fmt: skip
    log = workdir / f"{name}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=tree.path, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Worker(process, port, log)


def stop_workers(workers: list[Worker]) -> None:
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGCONT)  # in case it is still stopped
            worker.process.send_signal(signal.SIGTERM)
    for worker in workers:
        try:
            worker.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            print("warning: a worker did not stop within 30 s of SIGTERM; killing it", file=sys.stderr)
            worker.process.kill()
            worker.process.wait()


def scrape(port: int) -> dict[str, float]:
    """The worker's /metrics: work counters summed, reports with an outcome, lag on the reports and feedback topics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    result = {"work": 0.0, "reports": 0.0, "lag": 0.0, "lag_seen": 0.0}
    for line in text.splitlines():
        if not line.startswith("cityloop_"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        value = float(line.rsplit(" ", 1)[1])
        if name in WORK_COUNTERS:
            result["work"] += value
            if name == "cityloop_processed_total" and 'stream="reports"' in line:
                result["reports"] += value
        elif name == LAG and ('stream="reports"' in line or 'stream="feedback"' in line):
            result["lag"] += value
            result["lag_seen"] += 1
    return result


def health(port: int) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return dict(json.loads(response.read()))
    except urllib.error.HTTPError as exc:
        return dict(json.loads(exc.read() or b"{}"))
    except (OSError, ValueError):
        return None


def check_alive(workers: list[Worker]) -> None:
    for worker in workers:
        if worker.process.poll() is not None:
            tail = worker.log.read_text(errors="replace")[-2000:]
            raise SystemExit(f"a worker exited with {worker.process.returncode}; its log {worker.log} ends:\n{tail}")


def wait_ready(workers: list[Worker], partitions: int, timeout: float = 180.0) -> None:
    """Until the workers hold every input partition between them, for two seconds running."""
    deadline, held_since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        check_alive(workers)
        states = [health(w.port) for w in workers]
        held = sum(int(s.get("assigned_partitions", 0)) for s in states if s)
        if held == INPUT_PARTITIONS * partitions and all(s and s.get("status") == "ready" for s in states):
            held_since = held_since or time.monotonic()
            if time.monotonic() - held_since >= 2.0:
                return
        else:
            held_since = None
        time.sleep(0.25)
    raise SystemExit(f"the workers did not hold all {INPUT_PARTITIONS * partitions} partitions within {timeout:g} s")


def wait_settled(pids: list[int], timeout: float = 30.0, below: float = 0.15) -> None:
    """Until the workers' start-up is over: under ``below`` of a core over a second (the seed model trains at start)."""
    deadline = time.monotonic() + timeout
    before = group_cpu(pids)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = group_cpu(pids)
        if now - before < below * len(pids):
            return
        before = now
    print(f"warning: the workers still used more than {below:.0%} of a core after {timeout:g} s", file=sys.stderr)


# ------------------------------------------------------------------------------------------------ one run


@dataclass
class Sample:
    at: float
    workers: float
    broker: float
    redis: float
    work: float
    reports: float
    lag: float


@dataclass
class Meter:
    worker_pids: list[int]
    broker_pid: int | None
    redis_pid: int | None

    def read(self) -> tuple[float, float, float, float]:
        broker = cpu_seconds(self.broker_pid) if self.broker_pid else None
        redis_cpu = cpu_seconds(self.redis_pid) if self.redis_pid else None
        return time.perf_counter(), group_cpu(self.worker_pids), broker or 0.0, redis_cpu or 0.0


def sample(meter: Meter, workers: list[Worker]) -> Sample:
    scraped = [scrape(w.port) for w in workers]
    at, workers_cpu, broker, redis_cpu = meter.read()
    total = {k: sum(s[k] for s in scraped) for k in ("work", "reports", "lag")}
    lag = total["lag"] if all(s["lag_seen"] for s in scraped) else float("inf")
    return Sample(at, workers_cpu, broker, redis_cpu, total["work"], total["reports"], lag)


@dataclass
class RunResult:
    tree: str
    reports: int
    seconds: float
    reports_per_s: float
    worker_cpu_s: float
    worker_idle_cores: float
    us_per_report: float
    us_per_report_gross: float
    broker_us_per_report: float | None
    broker_idle_cores: float | None
    redis_us_per_report: float | None
    redis_idle_cores: float | None
    work_events: float
    profile: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def connected_producer(bootstrap: str, topic: str) -> Any:
    """A connected producer (metadata fetched), so that writing the backlog is all that happens while workers wait."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=256 * 1024)
    producer.partitions_for(topic)
    return producer


def send_all(producer: Any, topic: str, payloads: list[tuple[bytes, bytes]]) -> None:
    for key, value in payloads:
        producer.send(topic, key=key, value=value)
    producer.flush()


def wait_quiescent(meter: Meter, workers: list[Worker], start: Sample, count: int,
                   args: argparse.Namespace) -> list[Sample]:  # fmt: skip
    """Samples from ``start`` until ``count`` more reports have outcomes, lag is 0 and the work counters are still."""
    samples = [start]
    while True:
        time.sleep(args.interval)
        check_alive(workers)
        try:
            now = sample(meter, workers)
        except OSError:
            continue
        samples.append(now)
        if now.at - start.at > args.timeout:
            raise SystemExit(f"not quiescent after {args.timeout:g} s: {now}")
        if now.reports - start.reports < count or now.lag > 0:
            continue
        window = [s for s in samples if now.at - s.at <= args.settle + 1e-6]
        if now.at - start.at >= args.settle and now.work - window[0].work <= args.quiet_events:
            return samples


def one_run(tree: Tree, services: Services, payloads: list[tuple[bytes, bytes]], args: argparse.Namespace,
            warmup: list[tuple[bytes, bytes]], profile: str | None = None,
            out_dir: Path | None = None) -> RunResult:  # fmt: skip
    from bench.e2e_throughput import drop_prefix
    from streams.admin import ensure_topics
    from streams.topics import Topics

    workdir = Path(tempfile.mkdtemp(prefix="cityloop-cpu-"))
    prefix = f"cpu{uuid.uuid4().hex[:6]}"
    topics = Topics(prefix)
    ensure_topics(services.bootstrap, topics.all(), partitions=args.partitions)
    profile_files: list[Path] = []
    gc_files: list[Path] = []
    workers: list[Worker] = []
    for n in range(args.workers):
        profile_out = None
        if profile:  # under bench/profile_hook.py: the garbage collector is counted in every profiled run
            assert out_dir is not None
            profile_out = out_dir / f"{prefix}-worker{n}.prof"
            gc_files.append(Path(f"{profile_out}.gc.json"))
            if profile == "cprofile":
                profile_files.append(profile_out)
        workers.append(start_worker(tree, services, prefix, workdir, f"worker{n}", args.batch_size, profile_out,
                                    "cprofile" if profile == "cprofile" else "gc"))  # fmt: skip
    try:
        wait_ready(workers, args.partitions)
        pids = [w.process.pid for w in workers]
        meter = Meter(pids, services.broker_pid, services.redis_pid)
        producer = connected_producer(services.bootstrap, topics.reports)
        if warmup:  # first batches build indexes, load scripts, import lazily: not what a running worker pays
            wait_settled(pids)
            send_all(producer, topics.reports, warmup)
            wait_quiescent(meter, workers, sample(meter, workers), len(warmup), args)
        wait_settled(pids)

        # idle: the same scrapes as in the window, nothing to process
        first = sample(meter, workers)
        last = first
        while last.at - first.at < args.idle:
            time.sleep(args.interval)
            check_alive(workers)
            last = sample(meter, workers)
        span = last.at - first.at
        idle = {k: (getattr(last, k) - getattr(first, k)) / span for k in ("workers", "broker", "redis")}

        if profile == "py-spy":
            assert out_dir is not None
            for n, worker in enumerate(workers):
                out = out_dir / f"{prefix}-worker{n}.pyspy.txt"
                profile_files.append(out)
                worker.spy = subprocess.Popen(
                    ["py-spy", "record", "--pid", str(worker.process.pid), "--format", "raw", "--output", str(out),
                     "--rate", str(args.spy_rate), "--function", "--full-filenames",
                     *(["--native"] if args.spy_native else ["--nonblocking"] if args.spy_nonblocking else [])],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
            time.sleep(1.0)  # py-spy attaches
        for worker in workers:
            worker.process.send_signal(signal.SIGSTOP)
        send_all(producer, topics.reports, payloads)
        producer.close()
        if profile:
            for worker in workers:  # delivered when the worker continues
                worker.process.send_signal(HOOK_START)
        start = Sample(*meter.read(), work=last.work, reports=last.reports, lag=float("inf"))
        for worker in workers:
            worker.process.send_signal(signal.SIGCONT)
        samples = wait_quiescent(meter, workers, start, len(payloads), args)
        end = samples[-1]
        if profile:
            for worker in workers:
                worker.process.send_signal(HOOK_STOP)
            wait_files([p for p in profile_files if p.suffix == ".prof"] + gc_files)
        for worker in workers:
            if worker.spy is not None:
                worker.spy.send_signal(signal.SIGINT)
                worker.spy.wait(timeout=60)
    finally:
        for worker in workers:
            if worker.spy is not None and worker.spy.poll() is None:
                worker.spy.kill()
        stop_workers(workers)
        drop_prefix(services.redis_url, prefix)

    if args.verbose:
        print(f"    idle cores: workers {idle['workers']:.3f}, broker {idle['broker']:.3f}, Redis {idle['redis']:.3f}")
        for s in samples:
            print(f"    {s.at - start.at:6.2f} s  workers {s.workers - start.workers:6.2f}  broker "
                  f"{s.broker - start.broker:6.2f}  Redis {s.redis - start.redis:6.2f} CPU s  "
                  f"reports {s.reports - start.reports:7.0f}  work {s.work - start.work:8.0f}  "
                  f"lag {s.lag:6.0f}")  # fmt: skip
    moved = [s for s, before in zip(samples[1:], samples, strict=False) if s.work != before.work]
    busy_until = moved[-1].at if moved else end.at
    span = end.at - start.at
    count = len(payloads)

    def per_report(key: str, idle_rate: float = 0.0) -> float:
        return (getattr(end, key) - getattr(start, key) - idle_rate * span) / count * 1e6

    return RunResult(
        tree=tree.label,
        reports=count,
        seconds=round(span, 2),
        reports_per_s=round(count / (busy_until - start.at)),
        worker_cpu_s=round(end.workers - start.workers, 2),
        worker_idle_cores=round(idle["workers"], 4),
        us_per_report=round(per_report("workers", idle["workers"]), 1),
        us_per_report_gross=round(per_report("workers"), 1),
        broker_us_per_report=round(per_report("broker"), 1) if services.broker_pid else None,
        broker_idle_cores=round(idle["broker"], 4) if services.broker_pid else None,
        redis_us_per_report=round(per_report("redis"), 1) if services.redis_pid else None,
        redis_idle_cores=round(idle["redis"], 4) if services.redis_pid else None,
        work_events=end.work - start.work,
        profile=",".join(str(p) for p in profile_files) or None,
        extra={"gc": gc_totals(gc_files)} if gc_files else {},
    )


def gc_totals(files: list[Path]) -> dict[str, Any]:
    """The garbage collector in the window, over all workers (bench/profile_hook.py's counts)."""
    total: dict[str, Any] = {"seconds": [0.0, 0.0, 0.0], "collections": [0, 0, 0], "tracked_objects": 0}
    for file in files:
        one = json.loads(file.read_text())
        for key in ("seconds", "collections"):
            total[key] = [a + b for a, b in zip(total[key], one[key], strict=True)]
        total["tracked_objects"] += one["tracked_objects"]
    return total


def wait_files(paths: list[Path], timeout: float = 60.0) -> None:
    """Until each file exists and stopped growing (a profile being written)."""
    deadline = time.monotonic() + timeout
    sizes: dict[Path, int] = {}
    while time.monotonic() < deadline:
        now = {p: p.stat().st_size if p.exists() else -1 for p in paths}
        if all(v > 0 for v in now.values()) and now == sizes:
            return
        sizes = now
        time.sleep(0.5)
    print(f"warning: profile files not complete after {timeout:g} s: {paths}", file=sys.stderr)


# ------------------------------------------------------------------------------------------------ profiles

ENGINE, LIFECYCLE, METRICS, REDIS = (
    "engine (streams/engine.py)",
    "lifecycle (streams/lifecycle.py)",
    "metrics",
    "Redis client",
)
NUMERIC, LOOP, TIME = "numeric (sklearn, scipy, numpy, shapely)", "asyncio, selectors, sockets", "datetime"
OURS: tuple[tuple[str, str], ...] = (  # CityLoop's files, by path in the tree; the first that matches wins
    ("streams/engine.py", ENGINE),
    ("streams/lifecycle.py", LIFECYCLE),
    ("feedback/", "lifecycle core (feedback/: orders, store)"),
    ("streams/records.py", "records (streams/records.py)"),
    ("streams/outcomes.py", "outcomes (streams/outcomes.py)"),
    ("streams/state.py", "ledger, detectors (streams/state.py)"),
    ("streams/sinks.py", "sinks (streams/sinks.py)"),
    ("streams/ingest.py", "ingest (streams/ingest.py)"),
    ("streams/metrics.py", METRICS),
    ("streams/", "streams, other"),
    ("dispatch/", "dispatch"),
    ("classifiers/", "classifiers (text model, merge store)"),
)
LIBRARIES = {  # the first folder under site-packages
    "prometheus_client": METRICS,
    "redis": REDIS,
    "hiredis": REDIS,
    "aiokafka": "aiokafka",
    "kafka": "kafka-python",
    "orjson": "json",
    "faust": "faust, mode",
    "mode": "faust, mode",
    "sklearn": NUMERIC,
    "scipy": NUMERIC,
    "numpy": NUMERIC,
    "shapely": NUMERIC,
}
ELSEWHERE: tuple[tuple[str, str], ...] = (  # the standard library and builtins, by a part of the path or name
    ("orjson", "json"),
    ("/json/", "json"),
    ("json.", "json"),
    ("/asyncio/", LOOP),
    ("selectors.py", LOOP),
    ("socket.py", LOOP),
    ("select.epoll", LOOP),
    ("socket' objects", LOOP),
    ("datetime", TIME),
    ("zoneinfo", TIME),
)
OTHER = "other (stdlib, builtins)"


def group_of(where: str, roots: list[Path]) -> str:
    """The part of the system a file (or a builtin's name) belongs to."""
    if "site-packages/" in where:
        package = where.split("site-packages/", 1)[1].split("/", 1)[0]
        return LIBRARIES.get(package, "other libraries")
    for root in roots:
        if where.startswith(str(root) + "/"):
            relative = where[len(str(root)) + 1 :]
            return next((group for prefix, group in OURS if relative.startswith(prefix)), "other (the tree)")
    return next((group for needle, group in ELSEWHERE if needle in where), OTHER)


ENTRY = ("streams/cli.py", "streams/console.py")  # the process's entry: on every stack


def is_ours(path: str, roots: list[Path]) -> bool:
    return (
        "site-packages/" not in path
        and not path.endswith(ENTRY)
        and group_of(path, roots) in {group for _, group in OURS}
    )


def label(path: str, line: int, name: str, roots: list[Path]) -> str:
    if path == "~":
        return name
    if "site-packages/" in path:
        return f"{path.split('site-packages/', 1)[1]}:{line} {name}"
    for root in roots:
        if path.startswith(str(root) + "/"):
            return f"{path[len(str(root)) + 1 :]}:{line} {name}"
    return f"{Path(path).name}:{line} {name}"


def cprofile_report(files: list[Path], roots: list[Path], top: int) -> dict[str, Any]:
    """Self time by group (a builtin's time goes to its caller's group, except json, sockets, epoll), top functions."""
    import pstats

    stats = pstats.Stats(*[str(f) for f in files])
    entries: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    # the wall clock: time in epoll's poll is the event loop waiting (for Redis, the broker, the next timer)
    waiting = {k: v for k, v in entries.items() if "select.epoll" in k[2]}
    entries = {k: v for k, v in entries.items() if k not in waiting}
    total = sum(tt for (_cc, _nc, tt, _ct, _callers) in entries.values()) or 1.0
    groups: dict[str, float] = defaultdict(float)
    for (path, _line, name), (_cc, _nc, tt, _ct, callers) in entries.items():
        if path != "~":
            groups[group_of(path, roots)] += tt
            continue
        own = group_of(name, roots)
        if own != OTHER or not callers:
            groups[own] += tt
            continue
        # a builtin (dict.get, str.join, orjson is handled above): its time, shared among its callers
        from_callers = sum(v[2] for v in callers.values()) or 1.0
        for (cpath, _cline, cname), value in callers.items():
            groups[group_of(cpath if cpath != "~" else cname, roots)] += tt * value[2] / from_callers
    by_self = sorted(entries.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    ours = [kv for kv in entries.items() if is_ours(kv[0][0], roots)]
    by_cum = sorted(ours, key=lambda kv: kv[1][3], reverse=True)[:top]
    return {
        "total_s": total,
        "groups": sorted(groups.items(), key=lambda kv: kv[1], reverse=True),
        "self": [(label(*k, roots), v[2], v[1]) for k, v in by_self],
        "cumulative": [(label(*k, roots), v[3], v[1]) for k, v in by_cum],
        "unit": f"s running, {sum(v[2] for v in waiting.values()):.1f} s waiting in epoll left out",
    }


GC = "garbage collector (its own lines below)"


def pyspy_report(files: list[Path], roots: list[Path], top: int, rate: int) -> dict[str, Any]:
    """Samples by the group of the innermost Python frame (self), those functions, and CityLoop's on the stack.

    py-spy takes a thread in epoll_wait for a running one (it releases the GIL in a system call, as a socket send
    does): samples whose innermost Python frame is the selector's ``select`` are the event loop waiting, and are left
    out. With native frames (``--spy-native``), a sample inside CPython's collector (``gc_collect...``) is the
    garbage collector's, whatever Python function allocated when it started; without them it lands on that
    function, and a full collection (about 0.1 s here) moves the self times of whoever it hit.
    """
    groups: dict[str, float] = defaultdict(float)
    leaves: dict[str, float] = defaultdict(float)
    inclusive: dict[str, float] = defaultdict(float)
    total = waiting = 0.0
    for file in files:
        for line in file.read_text(errors="replace").splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = float(count_text)
            frames = [f for f in (parse_frame(f) for f in stack.split(";")) if f is not None]
            python = [f for f in frames if f[0].endswith(".py") or f[0].startswith("<")]
            # in the collector, or in bench/profile_hook.py's callback around it (no native frame seen there)
            collecting = any("gc_collect" in name for _, _, name in frames) or (
                bool(python) and python[-1][0].endswith("/profile_hook.py")
            )
            if not python and not collecting:
                continue
            if not collecting and python[-1][0].endswith("/selectors.py") and python[-1][2].endswith(".select"):
                waiting += count
                continue
            total += count
            if collecting:
                groups[GC] += count
                leaves["(garbage collection)"] += count
                continue
            path, lineno, name = python[-1]
            groups[group_of(path, roots)] += count
            leaves[label(path, lineno, name, roots)] += count
            for seen in {label(p, n, f, roots) for p, n, f in python if is_ours(p, roots)}:
                inclusive[seen] += count
    return {
        "total_s": total,
        "groups": sorted(groups.items(), key=lambda kv: kv[1], reverse=True),
        "self": sorted(((k, v, None) for k, v in leaves.items()), key=lambda kv: kv[1], reverse=True)[:top],
        "cumulative": sorted(((k, v, None) for k, v in inclusive.items()), key=lambda kv: kv[1], reverse=True)[:top],
        "unit": f"samples = {total / rate:.1f} s at {rate}/s; {waiting:,.0f} samples waiting in epoll left out",
    }


def parse_frame(frame: str) -> tuple[str, int, str] | None:
    """py-spy's ``function (path:line)``."""
    name, _, where = frame.rpartition(" (")
    if not where.endswith(")"):
        return None
    path, _, line = where[:-1].rpartition(":")
    return (path, int(line), name) if line.isdigit() else (where[:-1], 0, name)


def print_gc(tree: Tree, result: RunResult) -> None:
    gc = result.extra.get("gc")
    if not gc:
        return
    seconds, collections = gc["seconds"], gc["collections"]
    total = sum(seconds)
    print(f"\ngarbage collector of {tree.label} {tree.describe} in the profiled run's window: {total:.2f} s CPU, "
          f"{total / result.worker_cpu_s:.1%} of the workers' {result.worker_cpu_s:.2f} s, "
          f"{total / result.reports * 1e6:.0f} us/report; {gc['tracked_objects']:,} objects tracked "
          "at the end")  # fmt: skip
    for generation in range(3):
        each = seconds[generation] / collections[generation] * 1000 if collections[generation] else 0.0
        print(f"    generation {generation}: {collections[generation]:>6,} collections, {seconds[generation]:6.2f} s "
              f"({each:.2f} ms each)")  # fmt: skip


def print_profile(title: str, report: dict[str, Any], us_per_report: float | None) -> None:
    total = report["total_s"]
    print(f"\n{title}")
    scale = f"; at {us_per_report:.0f} us/report (this tree's median)" if us_per_report else ""
    print(f"  self time by part{scale}:")
    for group, value in report["groups"]:
        if value / total < 0.005:
            continue
        share = value / total
        us = f"{share * us_per_report:6.0f} us" if us_per_report else ""
        print(f"    {share:6.1%} {us}  {group}")
    print("  functions by self time:")
    for name, value, calls in report["self"]:
        print(f"    {value / total:6.1%}  {name}" + (f"  ({calls:,} calls)" if calls else ""))
    print("  CityLoop functions by cumulative time (their callees included):")
    for name, value, calls in report["cumulative"]:
        print(f"    {value / total:6.1%}  {name}" + (f"  ({calls:,} calls)" if calls else ""))


# ------------------------------------------------------------------------------------------------ main


def summary(results: list[RunResult]) -> dict[str, Any]:
    def stat(key: str) -> dict[str, float] | None:
        values = [getattr(r, key) for r in results if getattr(r, key) is not None]
        if not values:
            return None
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    keys = ("us_per_report", "us_per_report_gross", "reports_per_s", "broker_us_per_report", "redis_us_per_report",
            "worker_idle_cores", "broker_idle_cores", "redis_idle_cores")  # fmt: skip
    return {k: stat(k) for k in keys}


def fmt(stat: dict[str, float] | None, digits: int = 0) -> str:
    if stat is None:
        return "-"
    return f"{stat['median']:,.{digits}f} ({stat['min']:,.{digits}f}-{stat['max']:,.{digits}f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=20_000, help="reports in the backlog (default 20,000)")
    parser.add_argument("--warmup", type=int, default=1000, help="reports processed before the window (default 1,000)")
    parser.add_argument("--workers", type=int, default=1, help="workers in one consumer group (default 1)")
    parser.add_argument("--runs", type=int, default=3, help="measured runs per tree (default 3; 0: profile only)")
    parser.add_argument("--ref", help="also measure this commit (a temporary git worktree), alternating runs")
    parser.add_argument("--profile", choices=["cprofile", "py-spy", "gc"], help="one more run per tree, profiled")
    parser.add_argument("--top", type=int, default=15, help="functions listed per profile table (default 15)")
    parser.add_argument("--spy-rate", type=int, default=250, help="py-spy samples per second (default 250)")
    parser.add_argument(
        "--spy-native",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="py-spy with native frames: tells the garbage collector's samples apart (default on)",
    )
    parser.add_argument(
        "--spy-nonblocking",
        action="store_true",
        help="with --no-spy-native: py-spy without pausing the worker to sample",
    )
    parser.add_argument("--broker", choices=["tansu", "kafka"], default="tansu", help="broker started for the run")
    parser.add_argument("--bootstrap", help="use this broker instead of starting one")
    parser.add_argument("--broker-pid", type=int, help="with --bootstrap: the broker's pid, for its CPU")
    parser.add_argument("--redis", help="use this Redis (its pid from INFO) instead of an embedded one on a free port")
    parser.add_argument("--partitions", type=int, default=4, help="partitions per topic (default 4)")
    parser.add_argument("--batch-size", type=int, default=500, help="CITYLOOP_BATCH_SIZE (default 500)")
    parser.add_argument("--idle", type=float, default=3.0, help="seconds of idle baseline per run (default 3)")
    parser.add_argument("--interval", type=float, default=0.25, help="seconds between samples (default 0.25)")
    parser.add_argument("--settle", type=float, default=1.5, help="quiet seconds that end a run (default 1.5)")
    parser.add_argument("--quiet-events", type=float, default=3, help="work-counter moves allowed in --settle")
    parser.add_argument("--timeout", type=float, default=600, help="give up a run after this many seconds")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results", help="profiles and --json go here")
    parser.add_argument("--verbose", action="store_true", help="print every sample of each run")
    parser.add_argument("--json", dest="json_out", type=Path, help="write every run and the summary to this file")
    args = parser.parse_args()
    if args.profile == "py-spy" and not shutil.which("py-spy"):
        raise SystemExit("py-spy is not on PATH: pip install py-spy (in your venv; it is not a project dependency)")

    from bench.common import encoded, report_records

    payloads = encoded(report_records(args.count, "c"), "report_id")
    # a month before the backlog: the warm-up's incidents are outside the backlog's merge windows
    warmup = encoded(report_records(args.warmup, "w", seed=2, now=datetime.now(UTC) - timedelta(days=30)), "report_id")
    here = Tree("working tree", REPO, describe(REPO))
    args.out.mkdir(parents=True, exist_ok=True)
    with (
        worktree_of(args.ref) if args.ref else _nothing() as ref,
        broker_with_pid(args.broker, args.bootstrap, args.broker_pid) as (bootstrap, broker_pid),
        redis_with_pid(args.redis) as (redis_url, redis_pid),
    ):
        trees = [ref, here] if ref else [here]
        for tree in trees:
            check_imports_from(tree)
        services = Services(bootstrap, broker_pid, redis_url, redis_pid)
        print(f"{args.count:,} reports, {args.workers} worker(s), {args.runs} run(s) per tree, broker "
              f"{args.bootstrap or args.broker} (pid {broker_pid}), Redis {redis_url} (pid {redis_pid}), "
              f"{os.cpu_count()} cores", flush=True)  # fmt: skip
        for tree in trees:
            print(f"  {tree.label}: {tree.describe} at {tree.path}", flush=True)
        results: dict[str, list[RunResult]] = {t.label: [] for t in trees}
        for run in range(args.runs):
            for tree in trees if run % 2 == 0 else trees[::-1]:
                result = one_run(tree, services, payloads, args, warmup)
                results[tree.label].append(result)
                print(f"  run {run + 1} {tree.label:<14} {result.us_per_report:7.1f} us/report "
                      f"(gross {result.us_per_report_gross:.1f}, idle {result.worker_idle_cores:.1%} of a core), "
                      f"{result.reports_per_s:,}/s, {result.seconds:.1f} s; broker "
                      f"{result.broker_us_per_report} us, Redis {result.redis_us_per_report} us per report (gross)",
                      flush=True)  # fmt: skip
        profiles: dict[str, tuple[RunResult, dict[str, Any]]] = {}
        if args.profile:
            for tree in trees:
                result = one_run(tree, services, payloads, args, warmup, profile=args.profile, out_dir=args.out)
                files = [Path(p) for p in (result.profile or "").split(",") if p]
                roots = [tree.path.resolve(), tree.path]
                if args.profile == "gc":
                    report = {}
                elif args.profile == "cprofile":
                    report = cprofile_report(files, roots, args.top)
                else:
                    report = pyspy_report(files, roots, args.top, args.spy_rate)
                profiles[tree.label] = (result, report)
                print(f"  profiled run {tree.label}: {result.us_per_report:.1f} us/report under {args.profile} "
                      f"({result.reports_per_s:,}/s; the workers' CPU in the window {result.worker_cpu_s:.1f} s); "
                      f"{result.profile}", flush=True)  # fmt: skip

    summaries = {t.label: summary(results[t.label]) for t in trees if results[t.label]}
    if summaries:
        print()
        print(f"CPU per report, full loop, {args.count:,} reports, {args.workers} worker(s): medians (ranges) "
              f"of {args.runs} run(s); broker and Redis gross, not CityLoop's")  # fmt: skip
        print(f"{'tree':<26}{'CityLoop us/report':>24}{'gross us/report':>22}{'reports/s':>22}"
              f"{'broker us/report':>20}{'Redis us/report':>20}")  # fmt: skip
    for tree in trees:
        if tree.label not in summaries:
            continue
        s = summaries[tree.label]
        print(f"{tree.label + ' ' + tree.describe:<26}{fmt(s['us_per_report'], 1):>24}"
              f"{fmt(s['us_per_report_gross'], 1):>22}{fmt(s['reports_per_s']):>22}"
              f"{fmt(s['broker_us_per_report'], 1):>20}{fmt(s['redis_us_per_report'], 1):>20}")  # fmt: skip
    if summaries:
        idle = summaries[trees[-1].label]
        print(f"idle, medians (cores): workers {fmt(idle['worker_idle_cores'], 3)}, broker "
              f"{fmt(idle['broker_idle_cores'], 3)}, Redis {fmt(idle['redis_idle_cores'], 3)}")  # fmt: skip
    if ref and summaries.get(ref.label) and summaries.get(here.label):
        before, after = (
            summaries[ref.label]["us_per_report"]["median"],
            summaries[here.label]["us_per_report"]["median"],
        )
        print(f"working tree against {ref.label}: {after / before:.2f}x the CPU per report")
    for tree in trees:
        if tree.label in profiles:
            result, report = profiles[tree.label]
            median = summaries.get(tree.label, {}).get("us_per_report")
            if report:
                print_profile(f"profile of {tree.label} {tree.describe} ({args.profile}, {report['total_s']:,.1f} "
                              f"{report['unit']})", report, median["median"] if median else None)  # fmt: skip
            print_gc(tree, result)
    if args.json_out:
        args.json_out.write_text(json.dumps({
            "args": {k: str(v) for k, v in vars(args).items()},
            "trees": {t.label: t.describe for t in trees},
            "runs": {k: [vars(r) for r in v] for k, v in results.items()},
            "summary": summaries,
            "profiles": {k: v[1] for k, v in profiles.items()},
        }, indent=2))  # fmt: skip


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


if __name__ == "__main__":
    main()
